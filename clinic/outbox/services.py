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
from django.db.models import F, Max, Q
from django.utils import timezone

from clinic.core.policies import can_requeue_outbox_message

from .models import OutboxAttempt, OutboxMessage, OutboxState
from .registry import PermanentDeliveryError, channel_get, channel_max_attempts

logger = logging.getLogger(__name__)

# 2**62 seconds is far beyond any sensible cap; a larger exponent only risks float overflow.
_MAX_BACKOFF_EXPONENT = 62

ABANDONED_ATTEMPT_ERROR = "The relay's lease expired before it recorded an outcome."


def outbox_enqueue(
    *,
    channel: str,
    payload: dict[str, Any],
    idempotency_key: str | None = None,
    subject: str = "",
    not_before: datetime | None = None,
    key_is_new: bool = False,
) -> OutboxMessage:
    """Write a message in the caller's transaction; it is sent only if that transaction commits.

    The idempotency key (a new UUID unless the caller derives one from its document) exists
    before the first attempt. Enqueueing the same key again returns the existing message;
    ``key_is_new`` says the caller made the key just now (from a fresh uuid), which saves the
    lookup.
    """
    key = idempotency_key or str(uuid.uuid4())
    if key_is_new or idempotency_key is None:
        # A key made just now (a fresh uuid) cannot exist yet: one INSERT, no savepoints.
        message = OutboxMessage.objects.create(
            idempotency_key=key,
            channel=channel,
            payload=payload,
            subject=subject[:200],
            next_attempt_at=not_before or timezone.now(),
        )
        transaction.on_commit(lambda: _kick_relay(channel))
        return message
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


def outbox_relay_on_commit(channel: str) -> None:
    """Ask for a relay of ``channel`` once the current transaction commits: for messages written
    by a caller's own statement rather than through ``outbox_enqueue``."""
    transaction.on_commit(lambda: _kick_relay(channel))


def _kick_relay(channel: str) -> None:
    """Ask a worker to relay now instead of waiting for the next beat tick (best effort)."""
    from .tasks import outbox_relay_channel

    try:
        outbox_relay_channel.apply_async(args=(channel,), retry=False, **relay_routing(channel))
    except Exception:  # the beat-driven relay will pick the message up anyway
        logger.warning("Could not signal the outbox relay for channel %s", channel, exc_info=True)


def relay_routing(channel: str) -> dict[str, Any]:
    """``apply_async`` options that send a channel's relay to its own queue (default if unknown)."""
    registered = channel_get(channel)
    return {"queue": registered.queue} if registered else {}


def backoff_delay(
    attempt: int, *, rng: random.Random | None = None, cap_seconds: float | None = None
) -> timedelta:
    """Exponential backoff with jitter: a random delay in [base, base * 2**(attempt-1)].

    The delay never exceeds ``OUTBOX_BACKOFF_MAX_SECONDS`` (not even when the cap is configured
    below the base), and the exponent is bounded so a large attempt number cannot overflow.
    """
    base = float(settings.OUTBOX_BACKOFF_BASE_SECONDS)
    cap = float(settings.OUTBOX_BACKOFF_MAX_SECONDS if cap_seconds is None else cap_seconds)
    exponent = min(max(attempt - 1, 0), _MAX_BACKOFF_EXPONENT)
    ceiling = min(cap, base * 2**exponent)
    floor = min(base, ceiling)
    chooser = rng or random.SystemRandom()
    return timedelta(seconds=chooser.uniform(floor, ceiling))


@dataclass(frozen=True)
class RelayReport:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lost_claims: int = 0

    @property
    def claimed(self) -> int:
        return self.delivered + self.retried + self.dead + self.lost_claims


def outbox_claim_due(
    *, channel: str | None = None, limit: int | None = None
) -> list[OutboxMessage]:
    """Claim due messages for this relay (pending and due, or with an expired lease).

    Commits the claim before returning, so call it outside any transaction. A message whose lease
    expired is charged the abandoned attempt (logged as failed); if that used up its attempts it is
    dead-lettered instead of claimed, so a message that kills its relay cannot loop forever.
    """
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
        rows = list(
            queryset.order_by("next_attempt_at", "pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", "state", "attempts", "claimed_until", "channel")[
                : limit or settings.OUTBOX_BATCH_SIZE
            ]
        )
        if not rows:
            return []
        ids: list[int] = []
        for pk, state, attempts, claimed_until, channel_name in rows:
            if state == OutboxState.IN_PROGRESS and _abandoned_attempt_record(
                message_id=pk,
                attempts=attempts,
                max_attempts=channel_max_attempts(channel_name),
                claimed_until=claimed_until,
                now=now,
            ):
                continue  # dead-lettered: no attempts left
            ids.append(pk)
        if not ids:
            return []
        OutboxMessage.objects.filter(pk__in=ids).update(
            state=OutboxState.IN_PROGRESS,
            claim_token=token,
            claimed_until=lease,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    return list(OutboxMessage.objects.filter(pk__in=ids, claim_token=token).order_by("pk"))


def _abandoned_attempt_record(
    *,
    message_id: int,
    attempts: int,
    max_attempts: int,
    claimed_until: datetime | None,
    now: datetime,
) -> bool:
    """Log the attempt of a relay that lost its lease; dead-letter if it was the last one.

    Call inside the claiming transaction with the row locked. Returns True when dead-lettered.
    """
    OutboxAttempt.objects.create(
        message_id=message_id,
        number=_next_attempt_number(message_id),
        started_at=(claimed_until or now) - timedelta(seconds=settings.OUTBOX_CLAIM_SECONDS),
        finished_at=now,
        succeeded=False,
        error=ABANDONED_ATTEMPT_ERROR,
    )
    if attempts < max_attempts:
        return False
    OutboxMessage.objects.filter(pk=message_id).update(
        state=OutboxState.DEAD,
        claim_token=None,
        claimed_until=None,
        last_error=ABANDONED_ATTEMPT_ERROR,
        updated_at=now,
    )
    return True


def _next_attempt_number(message_id: int) -> int:
    """The number of the next row in a message's attempt log (it survives re-queueing)."""
    last = OutboxAttempt.objects.filter(message_id=message_id).aggregate(last=Max("number"))["last"]
    return (last or 0) + 1


def outbox_relay(*, channel: str | None = None, limit: int | None = None) -> RelayReport:
    """Claim one batch of due messages and deliver each through its channel's handler.

    Call outside any transaction: the claim and each outcome commit on their own, and delivery
    (a call to another system) must not hold a database transaction open.
    """
    counts = {"delivered": 0, "retried": 0, "dead": 0, "lost_claims": 0}
    for message in outbox_claim_due(channel=channel, limit=limit):
        outcome = _deliver(message)
        counts[outcome] += 1
    return RelayReport(**counts)


def _claim_renew(message: OutboxMessage) -> bool:
    """Check this relay still holds a message and restart its lease, just before delivering it.

    A batch shares one lease from the moment it was claimed. If the last messages of a slow batch
    ran out of lease while waiting their turn and another relay re-claimed them, this relay must
    skip them (False) or the peer would get them twice; otherwise the delivery gets a full lease.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OUTBOX_CLAIM_SECONDS)
    renewed = OutboxMessage.objects.filter(
        pk=message.pk, state=OutboxState.IN_PROGRESS, claim_token=message.claim_token
    ).update(claimed_until=lease, updated_at=now)
    message.claimed_until = lease
    return renewed == 1


def _deliver(message: OutboxMessage) -> str:
    if not _claim_renew(message):
        logger.warning("Outbox message %s: claim lost before delivery", message.public_id)
        return "lost_claims"
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


def _record_outcome(
    message: OutboxMessage, *, started: datetime, error: str, permanent: bool
) -> str:
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
            number=_next_attempt_number(current.pk),
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
        elif permanent or current.attempts >= channel_max_attempts(current.channel):
            current.state = OutboxState.DEAD
            current.last_error = error
            outcome = "dead"
        else:
            current.state = OutboxState.PENDING
            registered = channel_get(current.channel)
            current.next_attempt_at = now + backoff_delay(
                current.attempts,
                cap_seconds=registered.backoff_max_seconds if registered else None,
            )
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
    """The actor may not re-queue this message."""


def outbox_requeue(*, message: OutboxMessage, actor: Any) -> OutboxMessage:
    """Send a dead (or waiting) message again now, with the same idempotency key.

    The message gets a fresh budget of ``OUTBOX_MAX_ATTEMPTS``; its attempt log keeps counting on
    from where it stopped. A delivered message or one being delivered is returned unchanged.
    """
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
