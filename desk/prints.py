"""The desk's printouts: the patient's appointment slip and a doctor's day list, as PDFs.

Both are rendered from translatable templates in the active language and printed by WeasyPrint,
like the route sheet (``scheduling.route_sheet``), so a printout reads the same on every printer.
Times are shown in the local time zone of the appointment's branch, whatever the server's zone.

Access: the actor must see the schedule and work in the branch concerned. Rows of another
organization are looked up as missing (404), so their existence is not revealed; a branch of the
actor's own organization that the actor does not work in is refused (403).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.template.loader import render_to_string

from clinic.core.selectors import branch_list, organization_list
from patients.models import PHONE_KINDS, CardStatus, Contact, MedicalCard, Person
from patients.selectors import card_types_for_actor
from scheduling import policies
from scheduling.models import (
    Appointment,
    AppointmentService,
    AppointmentStatus,
    Resource,
    ResourceKind,
    WorkSchedule,
)

SLIP_TEMPLATE = "desk/prints/appointment_slip.html"
DAY_LIST_TEMPLATE = "desk/prints/doctor_day_list.html"


def status_label(status: AppointmentStatus) -> str:
    """The status in the reader's language (``AppointmentStatus.label``)."""
    return status.label


def public_id_short(appointment: Appointment) -> str:
    """The appointment's number as printed for the patient: the first 8 hex digits of its public
    id, upper case, short enough to read out on the phone. The full id stays in URLs; sequential
    ids never leave the server."""
    return appointment.public_id.hex[:8].upper()


def local_date(appointment: Appointment) -> datetime.date:
    """The date of the appointment in its branch's time zone (the date the patient comes)."""
    return appointment.starts_at.astimezone(appointment.branch.zone).date()


def _print(html: str) -> bytes:
    from weasyprint import HTML

    pdf: bytes = HTML(string=html).write_pdf()
    return pdf


def _in_branch(actor: Any, branch_id: int) -> bool:
    # ``scheduling.policies`` keeps the branch-membership rule private; it is the one rule the
    # schedule uses, so the printouts reuse it instead of restating it.
    return policies._in_branch(actor, branch_id)


def _room_label(appointment: Appointment) -> str:
    room = appointment.room
    return f"{room.number} {room.name}".strip() if room else ""


def _services(appointment: Appointment) -> list[str]:
    """Service names in the order they were booked, with the quantity when more than one."""
    names = []
    for line in sorted(appointment.lines.all(), key=lambda line: line.pk):
        names.append(
            f"{line.service.name} × {line.quantity}" if line.quantity > 1 else line.service.name
        )
    return names


def _lines() -> Prefetch[Any, Any, Any]:
    return Prefetch("lines", queryset=AppointmentService.objects.select_related("service"))


# ---- the appointment slip -----------------------------------------------------------------------


def appointment_get_for_slip(*, actor: Any, public_id: Any) -> Appointment:
    """The appointment with that public id in the actor's organizations, or 404.

    Whether the actor may print it is decided by ``appointment_slip_html`` (403), so that a
    registrar of another branch learns only that printing is not theirs to do.
    """
    appointment = (
        Appointment.objects.filter(
            organization__in=organization_list(actor=actor), public_id=public_id
        )
        .select_related("branch")
        .first()
    )
    if appointment is None:
        raise Http404
    return appointment


def _ensure_may_print_slip(actor: Any, appointment: Appointment) -> None:
    if not (policies.can_view_schedule(actor) and _in_branch(actor, appointment.branch_id)):
        raise PermissionDenied


def appointment_slip_html(*, actor: Any, appointment: Appointment) -> str:
    """The slip as HTML (what the PDF is printed from), in the active language.

    Raises ``PermissionDenied`` unless the actor sees the schedule of the appointment's branch.
    """
    _ensure_may_print_slip(actor, appointment)
    appointment = (
        Appointment.objects.filter(pk=appointment.pk)
        .select_related("branch__organization", "patient", "doctor", "room", "status", "kind")
        .prefetch_related(_lines())
        .get()
    )
    branch = appointment.branch
    zone = branch.zone
    context = {
        "organization": branch.organization.short_name or branch.organization.name,
        "branch": branch.name,
        "address": branch.address,
        "phone": branch.phone,
        "patient_name": appointment.patient_name,
        "starts": appointment.starts_at.astimezone(zone),
        "ends": appointment.ends_at.astimezone(zone),
        "time_zone": branch.time_zone,
        "doctor": appointment.doctor.name if appointment.doctor else "",
        "room": _room_label(appointment),
        "services": _services(appointment),
        "note": appointment.note,
        "needs_documents": appointment.needs_completion or appointment.patient_id is None,
        "number": public_id_short(appointment),
        "status": status_label(appointment.status),
        "is_cancelled": appointment.status.code == AppointmentStatus.CANCELLED,
    }
    return render_to_string(SLIP_TEMPLATE, context)


def appointment_slip_pdf(*, actor: Any, appointment: Appointment) -> bytes:
    """The slip printed to PDF (A5, the size a desk printer takes for a patient's hand-out)."""
    return _print(appointment_slip_html(actor=actor, appointment=appointment))


# ---- a doctor's day list ------------------------------------------------------------------------


@dataclass
class DayListRow:
    """One visit of the day as the list shows it, worked out once from prefetched rows."""

    starts: datetime.datetime
    ends: datetime.datetime
    patient_name: str
    age: int | None
    card_numbers: list[str]
    phones: list[str]
    services: list[str]
    status: str
    note: str
    branch: str


def doctor_get_for_day_list(*, actor: Any, public_id: Any) -> Resource:
    """The doctor resource with that public id in the actor's organizations, or 404."""
    doctor = (
        Resource.objects.filter(
            organization__in=organization_list(actor=actor),
            kind=ResourceKind.DOCTOR,
            public_id=public_id,
        )
        .select_related("branch", "staff__specialty")
        .first()
    )
    if doctor is None:
        raise Http404
    return doctor


def _ensure_may_print_day_list(actor: Any, doctor: Resource) -> None:
    """The actor sees the schedule and works in the doctor's home branch or in a branch the
    doctor has a work schedule in (a doctor may see patients in several branches)."""
    if not policies.can_view_schedule(actor):
        raise PermissionDenied
    if _in_branch(actor, doctor.branch_id):
        return
    if not WorkSchedule.objects.filter(
        resource=doctor, branch__in=branch_list(actor=actor)
    ).exists():
        raise PermissionDenied


def day_list_appointments(*, actor: Any, doctor: Resource, day: datetime.date) -> list[Appointment]:
    """The doctor's appointments on ``day`` (local to each appointment's branch) in the actor's
    branches, in time order, cancelled ones left out; with everything a row shows prefetched,
    so the number of queries does not grow with the number of appointments.

    Call after the access check (``doctor_day_list_html`` does).
    """
    low = datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
    visible_cards = (
        MedicalCard.objects.filter(
            card_type__in=card_types_for_actor(actor), status=CardStatus.OPEN
        )
        .select_related("card_type")
        .order_by("card_type__name", "number")
    )
    prefetches: list[Prefetch[Any, Any, Any]] = [
        _lines(),
        Prefetch(
            "patient__contacts",
            queryset=Contact.objects.filter(kind__in=PHONE_KINDS).order_by("kind", "pk"),
            to_attr="phone_contacts",
        ),
        Prefetch("patient__cards", queryset=visible_cards, to_attr="visible_cards"),
    ]
    candidates: QuerySet[Appointment] = (
        Appointment.objects.filter(
            doctor=doctor,
            branch__in=branch_list(actor=actor),
            # Every time zone's local day lies within a day either side of the UTC one.
            starts_at__gte=low - datetime.timedelta(days=1),
            starts_at__lt=low + datetime.timedelta(days=2),
        )
        .exclude(status__code=AppointmentStatus.CANCELLED)
        .select_related("branch", "patient", "room", "status")
        .prefetch_related(*prefetches)
        .order_by("starts_at", "pk")
    )
    return [appointment for appointment in candidates if local_date(appointment) == day]


def _row(appointment: Appointment, day: datetime.date) -> DayListRow:
    zone = appointment.branch.zone
    patient: Person | None = appointment.patient
    if patient is not None:
        age = patient.age_on(day)
        phones = [contact.value for contact in getattr(patient, "phone_contacts", [])]
        cards = [card.number for card in getattr(patient, "visible_cards", [])]
    else:
        born = appointment.primary_birth_date
        age = (
            day.year - born.year - ((day.month, day.day) < (born.month, born.day)) if born else None
        )
        phones = []
        cards = []
    if not phones and appointment.primary_phone:
        phones = [appointment.primary_phone]
    return DayListRow(
        starts=appointment.starts_at.astimezone(zone),
        ends=appointment.ends_at.astimezone(zone),
        patient_name=appointment.patient_name,
        age=age,
        card_numbers=cards,
        phones=phones,
        services=_services(appointment),
        status=status_label(appointment.status),
        note=appointment.note,
        branch=appointment.branch.name,
    )


def doctor_day_list_html(*, actor: Any, doctor: Resource, day: datetime.date) -> str:
    """The day list as HTML (what the PDF is printed from), in the active language.

    Raises ``PermissionDenied`` unless the actor may see this doctor's schedule.
    """
    _ensure_may_print_day_list(actor, doctor)
    rows = [
        _row(appointment, day)
        for appointment in day_list_appointments(actor=actor, doctor=doctor, day=day)
    ]
    branches = sorted({row.branch for row in rows}) or [doctor.branch.name]
    specialty = doctor.staff.specialty if doctor.staff_id and doctor.staff else None
    context = {
        "doctor": doctor.name,
        "specialty": specialty.name if specialty else "",
        "day": day,
        "branches": branches,
        "several_branches": len(branches) > 1,
        "rows": rows,
        "count": len(rows),
    }
    return render_to_string(DAY_LIST_TEMPLATE, context)


def doctor_day_list_pdf(*, actor: Any, doctor: Resource, day: datetime.date) -> bytes:
    """The day list printed to PDF (A4 landscape: the row has many columns)."""
    return _print(doctor_day_list_html(actor=actor, doctor=doctor, day=day))
