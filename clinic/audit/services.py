"""Writes of audit rows: record reads and security events."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.db import models
from django.http import HttpRequest

from .models import AccessLog, SecurityEvent


def client_ip(request: HttpRequest | None) -> str | None:
    """The peer address of the request, or None when there is none or it is not an IP address.

    A server behind a unix socket may pass an empty or non-IP ``REMOTE_ADDR``; storing that in
    the ``inet`` column would fail and take the audited action down with it.
    """
    if request is None:
        return None
    raw = (request.META.get("REMOTE_ADDR") or "").strip()
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def access_log_record(
    *, user: Any, obj: models.Model, purpose: str = "", request: HttpRequest | None = None
) -> AccessLog:
    """Write that ``user`` read ``obj``. Call on every read of a sensitive record."""
    return AccessLog.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None,
        object_type=obj._meta.label,
        object_id=str(getattr(obj, "public_id", None) or obj.pk),
        purpose=purpose[:200],
        ip_address=client_ip(request),
        path=request.path[:500] if request is not None else "",
    )


def security_event_record(
    *,
    kind: str,
    request: HttpRequest | None = None,
    user: Any = None,
    username: str = "",
    detail: str = "",
) -> SecurityEvent:
    """Write a login, failure, lockout, two-factor check or denied action.

    ``user`` may be anonymous (or None) for events before authentication; ``username`` is then
    the name that was typed.
    """
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    if not username and user is not None:
        username = user.get_username()
    return SecurityEvent.objects.create(
        kind=kind,
        user=user,
        username=username[:150],
        ip_address=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request else "")[:300],
        path=(request.path if request else "")[:500],
        detail=detail[:500],
    )
