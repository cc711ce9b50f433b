"""Beat-driven messaging work: planning from the rules and sending what is due. Both claim their
work from the database, so beat firing twice or two workers at once change nothing."""

from __future__ import annotations

from celery import shared_task

from .planner import plan_all
from .sender import send_due, sending_reap


@shared_task(name="messaging.plan", ignore_result=True)
def plan() -> int:
    return plan_all()


@shared_task(name="messaging.send_due", ignore_result=True)
def send() -> int:
    sending_reap()
    return send_due()
