"""Reads of the core, always scoped to what the acting user may see."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from .models import Branch, Organization, Room, Staff
from .policies import can_open_workplace
from .roles import ROLE_HOME, Role, Workplace


def staff_for_user(user: Any) -> Staff | None:
    if not getattr(user, "is_authenticated", False):
        return None
    try:
        return Staff.objects.select_related("organization", "specialty").get(user=user)
    except Staff.DoesNotExist:
        return None


def branch_list(*, actor: Any) -> QuerySet[Branch]:
    """Branches the actor works in (all branches for a superuser)."""
    branches = Branch.objects.select_related("organization").filter(is_active=True)
    if actor.is_superuser:
        return branches
    return branches.filter(staff__user=actor).distinct()


def branch_public_list() -> QuerySet[Branch]:
    """Branches shown to the public on the portal: active ones of active organizations."""
    return Branch.objects.select_related("organization").filter(
        is_active=True, organization__is_active=True
    )


def organization_list(*, actor: Any) -> QuerySet[Organization]:
    if actor.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(staff__user=actor).distinct()


def branch_get_for_actor(*, actor: Any, public_id: Any) -> Branch:
    """The branch with that public id if the actor works there, else 404 (existence hidden)."""
    return get_object_or_404(branch_list(actor=actor), public_id=public_id)


def room_list(*, actor: Any) -> QuerySet[Room]:
    return Room.objects.select_related("branch", "department").filter(
        branch__in=branch_list(actor=actor), is_active=True
    )


def staff_list(*, actor: Any) -> QuerySet[Staff]:
    """Staff of the branches the actor works in."""
    return (
        Staff.objects.select_related("organization", "specialty", "user")
        .prefetch_related("branches")
        .filter(branches__in=branch_list(actor=actor))
        .distinct()
    )


def user_roles(user: Any) -> list[str]:
    if not getattr(user, "is_authenticated", False):
        return []
    names = {group.name for group in user.groups.all()}
    return [role.value for role in Role if role.value in names]


def workplaces_for_user(user: Any) -> list[str]:
    return [workplace.value for workplace in Workplace if can_open_workplace(user, workplace)]


def home_workplace(user: Any) -> str | None:
    """The workplace a user lands in: their first role's own one, else the first they may open."""
    allowed = workplaces_for_user(user)
    for role in user_roles(user):
        if ROLE_HOME[role] in allowed:
            return ROLE_HOME[role]
    return allowed[0] if allowed else None
