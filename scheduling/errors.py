"""Why a booking or a change is refused: a stable code, a translated message and the field."""

from __future__ import annotations

import datetime
from typing import Any

from django.utils.translation import gettext as _

from clinic.core.errors import DomainError


class SchedulingError(DomainError):
    """A refusal the person at the screen can act on (HTTP 400)."""


class SlotConflict(SchedulingError):
    """The time is taken (or held) on a resource: HTTP 409, naming the resource and the time
    but never the other patient."""

    status_code = 409

    def __init__(
        self,
        code: str,
        message: Any,
        *,
        resource_name: str = "",
        starts_at: datetime.datetime | None = None,
        ends_at: datetime.datetime | None = None,
    ) -> None:
        details: dict[str, Any] = {}
        if resource_name:
            details["conflict"] = {
                "resource": resource_name,
                "starts_at": starts_at.isoformat() if starts_at else None,
                "ends_at": ends_at.isoformat() if ends_at else None,
            }
        super().__init__(code, message, field="starts_at", details=details)


class IdempotencyKeyReused(SchedulingError):
    """The same idempotency key came with different data: HTTP 422."""

    status_code = 422


def unknown_resource(value: Any, field: str) -> SchedulingError:
    """The refusal for a doctor, room or device that does not exist or is not active."""
    return SchedulingError(
        "unknown_resource",
        _("Unknown or inactive resource “%(value)s”.") % {"value": value},
        field=field,
    )
