"""Why billing refuses a request: a stable code, a translated message and the field."""

from __future__ import annotations

from clinic.core.errors import DomainError


class BillingError(DomainError):
    """A refusal the person at the screen can act on (HTTP 400)."""
