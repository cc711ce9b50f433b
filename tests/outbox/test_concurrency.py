"""Relays running at the same time never claim or deliver the same message twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.services import RelayReport, outbox_claim_due, outbox_relay

from .conftest import RecordingHandler
from .factories import OutboxMessageFactory

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 200


def _run_in_threads(targets: list[Callable[[], Any]]) -> list[Any]:
    """Run each target in its own thread (own DB connection); return results, re-raise errors."""
    results: list[Any] = [None] * len(targets)
    errors: list[BaseException] = []

    def run(index: int, target: Callable[[], Any]) -> None:
        try:
            results[index] = target()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(index, target)) for index, target in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a relay thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("relays", [2, 4])
def test_concurrent_relays_deliver_each_message_exactly_once(
    handler: RecordingHandler, settings: Any, relays: int
) -> None:
    settings.OUTBOX_BATCH_SIZE = 20
    keys = {message.idempotency_key for message in OutboxMessageFactory.create_batch(MESSAGES)}
    handler.sleep_seconds = 0.002
    start = threading.Barrier(relays)

    def relay_until_empty() -> list[RelayReport]:
        start.wait(timeout=30)
        reports = []
        while True:
            report = outbox_relay()
            if report.claimed == 0:
                return reports
            reports.append(report)

    per_thread = _run_in_threads([relay_until_empty] * relays)

    assert set(handler.delivered_per_key) == keys
    assert all(count == 1 for count in handler.delivered_per_key.values())
    assert len(handler.attempts) == MESSAGES
    reports = [report for reports in per_thread for report in reports]
    assert sum(report.delivered for report in reports) == MESSAGES
    assert sum(report.lost_claims + report.retried + report.dead for report in reports) == 0
    # More than one relay did work: the batches really were shared out.
    assert sum(1 for reports in per_thread if reports) > 1
    assert OutboxMessage.objects.filter(state=OutboxState.DELIVERED).count() == MESSAGES


def test_concurrent_claims_are_disjoint() -> None:
    ids = {message.pk for message in OutboxMessageFactory.create_batch(MESSAGES)}
    a_holds_locks = threading.Event()
    b_finished = threading.Event()
    b_finished_while_a_held_locks: list[bool] = []

    def pause_after_locking(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if "FOR UPDATE" in sql and not a_holds_locks.is_set():
            a_holds_locks.set()
            # Hold the row locks, uncommitted, until relay B has made its own claim.
            b_finished_while_a_held_locks.append(b_finished.wait(timeout=10))
        return result

    def claim_a() -> set[int]:
        with connection.execute_wrapper(pause_after_locking):
            return {message.pk for message in outbox_claim_due(limit=150)}

    def claim_b() -> set[int]:
        assert a_holds_locks.wait(timeout=30)
        try:
            return {message.pk for message in outbox_claim_due(limit=150)}
        finally:
            b_finished.set()

    claimed_a, claimed_b = _run_in_threads([claim_a, claim_b])

    assert b_finished_while_a_held_locks == [True]  # B did not wait for A's locks
    assert len(claimed_a) == 150
    assert len(claimed_b) == 50  # B skipped A's locked rows instead of waiting for them
    assert claimed_a.isdisjoint(claimed_b)
    assert claimed_a | claimed_b == ids
    tokens = dict(OutboxMessage.objects.values_list("pk", "claim_token"))
    assert len({tokens[pk] for pk in claimed_a}) == 1
    assert len({tokens[pk] for pk in claimed_b}) == 1
    assert tokens[next(iter(claimed_a))] != tokens[next(iter(claimed_b))]
    assert set(OutboxMessage.objects.values_list("attempts", flat=True)) == {1}
