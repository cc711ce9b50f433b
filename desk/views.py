"""The schedule grid: the page with its toolbar, and the grid alone for htmx to refresh.

The toolbar is a GET form, so every state of the grid (branch, date, view, filters, toggles) is
a URL a receptionist can bookmark or send to a colleague. A value that cannot be read is named
in a message and the grid falls back to its default for that field.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clinic.core.models import Branch, Specialty
from patients.views import requires
from scheduling.models import AppointmentStatus, Resource, ResourceKind, Service
from scheduling.policies import can_book

from . import selectors
from .booking_views import hold_token, may_book

KIND_LABELS = {
    ResourceKind.DOCTOR: gettext_lazy("Doctors"),
    ResourceKind.ROOM: gettext_lazy("Rooms"),
    ResourceKind.EQUIPMENT: gettext_lazy("Equipment"),
}

VIEW_LABELS = {
    "day": gettext_lazy("Day"),
    "three_days": gettext_lazy("3 days"),
    "week": gettext_lazy("Week"),
}


@dataclass
class GridQuery:
    """The toolbar's choices, read from the query string, with the problems found in it."""

    branch: Branch | None
    day: datetime.date
    view: str
    specialty_id: int | None
    service_id: int | None
    doctor_ids: list[int]
    working_hours_only: bool
    hide_booked: bool
    kind: str = ResourceKind.DOCTOR
    errors: list[str] = field(default_factory=list)


def _grid_query(request: HttpRequest, branches: list[Branch]) -> GridQuery:
    errors: list[str] = []
    branch = branches[0] if branches else None
    raw_branch = request.GET.get("branch", "")
    if raw_branch:
        branch = next((b for b in branches if str(b.public_id) == raw_branch), None)
        if branch is None:
            errors.append(_("Unknown branch “%(value)s”.") % {"value": raw_branch})
            branch = branches[0] if branches else None
    today = timezone.localdate()
    if branch is not None:
        today = timezone.localtime(timezone=branch.zone).date()
    day = today
    raw_day = request.GET.get("date", "")
    if raw_day:
        try:
            day = datetime.date.fromisoformat(raw_day)
        except ValueError:
            errors.append(
                _("The date “%(value)s” is not a date (expected YYYY-MM-DD).") % {"value": raw_day}
            )
    view = request.GET.get("view", "day")
    if view not in selectors.VIEW_DAYS:
        errors.append(_("Unknown view “%(value)s”.") % {"value": view})
        view = "day"
    kind = request.GET.get("kind", ResourceKind.DOCTOR)
    if kind not in ResourceKind.values:
        errors.append(_("Unknown kind of resource “%(value)s”.") % {"value": kind})
        kind = ResourceKind.DOCTOR
    specialty_id = _int_or_none(request.GET.get("specialty", ""), _("specialty"), errors)
    service_id = _int_or_none(request.GET.get("service", ""), _("service"), errors)
    doctor_ids: list[int] = []
    for raw in request.GET.getlist("doctor"):
        value = _int_or_none(raw, _("doctor"), errors)
        if value is not None:
            doctor_ids.append(value)
    return GridQuery(
        branch=branch,
        day=day,
        view=view,
        specialty_id=specialty_id,
        service_id=service_id,
        doctor_ids=doctor_ids,
        working_hours_only=request.GET.get("hours", "working") != "all",
        hide_booked=request.GET.get("hide_booked") == "1",
        kind=kind,
        errors=errors,
    )


def _int_or_none(raw: str, name: str, errors: list[str]) -> int | None:
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        errors.append(_("The %(field)s “%(value)s” is not known.") % {"field": name, "value": raw})
        return None


def _grid_context(request: HttpRequest) -> dict[str, Any]:
    branches = selectors.grid_branches(actor=request.user)
    query = _grid_query(request, branches)
    context: dict[str, Any] = {
        "branches": branches,
        "query": query,
        "view_labels": VIEW_LABELS,
        "kind_labels": KIND_LABELS,
        "grid": None,
    }
    branch = query.branch
    if branch is None:
        return context
    resources = selectors.grid_resources(
        branch=branch,
        kind=query.kind,
        specialty_id=query.specialty_id,
        service_id=query.service_id,
        resource_ids=query.doctor_ids,
    )
    context["grid"] = selectors.grid_build(
        branch=branch,
        day=query.day,
        view=query.view,
        resources=resources,
        working_hours_only=query.working_hours_only,
        hide_booked=query.hide_booked,
        hold_token=hold_token(request),
    )
    context["may_book"] = can_book(request.user, branch_id=branch.pk, channel="desk")
    days = selectors.VIEW_DAYS[query.view]
    context["previous_day"] = query.day - datetime.timedelta(days=days)
    context["next_day"] = query.day + datetime.timedelta(days=days)
    context["today"] = timezone.localtime(timezone=branch.zone).date()
    context["now"] = timezone.now()
    return context


def _toolbar_choices(branch: Branch | None, kind: str) -> dict[str, Any]:
    """The toolbar's lists; the column chooser lists the resources of the kind shown."""
    if branch is None:
        return {"specialties": [], "services": [], "doctors": [], "columns_label": ""}
    return {
        "specialties": list(Specialty.objects.order_by("name")),
        "services": list(
            Service.objects.filter(organization_id=branch.organization_id, is_active=True).order_by(
                "name"
            )
        ),
        "doctors": list(
            Resource.objects.filter(branch=branch, kind=kind, is_active=True).order_by("name")
        ),
        "columns_label": KIND_LABELS[ResourceKind(kind)],
    }


@requires(may_book)
def grid_page(request: HttpRequest) -> HttpResponse:
    """The schedule grid with its toolbar: what the desk keeps open all day."""
    context = _grid_context(request)
    query = context["query"]
    context.update(_toolbar_choices(query.branch, query.kind))
    context["statuses"] = list(
        AppointmentStatus.objects.exclude(code=AppointmentStatus.CANCELLED).order_by("order")
    )
    status = 400 if context["query"].errors else 200
    return render(request, "desk/grid.html", context, status=status)


@requires(may_book)
def grid_fragment(request: HttpRequest) -> HttpResponse:
    """The grid alone, for htmx to swap in when the date, view or a filter changes."""
    context = _grid_context(request)
    status = 400 if context["query"].errors else 200
    return render(request, "desk/_grid.html", context, status=status)
