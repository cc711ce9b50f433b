"""The test channel: a handler that records each attempt and fails when told to."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from clinic.outbox.models import OutboxMessage
from clinic.outbox.registry import PermanentDeliveryError, channel_register, channel_unregister
from clinic.outbox.tasks import outbox_relay_channel


class RecordingHandler:
    """Records the idempotency key of every attempt; fails ``fail_times`` times, or for good.

    Thread-safe, so several relays may share it.
    """

    def __init__(self) -> None:
        self.fail_times = 0
        self.fail_permanently = False
        self.sleep_seconds = 0.0
        self.on_call: Any = None
        self.attempts: list[str] = []
        self.delivered: list[str] = []
        self.delivered_per_key: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, message: OutboxMessage) -> None:
        key = message.idempotency_key
        with self._lock:
            self.attempts.append(key)
            call_number = len(self.attempts)
        if self.on_call is not None:
            self.on_call(message, call_number)
        if self.sleep_seconds:
            threading.Event().wait(self.sleep_seconds)
        if self.fail_permanently:
            raise PermanentDeliveryError("peer rejected the payload")
        with self._lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                raise ConnectionError("peer down")
            self.delivered.append(key)
            self.delivered_per_key[key] += 1


@pytest.fixture
def handler() -> Iterator[RecordingHandler]:
    """A handler registered as channel ``test`` for the duration of the test."""
    recording = RecordingHandler()
    channel_register("test", recording)
    yield recording
    channel_unregister("test")


@pytest.fixture(autouse=True)
def relay_kicks() -> Iterator[mock.MagicMock]:
    """Capture the relay tasks sent to the broker (the boundary) instead of sending them."""
    with mock.patch.object(outbox_relay_channel, "apply_async") as apply_async:
        yield apply_async
