"""Benchmark: outbox enqueue and relay throughput, one relay against two concurrent relays.

Prints its figures; asserts only correctness (every message delivered exactly once).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction

from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.registry import channel_register, channel_unregister
from clinic.outbox.services import outbox_enqueue, outbox_relay

pytestmark = [pytest.mark.load, pytest.mark.django_db(transaction=True)]

MESSAGES = 1500


@pytest.fixture
def counting_channel() -> Iterator[Counter[str]]:
    delivered: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(message: OutboxMessage) -> None:
        with lock:
            delivered[message.idempotency_key] += 1

    channel_register("bench", handler)
    yield delivered
    channel_unregister("bench")


def enqueue(count: int) -> float:
    started = time.perf_counter()
    with transaction.atomic():
        for index in range(count):
            outbox_enqueue(channel="bench", payload={"n": index})
    return time.perf_counter() - started


def relay_all(relays: int) -> float:
    def work() -> None:
        try:
            while outbox_relay(channel="bench", limit=100).claimed:
                pass
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(relays)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def test_outbox_throughput(counting_channel: Counter[str], capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("clinic.outbox.services._kick_relay", lambda channel: None)
    figures = []
    for relays in (1, 2):
        counting_channel.clear()
        enqueue_seconds = enqueue(MESSAGES)
        relay_seconds = relay_all(relays)
        assert set(counting_channel.values()) == {1}
        assert len(counting_channel) == MESSAGES
        assert not OutboxMessage.objects.exclude(state=OutboxState.DELIVERED).exists()
        OutboxMessage.objects.all().delete()
        figures.append((relays, MESSAGES / enqueue_seconds, MESSAGES / relay_seconds))
    with capsys.disabled():
        print()
        for relays, enqueue_rate, relay_rate in figures:
            print(
                f"outbox: {MESSAGES} messages, enqueue {enqueue_rate:,.0f}/s, "
                f"relay with {relays} relay(s) {relay_rate:,.0f}/s, each delivered exactly once"
            )
        print(f"outbox: two relays / one relay throughput = {figures[1][2] / figures[0][2]:.2f}")
