"""The desk's lists: appointments found by any of their facts, and tomorrow's call list.

``appointment_search`` answers the "list" view (and its Excel export): appointments of the
actor's branches filtered by card number, patient name, phone, branch, room, period, doctor,
status and booking type, in time order, with everything a row shows fetched in a fixed number
of queries whatever the number of rows. ``tomorrow_call_list`` is what the call centre phones
the day before; ``communication_status_record`` keeps the result of each call.

Patients are found the way the registry's search box finds them (``patients.search``): names by
their normalised words, phones by digits in any written form ("8 916…" is "+7 916…"), card
numbers as they may be stored and only among the card types the actor may open, so that a
search never reveals a card the actor could not see.

Dates are local to each appointment's branch: the day a patient comes is the branch's day,
whatever the server's time zone.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

import pghistory
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import (
    CharField,
    DateField,
    DateTimeField,
    F,
    Func,
    Prefetch,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Cast, Concat, Lower, Replace
from django.utils.translation import gettext as _

from clinic.core.models import Branch, Room
from clinic.core.selectors import branch_list
from patients.models import PHONE_KINDS, CardStatus, Contact, MedicalCard
from patients.normalizers import phone_digits
from patients.search import NumberGroup, _card_number_variants, parse_query
from patients.selectors import card_types_for_actor
from scheduling import policies
from scheduling.errors import SchedulingError
from scheduling.models import (
    Appointment,
    AppointmentService,
    AppointmentStatus,
    BookingType,
    CommunicationStatus,
    Resource,
)

from .prints import status_label

MAX_TEXT_FILTER_LENGTH = 100
MAX_CARD_NUMBER_LENGTH = 40
# The last ten digits are a Russian number without its country code: a not-yet-registered
# patient's phone is stored as typed ("8 916 …", "+7 916 …"), so it is compared on them.
NATIONAL_PHONE_DIGITS = 10
# Any branch's local day lies within a day either side of the same UTC day.
ZONE_MARGIN = datetime.timedelta(days=1)


@dataclass(frozen=True)
class AppointmentFilters:
    """What the list is narrowed to; empty values do not narrow it.

    ``branch``, ``room``, ``doctor`` and ``status`` are rows the caller has read (a view reads
    them among the actor's own); the texts are as typed. Dates are branch-local and inclusive.
    """

    card_number: str = ""
    name: str = ""
    phone: str = ""
    branch: Branch | None = None
    room: Room | None = None
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    doctor: Resource | None = None
    status: AppointmentStatus | None = None
    booking_type: str = ""


# ---- reading ------------------------------------------------------------------------------------


def _with_row_details(actor: Any, appointments: QuerySet[Appointment]) -> QuerySet[Appointment]:
    """What a row shows, in a fixed number of queries: the joined rows, the services, the
    patient's phones (``phone_contacts``) and the cards the actor may open (``visible_cards``)."""
    visible_cards = (
        MedicalCard.objects.filter(
            card_type__in=card_types_for_actor(actor), status=CardStatus.OPEN
        )
        .select_related("card_type")
        .order_by("card_type__name", "number")
    )
    return appointments.select_related(
        "branch", "patient", "doctor", "room", "status"
    ).prefetch_related(
        Prefetch(
            "lines",
            queryset=AppointmentService.objects.select_related("service").order_by("pk"),
        ),
        Prefetch(
            "patient__contacts",
            queryset=Contact.objects.filter(kind__in=PHONE_KINDS).order_by("kind", "pk"),
            to_attr="phone_contacts",
        ),
        Prefetch("patient__cards", queryset=visible_cards, to_attr="visible_cards"),
    )


def _scoped(actor: Any) -> QuerySet[Appointment]:
    return Appointment.objects.filter(branch__in=branch_list(actor=actor))


def appointment_search(*, actor: Any, filters: AppointmentFilters) -> QuerySet[Appointment]:
    """Appointments of the actor's branches matching every given filter, in time order.

    Raises ``SchedulingError`` (naming the field and the value) for a filter that cannot be
    read: an unknown booking type, a period that ends before it starts, a phone without enough
    digits, a name without letters, a card number that is not one. The queryset costs a fixed
    number of queries when evaluated, whatever its length (``select_related``/prefetches).
    """
    appointments = _scoped(actor)
    if filters.booking_type:
        if filters.booking_type not in BookingType.values:
            raise SchedulingError(
                "unknown_booking_type",
                _("Unknown booking type “%(value)s”.") % {"value": filters.booking_type},
                field="booking_type",
            )
        appointments = appointments.filter(booking_type=filters.booking_type)
    if filters.branch is not None:
        appointments = appointments.filter(branch=filters.branch)
    if filters.room is not None:
        appointments = appointments.filter(room=filters.room)
    if filters.doctor is not None:
        appointments = appointments.filter(doctor=filters.doctor)
    if filters.status is not None:
        appointments = appointments.filter(status=filters.status)
    appointments = _in_period(appointments, filters.date_from, filters.date_to)
    if filters.card_number.strip():
        appointments = appointments.filter(_card_number_matches(actor, filters.card_number))
    if filters.phone.strip():
        appointments = _phone_matches(appointments, filters.phone)
    if filters.name.strip():
        appointments = _name_matches(appointments, filters.name)
    return _with_row_details(actor, appointments).order_by("starts_at", "pk")


def _in_period(
    appointments: QuerySet[Appointment],
    date_from: datetime.date | None,
    date_to: datetime.date | None,
) -> QuerySet[Appointment]:
    """Appointments whose branch-local date lies in the period.

    A UTC range a day wider than the period lets the (branch, starts_at) index find the
    candidates; the branch-local date then decides exactly.
    """
    if date_from is not None and date_to is not None and date_to < date_from:
        raise SchedulingError(
            "period_reversed",
            _("The period ends on %(to)s, before it starts on %(from)s.")
            % {"to": date_to.strftime("%d.%m.%Y"), "from": date_from.strftime("%d.%m.%Y")},
            field="date_to",
        )
    if date_from is None and date_to is None:
        return appointments
    local_day = Cast(
        Func(
            F("branch__time_zone"),
            F("starts_at"),
            function="timezone",
            output_field=DateTimeField(),
        ),
        output_field=DateField(),
    )
    appointments = appointments.alias(local_day=local_day)
    if date_from is not None:
        low = datetime.datetime.combine(date_from, datetime.time.min, tzinfo=datetime.UTC)
        appointments = appointments.filter(
            starts_at__gte=low - ZONE_MARGIN, local_day__gte=date_from
        )
    if date_to is not None:
        high = datetime.datetime.combine(
            date_to + datetime.timedelta(days=1), datetime.time.min, tzinfo=datetime.UTC
        )
        appointments = appointments.filter(starts_at__lt=high + ZONE_MARGIN, local_day__lte=date_to)
    return appointments


def _card_number_matches(actor: Any, typed: str) -> Q:
    """The patient holds a card of a type the actor may open with that number.

    The number is read as the search box reads it: upper case, a Latin letter typed for its
    Cyrillic look-alike, without separators, and bare digits with the card type's prefix.
    """
    number = typed.strip().lstrip("№").strip()
    if not number or len(number) > MAX_CARD_NUMBER_LENGTH or not any(c.isalnum() for c in number):
        raise SchedulingError(
            "card_number_invalid",
            _("“%(value)s” is not a card number.") % {"value": typed.strip()},
            field="card_number",
        )
    # ``patients.search`` keeps the spellings of a stored number private; it is the one reading
    # the registry uses, so the list reuses it instead of restating it. The prefixes of the
    # visible card types are matched in the query (``number_prefix || typed``) below.
    matches = Q(number__in=_card_number_variants(number, ()))
    if number.isdigit():
        matches |= Q(number=Concat(F("card_type__number_prefix"), Value(number)))
    owners = MedicalCard.objects.filter(matches, card_type__in=card_types_for_actor(actor))
    return Q(patient__in=owners.values("person_id"))


def _phone_matches(appointments: QuerySet[Appointment], typed: str) -> QuerySet[Appointment]:
    """The patient's phone (or a not-yet-registered patient's phone) contains the typed digits.

    Registered patients' phones are stored in E.164, so the typed number is read as the search
    box reads it ("8 916 …" is "7 916 …"); a primary patient's phone is stored as typed, so it
    is compared on its digits, and on its last ten when a whole number was typed.
    """
    group = NumberGroup(typed=typed.strip(), digits=phone_digits(typed))
    variants = group.phone_variants
    if not variants:
        raise SchedulingError(
            "phone_invalid",
            _("“%(value)s” is not a phone number or a part of one (at least four digits).")
            % {"value": typed.strip()},
            field="phone",
        )
    registered = Q()
    for variant in variants:
        registered |= Q(
            patient__in=Contact.objects.filter(
                kind__in=PHONE_KINDS, digits__contains=variant
            ).values("person_id")
        )
    primary_fragment = (
        group.digits[-NATIONAL_PHONE_DIGITS:]
        if len(group.digits) >= NATIONAL_PHONE_DIGITS
        else group.digits
    )
    primary_digits = Func(
        F("primary_phone"),
        Value(r"\D"),
        Value(""),
        Value("g"),
        function="regexp_replace",
        output_field=CharField(),
    )
    return appointments.alias(primary_digits=primary_digits).filter(
        registered | Q(patient__isnull=True, primary_digits__contains=primary_fragment)
    )


def _name_matches(appointments: QuerySet[Appointment], typed: str) -> QuerySet[Appointment]:
    """Every typed word starts a word of the patient's name, in any order ("Иванов Ив",
    "мария иванова"); the words are normalised as the registry's search normalises them."""
    words = parse_query(typed[:MAX_TEXT_FILTER_LENGTH]).name_words
    if not words:
        raise SchedulingError(
            "name_invalid",
            _("“%(value)s” has no name in it: type a surname or a first name.")
            % {"value": typed.strip()},
            field="name",
        )
    patterns = [r"(^| )" + re.escape(word) for word in words]
    # A primary patient's name, spelt as ``Person.name_key`` spells a registered one.
    primary_key = Replace(
        Lower(
            Concat(
                F("primary_last_name"),
                Value(" "),
                F("primary_first_name"),
                Value(" "),
                F("primary_patronymic"),
                output_field=CharField(),
            )
        ),
        Value("ё"),
        Value("е"),
    )
    registered = Q(patient__isnull=False)
    primary = Q(patient__isnull=True)
    for pattern in patterns:
        registered &= Q(patient__name_key__regex=pattern)
        primary &= Q(primary_key__regex=pattern)
    return appointments.alias(primary_key=primary_key).filter(registered | primary)


def tomorrow_call_list(*, actor: Any, branch: Branch, day: datetime.date) -> list[Appointment]:
    """The branch's appointments on ``day`` (its local date) that hold their time, in time
    order, with the patients' phones: whom the call centre phones to confirm the visit.

    Empty for a branch the actor does not work in.
    """
    zone = zoneinfo.ZoneInfo(branch.time_zone)
    starts = datetime.datetime.combine(day, datetime.time.min, tzinfo=zone)
    ends = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min, zone)
    appointments = _scoped(actor).filter(
        branch=branch, status__occupies=True, starts_at__gte=starts, starts_at__lt=ends
    )
    return list(_with_row_details(actor, appointments).order_by("starts_at", "pk"))


def appointment_get_for_row(*, actor: Any, public_id: Any) -> Appointment | None:
    """One appointment of the actor's branches with what its row shows, or None (another
    branch's appointment is as missing as a made-up one)."""
    return _with_row_details(actor, _scoped(actor).filter(public_id=public_id)).first()


# ---- what a row shows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppointmentRow:
    """An appointment as the lists, the call list and the export show it: branch-local times,
    labels in the active language, and the patient's phones and visible card numbers."""

    appointment: Appointment
    starts: datetime.datetime
    ends: datetime.datetime
    patient_name: str
    card_numbers: list[str]
    phones: list[str]
    services: list[str]
    status: str
    booking_type: str
    communication_status: str


def appointment_row(appointment: Appointment) -> AppointmentRow:
    """One row; the appointment comes from ``appointment_search`` or ``tomorrow_call_list``
    (its prefetches are read, never queried again). Call inside the language of the output."""
    zone = zoneinfo.ZoneInfo(appointment.branch.time_zone)
    patient = appointment.patient
    phones: list[str] = []
    cards: list[str] = []
    if patient is not None:
        phones = [contact.value for contact in getattr(patient, "phone_contacts", [])]
        cards = [card.number for card in getattr(patient, "visible_cards", [])]
    if not phones and appointment.primary_phone:
        phones = [appointment.primary_phone]
    services = [
        f"{line.service.name} × {line.quantity}" if line.quantity > 1 else line.service.name
        for line in appointment.lines.all()
    ]
    return AppointmentRow(
        appointment=appointment,
        starts=appointment.starts_at.astimezone(zone),
        ends=appointment.ends_at.astimezone(zone),
        patient_name=appointment.patient_name,
        card_numbers=cards,
        phones=phones,
        services=services,
        status=status_label(appointment.status),
        booking_type=_label(BookingType, appointment.booking_type),
        communication_status=_label(CommunicationStatus, appointment.communication_status),
    )


def _label(choices: Any, value: str) -> str:
    try:
        return str(choices(value).label)
    except ValueError:
        return value


# ---- the call's result --------------------------------------------------------------------------


def communication_status_record(
    *, actor: Any, appointment: Appointment, status: str, note: str = ""
) -> Appointment:
    """Keep the result of a call to the patient (confirmed, no answer, declined, ...).

    The history row names the operator and carries the result and the note as its reason; the
    note is also added to the appointment's note, where the desk reads it on the day. Refuses
    (``SchedulingError``, nothing saved) a value that is not a ``CommunicationStatus`` and an
    appointment already closed (completed, cancelled, no-show); raises ``PermissionDenied``
    for an actor who may not change the branch's appointments.
    """
    note = note.strip()
    with transaction.atomic():
        current = (
            Appointment.objects.select_for_update(of=("self",))
            .select_related("status", "branch")
            .get(pk=appointment.pk)
        )
        if not policies.can_change_appointment(actor, current):
            raise PermissionDenied
        if status not in CommunicationStatus.values:
            raise SchedulingError(
                "unknown_communication_status",
                _("Unknown communication status “%(value)s”.") % {"value": status},
                field="communication_status",
            )
        if current.status.is_final:
            raise SchedulingError(
                "appointment_closed",
                _("An appointment in the status “%(status)s” cannot be changed.")
                % {"status": status_label(current.status)},
                field="status",
            )
        label = _label(CommunicationStatus, status)
        reason = _("Confirmation call: %(result)s") % {"result": label}
        if note:
            reason = f"{reason}. {note}"
            current.note = f"{current.note}\n{note}".strip()
        current.communication_status = status
        metadata: dict[str, Any] = {
            "change_reason": reason,
            "call_result": status,
            "call_note": note,
        }
        if getattr(actor, "is_authenticated", False):
            metadata["user"] = actor.pk
        with pghistory.context(**metadata):
            current.save(update_fields=["communication_status", "note", "updated_at"])
    return current
