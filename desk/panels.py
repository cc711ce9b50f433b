"""The panels under the grid: the waitlist (add, cancel, drag onto the grid to book) and the
trash of cancelled appointments (drag onto the grid, or restore at their own time)."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_POST

from clinic.core.models import Branch
from patients.views import requires
from scheduling.errors import SchedulingError
from scheduling.models import (
    Resource,
    ResourceKind,
    Service,
    WaitlistEntry,
    WaitlistState,
)
from scheduling.selectors import trash_list
from scheduling.waitlist import (
    waitlist_add,
    waitlist_cancel,
    waitlist_entry_get_for_actor,
    waitlist_list,
)

from .booking_views import CHANGED, may_book, patient_for
from .selectors import grid_branches

PANEL_LIMIT = 50


class WaitlistForm(forms.Form):
    patient = forms.UUIDField(widget=forms.HiddenInput)
    service = forms.ModelChoiceField(label=gettext_lazy("Service"), queryset=Service.objects.none())
    doctor = forms.ModelChoiceField(
        label=gettext_lazy("Doctor"), queryset=Resource.objects.none(), required=False
    )
    date_from = forms.DateField(label=pgettext_lazy("date range", "from"), required=False)
    date_to = forms.DateField(label=pgettext_lazy("date range", "to"), required=False)
    time_from = forms.TimeField(label=gettext_lazy("Not earlier than"), required=False)
    time_to = forms.TimeField(label=gettext_lazy("Not later than"), required=False)
    note = forms.CharField(label=gettext_lazy("Note"), max_length=300, required=False)

    def __init__(self, *args: Any, branch: Branch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        organization_id = branch.organization_id
        self.fields["service"].queryset = Service.objects.filter(  # type: ignore[attr-defined]
            organization_id=organization_id, is_active=True
        ).order_by("name")
        self.fields["doctor"].queryset = Resource.objects.filter(  # type: ignore[attr-defined]
            branch=branch, kind=ResourceKind.DOCTOR, is_active=True
        ).order_by("name")


def _branch(request: HttpRequest) -> Branch:
    raw = request.GET.get("branch") or request.POST.get("branch") or ""
    for branch in grid_branches(actor=request.user):
        if str(branch.public_id) == raw:
            return branch
    raise Http404(_("Unknown branch “%(value)s”.") % {"value": raw})


def _waitlist_context(request: HttpRequest, branch: Branch, form: WaitlistForm) -> dict[str, Any]:
    entries = (
        waitlist_list(actor=request.user)
        .filter(branch=branch, state__in=[WaitlistState.WAITING, WaitlistState.OFFERED])
        .prefetch_related("patient__contacts")[:PANEL_LIMIT]
    )
    return {"branch": branch, "entries": list(entries), "form": form}


@require_GET
@requires(may_book)
def waitlist_panel(request: HttpRequest) -> HttpResponse:
    branch = _branch(request)
    form = WaitlistForm(branch=branch)
    return render(request, "desk/_waitlist_panel.html", _waitlist_context(request, branch, form))


@require_POST
@requires(may_book)
def waitlist_add_view(request: HttpRequest) -> HttpResponse:
    """Put the chosen patient on the waitlist (with or without a date and a time window)."""
    branch = _branch(request)
    form = WaitlistForm(request.POST, branch=branch)
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        patient = patient_for(request.user, data["patient"], branch.organization_id)
        if patient is None:
            form.add_error(None, _("Unknown patient “%(value)s”.") % {"value": data["patient"]})
        else:
            try:
                waitlist_add(
                    actor=request.user,
                    branch=branch,
                    patient=patient,
                    service=data["service"],
                    doctor=data["doctor"],
                    date_from=data["date_from"],
                    date_to=data["date_to"],
                    time_from=data["time_from"],
                    time_to=data["time_to"],
                    note=data["note"],
                )
            except SchedulingError as error:
                form.add_error(None, error.message)
            else:
                form = WaitlistForm(branch=branch)
                status = 200
    response = render(
        request,
        "desk/_waitlist_panel.html",
        _waitlist_context(request, branch, form),
        status=status,
    )
    if status == 200:
        response["HX-Trigger"] = CHANGED
    return response


@require_POST
@requires(may_book)
def waitlist_cancel_view(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    entry: WaitlistEntry = waitlist_entry_get_for_actor(actor=request.user, public_id=public_id)
    waitlist_cancel(actor=request.user, entry=entry)
    branch = entry.branch
    response = render(
        request,
        "desk/_waitlist_panel.html",
        _waitlist_context(request, branch, WaitlistForm(branch=branch)),
    )
    response["HX-Trigger"] = CHANGED
    return response


@require_GET
@requires(may_book)
def trash_panel(request: HttpRequest) -> HttpResponse:
    """Cancelled appointments of the branch that can still be restored, latest cancelled first."""
    branch = _branch(request)
    appointments = trash_list(actor=request.user, branch_id=branch.pk)[:PANEL_LIMIT]
    return render(
        request, "desk/_trash_panel.html", {"branch": branch, "appointments": list(appointments)}
    )
