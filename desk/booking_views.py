"""Booking and changing appointments from the grid: the dialogs and actions htmx calls.

A click on a free slot holds it (every other grid shows it held) and opens the booking form;
saving books it through ``scheduling.services.appointment_book``, the one booking path of every
channel. An appointment opens in a dialog with its actions: status, move, copy, cancel, restore,
the patient's card, the change history, WhatsApp, the phone and the slip. Every action answers
with an ``HX-Trigger: schedule-changed`` header, on which the page reloads the grid; a refusal
comes back as the dialog again with the reason, and nothing is changed.
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet, prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from billing.errors import BillingError
from billing.policies import can_take_payment
from billing.services import service_sellable_check
from clinic.audit.formatting import history_rows
from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from patients.dedup import PersonFacts, duplicate_candidates
from patients.models import Person
from patients.normalizers import normalize_phone, search_key
from patients.search import person_search
from patients.selectors import person_list
from patients.views import person_rows, requires
from scheduling import holds
from scheduling.errors import SchedulingError, SlotConflict
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    BookingChannel,
    Resource,
    ResourceKind,
    Service,
    WaitlistEntry,
)
from scheduling.selectors import appointment_get_for_actor, appointment_with_details
from scheduling.services import (
    BookingRequest,
    PrimaryPatient,
    appointment_book,
    appointment_cancel,
    appointment_copy,
    appointment_details_update,
    appointment_move,
    appointment_restore,
    appointment_set_status,
    doctor_performs,
)
from scheduling.waitlist import waitlist_entry_book, waitlist_entry_get_for_actor

from .forms import BookingForm, CancelForm, CopyForm, DetailsForm, MoveForm, StatusForm
from .selectors import grid_branches, phone_of

CHANGED = "schedule-changed"
PICKER_LIMIT = 10


def may_book(user: Any) -> bool:
    return has_capability(user, Capability.BOOK_APPOINTMENT)


def hold_token(request: HttpRequest) -> str:
    """The operator's hold token: one per login session, so their own holds show as free."""
    token = request.session.get("slot_hold_token")
    if not token:
        token = uuid.uuid4().hex
        request.session["slot_hold_token"] = token
    return str(token)


def _changed(response: HttpResponse) -> HttpResponse:
    response["HX-Trigger"] = CHANGED
    return response


def _doctor_for(request: HttpRequest, raw: str) -> Resource:
    """A doctor of a branch the actor works in, by public id; 404 otherwise."""
    try:
        public_id = uuid.UUID(raw)
    except ValueError:
        raise Http404(_("Unknown doctor “%(value)s”.") % {"value": raw}) from None
    branches = grid_branches(actor=request.user)
    doctor = (
        Resource.objects.filter(
            public_id=public_id, kind=ResourceKind.DOCTOR, branch__in=branches, is_active=True
        )
        .select_related("branch", "staff")
        .first()
    )
    if doctor is None:
        raise Http404(_("Unknown doctor “%(value)s”.") % {"value": raw})
    return doctor


def _moment(raw: str, zone: zoneinfo.ZoneInfo, field: str) -> datetime.datetime:
    """An ISO date-time from the grid (with its offset) or typed (branch-local)."""
    try:
        moment = datetime.datetime.fromisoformat(raw)
    except ValueError:
        raise SchedulingError(
            "bad_time",
            _("“%(value)s” is not a date and time.") % {"value": raw},
            field=field,
        ) from None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=zone)
    return moment


def _services_of(doctor: Resource) -> QuerySet[Service]:
    """The services this doctor performs that the desk may book."""
    candidates = Service.objects.filter(
        organization_id=doctor.organization_id, is_active=True
    ).prefetch_related("requirements")
    ids = [
        service.pk
        for service in candidates
        if BookingChannel.DESK in service.channels and doctor_performs(doctor, service)
    ]
    return Service.objects.filter(pk__in=ids).order_by("name")


def _slot_context(
    doctor: Resource, starts_at: datetime.datetime, form: BookingForm
) -> dict[str, Any]:
    zone = zoneinfo.ZoneInfo(doctor.branch.time_zone)
    return {
        "doctor": doctor,
        "starts_at": starts_at.astimezone(zone),
        "starts_iso": starts_at.isoformat(),
        "form": form,
    }


def _waitlist_entry(request: HttpRequest, raw: str) -> WaitlistEntry | None:
    """The waitlist entry being booked (dragged from the panel), if any; 404 if unknown."""
    if not raw:
        return None
    try:
        return waitlist_entry_get_for_actor(actor=request.user, public_id=uuid.UUID(raw))
    except ValueError:
        raise Http404(_("Unknown waitlist entry “%(value)s”.") % {"value": raw}) from None


def patient_for(actor: Any, public_id: Any, organization_id: int) -> Person | None:
    """A living patient of the actor's organizations, in the given one, by public id."""
    return (
        person_list(actor=actor)
        .filter(public_id=public_id, organization_id=organization_id)
        .first()
    )


def _error_status(error: SchedulingError) -> int:
    return 409 if isinstance(error, SlotConflict) else 400


@require_GET
@requires(may_book)
def slot_form(request: HttpRequest) -> HttpResponse:
    """Hold the clicked slot for this operator and open the booking form on it."""
    doctor = _doctor_for(request, request.GET.get("doctor", ""))
    zone = zoneinfo.ZoneInfo(doctor.branch.time_zone)
    services = _services_of(doctor)
    entry = _waitlist_entry(request, request.GET.get("waitlist", ""))
    initial: dict[str, Any] = {}
    if entry is not None:
        initial = {"patient": entry.patient.public_id, "services": [entry.service.code]}
        initial["note"] = entry.note
    form = BookingForm(services=services, initial=initial)
    try:
        starts_at = _moment(request.GET.get("starts", ""), zone, "starts_at")
    except SchedulingError as error:
        return render(request, "desk/_dialog_error.html", {"error": error}, status=400)
    context = _slot_context(doctor, starts_at, form)
    context["entry"] = entry
    try:
        holds.slot_hold(
            token=hold_token(request),
            resource_ids=[doctor.pk],
            starts_at=starts_at,
            ends_at=starts_at + datetime.timedelta(minutes=doctor.grid_step_minutes),
        )
    except holds.SlotHeld:
        held = SlotConflict(
            "slot_held",
            _("Another operator is holding this time. Choose another time or wait a few minutes."),
        )
        return render(request, "desk/_dialog_error.html", {"error": held}, status=409)
    except holds.HoldsUnavailable:
        context["holds_unavailable"] = True
    return _changed(render(request, "desk/_booking_form.html", context))


@require_POST
@requires(may_book)
def slot_book(request: HttpRequest) -> HttpResponse:
    """Book the held slot with the form's patient, services and details."""
    doctor = _doctor_for(request, request.POST.get("doctor", ""))
    zone = zoneinfo.ZoneInfo(doctor.branch.time_zone)
    form = BookingForm(request.POST, services=_services_of(doctor))
    try:
        starts_at = _moment(request.POST.get("starts", ""), zone, "starts_at")
    except SchedulingError as error:
        return render(request, "desk/_dialog_error.html", {"error": error}, status=400)
    context = _slot_context(doctor, starts_at, form)
    entry = _waitlist_entry(request, request.POST.get("waitlist", ""))
    context["entry"] = entry
    if not form.is_valid():
        return render(request, "desk/_booking_form.html", context, status=400)
    data = form.cleaned_data
    patient = None
    primary = None
    if data["patient"]:
        patient = patient_for(request.user, data["patient"], doctor.organization_id)
        if patient is None:
            form.add_error(None, _("Unknown patient “%(value)s”.") % {"value": data["patient"]})
            return render(request, "desk/_booking_form.html", context, status=400)
    else:
        primary = PrimaryPatient(
            last_name=data["last_name"],
            first_name=data["first_name"],
            patronymic=data["patronymic"],
            phone=data["phone"],
            birth_date=data["birth_date"],
        )
    try:
        for service in data["services"]:
            service_sellable_check(service)
    except BillingError as error:
        form.add_error("services", error.message)
        return render(request, "desk/_booking_form.html", context, status=400)
    try:
        booking = BookingRequest(
            branch=doctor.branch,
            services=list(data["services"]),
            starts_at=starts_at,
            channel=BookingChannel.DESK,
            patient=patient,
            primary=primary,
            doctor=doctor,
            kind=data["kind"],
            information_source=data["information_source"],
            payer_kind=data["payer_kind"],
            note=data["note"],
            hold_token=hold_token(request),
        )
        if entry is not None:
            appointment = waitlist_entry_book(actor=request.user, entry=entry, request=booking)
        else:
            appointment = appointment_book(actor=request.user, request=booking)
    except SchedulingError as error:
        form.add_error(None, error.message)
        return render(request, "desk/_booking_form.html", context, status=_error_status(error))
    appointment = appointment_with_details(appointment.pk)
    return _changed(
        render(request, "desk/_booked.html", {"appointment": appointment, "zone": zone})
    )


@require_POST
@requires(may_book)
def slot_release(request: HttpRequest) -> HttpResponse:
    """Give up the slot held for the form that was closed without booking."""
    doctor = _doctor_for(request, request.POST.get("doctor", ""))
    zone = zoneinfo.ZoneInfo(doctor.branch.time_zone)
    try:
        starts_at = _moment(request.POST.get("starts", ""), zone, "starts_at")
    except SchedulingError as error:
        return render(request, "desk/_dialog_error.html", {"error": error}, status=400)
    holds.slot_release(
        token=hold_token(request),
        resource_ids=[doctor.pk],
        starts_at=starts_at,
        ends_at=starts_at + datetime.timedelta(minutes=doctor.grid_step_minutes),
    )
    return _changed(HttpResponse(status=204))


@require_GET
@requires(may_book)
def patient_picker(request: HttpRequest) -> HttpResponse:
    """Patients matching what is typed in the booking form (search as you type); for a new
    patient's name, phone and birth date, the people who may already be registered."""
    query = request.GET.get("q", "").strip()
    rows = []
    if query:
        hits = person_search(actor=request.user, query=query, limit=PICKER_LIMIT)
        rows = person_rows(hit.person for hit in hits)
    duplicates = _possible_duplicates(request)
    return render(
        request,
        "desk/_patient_picker.html",
        {"query": query, "rows": rows, "duplicates": duplicates},
    )


def _possible_duplicates(request: HttpRequest) -> list[Any]:
    last_name = request.GET.get("last_name", "").strip()
    if not last_name:
        return []
    staff = getattr(request.user, "staff", None)
    if staff is None:
        return []
    phones: tuple[str, ...] = ()
    raw_phone = request.GET.get("phone", "").strip()
    if raw_phone:
        try:
            phones = (normalize_phone(raw_phone),)
        except Exception:  # a half-typed number is no evidence
            phones = ()
    birth_date = None
    raw_birth = request.GET.get("birth_date", "").strip()
    if raw_birth:
        try:
            birth_date = datetime.date.fromisoformat(raw_birth)
        except ValueError:
            birth_date = None
    facts = PersonFacts(
        last_name=search_key(last_name),
        first_name=search_key(request.GET.get("first_name", "")),
        birth_date=birth_date,
        phones=phones,
    )
    candidates = duplicate_candidates(organization=staff.organization, facts=facts)
    rows = person_rows(candidate.person for candidate in candidates[:PICKER_LIMIT])
    for row, candidate in zip(rows, candidates, strict=False):
        row.reasons = candidate.reason_labels
    return rows


# ---- an appointment ------------------------------------------------------------------------


def _appointment(request: HttpRequest, public_id: Any) -> Appointment:
    found = appointment_get_for_actor(actor=request.user, public_id=public_id)
    return appointment_with_details(found.pk)


def _dialog(
    request: HttpRequest, appointment: Appointment, *, status: int = 200, **extra: Any
) -> HttpResponse:
    zone = zoneinfo.ZoneInfo(appointment.branch.time_zone)
    if appointment.patient is not None:
        prefetch_related_objects([appointment.patient], "contacts")
    phone = phone_of(appointment)
    doctors = Resource.objects.filter(
        branch_id=appointment.branch_id, kind=ResourceKind.DOCTOR, is_active=True
    ).order_by("name")
    context = {
        "appointment": appointment,
        "zone": zone,
        "starts_local": appointment.starts_at.astimezone(zone),
        "duration": int((appointment.ends_at - appointment.starts_at).total_seconds() // 60),
        "phone": phone,
        "whatsapp": phone.lstrip("+") if phone else "",
        "may_take_payment": appointment.patient is not None
        and can_take_payment(request.user, appointment.branch),
        "status_form": StatusForm(initial={"status": appointment.status.code}),
        "details_form": DetailsForm(
            initial={
                "note": appointment.note,
                "information_source": appointment.information_source_id,
                "payer_kind": appointment.payer_kind,
            }
        ),
        "cancel_form": CancelForm(),
        "doctors": doctors,
        "history": history_rows(appointment, limit=20),
        "is_cancelled": appointment.status.code == AppointmentStatus.CANCELLED,
        **extra,
    }
    return render(request, "desk/_appointment_dialog.html", context, status=status)


@require_GET
@requires(may_book)
def appointment_dialog(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _dialog(request, _appointment(request, public_id))


def _act(request: HttpRequest, appointment: Appointment, action: Any) -> HttpResponse:
    """Run a change; a refusal re-renders the dialog with the reason and changes nothing."""
    try:
        action()
    except PermissionDenied:
        raise
    except SchedulingError as error:
        return _dialog(
            request,
            appointment_with_details(appointment.pk),
            status=_error_status(error),
            error=error.message,
        )
    return _changed(_dialog(request, appointment_with_details(appointment.pk)))


@require_POST
@requires(may_book)
def appointment_status(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    appointment = _appointment(request, public_id)
    form = StatusForm(request.POST)
    if not form.is_valid():
        raw = request.POST.get("status", "")
        error = _("Unknown status “%(value)s”.") % {"value": raw}
        return _dialog(request, appointment, status=400, error=error)
    code = form.cleaned_data["status"].code
    return _act(
        request,
        appointment,
        lambda: appointment_set_status(actor=request.user, appointment=appointment, code=code),
    )


@require_POST
@requires(may_book)
def appointment_cancel_view(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    appointment = _appointment(request, public_id)
    form = CancelForm(request.POST)
    if not form.is_valid():
        raw = request.POST.get("reason", "")
        error = _("Choose a cancellation reason (“%(value)s” is not one).") % {"value": raw}
        return _dialog(request, appointment, status=400, error=error)
    reason = form.cleaned_data["reason"]
    return _act(
        request,
        appointment,
        lambda: appointment_cancel(actor=request.user, appointment=appointment, reason=reason),
    )


def _target(request: HttpRequest, appointment: Appointment, form: MoveForm | CopyForm) -> Any:
    """The doctor and start a move, copy or restore asks for (the doctor of the same branch)."""
    data = form.cleaned_data
    doctor = None
    if data.get("doctor"):
        doctor = Resource.objects.filter(
            public_id=data["doctor"],
            branch_id=appointment.branch_id,
            kind=ResourceKind.DOCTOR,
            is_active=True,
        ).first()
        if doctor is None:
            raise SchedulingError(
                "unknown_resource",
                _("Unknown doctor “%(value)s”.") % {"value": data["doctor"]},
                field="doctor",
            )
    # Aware already: the form was read with the branch's zone active (_valid_in_branch_time).
    starts_at = data.get("starts_at")
    return doctor, starts_at.astimezone(datetime.UTC) if starts_at is not None else None


def _valid_in_branch_time(form: MoveForm | CopyForm, appointment: Appointment) -> bool:
    """Validate with the branch's zone active: a typed time is the branch's local time."""
    with timezone.override(zoneinfo.ZoneInfo(appointment.branch.time_zone)):
        return form.is_valid()


def _form_error(form: forms.Form) -> str:
    field, errors = next(iter(form.errors.items()))
    label = form.fields[field].label if field in form.fields else ""
    value = form.data.get(field, "")
    return _("%(field)s “%(value)s”: %(error)s") % {
        "field": label,
        "value": value,
        "error": " ".join(str(e) for e in errors),
    }


def _change_at_target(request: HttpRequest, public_id: uuid.UUID, change: Any) -> HttpResponse:
    """Read where the appointment goes (``MoveForm``) and ``change(appointment, form, doctor,
    starts_at)``; a form or a rule that says no re-renders the dialog with the reason."""
    appointment = _appointment(request, public_id)
    form = MoveForm(request.POST)
    if not _valid_in_branch_time(form, appointment):
        return _dialog(request, appointment, status=400, error=_form_error(form))
    return _act(
        request,
        appointment,
        lambda: change(appointment, form, *_target(request, appointment, form)),
    )


@require_POST
@requires(may_book)
def appointment_move_view(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Move to another time, day or doctor, or change the duration (drag, drop, resize)."""
    return _change_at_target(
        request,
        public_id,
        lambda appointment, form, doctor, starts_at: appointment_move(
            actor=request.user,
            appointment=appointment,
            starts_at=starts_at,
            doctor=doctor,
            duration_minutes=form.cleaned_data.get("duration_minutes"),
            reason=form.cleaned_data.get("reason", ""),
        ),
    )


@require_POST
@requires(may_book)
def appointment_copy_view(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Book the same patient and services with another doctor or at another time."""
    appointment = _appointment(request, public_id)
    form = CopyForm(request.POST)
    if not _valid_in_branch_time(form, appointment):
        return _dialog(request, appointment, status=400, error=_form_error(form))
    copies: list[Appointment] = []

    def copy() -> None:
        doctor, starts_at = _target(request, appointment, form)
        copies.append(
            appointment_copy(
                actor=request.user, appointment=appointment, starts_at=starts_at, doctor=doctor
            )
        )

    response = _act(request, appointment, copy)
    if copies:
        return _changed(_dialog(request, appointment_with_details(copies[0].pk)))
    return response


@require_POST
@requires(may_book)
def appointment_restore_view(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Take an appointment out of the trash: at its own time, or where it was dropped."""
    return _change_at_target(
        request,
        public_id,
        lambda appointment, _form, doctor, starts_at: appointment_restore(
            actor=request.user, appointment=appointment, starts_at=starts_at, doctor=doctor
        ),
    )


@require_POST
@requires(may_book)
def appointment_details(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Save the note, the source and the payer of the appointment."""
    appointment = _appointment(request, public_id)
    form = DetailsForm(request.POST)
    if not form.is_valid():
        return _dialog(request, appointment, status=400, error=_form_error(form))
    data = form.cleaned_data
    return _act(
        request,
        appointment,
        lambda: appointment_details_update(
            actor=request.user,
            appointment=appointment,
            note=data["note"],
            information_source=data["information_source"],
            payer_kind=data["payer_kind"],
        ),
    )
