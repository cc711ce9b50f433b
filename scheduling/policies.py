"""Who may do what in the schedule."""

from __future__ import annotations

from typing import Any

from clinic.core.policies import has_capability
from clinic.core.roles import Capability

from .models import Appointment, BookingChannel


def _in_branch(user: Any, branch_id: int) -> bool:
    if user.is_superuser:
        return True
    staff = getattr(user, "staff", None)
    return staff is not None and staff.branches.filter(pk=branch_id).exists()


def can_view_schedule(user: Any) -> bool:
    return has_capability(user, Capability.VIEW_SCHEDULE)


def can_view_branch_schedule(user: Any, branch_id: int) -> bool:
    """Staff who see the schedule, in a branch they work in (printouts, day lists)."""
    return can_view_schedule(user) and _in_branch(user, branch_id)


def can_book(user: Any, *, branch_id: int, channel: str) -> bool:
    """Registrars and the call centre book in their branches; doctors book follow-ups only."""
    if channel == BookingChannel.DOCTOR:
        allowed = has_capability(user, Capability.WRITE_MEDICAL_RECORD) or has_capability(
            user, Capability.BOOK_APPOINTMENT
        )
    else:
        allowed = has_capability(user, Capability.BOOK_APPOINTMENT)
    return allowed and _in_branch(user, branch_id)


def can_change_appointment(user: Any, appointment: Appointment) -> bool:
    """Move, copy, resize, cancel, restore: booking staff of the appointment's branch."""
    return has_capability(user, Capability.BOOK_APPOINTMENT) and _in_branch(
        user, appointment.branch_id
    )


def can_set_status(user: Any, appointment: Appointment) -> bool:
    """The desk marks arrival and no-shows; doctors and nurses start and complete visits."""
    return (
        has_capability(user, Capability.BOOK_APPOINTMENT)
        or has_capability(user, Capability.WRITE_MEDICAL_RECORD)
    ) and _in_branch(user, appointment.branch_id)


def can_manage_schedules(user: Any, branch_id: int | None = None) -> bool:
    """Only the head of registry and the administrator change work schedules."""
    allowed = has_capability(user, Capability.MANAGE_WORK_SCHEDULE)
    if branch_id is None or not allowed:
        return allowed
    return _in_branch(user, branch_id)
