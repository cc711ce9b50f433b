"""Reads of calls: who is calling, the call log and the planned outgoing calls.

Every list costs a fixed number of queries whatever its length; every read is scoped to the
organizations the actor works for.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.utils import timezone

from clinic.core.models import Organization
from clinic.core.selectors import organization_list
from patients.models import PHONE_KINDS, Contact, Person
from patients.normalizers import normalize_phone, phone_digits
from scheduling.models import Appointment, AppointmentStatus

from .models import Call, CallState, PlannedCall, PlannedCallStatus, TelephonySettings

NEXT_APPOINTMENTS = 3
# More people than this on one number is a shared office line: the pop-up shows the first ones.
MAX_CALLER_MATCHES = 10


@dataclass
class CallerMatch:
    """A living person whose phone is the caller's, with their phones and next appointments."""

    person: Person
    phones: list[str]
    next_appointments: list[Appointment] = field(default_factory=list)


@dataclass
class CallPopup:
    """What the operator's pop-up shows for a call: the number and who it may be."""

    call: Call
    number: str
    matches: list[CallerMatch]

    @property
    def is_unknown_caller(self) -> bool:
        return not self.matches


def token_hash(token: str) -> str:
    """The stored form of a webhook token (see ``TelephonySettings``)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def organization_for_token(token: str) -> Organization | None:
    """The active organization whose PBX uses this token, or None."""
    if not token:
        return None
    found = (
        TelephonySettings.objects.select_related("organization")
        .filter(token_hash=token_hash(token), is_active=True, organization__is_active=True)
        .first()
    )
    return found.organization if found is not None else None


def _phone_digits_for(organization: Organization, phone: str) -> str | None:
    """The digits of the number as ``Contact.digits`` stores them, or None if not a phone."""
    try:
        return phone_digits(normalize_phone(phone, region=organization.phone_region or "RU"))
    except ValidationError:
        return None


def _upcoming_appointments() -> QuerySet[Appointment]:
    return (
        Appointment.objects.filter(starts_at__gte=timezone.now())
        .exclude(status__code=AppointmentStatus.CANCELLED)
        .select_related("branch", "doctor", "status", "kind")
        .order_by("starts_at", "pk")
    )


def caller_matches(*, organization: Organization, phone: str) -> list[CallerMatch]:
    """Living people of the organization with this phone (typed in any format), each with up to
    three future, not cancelled appointments, soonest first.

    Three queries whatever the number of people and appointments: the people (those with a
    phone contact whose digits are the number's), their contacts, their next appointments (a
    sliced prefetch, one window query). A number that is not a phone matches nobody.
    """
    digits = _phone_digits_for(organization, phone)
    if digits is None:
        return []
    owners = Contact.objects.filter(kind__in=PHONE_KINDS, digits=digits).values("person_id")
    people = list(
        Person.objects.filter(organization=organization, merged_into__isnull=True, pk__in=owners)
        .order_by("last_name", "first_name", "patronymic", "pk")
        .prefetch_related(
            "contacts",
            Prefetch(
                "appointments",
                queryset=_upcoming_appointments()[:NEXT_APPOINTMENTS],
                to_attr="next_appointments",
            ),
        )[:MAX_CALLER_MATCHES]
    )
    return [
        CallerMatch(
            person=person,
            phones=[c.value for c in person.contacts.all() if c.kind in PHONE_KINDS],
            next_appointments=list(getattr(person, "next_appointments", [])),
        )
        for person in people
    ]


def matched_names(*, organization: Organization, numbers: Iterable[str]) -> dict[str, list[Person]]:
    """For a page of calls: the living people of each E.164 number, in one query."""
    by_digits = {phone_digits(number): number for number in numbers if number}
    if not by_digits:
        return {}
    contacts = (
        Contact.objects.filter(
            kind__in=PHONE_KINDS,
            digits__in=list(by_digits),
            person__organization=organization,
            person__merged_into__isnull=True,
        )
        .select_related("person")
        .order_by("person__last_name", "person__first_name", "person_id")
    )
    found: dict[str, list[Person]] = {}
    for contact in contacts:
        people = found.setdefault(by_digits[contact.digits], [])
        if all(person.pk != contact.person_id for person in people):
            people.append(contact.person)
    return found


def call_popup(*, actor: Any, call: Call) -> CallPopup:
    """What the pop-up shows for ``call`` (the actor must be allowed to see the call)."""
    number = call.outside_number
    organization = call.organization
    return CallPopup(
        call=call,
        number=number,
        matches=caller_matches(organization=organization, phone=number),
    )


def call_list(*, actor: Any) -> QuerySet[Call]:
    """Calls of the actor's organizations, newest first, with what a list shows."""
    return (
        Call.objects.filter(organization__in=organization_list(actor=actor))
        .select_related("organization", "branch", "operator", "appointment")
        .order_by("-started_at", "-pk")
    )


def ringing_calls(*, actor: Any, within_minutes: int = 10) -> QuerySet[Call]:
    """Calls of the actor's organizations ringing now (started within the last minutes), the
    newest first: what a live pop-up on the schedule grid polls for."""
    since = timezone.now() - datetime.timedelta(minutes=within_minutes)
    return call_list(actor=actor).filter(state=CallState.RINGING, started_at__gte=since)


def call_get_for_actor(*, actor: Any, public_id: Any) -> Call:
    """A call of the actor's organizations, else 404 (its existence is not revealed)."""
    try:
        return call_list(actor=actor).get(public_id=public_id)
    except (Call.DoesNotExist, ValueError, ValidationError):
        raise Http404 from None


def call_log(
    *,
    actor: Any,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    operator: Any = None,
    purpose: str = "",
    outcome: str = "",
    direction: str = "",
    state: str = "",
) -> QuerySet[Call]:
    """The call log filtered by local day range, operator, purpose, outcome, direction and
    state. ``purpose``/``outcome`` of ``"none"`` select calls not yet classified."""
    calls = call_list(actor=actor)
    zone = timezone.get_current_timezone()
    if date_from is not None:
        start = datetime.datetime.combine(date_from, datetime.time.min, tzinfo=zone)
        calls = calls.filter(started_at__gte=start)
    if date_to is not None:
        end = datetime.datetime.combine(
            date_to + datetime.timedelta(days=1), datetime.time.min, tzinfo=zone
        )
        calls = calls.filter(started_at__lt=end)
    if operator is not None:
        calls = calls.filter(operator=operator)
    if purpose:
        calls = calls.filter(purpose="" if purpose == "none" else purpose)
    if outcome:
        calls = calls.filter(outcome="" if outcome == "none" else outcome)
    if direction:
        calls = calls.filter(direction=direction)
    if state:
        calls = calls.filter(state=state)
    return calls


def planned_calls(
    *,
    actor: Any,
    status: str = PlannedCallStatus.PLANNED,
    assigned_to: Any = None,
    due_before: datetime.datetime | None = None,
) -> QuerySet[PlannedCall]:
    """Planned outgoing calls of the actor's organizations, the most urgent first."""
    calls = (
        PlannedCall.objects.filter(organization__in=organization_list(actor=actor))
        .select_related("patient", "assigned_to", "created_by", "created_by__staff")
        .order_by("due_at", "pk")
    )
    if status:
        calls = calls.filter(status=status)
    if assigned_to is not None:
        calls = calls.filter(assigned_to=assigned_to)
    if due_before is not None:
        calls = calls.filter(due_at__lt=due_before)
    return calls


def planned_call_get_for_actor(*, actor: Any, public_id: Any) -> PlannedCall:
    try:
        return planned_calls(actor=actor, status="").get(public_id=public_id)
    except (PlannedCall.DoesNotExist, ValueError, ValidationError):
        raise Http404 from None
