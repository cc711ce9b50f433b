"""Why the portal refuses a request: a stable code, a translated message and the field."""

from __future__ import annotations

from clinic.core.errors import DomainError


class PortalError(DomainError):
    """A refusal the patient can act on (HTTP 400)."""


class TooManyRequests(PortalError):
    """A rate limit was reached: the patient waits (HTTP 429)."""

    status_code = 429
