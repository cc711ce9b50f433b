"""Who must pass a second factor."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def two_factor_required(user: Any) -> bool:
    """Administrators, heads of registry and superusers must verify a TOTP code after login."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=settings.TWO_FACTOR_ROLES).exists()
