"""Factories of telephony: an organization connected to its PBX, calls, planned calls, and
appointments written directly (the booking rules are not under test here)."""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone

from clinic.core.models import Branch, Organization
from patients.models import Person
from scheduling.models import Appointment, AppointmentKind, AppointmentStatus, BookingChannel
from telephony.models import Call, TelephonyLine
from telephony.services import telephony_token_set

TOKEN = "pbx-shared-secret-0123456789abcdef"


def connect(organization: Organization, *, token: str = TOKEN) -> str:
    """Give the organization a webhook token (returned in clear)."""
    return telephony_token_set(organization=organization, token=token)


def line(organization: Organization, number: str, branch: Branch | None = None) -> TelephonyLine:
    return TelephonyLine.objects.create(organization=organization, number=number, branch=branch)


def appointment(
    person: Person,
    branch: Branch,
    *,
    in_days: float = 1,
    status: str = AppointmentStatus.BOOKED,
    minutes: int = 30,
) -> Appointment:
    """A visit of ``person`` starting ``in_days`` from now (negative: in the past)."""
    starts_at = timezone.now() + datetime.timedelta(days=in_days)
    return Appointment.objects.create(
        organization=branch.organization,
        branch=branch,
        patient=person,
        kind=AppointmentKind.objects.get(code="primary"),
        starts_at=starts_at,
        ends_at=starts_at + datetime.timedelta(minutes=minutes),
        status=AppointmentStatus.objects.get(code=status),
        channel=BookingChannel.DESK,
    )


def call(organization: Organization, *, number: str = "+79161234567", **fields: Any) -> Call:
    values: dict[str, Any] = {
        "organization": organization,
        "call_id": f"call-{Call.objects.count() + 1}",
        "caller_number": number,
        "called_line": "+74951234567",
        "started_at": timezone.now(),
    }
    values.update(fields)
    return Call.objects.create(**values)
