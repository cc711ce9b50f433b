"""The free-time search dialog: the nearest free slots for a service, across the doctors of
every branch the operator works in (or one of them), earliest first.

The slots come from ``scheduling.availability.nearest_free``, which applies exactly the rules a
booking applies; a chosen slot opens the same booking form as a click on the grid.
"""

from __future__ import annotations

import datetime
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from clinic.core.models import Branch
from patients.views import requires
from scheduling.availability import FREE, nearest_free
from scheduling.errors import SchedulingError
from scheduling.models import BookingChannel, Service

from .booking_views import hold_token, may_book
from .selectors import grid_branches

RESULTS = 20
MAX_DAYS = 60


@dataclass(frozen=True)
class FreeSlot:
    branch: Branch
    doctor_public_id: str
    doctor_name: str
    starts_at: datetime.datetime  # in the branch's time zone


class FreeTimeForm(forms.Form):
    service = forms.ModelChoiceField(label=_("Service"), queryset=Service.objects.none())
    branch = forms.ChoiceField(label=_("Branch"), required=False)
    date_from = forms.DateField(label=_("From"), required=False)
    days = forms.IntegerField(label=_("Days ahead"), min_value=1, max_value=MAX_DAYS, initial=14)

    def __init__(self, *args: Any, branches: list[Branch], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        organizations = {branch.organization_id for branch in branches}
        self.fields["service"].queryset = Service.objects.filter(  # type: ignore[attr-defined]
            organization_id__in=organizations, is_active=True
        ).order_by("name")
        self.fields["branch"].choices = [("", _("All my branches"))] + [  # type: ignore[attr-defined]
            (str(branch.public_id), branch.name) for branch in branches
        ]


def free_slots_across(
    *,
    branches: list[Branch],
    service: Service,
    date_from: datetime.date,
    days: int,
    token: str,
) -> list[FreeSlot]:
    """The earliest free slots of the service in each branch, merged by time."""
    found: list[FreeSlot] = []
    for branch in branches:
        if branch.organization_id != service.organization_id:
            continue
        zone = zoneinfo.ZoneInfo(branch.time_zone)
        for slot in nearest_free(
            organization_id=service.organization_id,
            services=[service],
            branch=branch,
            channel=BookingChannel.DESK,
            from_date=date_from,
            days=days,
            limit=RESULTS,
            hold_token=token,
        ):
            if slot.state == FREE:
                found.append(
                    FreeSlot(
                        branch=branch,
                        doctor_public_id=str(slot.doctor_public_id),
                        doctor_name=slot.doctor_name,
                        starts_at=slot.starts_at.astimezone(zone),
                    )
                )
    found.sort(key=lambda slot: (slot.starts_at, slot.doctor_name))
    return found[:RESULTS]


@require_GET
@requires(may_book)
def free_time(request: HttpRequest) -> HttpResponse:
    """The dialog: the form, and once a service is chosen, the nearest free slots."""
    branches = grid_branches(actor=request.user)
    form = FreeTimeForm(request.GET or None, branches=branches)
    context: dict[str, Any] = {"form": form, "slots": None}
    status = 200
    if request.GET and form.is_valid():
        data = form.cleaned_data
        chosen = [b for b in branches if not data["branch"] or str(b.public_id) == data["branch"]]
        try:
            context["slots"] = free_slots_across(
                branches=chosen,
                service=data["service"],
                date_from=data["date_from"] or timezone.localdate(),
                days=data["days"],
                token=hold_token(request),
            )
        except SchedulingError as error:
            context["error"] = error.message
            status = 400
    elif request.GET:
        status = 400
    return render(request, "desk/_free_time.html", context, status=status)
