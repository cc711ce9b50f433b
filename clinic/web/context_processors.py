"""Template context shared by every page: the workplaces the user may open and their name."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest

from clinic.core.roles import Workplace
from clinic.core.selectors import workplaces_for_user

WORKPLACE_URLS: dict[str, str] = {
    Workplace.DESK: "/desk/",
    Workplace.DOCTOR: "/doctor/",
    Workplace.POS: "/pos/",
    Workplace.LAB: "/lab/",
    Workplace.ADMIN: "/admin/",
}


def workplaces(request: HttpRequest) -> dict[str, Any]:
    """``nav_workplaces``: code, label, url and ``active`` (the page is inside it) of each
    workplace the user may open; ``user_display_name``: the staff member's short name, else the
    login name. Anonymous visitors get an empty navigation.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_workplaces": [], "user_display_name": ""}
    path = request.path
    return {
        "nav_workplaces": [
            {
                "code": code,
                "label": Workplace(code).label,
                "url": WORKPLACE_URLS[code],
                "active": path.startswith(WORKPLACE_URLS[code]),
            }
            for code in workplaces_for_user(user)
        ],
        "user_display_name": _display_name(user),
    }


def _display_name(user: Any) -> str:
    try:
        staff = user.staff
    except ObjectDoesNotExist:
        staff = None
    if staff is not None:
        return str(staff.short_name)
    return str(user.get_full_name() or user.get_username())
