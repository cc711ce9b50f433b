"""The role matrix: README and code agree, and every role is allowed and denied as documented."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission

from clinic.core import policies
from clinic.core.models import Staff
from clinic.core.roles import ROLE_CAPABILITIES, Capability, Role, Workplace
from clinic.core.selectors import home_workplace, workplaces_for_user
from clinic.core.services import roles_sync, staff_dismiss

from .factories import UserFactory, staff_with_role

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_matrix() -> dict[str, set[str]]:
    """The role × capability table between the role-matrix markers of README.md."""
    text = README.read_text()
    table = text.split("<!-- role-matrix:start -->")[1].split("<!-- role-matrix:end -->")[0]
    rows = [line for line in table.strip().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    roles = header[1:]
    matrix: dict[str, set[str]] = {role: set() for role in roles}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        capability, marks = cells[0], cells[1:]
        for role, mark in zip(roles, marks, strict=True):
            if mark == "✓":
                matrix[role].add(capability)
    return matrix


EXPECTED = readme_matrix()


def test_readme_table_lists_every_role_and_capability() -> None:
    assert set(EXPECTED) == {role.value for role in Role}
    table = README.read_text().split("<!-- role-matrix:start -->")[1].split("<!-- role-matrix")[0]
    listed = set(re.findall(r"^\| ([a-z_]+) \|", table, flags=re.MULTILINE)) - {"capability"}
    assert listed == {capability.value for capability in Capability}


def test_code_matrix_matches_readme() -> None:
    assert {role: set(caps) for role, caps in ROLE_CAPABILITIES.items()} == EXPECTED


def test_every_capability_is_a_declared_permission() -> None:
    declared = {codename for codename, _name in Staff._meta.permissions}
    assert declared == {capability.value for capability in Capability}


@pytest.mark.django_db
def test_migration_created_role_groups_with_exact_permissions() -> None:
    for role in Role:
        codenames = set(
            Group.objects.get(name=role.value).permissions.values_list("codename", flat=True)
        )
        assert codenames == EXPECTED[role.value], role


@pytest.mark.django_db
def test_roles_sync_restores_a_tampered_group() -> None:
    registrar = Group.objects.get(name=Role.REGISTRAR)
    registrar.permissions.add(Permission.objects.get(codename=Capability.MANAGE_OUTBOX))
    counts = roles_sync()
    assert counts[Role.REGISTRAR] == len(EXPECTED[Role.REGISTRAR])
    codenames = set(registrar.permissions.values_list("codename", flat=True))
    assert codenames == EXPECTED[Role.REGISTRAR]


@pytest.mark.django_db
@pytest.mark.parametrize("role", [role.value for role in Role])
def test_each_role_has_exactly_its_capabilities(role: str) -> None:
    user = staff_with_role(role).user
    for capability in Capability:
        allowed = policies.has_capability(user, capability)
        assert allowed is (capability.value in EXPECTED[role]), (role, capability.value)


ROLE_WORKPLACES = {
    Role.REGISTRAR: {Workplace.DESK},
    Role.CALL_CENTRE: {Workplace.DESK},
    Role.DOCTOR: {Workplace.DOCTOR},
    Role.NURSE: {Workplace.DOCTOR},
    Role.CASHIER: {Workplace.POS},
    Role.LAB_TECHNICIAN: {Workplace.LAB},
    Role.HEAD_OF_REGISTRY: {Workplace.DESK},
    Role.ACCOUNTANT: {Workplace.POS},
    Role.ADMINISTRATOR: {Workplace.ADMIN},
}


@pytest.mark.django_db
@pytest.mark.parametrize("role", [role.value for role in Role])
def test_workplaces_open_by_role(role: str) -> None:
    user = staff_with_role(role).user
    assert set(workplaces_for_user(user)) == {w.value for w in ROLE_WORKPLACES[Role(role)]}
    for workplace in Workplace:
        assert policies.can_open_workplace(user, workplace) is (
            workplace in ROLE_WORKPLACES[Role(role)]
        )


@pytest.mark.django_db
def test_accountant_lands_in_the_pos_for_reports_without_taking_payments() -> None:
    user = staff_with_role(Role.ACCOUNTANT).user
    assert home_workplace(user) == Workplace.POS
    assert not policies.has_capability(user, Capability.TAKE_PAYMENT)


@pytest.mark.django_db
def test_dismissed_staff_and_users_without_staff_have_no_capability() -> None:
    staff = staff_with_role(Role.ADMINISTRATOR)
    assert policies.has_capability(staff.user, Capability.MANAGE_OUTBOX)
    staff_dismiss(staff=staff, on=datetime.date(2026, 11, 1))
    staff.user.refresh_from_db()
    dismissed_user: Any = staff.user
    assert dismissed_user.is_active is False
    assert not policies.has_capability(
        Staff.objects.get(pk=staff.pk).user, Capability.VIEW_SCHEDULE
    )
    lone_user = UserFactory(roles=[Role.ADMINISTRATOR])
    assert not policies.has_capability(lone_user, Capability.MANAGE_OUTBOX)


@pytest.mark.django_db
def test_superuser_has_every_capability() -> None:
    user = UserFactory(is_superuser=True)
    assert all(policies.has_capability(user, capability) for capability in Capability)


def test_anonymous_has_no_capability() -> None:
    from django.contrib.auth.models import AnonymousUser

    assert not policies.has_capability(AnonymousUser(), Capability.VIEW_SCHEDULE)
