"""A patient's route sheet for one day: where to go, when and to whom, printable as a PDF.

The HTML is rendered from a translatable template and printed by WeasyPrint, so the sheet reads
in the language of the request and looks the same on every printer.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

from django.core.exceptions import PermissionDenied
from django.template.loader import render_to_string
from django.utils.translation import gettext as _

from clinic.core.selectors import organization_list
from patients.models import Person

from . import policies
from .errors import SchedulingError
from .models import Appointment

TEMPLATE = "scheduling/route_sheet.html"


def route_sheet_appointments(*, patient: Person, day: datetime.date) -> list[Appointment]:
    """The patient's appointments that hold their time on ``day`` (branch-local), in time order.

    Cancelled visits and no-shows do not hold their time, so they are not on the sheet.
    """
    low = datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
    candidates = (
        Appointment.objects.filter(
            patient=patient,
            status__occupies=True,
            starts_at__gte=low - datetime.timedelta(days=1),
            starts_at__lt=low + datetime.timedelta(days=2),
        )
        .select_related("branch", "doctor", "room")
        .prefetch_related("lines__service")
        .order_by("starts_at", "id")
    )
    return [
        appointment
        for appointment in candidates
        if appointment.starts_at.astimezone(zoneinfo.ZoneInfo(appointment.branch.time_zone)).date()
        == day
    ]


def _ensure_may_view(actor: Any, patient: Person) -> None:
    if not policies.can_view_schedule(actor):
        raise PermissionDenied
    if not organization_list(actor=actor).filter(pk=patient.organization_id).exists():
        raise SchedulingError(
            "unknown_patient",
            # The patient's name is not shown to someone outside the organization.
            _("Unknown patient “%(value)s”.") % {"value": patient.public_id},
            field="patient",
        )


def route_sheet_html(*, actor: Any, patient: Person, day: datetime.date) -> str:
    """The sheet as HTML (what the PDF is printed from), in the active language."""
    _ensure_may_view(actor, patient)
    rows = []
    for appointment in route_sheet_appointments(patient=patient, day=day):
        zone = zoneinfo.ZoneInfo(appointment.branch.time_zone)
        room = appointment.room
        rows.append(
            {
                "starts": appointment.starts_at.astimezone(zone),
                "ends": appointment.ends_at.astimezone(zone),
                "doctor": appointment.doctor.name if appointment.doctor else "",
                "room": (f"{room.number} {room.name}".strip() if room else ""),
                "services": [line.service.name for line in appointment.lines.all()],
                "branch": appointment.branch.name,
                "address": appointment.branch.address,
            }
        )
    return render_to_string(TEMPLATE, {"patient_name": patient.full_name, "day": day, "rows": rows})


def route_sheet_pdf(*, actor: Any, patient: Person, day: datetime.date) -> bytes:
    """The sheet printed to PDF (A4)."""
    from weasyprint import HTML

    html = route_sheet_html(actor=actor, patient=patient, day=day)
    pdf: bytes = HTML(string=html).write_pdf()
    return pdf
