"""Scheduling's outbox channels for patients, delivered as messages.

``scheduling.waitlist_offer``: the offer of a freed time becomes a message of the organization's
active waitlist-offer rules, with the offered date and time as parameters, planned for now (the
guards apply as to every message). ``scheduling.patient_notice``: the moves and cancellations of
a doctor's absence are already told by the move and cancellation rules, which read the same
changes from the appointments' history, so the notice itself needs no second message.
"""

from __future__ import annotations

import datetime

from django.utils import formats

from clinic.core.models import Branch
from clinic.outbox.models import OutboxMessage
from clinic.outbox.registry import channel_register
from patients.models import Person
from scheduling.absence import NOTICE_CHANNEL
from scheduling.waitlist import OFFER_CHANNEL

from .events import event_messages_plan
from .models import RuleEvent


def waitlist_offer_deliver(outbox: OutboxMessage) -> None:
    payload = outbox.payload
    patient = Person.objects.filter(public_id=payload["patient"]).first()
    branch = Branch.objects.filter(public_id=payload["branch"]).first()
    if patient is None or branch is None:
        return
    starts_at = datetime.datetime.fromisoformat(payload["starts_at"])
    params = {
        "slot_date": formats.date_format(starts_at, "DATE_FORMAT"),
        "slot_time": f"{starts_at:%H:%M}",
        "doctor": payload.get("doctor", ""),
        "service": payload.get("service", ""),
        "branch": branch.name,
        "branch_address": branch.address,
        "branch_phone": branch.phone,
    }
    event_messages_plan(
        RuleEvent.WAITLIST_OFFER,
        branch=branch,
        patient=patient,
        appointment=None,
        params=params,
        key=f"offer:{payload['offer']}",
    )


def patient_notice_deliver(outbox: OutboxMessage) -> None:
    """Told by the move and cancellation rules (see the module's docstring)."""


def notice_channels_register() -> None:
    channel_register(OFFER_CHANNEL, waitlist_offer_deliver)
    channel_register(NOTICE_CHANNEL, patient_notice_deliver)
