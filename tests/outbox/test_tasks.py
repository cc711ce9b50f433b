"""The Celery tasks of the relay, called directly; only the broker boundary is mocked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.tasks import outbox_dispatch_due, outbox_relay_channel

from .conftest import RecordingHandler
from .factories import DeadOutboxMessageFactory, DeliveredOutboxMessageFactory, OutboxMessageFactory

pytestmark = pytest.mark.django_db


def test_relay_channel_task_delivers_that_channels_due_messages(handler: RecordingHandler) -> None:
    ours = OutboxMessageFactory.create_batch(2, channel="test")
    theirs = OutboxMessageFactory(channel="elsewhere")

    assert outbox_relay_channel.run("test") == 2

    assert sorted(handler.delivered) == sorted(message.idempotency_key for message in ours)
    theirs.refresh_from_db()
    assert theirs.state == OutboxState.PENDING
    assert outbox_relay_channel.run("test") == 0


def test_relay_channel_task_drains_a_backlog_of_several_batches(
    handler: RecordingHandler, settings: Any
) -> None:
    settings.OUTBOX_BATCH_SIZE = 3
    messages = OutboxMessageFactory.create_batch(7, channel="test")

    assert outbox_relay_channel.run("test") == 7

    assert sorted(handler.delivered) == sorted(message.idempotency_key for message in messages)
    assert OutboxMessage.objects.filter(state=OutboxState.DELIVERED).count() == 7


def test_relay_channel_task_for_unknown_channel_dead_letters_its_messages() -> None:
    message = OutboxMessageFactory(channel="retired")
    assert outbox_relay_channel("retired") == 1
    message.refresh_from_db()
    assert message.state == OutboxState.DEAD
    assert "retired" in message.last_error


def test_dispatch_due_starts_one_relay_per_channel_with_due_messages(
    handler: RecordingHandler, relay_kicks: mock.MagicMock
) -> None:
    past = timezone.now() - timedelta(minutes=1)
    OutboxMessageFactory.create_batch(3, channel="test")
    OutboxMessageFactory(channel="sms")
    OutboxMessageFactory(channel="later", next_attempt_at=timezone.now() + timedelta(hours=1))
    OutboxMessageFactory(channel="busy", state=OutboxState.IN_PROGRESS, claimed_until=None)
    OutboxMessageFactory(
        channel="busy",
        state=OutboxState.IN_PROGRESS,
        claimed_until=timezone.now() + timedelta(minutes=5),
    )
    OutboxMessageFactory(channel="stuck", state=OutboxState.IN_PROGRESS, claimed_until=past)
    DeadOutboxMessageFactory(channel="dead")
    DeliveredOutboxMessageFactory(channel="done")

    started = outbox_dispatch_due.run()

    assert started == ["sms", "stuck", "test"]
    assert relay_kicks.call_args_list == [
        mock.call(args=("sms",)),
        mock.call(args=("stuck",)),
        mock.call(args=("test",), queue="outbox.test"),
    ]
    assert handler.attempts == []  # dispatching only starts relays


def test_dispatch_due_with_nothing_due_starts_nothing(relay_kicks: mock.MagicMock) -> None:
    DeliveredOutboxMessageFactory()
    assert outbox_dispatch_due() == []
    assert relay_kicks.call_count == 0
