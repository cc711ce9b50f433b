"""Factories of the outbox: messages in any state."""

from __future__ import annotations

import factory
from django.utils import timezone

from clinic.outbox.models import OutboxMessage, OutboxState


class OutboxMessageFactory(factory.django.DjangoModelFactory[OutboxMessage]):
    class Meta:
        model = OutboxMessage

    channel = "test"
    payload = factory.Sequence(lambda n: {"n": n})
    idempotency_key = factory.Sequence(lambda n: f"test-key-{n:05d}")
    subject = factory.Sequence(lambda n: f"test:{n}")
    state = OutboxState.PENDING
    next_attempt_at = factory.LazyFunction(timezone.now)


class DeadOutboxMessageFactory(OutboxMessageFactory):
    state = OutboxState.DEAD
    attempts = 3
    last_error = "ConnectionError: peer down"


class DeliveredOutboxMessageFactory(OutboxMessageFactory):
    state = OutboxState.DELIVERED
    attempts = 1
    delivered_at = factory.LazyFunction(timezone.now)
