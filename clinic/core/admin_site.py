"""The admin site: open to administrators (and superusers) only, per the role matrix."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from .policies import can_use_admin


class ClinicAdminSite(admin.AdminSite):
    site_header = _("Clinic ERP administration")
    site_title = _("Clinic ERP")
    index_title = _("Administration")

    def has_permission(self, request: HttpRequest) -> bool:
        return can_use_admin(request.user)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """One login page for the whole site (with its lockout and two-factor step).

        A logged-in user whose role does not open the admin gets a 403 page instead of a login
        form that could never let them in.
        """
        from django.contrib.auth import REDIRECT_FIELD_NAME
        from django.contrib.auth.views import redirect_to_login

        if request.user.is_authenticated:
            return render(
                request, "web/denied.html", {"workplace": _("Administration")}, status=403
            )
        target = request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index")
        return redirect_to_login(target, login_url=reverse("accounts:login"))


class ClinicAdminConfig(AdminConfig):
    """Django's admin app with the clinic's site as the default ``admin.site``."""

    default_site = "clinic.core.admin_site.ClinicAdminSite"
