"""The shell: the landing redirect and each role's workplace page (the portal app is public)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record
from clinic.core import selectors
from clinic.core.policies import can_open_workplace
from clinic.core.roles import ROLE_CAPABILITIES, Capability, Role, Workplace

from .context_processors import WORKPLACE_URLS


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each user to their own workplace (a doctor to /doctor/, a cashier to /pos/, ...)."""
    workplace = selectors.home_workplace(request.user)
    if workplace is None:
        return render(request, "web/no_workplace.html", status=403)
    return redirect(WORKPLACE_URLS[workplace])


@login_required
def workplace(request: HttpRequest, code: str) -> HttpResponse:
    """A workplace's landing page; a user whose roles do not open it gets 403 (and it is logged)."""
    if not can_open_workplace(request.user, code):
        security_event_record(
            kind=SecurityEventKind.ACCESS_DENIED,
            request=request,
            user=request.user,
            detail=f"workplace {code}",
        )
        return render(request, "web/denied.html", {"workplace": Workplace(code).label}, status=403)
    roles = selectors.user_roles(request.user)
    context = {
        "workplace": Workplace(code),
        "staff": selectors.staff_for_user(request.user),
        "branches": selectors.branch_list(actor=request.user),
        "role_labels": [Role(role).label for role in roles],
        "capabilities": _capability_labels(roles),
    }
    return render(request, "web/workplace.html", context)


def _capability_labels(roles: list[str]) -> list[str]:
    """Labels of what the roles grant, in the order ``Capability`` declares them (related
    actions stay together: scheduling, patients, medical records, money, laboratory, admin)."""
    granted = {capability for role in roles for capability in ROLE_CAPABILITIES[role]}
    return [str(capability.label) for capability in Capability if capability in granted]
