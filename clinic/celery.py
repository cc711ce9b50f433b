"""The Celery application: tasks of every app, beat schedule declared here in code."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, celeryd_after_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings.base")

app = Celery("clinic")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


def _beat_schedule() -> dict[str, dict[str, Any]]:
    from django.conf import settings

    return {
        "outbox-dispatch-due": {
            "task": "outbox.dispatch_due",
            "schedule": float(settings.OUTBOX_RELAY_INTERVAL_SECONDS),
        },
        "scheduling-expire-waitlist-offers": {
            "task": "scheduling.expire_waitlist_offers",
            "schedule": 60.0,
        },
        "messaging-plan-events": {"task": "messaging.plan_events", "schedule": 30.0},
        "messaging-plan-reminders": {"task": "messaging.plan_reminders", "schedule": 300.0},
        "messaging-send-due": {"task": "messaging.send_due", "schedule": 15.0},
        "billing-online-payments-recheck": {
            "task": "billing.online_payments_recheck",
            "schedule": 600.0,
        },
    }


@app.on_after_finalize.connect
def _declare_beat_schedule(sender: Celery, **kwargs: Any) -> None:
    sender.conf.beat_schedule = _beat_schedule()


@celeryd_after_setup.connect
def _consume_outbox_queues(sender: str, instance: Any, **kwargs: Any) -> None:
    """A worker started without -Q also serves every registered outbox channel's queue."""
    from django.conf import settings

    from clinic.outbox.registry import channel_get, channel_names

    if os.environ.get("CLINIC_WORKER_QUEUES"):
        return
    for name in channel_names():
        channel = channel_get(name)
        if channel is not None:
            instance.app.amqp.queues.select_add(channel.queue)
    logger.info(settings.SERVICES.describe())


@beat_init.connect
def _log_services_for_beat(sender: Any, **kwargs: Any) -> None:
    from django.conf import settings

    logger.info(settings.SERVICES.describe())
