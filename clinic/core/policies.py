"""Who may do what. Every check of the role matrix goes through these functions.

A capability comes from the user's role groups (``roles.py``); a dismissed staff member or an
inactive login has none. Superusers have every capability.
"""

from __future__ import annotations

from typing import Any

from .roles import WORKPLACE_CAPABILITIES, Capability


def _active_staff(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    staff = getattr(user, "staff", None)
    return staff is not None and staff.is_active


def has_capability(user: Any, capability: str) -> bool:
    """True when the user's roles grant the capability (a ``Capability`` codename)."""
    if not _active_staff(user):
        return False
    return bool(user.has_perm(f"core.{capability}"))


def can_open_workplace(user: Any, workplace: str) -> bool:
    return any(has_capability(user, capability) for capability in WORKPLACE_CAPABILITIES[workplace])


def can_use_admin(user: Any) -> bool:
    """The Django admin is for administrators (and superusers) only."""
    return has_capability(user, Capability.MANAGE_REFERENCE_DATA) and bool(user.is_staff)


def can_manage_staff(user: Any) -> bool:
    return has_capability(user, Capability.MANAGE_STAFF_ACCESS)


def can_view_audit_log(user: Any) -> bool:
    return has_capability(user, Capability.VIEW_AUDIT_LOG)


def can_requeue_outbox_message(user: Any, message: Any) -> bool:
    """Re-queueing is for administrators, and only of a message not yet delivered."""
    return has_capability(user, Capability.MANAGE_OUTBOX) and message.state != "delivered"


def can_view_branch(user: Any, branch: Any) -> bool:
    if not _active_staff(user):
        return False
    if user.is_superuser:
        return True
    return bool(user.staff.branches.filter(pk=branch.pk).exists())
