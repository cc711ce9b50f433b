"""Why a telephony event or an operator's change is refused: a stable code, a translated
message naming the field and the value."""

from __future__ import annotations

from clinic.core.errors import DomainError


class TelephonyError(DomainError):
    """A body or an operator's input that cannot be used (HTTP 400)."""


class TelephonyNotAuthenticated(TelephonyError):
    """The webhook came without ``X-Telephony-Token`` (HTTP 401)."""

    status_code = 401


class TelephonyForbidden(TelephonyError):
    """The webhook's token belongs to no organization (HTTP 403)."""

    status_code = 403
