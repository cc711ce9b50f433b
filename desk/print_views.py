"""The desk's printouts as PDF responses: the appointment slip and a doctor's day list.

The views only translate the request: they fetch through the selectors in ``desk.prints`` (404
outside the actor's organizations), let the printout check access (403, recorded as a security
event) and answer with the PDF shown inline, so the browser opens its print dialog.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record

from . import prints

ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _pdf_response(pdf: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


def _printed(request: HttpRequest, what: str, render: Callable[[], bytes]) -> bytes:
    """Run the printout; a refusal is recorded before it becomes the 403 page."""
    try:
        return render()
    except PermissionDenied:
        security_event_record(
            kind=SecurityEventKind.ACCESS_DENIED,
            request=request,
            user=request.user,
            detail=f"print {what}",
        )
        raise


def _parse_day(value: str) -> datetime.date | None:
    """``YYYY-MM-DD`` only (``date.fromisoformat`` would also take ``YYYYMMDD``), else None."""
    if not ISO_DAY.fullmatch(value):
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        return None


@require_GET
@login_required
def appointment_slip(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The patient's appointment slip (PDF), named after the visit's local date."""
    appointment = prints.appointment_get_for_slip(actor=request.user, public_id=public_id)
    pdf = _printed(
        request,
        "appointment slip",
        lambda: prints.appointment_slip_pdf(actor=request.user, appointment=appointment),
    )
    day = prints.local_date(appointment)
    return _pdf_response(pdf, f"appointment-{prints.public_id_short(appointment)}-{day}.pdf")


@require_GET
@login_required
def doctor_day_list(request: HttpRequest, public_id: uuid.UUID, day: str) -> HttpResponse:
    """A doctor's day list (PDF); ``day`` is the branch-local date as YYYY-MM-DD."""
    parsed = _parse_day(day)
    if parsed is None:
        # Plain text: the value comes from the URL and must not be rendered as HTML.
        return HttpResponseBadRequest(
            _("“%(value)s” is not a date in the form YYYY-MM-DD.") % {"value": day},
            content_type="text/plain; charset=utf-8",
        )
    doctor = prints.doctor_get_for_day_list(actor=request.user, public_id=public_id)
    pdf = _printed(
        request,
        "doctor day list",
        lambda: prints.doctor_day_list_pdf(actor=request.user, doctor=doctor, day=parsed),
    )
    return _pdf_response(pdf, f"day-list-{parsed.isoformat()}.pdf")
