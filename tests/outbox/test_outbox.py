"""The transactional outbox: enqueue with the change, deliver once, retry, dead-letter, re-queue."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from clinic.core.roles import Role
from clinic.outbox.models import OutboxAttempt, OutboxMessage, OutboxState
from clinic.outbox.services import (
    ABANDONED_ATTEMPT_ERROR,
    OutboxPermissionDenied,
    RelayReport,
    backoff_delay,
    outbox_claim_due,
    outbox_enqueue,
    outbox_relay,
    outbox_requeue,
)
from tests.core.factories import staff_with_role

from .conftest import RecordingHandler
from .factories import DeadOutboxMessageFactory, DeliveredOutboxMessageFactory

pytestmark = pytest.mark.django_db

BASE = 30
CAP = 6 * 3600


@pytest.fixture(autouse=True)
def _backoff_settings(settings: Any) -> None:
    settings.OUTBOX_BACKOFF_BASE_SECONDS = BASE
    settings.OUTBOX_BACKOFF_MAX_SECONDS = CAP
    settings.OUTBOX_MAX_ATTEMPTS = 8
    settings.OUTBOX_CLAIM_SECONDS = 300
    settings.OUTBOX_BATCH_SIZE = 50


class _Rollback(Exception):
    pass


def _make_due(message: OutboxMessage) -> None:
    """Skip the backoff wait: the next relay finds the message due."""
    OutboxMessage.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def _attempt_log(message: OutboxMessage) -> list[tuple[int, bool, str]]:
    return list(
        OutboxAttempt.objects.filter(message=message)
        .order_by("number")
        .values_list("number", "succeeded", "error")
    )


# --- enqueue ---------------------------------------------------------------------------------


def test_enqueue_in_rolled_back_transaction_leaves_no_row_and_delivers_nothing(
    handler: RecordingHandler, relay_kicks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(_Rollback),
        transaction.atomic(),
    ):
        outbox_enqueue(channel="test", payload={"to": "+79990000000"}, idempotency_key="k-1")
        raise _Rollback

    assert OutboxMessage.objects.count() == 0
    assert callbacks == []
    assert relay_kicks.call_count == 0
    assert outbox_relay() == RelayReport()
    assert handler.attempts == []


def test_enqueue_in_committed_transaction_is_delivered_exactly_once(
    handler: RecordingHandler, relay_kicks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message = outbox_enqueue(channel="test", payload={"text": "hello"}, subject="patient:1")

    relay_kicks.assert_called_once_with(args=("test",), retry=False, queue="outbox.test")
    assert outbox_relay() == RelayReport(delivered=1)
    assert outbox_relay() == RelayReport()
    assert handler.delivered == [message.idempotency_key]
    message.refresh_from_db()
    assert message.state == OutboxState.DELIVERED
    assert message.attempts == 1
    assert message.delivered_at is not None
    assert message.claim_token is None
    assert _attempt_log(message) == [(1, True, "")]


def test_idempotency_key_exists_before_any_attempt_and_is_sent_on_every_attempt(
    handler: RecordingHandler,
) -> None:
    message = outbox_enqueue(channel="test", payload={"text": "hello"})

    stored = OutboxMessage.objects.get(pk=message.pk)
    assert stored.idempotency_key
    assert stored.idempotency_key == message.idempotency_key
    assert stored.attempts == 0
    assert stored.state == OutboxState.PENDING

    handler.fail_times = 2
    assert outbox_relay() == RelayReport(retried=1)
    _make_due(message)
    assert outbox_relay() == RelayReport(retried=1)
    _make_due(message)
    assert outbox_relay() == RelayReport(delivered=1)
    assert handler.attempts == [stored.idempotency_key] * 3
    assert handler.delivered == [stored.idempotency_key]


def test_enqueue_with_caller_key_uses_it(handler: RecordingHandler) -> None:
    message = outbox_enqueue(channel="test", payload={}, idempotency_key="receipt:42")
    outbox_relay()
    assert message.idempotency_key == "receipt:42"
    assert handler.delivered == ["receipt:42"]


def test_enqueue_twice_with_same_key_gives_one_row(
    handler: RecordingHandler, relay_kicks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = outbox_enqueue(channel="test", payload={"v": 1}, idempotency_key="invoice:7")
    with django_capture_on_commit_callbacks(execute=True):
        second = outbox_enqueue(channel="test", payload={"v": 2}, idempotency_key="invoice:7")

    assert second.pk == first.pk
    assert second.payload == {"v": 1}
    assert OutboxMessage.objects.filter(idempotency_key="invoice:7").count() == 1
    assert relay_kicks.call_count == 1
    assert outbox_relay() == RelayReport(delivered=1)
    assert handler.delivered == ["invoice:7"]


def test_enqueue_not_before_waits_until_then(handler: RecordingHandler) -> None:
    later = timezone.now() + timedelta(hours=1)
    message = outbox_enqueue(channel="test", payload={}, not_before=later)
    assert outbox_relay() == RelayReport()
    _make_due(message)
    assert outbox_relay() == RelayReport(delivered=1)


# --- failures, backoff, dead letters -----------------------------------------------------------


def test_failed_attempt_goes_back_to_pending_with_backoff_then_delivers(
    handler: RecordingHandler,
) -> None:
    message = outbox_enqueue(channel="test", payload={"text": "hi"})
    handler.fail_times = 2

    assert outbox_relay() == RelayReport(retried=1)
    message.refresh_from_db()
    first = OutboxAttempt.objects.get(message=message, number=1)
    assert message.state == OutboxState.PENDING
    assert message.attempts == 1
    assert message.last_error == "ConnectionError: peer down"
    assert message.claim_token is None
    assert message.claimed_until is None
    assert message.delivered_at is None
    # After attempt 1 the delay is exactly the base: [base, base * 2**0].
    assert message.next_attempt_at - first.finished_at == timedelta(seconds=BASE)
    assert message.next_attempt_at > timezone.now()
    assert outbox_relay() == RelayReport()  # not due yet

    _make_due(message)
    assert outbox_relay() == RelayReport(retried=1)
    message.refresh_from_db()
    second = OutboxAttempt.objects.get(message=message, number=2)
    assert message.attempts == 2
    assert (
        timedelta(seconds=BASE)
        <= message.next_attempt_at - second.finished_at
        <= timedelta(seconds=2 * BASE)
    )

    _make_due(message)
    assert outbox_relay() == RelayReport(delivered=1)
    message.refresh_from_db()
    assert message.state == OutboxState.DELIVERED
    assert message.attempts == 3
    assert message.delivered_at is not None
    assert message.last_error == ""
    assert _attempt_log(message) == [
        (1, False, "ConnectionError: peer down"),
        (2, False, "ConnectionError: peer down"),
        (3, True, ""),
    ]
    assert handler.delivered == [message.idempotency_key]


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 8, 10, 12])
def test_backoff_delay_stays_within_exponential_bounds(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(CAP, BASE * 2 ** (attempt - 1))
    delays = [backoff_delay(attempt, rng=rng).total_seconds() for _ in range(200)]
    assert all(BASE <= delay <= ceiling for delay in delays)
    if ceiling > BASE:
        # Jittered, and spread over the whole interval rather than stuck at one end.
        assert len(set(delays)) > 100
        assert min(delays) < BASE + (ceiling - BASE) * 0.1
        assert max(delays) > ceiling - (ceiling - BASE) * 0.1


def test_backoff_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = [backoff_delay(6, rng=random.Random(42)) for _ in range(3)]
    second = [backoff_delay(6, rng=random.Random(42)) for _ in range(3)]
    assert first == second


def test_backoff_delay_is_capped_by_the_maximum(settings: Any) -> None:
    rng = random.Random(7)
    delays = [backoff_delay(attempt, rng=rng) for attempt in (15, 20, 50, 1000, 10**6)]
    assert all(timedelta(seconds=BASE) <= d <= timedelta(seconds=CAP) for d in delays)

    settings.OUTBOX_BACKOFF_MAX_SECONDS = 100
    assert all(backoff_delay(30, rng=rng) <= timedelta(seconds=100) for _ in range(50))
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 10  # a cap below the base still wins
    assert backoff_delay(1, rng=rng) == timedelta(seconds=10)
    assert backoff_delay(9, rng=rng) == timedelta(seconds=10)


def test_backoff_delay_with_float_settings_does_not_overflow(settings: Any) -> None:
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 0.5
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 60.0
    assert backoff_delay(5000, rng=random.Random(1)) <= timedelta(seconds=60)


def test_message_is_dead_after_max_attempts(handler: RecordingHandler, settings: Any) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 3
    handler.fail_times = 10**6
    message = outbox_enqueue(channel="test", payload={})

    reports = []
    for _ in range(3):
        reports.append(outbox_relay())
        _make_due(message)

    assert reports == [RelayReport(retried=1), RelayReport(retried=1), RelayReport(dead=1)]
    message.refresh_from_db()
    assert message.state == OutboxState.DEAD
    assert message.attempts == 3
    assert message.last_error == "ConnectionError: peer down"
    assert [number for number, _, _ in _attempt_log(message)] == [1, 2, 3]
    assert outbox_relay() == RelayReport()
    assert len(handler.attempts) == 3


def test_permanent_delivery_error_dead_letters_at_once(handler: RecordingHandler) -> None:
    handler.fail_permanently = True
    message = outbox_enqueue(channel="test", payload={})

    assert outbox_relay() == RelayReport(dead=1)
    message.refresh_from_db()
    assert message.state == OutboxState.DEAD
    assert message.attempts == 1
    assert message.last_error == "peer rejected the payload"
    assert _attempt_log(message) == [(1, False, "peer rejected the payload")]
    assert outbox_relay() == RelayReport()


def test_unregistered_channel_dead_letters_naming_the_channel() -> None:
    message = outbox_enqueue(channel="fax-machine", payload={})

    assert outbox_relay() == RelayReport(dead=1)
    message.refresh_from_db()
    assert message.state == OutboxState.DEAD
    assert "fax-machine" in message.last_error
    assert message.last_error == "No handler is registered for channel “fax-machine”."


def test_relay_of_one_channel_leaves_other_channels_alone(handler: RecordingHandler) -> None:
    ours = outbox_enqueue(channel="test", payload={})
    theirs = outbox_enqueue(channel="elsewhere", payload={})

    assert outbox_relay(channel="test") == RelayReport(delivered=1)
    assert handler.delivered == [ours.idempotency_key]
    theirs.refresh_from_db()
    assert theirs.state == OutboxState.PENDING
    assert theirs.attempts == 0


# --- leases --------------------------------------------------------------------------------------


def _expire_lease(message: OutboxMessage) -> None:
    OutboxMessage.objects.filter(pk=message.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )


def test_claimed_message_is_not_claimed_again_while_its_lease_runs(
    handler: RecordingHandler,
) -> None:
    outbox_enqueue(channel="test", payload={})
    claimed = outbox_claim_due()
    assert len(claimed) == 1
    assert claimed[0].state == OutboxState.IN_PROGRESS
    assert claimed[0].claim_token is not None
    assert outbox_claim_due() == []
    assert outbox_relay() == RelayReport()


def test_expired_lease_is_reclaimed_with_same_key_and_stale_result_is_lost(
    handler: RecordingHandler,
) -> None:
    """Relay A stalls past its lease; relay B re-claims and delivers; A's late result is dropped."""
    message = outbox_enqueue(channel="test", payload={})
    reports_of_b: list[RelayReport] = []

    def stall_then_let_another_relay_run(msg: OutboxMessage, call_number: int) -> None:
        if call_number == 1:
            _expire_lease(msg)
            reports_of_b.append(outbox_relay())

    handler.on_call = stall_then_let_another_relay_run

    assert outbox_relay() == RelayReport(lost_claims=1)
    assert reports_of_b == [RelayReport(delivered=1)]
    assert handler.attempts == [message.idempotency_key] * 2
    message.refresh_from_db()
    assert message.state == OutboxState.DELIVERED
    assert message.attempts == 2
    assert message.claim_token is None
    # A's attempt is logged as abandoned by B's claim; A's own late success is not recorded.
    assert _attempt_log(message) == [(1, False, ABANDONED_ATTEMPT_ERROR), (2, True, "")]


def test_relay_does_not_deliver_a_batch_message_another_relay_took_over(
    handler: RecordingHandler,
) -> None:
    """A slow batch: while A delivers the first message, the second one's lease runs out and
    relay B delivers it; A must then skip it instead of sending it a second time."""
    first = outbox_enqueue(channel="test", payload={"n": 1})
    second = outbox_enqueue(channel="test", payload={"n": 2})
    reports_of_b: list[RelayReport] = []

    def slow_first_delivery(msg: OutboxMessage, call_number: int) -> None:
        if msg.pk == first.pk and call_number == 1:
            _expire_lease(second)
            reports_of_b.append(outbox_relay())

    handler.on_call = slow_first_delivery

    assert outbox_relay() == RelayReport(delivered=1, lost_claims=1)
    assert reports_of_b == [RelayReport(delivered=1)]
    assert handler.delivered_per_key == {first.idempotency_key: 1, second.idempotency_key: 1}
    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {OutboxState.DELIVERED}


def test_lease_expired_on_last_attempt_dead_letters(
    handler: RecordingHandler, settings: Any
) -> None:
    """A message whose relay keeps dying (no outcome ever recorded) does not loop forever."""
    settings.OUTBOX_MAX_ATTEMPTS = 2
    message = outbox_enqueue(channel="test", payload={})
    for _ in range(2):
        assert len(outbox_claim_due()) == 1
        _expire_lease(message)

    assert outbox_claim_due() == []
    message.refresh_from_db()
    assert message.state == OutboxState.DEAD
    assert message.last_error == ABANDONED_ATTEMPT_ERROR
    assert message.claim_token is None
    assert _attempt_log(message) == [
        (1, False, ABANDONED_ATTEMPT_ERROR),
        (2, False, ABANDONED_ATTEMPT_ERROR),
    ]
    assert handler.attempts == []


# --- re-queue --------------------------------------------------------------------------------


def test_administrator_requeues_dead_message_with_same_key(
    handler: RecordingHandler, relay_kicks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    handler.fail_permanently = True
    message = outbox_enqueue(channel="test", payload={}, idempotency_key="semd:9")
    assert outbox_relay() == RelayReport(dead=1)
    message.refresh_from_db()
    admin = staff_with_role(Role.ADMINISTRATOR).user

    with django_capture_on_commit_callbacks(execute=True):
        requeued = outbox_requeue(message=message, actor=admin)

    assert requeued.state == OutboxState.PENDING
    assert requeued.idempotency_key == "semd:9"
    assert requeued.attempts == 0
    assert requeued.next_attempt_at <= timezone.now()
    relay_kicks.assert_called_with(args=("test",), retry=False, queue="outbox.test")

    handler.fail_permanently = False
    assert outbox_relay() == RelayReport(delivered=1)
    assert handler.attempts == ["semd:9", "semd:9"]
    message.refresh_from_db()
    assert message.state == OutboxState.DELIVERED
    # The attempt log keeps counting across the re-queue.
    assert _attempt_log(message) == [(1, False, "peer rejected the payload"), (2, True, "")]


def test_requeued_message_gets_a_fresh_attempt_budget(
    handler: RecordingHandler, settings: Any
) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 2
    handler.fail_times = 10**6
    message = outbox_enqueue(channel="test", payload={})
    outbox_relay()
    _make_due(message)
    assert outbox_relay() == RelayReport(dead=1)
    message.refresh_from_db()

    outbox_requeue(message=message, actor=staff_with_role(Role.ADMINISTRATOR).user)

    assert outbox_relay() == RelayReport(retried=1)
    message.refresh_from_db()
    assert message.state == OutboxState.PENDING
    assert message.attempts == 1
    assert [number for number, _, _ in _attempt_log(message)] == [1, 2, 3]


@pytest.mark.parametrize("role", [Role.REGISTRAR, Role.CASHIER, Role.HEAD_OF_REGISTRY])
def test_non_administrator_may_not_requeue_and_nothing_changes(role: str, relay_kicks: Any) -> None:
    message = DeadOutboxMessageFactory.create()
    before = OutboxMessage.objects.values().get(pk=message.pk)

    with pytest.raises(OutboxPermissionDenied):
        outbox_requeue(message=message, actor=staff_with_role(role).user)

    assert OutboxMessage.objects.values().get(pk=message.pk) == before
    assert relay_kicks.call_count == 0


def test_delivered_message_is_not_requeued(relay_kicks: Any) -> None:
    message = DeliveredOutboxMessageFactory.create()
    before = OutboxMessage.objects.values().get(pk=message.pk)
    admin = staff_with_role(Role.ADMINISTRATOR).user

    with pytest.raises(OutboxPermissionDenied):
        outbox_requeue(message=message, actor=admin)

    # A stale copy that still looks dead is re-checked under the row lock.
    stale = OutboxMessage.objects.get(pk=message.pk)
    stale.state = OutboxState.DEAD
    result = outbox_requeue(message=stale, actor=admin)
    assert result.state == OutboxState.DELIVERED
    assert OutboxMessage.objects.values().get(pk=message.pk) == before
    assert relay_kicks.call_count == 0
