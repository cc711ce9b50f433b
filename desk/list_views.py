"""The desk's list pages: the appointment list with its Excel export, and tomorrow's call list.

The filters are a GET form, so a list is a URL a manager can bookmark or send, and the export
link carries the same filters. A value that cannot be read (an unknown doctor, a date that is
not one, a phone without digits) is named in a message next to the form and the page answers
400 without a list, rather than quietly showing a list narrowed differently from what was asked.

The call list is what the call centre phones the day before: each row holds a small form
(htmx, with a plain POST as the fallback) that records the call's result as the appointment's
communication status.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from clinic.core.models import Branch, Room
from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from clinic.core.selectors import branch_list, room_list
from patients.forms import TypedDateField
from patients.views import requires
from scheduling.errors import SchedulingError
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    BookingType,
    CommunicationStatus,
    Resource,
    ResourceKind,
)

from . import lists
from .exports import appointments_xlsx
from .prints import status_label

PAGE_SIZE = 50
EXPORT_LIMIT = 50_000
EXPORT_CHUNK_SIZE = 2000
MAX_CALL_NOTE_LENGTH = 500
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# How a communication status is marked in the call list (classes of static/css/app.css).
COMMUNICATION_TAGS: dict[str, str] = {
    CommunicationStatus.NOT_CONTACTED: "tag--muted",
    CommunicationStatus.REMINDED: "",
    CommunicationStatus.CONFIRMED: "tag--success",
    CommunicationStatus.NO_ANSWER: "tag--warning",
    CommunicationStatus.DECLINED: "tag--danger",
}


def _may_use_lists(user: Any) -> bool:
    return has_capability(user, Capability.BOOK_APPOINTMENT)


# ---- the appointment list -----------------------------------------------------------------------


class _StatusChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: AppointmentStatus) -> str:
        return status_label(obj)


class AppointmentFilterForm(forms.Form):
    """The list's filters, read among the rows the actor may see (another branch's doctor or
    room is as unknown as a made-up one)."""

    card_number = forms.CharField(
        label=gettext_lazy("Card number"), required=False, max_length=lists.MAX_CARD_NUMBER_LENGTH
    )
    name = forms.CharField(
        label=gettext_lazy("Patient"), required=False, max_length=lists.MAX_TEXT_FILTER_LENGTH
    )
    phone = forms.CharField(label=gettext_lazy("Phone"), required=False, max_length=32)
    branch = forms.ModelChoiceField(
        label=gettext_lazy("Branch"),
        queryset=Branch.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label=gettext_lazy("All"),
    )
    room = forms.ModelChoiceField(
        label=gettext_lazy("Room"),
        queryset=Room.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label=gettext_lazy("All"),
    )
    date_from = TypedDateField(label=gettext_lazy("From"), required=False)
    date_to = TypedDateField(label=gettext_lazy("To"), required=False)
    doctor = forms.ModelChoiceField(
        label=gettext_lazy("Doctor"),
        queryset=Resource.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label=gettext_lazy("All"),
    )
    status = _StatusChoiceField(
        label=gettext_lazy("Status"),
        queryset=AppointmentStatus.objects.none(),
        to_field_name="code",
        required=False,
        empty_label=gettext_lazy("All"),
    )
    booking_type = forms.ChoiceField(
        label=gettext_lazy("Booking type"),
        choices=[("", gettext_lazy("All")), *BookingType.choices],
        required=False,
    )

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        branches = branch_list(actor=actor)
        fields = self.fields
        _model_field(fields["branch"]).queryset = branches.order_by("name")
        _model_field(fields["room"]).queryset = room_list(actor=actor).order_by(
            "branch__name", "number"
        )
        _model_field(fields["doctor"]).queryset = Resource.objects.filter(
            branch__in=branches, kind=ResourceKind.DOCTOR, is_active=True
        ).order_by("name", "pk")
        _model_field(fields["status"]).queryset = AppointmentStatus.objects.order_by("order")

    def filters(self) -> lists.AppointmentFilters:
        """The cleaned values as the selector reads them; call after ``is_valid()``."""
        data = self.cleaned_data
        return lists.AppointmentFilters(
            card_number=data["card_number"],
            name=data["name"],
            phone=data["phone"],
            branch=data["branch"],
            room=data["room"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            doctor=data["doctor"],
            status=data["status"],
            booking_type=data["booking_type"],
        )


def _model_field(field: forms.Field) -> forms.ModelChoiceField[Any]:
    assert isinstance(field, forms.ModelChoiceField)
    return field


def _filter_data(request: HttpRequest) -> QueryDict:
    """The filters asked for; an empty query string is today's appointments, so the page opens
    on a list the desk needs rather than on the whole history."""
    if request.GET:
        data = request.GET.copy()
        data.pop("page", None)
        return data
    today = timezone.localdate().isoformat()
    data = QueryDict(mutable=True)
    data.update({"date_from": today, "date_to": today})
    return data


def _form_problems(form: AppointmentFilterForm) -> list[str]:
    """Each refused value as "field “value”: why", in the active language."""
    problems = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        label = str(field.label) if field is not None else name
        raw = form.data.get(name, "")
        for error in errors:
            problems.append(
                _("%(field)s “%(value)s”: %(problem)s")
                % {"field": label, "value": raw, "problem": error}
            )
    return problems


@dataclass
class _Search:
    """A read filter form: the form, the selector's queryset, or the problems found."""

    form: AppointmentFilterForm
    query: QueryDict
    appointments: Any = None
    problems: list[str] | None = None


def _search(request: HttpRequest) -> _Search:
    query = _filter_data(request)
    form = AppointmentFilterForm(query, actor=request.user)
    if not form.is_valid():
        return _Search(form=form, query=query, problems=_form_problems(form))
    try:
        appointments = lists.appointment_search(actor=request.user, filters=form.filters())
    except SchedulingError as error:
        field = form.fields.get(error.field or "")
        if field is not None and error.field:
            form.add_error(error.field, str(error.message))
            label = str(field.label)
            return _Search(
                form=form,
                query=query,
                problems=[_("%(field)s: %(problem)s") % {"field": label, "problem": error.message}],
            )
        return _Search(form=form, query=query, problems=[str(error.message)])
    return _Search(form=form, query=query, appointments=appointments)


def _list_page(request: HttpRequest, search: _Search, status: int = 200) -> HttpResponse:
    context: dict[str, Any] = {
        "form": search.form,
        "problems": search.problems or [],
        "filter_query": search.query,
        "page": None,
        "rows": [],
        "export_limit": EXPORT_LIMIT,
    }
    if search.appointments is not None:
        page = Paginator(search.appointments, PAGE_SIZE).get_page(request.GET.get("page"))
        context["page"] = page
        context["rows"] = [lists.appointment_row(appointment) for appointment in page]
    return render(request, "desk/lists/appointment_list.html", context, status=status)


@require_GET
@requires(_may_use_lists)
def appointment_list_page(request: HttpRequest) -> HttpResponse:
    """Appointments found by card number, name, phone, branch, room, period, doctor, status and
    booking type, 50 a page, with a link to export the same list to Excel."""
    search = _search(request)
    return _list_page(request, search, status=400 if search.problems else 200)


@require_GET
@requires(_may_use_lists)
def appointment_list_export(request: HttpRequest) -> HttpResponse:
    """The list with the same filters as an .xlsx download, at most ``EXPORT_LIMIT`` rows.

    A longer list is cut at the limit and the file says so under its last row.
    """
    search = _search(request)
    if search.problems:
        return _list_page(request, search, status=400)
    appointments = search.appointments
    over_limit = bool(
        list(
            appointments.prefetch_related(None).values_list("pk", flat=True)[
                EXPORT_LIMIT : EXPORT_LIMIT + 1
            ]
        )
    )
    language = translation.get_language() or "en"
    limit_message = ""
    if over_limit:
        limit_message = _(
            "Only the first %(limit)s appointments are exported; narrow the filters to export "
            "the rest."
        ) % {"limit": f"{EXPORT_LIMIT:,}".replace(",", " ")}
    content = appointments_xlsx(
        appointments[:EXPORT_LIMIT].iterator(chunk_size=EXPORT_CHUNK_SIZE),
        language=language,
        limit_message=limit_message,
    )
    response = HttpResponse(content, content_type=XLSX_CONTENT_TYPE)
    response["Content-Disposition"] = (
        f'attachment; filename="{_export_filename(search.form.cleaned_data)}"'
    )
    return response


def _export_filename(data: dict[str, Any]) -> str:
    """appointments-2025-03-01-2025-03-31.xlsx: the period asked for, else the day of export."""
    days = [day.isoformat() for day in (data.get("date_from"), data.get("date_to")) if day]
    if not days:
        days = [timezone.localdate().isoformat()]
    elif len(days) == 2 and days[0] == days[1]:
        days = days[:1]
    return f"appointments-{'-'.join(days)}.xlsx"


# ---- the call list ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallRow:
    """A row of the call list: the appointment as lists show it and how its status is marked."""

    row: lists.AppointmentRow
    tag: str


def _call_row(appointment: Appointment) -> CallRow:
    return CallRow(
        row=lists.appointment_row(appointment),
        tag=COMMUNICATION_TAGS.get(appointment.communication_status, ""),
    )


def _call_list_context(request: HttpRequest, query: QueryDict) -> tuple[dict[str, Any], list[str]]:
    branches = list(branch_list(actor=request.user).order_by("name"))
    problems: list[str] = []
    branch = branches[0] if branches else None
    raw_branch = query.get("branch", "")
    if raw_branch:
        branch = next((b for b in branches if str(b.public_id) == raw_branch), None)
        if branch is None:
            problems.append(_("Unknown branch “%(value)s”.") % {"value": raw_branch})
    day: datetime.date | None = None
    if branch is not None:
        day = timezone.localtime(timezone=branch.zone).date() + datetime.timedelta(days=1)
    raw_day = query.get("date", "")
    if raw_day:
        try:
            day = datetime.date.fromisoformat(raw_day)
        except ValueError:
            problems.append(
                _("The date “%(value)s” is not a date (expected YYYY-MM-DD).") % {"value": raw_day}
            )
    rows: list[CallRow] = []
    if branch is not None and day is not None and not problems:
        appointments = lists.tomorrow_call_list(actor=request.user, branch=branch, day=day)
        rows = [_call_row(appointment) for appointment in appointments]
    context = {
        "branches": branches,
        "branch": branch,
        "day": day,
        "rows": rows,
        "problems": problems,
        "communication_choices": CommunicationStatus.choices,
        "note_max_length": MAX_CALL_NOTE_LENGTH,
    }
    return context, problems


@require_GET
@requires(_may_use_lists)
def call_list_page(request: HttpRequest) -> HttpResponse:
    """Tomorrow's patients of a branch (``?date=`` for another day), to phone and confirm."""
    context, problems = _call_list_context(request, request.GET)
    return render(request, "desk/lists/call_list.html", context, status=400 if problems else 200)


def _row_appointment(actor: Any, public_id: Any) -> Appointment:
    appointment = lists.appointment_get_for_row(actor=actor, public_id=public_id)
    if appointment is None:
        raise Http404
    return appointment


@require_POST
@requires(_may_use_lists)
def call_result_record(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Record a call's result: htmx gets the updated row back; a plain form post returns to the
    call list of the appointment's day. A refused value answers 400 with the reason."""
    appointment = _row_appointment(request.user, public_id)
    value = request.POST.get("communication_status", "")
    note = request.POST.get("note", "")
    problem = ""
    if len(note) > MAX_CALL_NOTE_LENGTH:
        problem = _("The note is %(length)s characters long; at most %(limit)s are kept.") % {
            "length": len(note),
            "limit": MAX_CALL_NOTE_LENGTH,
        }
    else:
        try:
            lists.communication_status_record(
                actor=request.user, appointment=appointment, status=value, note=note
            )
        except SchedulingError as error:
            problem = str(error.message)
    is_htmx = bool(request.headers.get("HX-Request"))
    status = 400 if problem else 200
    if is_htmx:
        fresh = _row_appointment(request.user, public_id)
        context = {
            "call": _call_row(fresh),
            "problem": problem,
            "recorded": not problem,
            "communication_choices": CommunicationStatus.choices,
            "note_max_length": MAX_CALL_NOTE_LENGTH,
        }
        return render(request, "desk/lists/_call_row.html", context, status=status)
    day = lists.appointment_row(appointment).starts.date()
    back = {"branch": str(appointment.branch.public_id), "date": day.isoformat()}
    if problem:
        context, _problems = _call_list_context(request, QueryDict(urlencode(back)))
        context["problems"] = [problem]
        return render(request, "desk/lists/call_list.html", context, status=400)
    messages.success(
        request,
        _("The call result for %(patient)s is recorded.") % {"patient": appointment.patient_name},
    )
    return redirect(f"{reverse('desk:call_list')}?{urlencode(back)}")
