"""Celery tasks of the outbox relay: thin wrappers around ``services.outbox_relay``."""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import OutboxMessage, OutboxState
from .services import outbox_relay, relay_routing

# How long one relay task keeps taking further batches of a backlog before it yields its worker;
# the next kick or beat tick carries on with the rest.
RELAY_TASK_BUDGET_SECONDS = 60.0


@shared_task(name="outbox.relay_channel", ignore_result=True)
def outbox_relay_channel(channel: str) -> int:
    """Deliver the due messages of one channel (runs on that channel's own queue).

    Takes batch after batch while they come back full, so a backlog drains at the speed of the
    peer rather than at one batch per beat tick; returns how many messages it claimed.
    """
    deadline = time.monotonic() + RELAY_TASK_BUDGET_SECONDS
    claimed = 0
    while True:
        batch = outbox_relay(channel=channel).claimed
        claimed += batch
        if batch < settings.OUTBOX_BATCH_SIZE or time.monotonic() >= deadline:
            return claimed


@shared_task(name="outbox.dispatch_due", ignore_result=True)
def outbox_dispatch_due() -> list[str]:
    """Beat-driven: start one relay on each channel's queue that has due messages."""
    now = timezone.now()
    channels = (
        OutboxMessage.objects.filter(
            Q(state=OutboxState.PENDING, next_attempt_at__lte=now)
            | Q(state=OutboxState.IN_PROGRESS, claimed_until__lt=now)
        )
        # order_by("channel") replaces Meta.ordering, whose column would otherwise join the
        # DISTINCT and start one relay per message instead of one per channel.
        .order_by("channel")
        .values_list("channel", flat=True)
        .distinct()
    )
    started = []
    for channel in channels:
        outbox_relay_channel.apply_async(args=(channel,), **relay_routing(channel))
        started.append(channel)
    return started
