"""Messages other apps ask for when something happens to a patient outside the schedule: lab
results ready, a discount card issued. Each call plans the organization's active rules for the
event once (the key names the event's own object), inside the caller's transaction, so the
message exists exactly when the fact does.

The laboratory calls ``lab_results_ready`` only when every result of the visit is in; billing
calls ``discount_card_issued`` when it hands out a card.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from clinic.core.models import Branch
from patients.models import Person
from scheduling.models import Appointment

from .models import Message, ReminderRule, RuleEvent


def event_messages_plan(
    event: str,
    *,
    branch: Branch,
    patient: Person | None,
    appointment: Appointment | None,
    params: dict[str, Any],
    key: str,
) -> list[Message]:
    rules = ReminderRule.objects.filter(
        organization_id=branch.organization_id, event=event, is_active=True
    )
    planned = []
    for rule in rules:
        if rule.branch_id not in (None, branch.pk):
            continue
        message, _created = Message.objects.get_or_create(
            dedup_key=f"r{rule.pk}:{key}",
            defaults={
                "organization_id": branch.organization_id,
                "branch": branch,
                "patient": patient,
                "appointment": appointment,
                "rule": rule,
                "params": params,
                "due_at": timezone.now(),
            },
        )
        planned.append(message)
    return planned


def lab_results_ready(appointment: Appointment) -> list[Message]:
    """Every result of the visit is in: tell the patient (once per visit)."""
    return event_messages_plan(
        RuleEvent.LAB_READY,
        branch=appointment.branch,
        patient=appointment.patient,
        appointment=appointment,
        params={},
        key=f"lab:{appointment.pk}",
    )


def discount_card_issued(*, patient: Person, branch: Branch, card_number: str) -> list[Message]:
    """A discount card was issued: tell the patient its number (once per card)."""
    return event_messages_plan(
        RuleEvent.DISCOUNT_CARD,
        branch=branch,
        patient=patient,
        appointment=None,
        params={"card_number": card_number},
        key=f"card:{patient.pk}:{card_number}",
    )
