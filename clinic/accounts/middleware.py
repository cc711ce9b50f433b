"""Security middleware: Content-Security-Policy, idle session timeout, mandatory two-factor."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record

from .policies import two_factor_required

LAST_ACTIVITY_KEY = "clinic_last_activity"

# Paths a user who still owes the second factor may open.
TWO_FACTOR_EXEMPT_PREFIXES = ("/accounts/", "/static/", "/i18n/", "/jsi18n/")


class ContentSecurityPolicyMiddleware:
    """Send the site's CSP. The Swagger UI page needs its own inline bootstrap script."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            policy = settings.CONTENT_SECURITY_POLICY
            if request.path.startswith("/api/docs"):
                policy = policy.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")
                policy = policy.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
            response["Content-Security-Policy"] = policy
        return response


# Requests a page makes by itself (the schedule's live stream and its polling fallback): they
# prove the page is open, not that someone is at the PC, so they do not count as activity.
BACKGROUND_PATHS = ("/desk/schedule/events/", "/desk/schedule/version/")


class IdleTimeoutMiddleware:
    """End a session after ``SESSION_IDLE_TIMEOUT`` without requests (a PC left unattended)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            now = timezone.now().timestamp()
            last = request.session.get(LAST_ACTIVITY_KEY)
            idle_limit = settings.SESSION_IDLE_TIMEOUT.total_seconds()
            if last is not None and now - float(last) > idle_limit:
                security_event_record(
                    kind=SecurityEventKind.SESSION_EXPIRED, request=request, user=user
                )
                logout(request)
                if request.path.startswith("/api/"):
                    return self.get_response(request)
                return redirect(f"{reverse('accounts:login')}?next={request.path}&expired=1")
            if not request.path.startswith(BACKGROUND_PATHS):
                request.session[LAST_ACTIVITY_KEY] = now
        return self.get_response(request)


class TwoFactorRequiredMiddleware:
    """Send users who must pass TOTP (privileged roles, everyone in /admin/) to verify first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not user.is_verified()
            and not request.path.startswith(TWO_FACTOR_EXEMPT_PREFIXES)
            and not _token_authenticated(request)
            and (request.path.startswith("/admin/") or two_factor_required(user))
        ):
            if request.path.startswith("/api/"):
                return JsonResponse(
                    {
                        "error": {
                            "code": "two_factor_required",
                            "message": _("Pass the two-factor check in the browser first."),
                            "fields": {},
                        }
                    },
                    status=403,
                )
            return redirect(f"{reverse('accounts:two_factor')}?next={request.get_full_path()}")
        return self.get_response(request)


def _token_authenticated(request: HttpRequest) -> bool:
    """API clients with a token authenticate per request in DRF; sessions are what this guards."""
    return request.META.get("HTTP_AUTHORIZATION", "").startswith("Token ")
