"""Role grants and branch assignments are in the history too (many-to-many link tables)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from clinic.accounts.models import UserRole
from clinic.core.models import StaffBranch
from clinic.core.roles import Role

from ..core.factories import BranchFactory, staff_with_role

pytestmark = pytest.mark.django_db


def test_role_grant_and_withdrawal_are_recorded() -> None:
    staff = staff_with_role(Role.REGISTRAR)
    user = staff.user
    administrator = Group.objects.get(name=Role.ADMINISTRATOR)
    user.groups.add(administrator)
    user.groups.remove(administrator)
    events = list(
        UserRole.pgh_event_model.objects.filter(user_id=user.pk, group_id=administrator.pk)
        .order_by("pgh_id")
        .values_list("pgh_label", flat=True)
    )
    assert events == ["role.add", "role.remove"]


def test_branch_assignment_changes_are_recorded() -> None:
    staff = staff_with_role(Role.DOCTOR)
    [first] = staff.branches.all()
    second = BranchFactory(organization=staff.organization)
    staff.branches.set([second])
    events = list(
        StaffBranch.pgh_event_model.objects.filter(staff_id=staff.pk)
        .order_by("pgh_id")
        .values_list("pgh_label", "branch_id")
    )
    assert events == [
        ("branch.add", first.pk),
        ("branch.remove", first.pk),
        ("branch.add", second.pk),
    ]
