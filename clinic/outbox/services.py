"""Enqueue, relay and re-queue outbox messages.

Relaying is lease-based: a relay claims due rows with ``FOR UPDATE SKIP LOCKED`` and marks them
``in_progress`` with a claim token and a lease, commits, delivers outside any transaction, and
records the outcome only if it still holds the claim. Two relays never claim the same row; a relay
that died mid-delivery lets its lease run out and the message is tried again with the same key.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinic.core.policies import can_requeue_outbox_message

from .models import OutboxAttempt, OutboxMessage, OutboxState
from .registry import PermanentDeliveryError, channel_get

logger = logging.getLogger(__name__)


def outbox_enqueue(
    *,
    channel: str,
    payload: dict[str, Any],
    idempotency_key: str | None = None,
    subject: str = "",
    not_before: datetime | None = None,
) -> OutboxMessage:
    """Write a message in the caller's transaction; it is sent only if that transaction commits.

    The idempotency key (a new UUID unless the caller derives one from its document) exists
    before the first attempt. Enqueueing the same key again returns the existing message.
    """
    key = idempotency_key or str(uuid.uuid4())
    with transaction.atomic():
        message, created = OutboxMessage.objects.get_or_create(
            idempotency_key=key,
            defaults={
                "channel": channel,
                "payload": payload,
                "subject": subject[:200],
                "next_attempt_at": not_before or timezone.now(),
            },
        )
        if created:
            transaction.on_commit(lambda: _kick_relay(channel))
    return message


def _kick_relay(channel: str) -> None:
    """Ask a worker to relay now instead of waiting for the next beat tick (best effort)."""
    from .tasks import outbox_relay_channel

    registered = channel_get(channel)
    try:
        outbox_relay_channel.apply_async(
            args=[channel], queue=registered.queue if registered else None, retry=False
        )
    except Exception:  # the beat-driven relay will pick the message up anyway
        logger.warning("Could not signal the outbox relay for channel %s", channel, exc_info=True)


def backoff_delay(attempt: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter: a random delay in [base, base * 2**(attempt-1)]."""
    base = settings.OUTBOX_BACKOFF_BASE_SECONDS
    ceiling = min(settings.OUTBOX_BACKOFF_MAX_SECONDS, base * 2 ** max(attempt - 1, 0))
    chooser = rng or random.SystemRandom()
    return timedelta(seconds=chooser.uniform(base, max(base, ceiling)))


@dataclass(frozen=True)
class RelayReport:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lost_claims: int = 0

    @property
    def claimed(self) -> int:
        return self.delivered + self.retried + self.dead + self.lost_claims


def outbox_claim_due(*, channel: str | None = None, limit: int | None = None) -> list[OutboxMessage]:
    """Claim due messages for this relay (pending and due, or with an expired lease)."""
    now = timezone.now()
    due = Q(state=OutboxState.PENDING, next_attempt_at__lte=now) | Q(
        state=OutboxState.IN_PROGRESS, claimed_until__lt=now
    )
    queryset = OutboxMessage.objects.filter(due)
    if channel:
        queryset = queryset.filter(channel=channel)
    token = uuid.uuid4()
    lease = now + timedelta(seconds=settings.OUTBOX_CLAIM_SECONDS)
    with transaction.atomic():
        ids = list(
            queryset.order_by("next_attempt_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[: limit or settings.OUTBOX_BATCH_SIZE]
        )
        if not ids:
            return []
        for message in OutboxMessage.objects.filter(pk__in=ids):
            message.state = OutboxState.IN_PROGRESS
            message.claim_token = token
            message.claimed_until = lease
            message.attempts += 1
            message.save(
                update_fields=["state", "claim_token", "claimed_until", "attempts", "updated_at"]
            )
    return list(OutboxMessage.objects.filter(pk__in=ids, claim_token=token).order_by("pk"))


def outbox_relay(*, channel: str | None = None, limit: int | None = None) -> RelayReport:
    """Claim due messages and deliver each through its channel's handler; return the counts."""
    counts = {"delivered": 0, "retried": 0, "dead": 0, "lost_claims": 0}
    for message in outbox_claim_due(channel=channel, limit=limit):
        outcome = _deliver(message)
        counts[outcome] += 1
    return RelayReport(**counts)


def _deliver(message: OutboxMessage) -> str:
    started = timezone.now()
    registered = channel_get(message.channel)
    error = ""
    permanent = False
    if registered is None:
        error, permanent = f"No handler is registered for channel “{message.channel}”.", True
    else:
        try:
            registered.handler(message)
        except PermanentDeliveryError as exc:
            error, permanent = str(exc) or exc.__class__.__name__, True
        except Exception as exc:
            error = f"{exc.__class__.__name__}: {exc}"
            logger.warning("Outbox delivery of %s failed: %s", message.public_id, error)
    return _record_outcome(message, started=started, error=error, permanent=permanent)


def _record_outcome(message: OutboxMessage, *, started: datetime, error: str, permanent: bool) -> str:
    """Store the attempt and the new state, provided this relay still holds the claim."""
    now = timezone.now()
    with transaction.atomic():
        current = (
            OutboxMessage.objects.select_for_update()
            .filter(pk=message.pk, state=OutboxState.IN_PROGRESS, claim_token=message.claim_token)
            .first()
        )
        if current is None:
            logger.warning("Outbox message %s: claim lost before recording", message.public_id)
            return "lost_claims"
        OutboxAttempt.objects.create(
            message=current,
            number=current.attempts,
            started_at=started,
            finished_at=now,
            succeeded=not error,
            error=error,
        )
        current.claim_token = None
        current.claimed_until = None
        if not error:
            current.state = OutboxState.DELIVERED
            current.delivered_at = now
            current.last_error = ""
            outcome = "delivered"
        elif permanent or current.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
            current.state = OutboxState.DEAD
            current.last_error = error
            outcome = "dead"
        else:
            current.state = OutboxState.PENDING
            current.next_attempt_at = now + backoff_delay(current.attempts)
            current.last_error = error
            outcome = "retried"
        current.save(
            update_fields=[
                "state",
                "claim_token",
                "claimed_until",
                "delivered_at",
                "last_error",
                "next_attempt_at",
                "updated_at",
            ]
        )
    return outcome


class OutboxPermissionDenied(PermissionError):
    pass


def outbox_requeue(*, message: OutboxMessage, actor: Any) -> OutboxMessage:
    """Send a dead (or waiting) message again now, with the same idempotency key."""
    if not can_requeue_outbox_message(actor, message):
        raise OutboxPermissionDenied(message.public_id)
    with transaction.atomic():
        current = OutboxMessage.objects.select_for_update().get(pk=message.pk)
        if current.state in (OutboxState.DELIVERED, OutboxState.IN_PROGRESS):
            return current
        current.state = OutboxState.PENDING
        current.attempts = 0
        current.next_attempt_at = timezone.now()
        current.save(update_fields=["state", "attempts", "next_attempt_at", "updated_at"])
        channel = current.channel
        transaction.on_commit(lambda: _kick_relay(channel))
    return current
