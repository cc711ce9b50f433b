"""Celery tasks of the outbox relay: thin wrappers around ``services.outbox_relay``."""

from __future__ import annotations

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from .models import OutboxMessage, OutboxState
from .registry import channel_get
from .services import outbox_relay


@shared_task(name="outbox.relay_channel", ignore_result=True)
def outbox_relay_channel(channel: str) -> int:
    """Deliver the due messages of one channel (runs on that channel's own queue)."""
    return outbox_relay(channel=channel).claimed


@shared_task(name="outbox.dispatch_due", ignore_result=True)
def outbox_dispatch_due() -> list[str]:
    """Beat-driven: start a relay on each channel's queue that has due messages."""
    now = timezone.now()
    channels = (
        OutboxMessage.objects.filter(
            Q(state=OutboxState.PENDING, next_attempt_at__lte=now)
            | Q(state=OutboxState.IN_PROGRESS, claimed_until__lt=now)
        )
        .values_list("channel", flat=True)
        .distinct()
    )
    started = []
    for channel in channels:
        registered = channel_get(channel)
        outbox_relay_channel.apply_async(args=[channel], queue=registered.queue if registered else None)
        started.append(channel)
    return started
