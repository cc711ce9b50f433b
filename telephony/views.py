"""The desk's call pages: the call log (with classification), the planned outgoing calls and
the pop-up fragment shown when a call rings.

Each view checks the role first (403 and a security event otherwise, as the patient pages do),
fetches through a selector scoped to the actor (404 outside it) and calls one service.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from clinic.core.models import Staff, StaffStatus
from clinic.core.selectors import staff_for_user, staff_list
from patients.models import Person
from patients.policies import can_register_patient
from patients.selectors import person_get_for_actor
from patients.views import requires

from . import selectors, services
from .errors import TelephonyError
from .forms import CallClassifyForm, CallFilterForm, PlannedCallCloseForm, PlannedCallForm
from .models import Call, PlannedCallStatus
from .policies import can_handle_calls

CALLS_PER_PAGE = 50
PLANNED_LIMIT = 200


def _operators(actor: Any) -> list[Staff]:
    return list(staff_list(actor=actor).filter(status=StaffStatus.ACTIVE))


def _operator_choices(operators: list[Staff]) -> list[tuple[str, str]]:
    return [(str(staff.public_id), staff.full_name) for staff in operators]


def _staff_by_public_id(operators: list[Staff], value: str) -> Staff | None:
    return next((staff for staff in operators if str(staff.public_id) == value), None)


def _back(request: HttpRequest, fallback: str) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


# ---- the call log ---------------------------------------------------------------------------


@dataclass
class CallRow:
    call: Call
    people: list[Person]
    form: CallClassifyForm


@require_GET
@requires(can_handle_calls)
def call_log(request: HttpRequest) -> HttpResponse:
    """Calls newest first, filtered by period, operator, purpose, outcome, direction, state;
    each with the people its number belongs to and a form to classify it."""
    operators = _operators(request.user)
    form = CallFilterForm(request.GET or None, operators=_operator_choices(operators))
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "date_from": data["date_from"],
            "date_to": data["date_to"],
            "operator": _staff_by_public_id(operators, data["operator"]),
            "purpose": data["purpose"],
            "outcome": data["outcome"],
            "direction": data["direction"],
            "state": data["state"],
        }
    page = Paginator(selectors.call_log(actor=request.user, **filters), CALLS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    calls = list(page.object_list)
    people: dict[tuple[int, str], list[Person]] = {}
    for organization_id in {call.organization_id for call in calls}:
        organization = next(c.organization for c in calls if c.organization_id == organization_id)
        numbers = [c.outside_number for c in calls if c.organization_id == organization_id]
        for number, found in selectors.matched_names(
            organization=organization, numbers=numbers
        ).items():
            people[(organization_id, number)] = found
    rows = [
        CallRow(
            call=call,
            people=people.get((call.organization_id, call.outside_number), []),
            form=CallClassifyForm(
                initial={"purpose": call.purpose, "outcome": call.outcome, "note": call.note},
                auto_id=f"id_call_{call.public_id}_%s",
            ),
        )
        for call in calls
    ]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "rows": rows,
        "page": page,
        "query": query.urlencode(),
    }
    return render(request, "telephony/call_log.html", context)


@require_POST
@requires(can_handle_calls)
def call_classify(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Save the purpose, outcome and note of a call, then go back to the log."""
    call = selectors.call_get_for_actor(actor=request.user, public_id=public_id)
    form = CallClassifyForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return _back(request, reverse("telephony:log"))
    try:
        services.call_classify(
            actor=request.user,
            call=call,
            purpose=form.cleaned_data["purpose"],
            outcome=form.cleaned_data["outcome"],
            note=form.cleaned_data["note"],
        )
    except TelephonyError as error:
        messages.error(request, str(error.message))
    else:
        messages.success(request, gettext("The call is classified."))
    return _back(request, reverse("telephony:log"))


# ---- the pop-up -----------------------------------------------------------------------------


@require_GET
@requires(can_handle_calls)
def popup(request: HttpRequest, public_id: Any) -> HttpResponse:
    """The fragment the desk shows when a call rings (htmx): the number, the people it belongs
    to with their next visits, or a link to register an unknown caller. Opened as a page (not
    by htmx), the same content comes inside the desk's layout."""
    call = selectors.call_get_for_actor(actor=request.user, public_id=public_id)
    context = {
        "popup": selectors.call_popup(actor=request.user, call=call),
        "can_register": can_register_patient(request.user),
    }
    template = (
        "telephony/_popup.html"
        if request.headers.get("HX-Request")
        else "telephony/popup_page.html"
    )
    return render(request, template, context)


# ---- planned outgoing calls -----------------------------------------------------------------


def _patient_from(request: HttpRequest, typed: str) -> Person:
    """The patient named by a public id (from a link) or by their phone number."""
    try:
        public_id = uuid.UUID(typed)
    except ValueError:
        pass
    else:
        return person_get_for_actor(actor=request.user, public_id=public_id)
    staff = staff_for_user(request.user)
    if staff is None:
        raise PermissionDenied(gettext("Only staff members plan calls."))
    matches = selectors.caller_matches(organization=staff.organization, phone=typed)
    if not matches:
        raise TelephonyError(
            "unknown_patient",
            gettext("Nobody has the phone “%(value)s”.") % {"value": typed},
            field="patient",
        )
    if len(matches) > 1:
        raise TelephonyError(
            "ambiguous_patient",
            gettext(
                "%(count)s people have the phone “%(value)s”: open the patient's page and plan "
                "the call from there."
            )
            % {"count": len(matches), "value": typed},
            field="patient",
        )
    return matches[0].person


@requires(can_handle_calls)
def planned_calls(request: HttpRequest) -> HttpResponse:
    """Planned outgoing calls, the most urgent first, and a form to plan one."""
    operators = _operators(request.user)
    choices = _operator_choices(operators)
    initial = {"patient": request.GET.get("patient", "")}
    form = PlannedCallForm(
        request.POST if request.method == "POST" else None, operators=choices, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            patient = _patient_from(request, data["patient"].strip())
            planned = services.planned_call_create(
                actor=request.user,
                patient=patient,
                reason=data["reason"],
                due_at=data["due_at"],
                phone=data["phone"],
                assigned_to=_staff_by_public_id(operators, data["assigned_to"]),
            )
        except TelephonyError as error:
            field = error.field if error.field in form.fields else None
            form.add_error(field, str(error.message))
        else:
            messages.success(
                request,
                gettext("A call to %(name)s is planned.") % {"name": planned.patient.full_name},
            )
            return redirect("telephony:planned")
    status = request.GET.get("status", PlannedCallStatus.PLANNED)
    if status not in PlannedCallStatus.values:
        status = PlannedCallStatus.PLANNED
    calls = list(selectors.planned_calls(actor=request.user, status=status)[:PLANNED_LIMIT])
    context = {
        "form": form,
        "calls": calls,
        "close_form": PlannedCallCloseForm(),
        "status": status,
        "statuses": PlannedCallStatus.choices,
        "limit": PLANNED_LIMIT,
    }
    return render(request, "telephony/planned_calls.html", context)


def _close_planned(request: HttpRequest, public_id: Any, *, done: bool) -> HttpResponse:
    planned = selectors.planned_call_get_for_actor(actor=request.user, public_id=public_id)
    form = PlannedCallCloseForm(request.POST)
    result = form.cleaned_data["result_note"] if form.is_valid() else ""
    try:
        if done:
            services.planned_call_complete(actor=request.user, planned=planned, result_note=result)
        else:
            services.planned_call_cancel(actor=request.user, planned=planned, result_note=result)
    except TelephonyError as error:
        messages.error(request, str(error.message))
    else:
        text = (
            gettext("The call to %(name)s is marked done.")
            if done
            else gettext("The call to %(name)s is cancelled.")
        )
        messages.success(request, text % {"name": planned.patient.full_name})
    return _back(request, reverse("telephony:planned"))


@require_POST
@requires(can_handle_calls)
def planned_call_complete(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Mark a planned call made, with its result."""
    return _close_planned(request, public_id, done=True)


@require_POST
@requires(can_handle_calls)
def planned_call_cancel(request: HttpRequest, public_id: Any) -> HttpResponse:
    """Drop a planned call that is no longer needed."""
    return _close_planned(request, public_id, done=False)
