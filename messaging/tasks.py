"""Beat-driven messaging work: planning from the rules and sending what is due. All of it claims
its work from the database, so beat firing twice or two workers at once change nothing.

Events (bookings, moves, cancellations, status changes) are planned every half minute; the
reminders before visits and birthdays, planned a day ahead, every five minutes.
"""

from __future__ import annotations

from celery import shared_task

from .planner import plan_birthdays, plan_events, plan_reminders
from .sender import send_due, sending_reap


@shared_task(name="messaging.plan_events", ignore_result=True)
def plan_event_messages() -> int:
    return sum(result.planned for result in plan_events())


@shared_task(name="messaging.plan_reminders", ignore_result=True)
def plan_reminder_messages() -> int:
    return sum(result.planned for result in [*plan_reminders(), *plan_birthdays()])


@shared_task(name="messaging.send_due", ignore_result=True)
def send() -> int:
    sending_reap()
    return send_due()
