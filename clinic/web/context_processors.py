"""Template context shared by every page: the workplaces the user may open."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from clinic.core.roles import Workplace
from clinic.core.selectors import workplaces_for_user

WORKPLACE_URLS = {
    Workplace.DESK: "/desk/",
    Workplace.DOCTOR: "/doctor/",
    Workplace.POS: "/pos/",
    Workplace.LAB: "/lab/",
    Workplace.ADMIN: "/admin/",
}


def workplaces(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_workplaces": []}
    allowed = workplaces_for_user(user)
    return {
        "nav_workplaces": [
            {"code": code, "label": Workplace(code).label, "url": WORKPLACE_URLS[code]}
            for code in allowed
        ]
    }
