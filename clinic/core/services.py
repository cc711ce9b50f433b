"""Writes of the core: roles applied to groups, staff members created and dismissed."""

from __future__ import annotations

import datetime
from typing import Any

from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.db import transaction

from clinic.accounts.models import User

from .models import Branch, Organization, Specialty, Staff, StaffStatus
from .roles import ROLE_CAPABILITIES, Role


def roles_sync(*, apps: Any = None) -> dict[str, int]:
    """Create every role's group and set its permissions exactly to the matrix in ``roles.py``.

    Creates the capability permissions too, so it works inside a migration (pass the migration's
    ``apps``) before Django's post-migrate step has created them. Idempotent; returns the number
    of permissions each group now has.
    """
    registry = apps or django_apps
    group_model = registry.get_model("auth", "Group")
    permission_model = registry.get_model("auth", "Permission")
    content_type_model = registry.get_model("contenttypes", "ContentType")
    names = dict(Staff._meta.permissions)
    counts: dict[str, int] = {}
    with transaction.atomic():
        content_type, _created = content_type_model.objects.get_or_create(
            app_label="core", model="staff"
        )
        permissions = {
            codename: permission_model.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": names[codename]}
            )[0]
            for codename in names
        }
        for role, capabilities in ROLE_CAPABILITIES.items():
            group, _created = group_model.objects.get_or_create(name=str(role))
            group.permissions.set([permissions[str(capability)] for capability in capabilities])
            counts[str(role)] = len(capabilities)
    return counts


@transaction.atomic
def staff_create(
    *,
    organization: Organization,
    last_name: str,
    first_name: str,
    position: str,
    branches: list[Branch],
    roles: list[Role],
    username: str | None = None,
    password: str | None = None,
    patronymic: str = "",
    specialty: Specialty | None = None,
    snils: str = "",
    frmr_id: str = "",
    email: str = "",
    created_by: User | None = None,
) -> Staff:
    """Create a staff member, their login (when a username is given) and their role groups."""
    user = None
    if username:
        user = User(username=username, email=email, first_name=first_name, last_name=last_name)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.full_clean(exclude=["password"])
        user.save()
        user.groups.set(Group.objects.filter(name__in=[str(role) for role in roles]))
    staff = Staff(
        user=user,
        organization=organization,
        last_name=last_name,
        first_name=first_name,
        patronymic=patronymic,
        position=position,
        specialty=specialty,
        snils=snils,
        frmr_id=frmr_id,
        created_by=created_by,
    )
    staff.full_clean()
    staff.save()
    staff.branches.set(branches)
    return staff


@transaction.atomic
def staff_dismiss(*, staff: Staff, on: datetime.date) -> Staff:
    """Dismiss a staff member: the login is deactivated, the record and its history remain."""
    staff.status = StaffStatus.DISMISSED
    staff.dismissed_on = on
    staff.full_clean()
    staff.save(update_fields=["status", "dismissed_on", "updated_at"])
    if staff.user_id:
        User.objects.filter(pk=staff.user_id).update(is_active=False)
    return staff
