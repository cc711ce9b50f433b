"""Validators, staff services, selectors' scoping and the demo data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from hypothesis import given
from hypothesis import strategies as st

from clinic.accounts.models import User
from clinic.core.demo import demo_load, demo_logins
from clinic.core.models import Branch, Organization, Room, Staff, StaffStatus
from clinic.core.roles import Role
from clinic.core.selectors import branch_list, room_list, staff_list
from clinic.core.services import staff_create
from clinic.core.validators import inn_is_valid, snils_is_valid, validate_inn, validate_snils

from .factories import (
    BranchFactory,
    DepartmentFactory,
    OrganizationFactory,
    RoomFactory,
    staff_with_role,
)

ROOT = Path(__file__).resolve().parents[2]


def snils_with_check(number: int) -> str:
    digits = f"{number:09d}"
    total = sum(int(d) * w for d, w in zip(digits, range(9, 0, -1), strict=True))
    if total > 101:
        total %= 101
    control = 0 if total in (100, 101) else total
    return f"{digits}{control:02d}"


def inn10_with_check(number: int) -> str:
    digits = f"{number:09d}"
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    return digits + str(sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 % 10)


@pytest.mark.parametrize("value", ["7707083893", "500100732259", "7728168971"])
def test_real_inns_are_valid(value: str) -> None:
    assert inn_is_valid(value)


@pytest.mark.parametrize("value", ["7707083894", "770708389", "77070838931", "abcdefghij", ""])
def test_bad_inns_are_rejected_naming_the_value(value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        validate_inn(value)
    assert raised.value.params == {"value": value}


@given(st.integers(min_value=1_002_000, max_value=999_999_999))
def test_any_snils_with_its_check_number_is_valid(number: int) -> None:
    snils = snils_with_check(number)
    assert snils_is_valid(snils)
    assert snils_is_valid(f"{snils[:3]}-{snils[3:6]}-{snils[6:9]} {snils[9:]}")


@given(st.integers(min_value=1_002_000, max_value=999_999_999), st.integers(1, 99))
def test_snils_with_a_wrong_check_number_is_rejected(number: int, shift: int) -> None:
    snils = snils_with_check(number)
    wrong = f"{snils[:9]}{(int(snils[9:]) + shift) % 100:02d}"
    assert not snils_is_valid(wrong)
    with pytest.raises(ValidationError):
        validate_snils(wrong)


@given(st.integers(min_value=0, max_value=999_999_999))
def test_any_inn10_with_its_check_digit_is_valid(number: int) -> None:
    inn = inn10_with_check(number)
    assert inn_is_valid(inn)
    assert not inn_is_valid(inn[:9] + str((int(inn[9]) + 1) % 10))


def test_known_snils() -> None:
    assert snils_is_valid("112-233-445 95")
    assert not snils_is_valid("112-233-445 96")
    assert not snils_is_valid("112-233-44a 95")


@pytest.mark.django_db
def test_staff_create_with_invalid_snils_saves_nothing() -> None:
    organization = OrganizationFactory()
    branch = BranchFactory(organization=organization)
    with pytest.raises(ValidationError) as raised:
        staff_create(
            organization=organization,
            last_name="Сидоров",
            first_name="Пётр",
            position="Терапевт",
            branches=[branch],
            roles=[Role.DOCTOR],
            username="sidorov",
            password="Long-enough-2026",
            snils="112-233-445 96",
        )
    assert "snils" in raised.value.message_dict
    assert "112-233-445 96" in raised.value.message_dict["snils"][0]
    assert not User.objects.filter(username="sidorov").exists()
    assert not Staff.objects.filter(last_name="Сидоров").exists()


@pytest.mark.django_db
def test_staff_create_gives_login_roles_and_branches() -> None:
    organization = OrganizationFactory()
    branch = BranchFactory(organization=organization)
    staff = staff_create(
        organization=organization,
        last_name="Сидоров",
        first_name="Пётр",
        patronymic="Ильич",
        position="Терапевт",
        branches=[branch],
        roles=[Role.DOCTOR, Role.NURSE],
        username="sidorov",
        password="Long-enough-2026",
        snils="112-233-445 95",
    )
    assert staff.user is not None
    assert staff.user.check_password("Long-enough-2026")
    assert sorted(staff.user.groups.values_list("name", flat=True)) == ["doctor", "nurse"]
    assert list(staff.branches.all()) == [branch]
    assert staff.short_name == "Сидоров П.И."


@pytest.mark.django_db
def test_database_constraints_hold_without_python() -> None:
    staff = staff_with_role(Role.DOCTOR)
    with pytest.raises(IntegrityError):
        Staff.objects.filter(pk=staff.pk).update(status=StaffStatus.DISMISSED, dismissed_on=None)


@pytest.mark.django_db
def test_room_department_must_be_in_the_same_branch() -> None:
    room = RoomFactory.build(branch=BranchFactory(), department=DepartmentFactory())
    with pytest.raises(ValidationError) as raised:
        room.full_clean()
    assert "department" in raised.value.message_dict


@pytest.mark.django_db
def test_time_zone_is_validated() -> None:
    organization = OrganizationFactory.build(time_zone="Mars/Olympus")
    with pytest.raises(ValidationError) as raised:
        organization.full_clean()
    assert "Mars/Olympus" in raised.value.message_dict["time_zone"][0]


@pytest.mark.django_db
def test_selectors_scope_to_the_actors_branches(django_assert_max_num_queries: Any) -> None:
    first, second = OrganizationFactory(), OrganizationFactory()
    mine = BranchFactory(organization=first)
    theirs = BranchFactory(organization=second)
    RoomFactory(branch=mine, number="1")
    RoomFactory(branch=theirs, number="2")
    actor = staff_with_role(Role.REGISTRAR, organization=first, branches=[mine]).user
    colleague = staff_with_role(Role.DOCTOR, organization=first, branches=[mine])
    staff_with_role(Role.DOCTOR, organization=second, branches=[theirs])
    assert list(branch_list(actor=actor)) == [mine]
    assert [room.number for room in room_list(actor=actor)] == ["1"]
    with django_assert_max_num_queries(2):
        listed = {staff.pk for staff in staff_list(actor=actor)}
    assert colleague.pk in listed
    assert len(listed) == 2


@pytest.mark.django_db
def test_demo_data_is_complete_and_loads_once() -> None:
    assert demo_load() is True
    assert demo_load() is False
    organization = Organization.objects.get(inn="7707083893")
    assert Branch.objects.filter(organization=organization).count() == 2
    assert Room.objects.filter(branch__organization=organization).count() == 22
    doctors = Staff.objects.filter(organization=organization, user__groups__name=Role.DOCTOR)
    unlinked_doctors = Staff.objects.filter(organization=organization, specialty__isnull=False)
    assert doctors.count() == 1
    assert unlinked_doctors.count() == 11
    assert unlinked_doctors.values("specialty").distinct().count() == 10
    for login in demo_logins():
        user = User.objects.get(username=login.username)
        assert user.check_password(login.password)
        assert list(user.groups.values_list("name", flat=True)) == [login.role]
    website = User.objects.get(username="website")  # public bookings are made as this account
    assert not website.has_usable_password()
    assert sorted(website.groups.values_list("name", flat=True)) == sorted(
        [Role.REGISTRAR, Role.CASHIER]
    )
    assert website.staff.branches.count() == 2


def test_production_settings_pass_check_deploy() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic.settings.production",
        "DJANGO_SECRET_KEY": "x7Kq2-production-secret-for-the-deploy-check-0123456789abcdefghij",
        "DJANGO_ALLOWED_HOSTS": "clinic.example.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_the_development_secret_key() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic.settings.production"}
    env.pop("DJANGO_SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: DJANGO_SECRET_KEY must be set to a random string of at least 50 characters "
        "in production."
    )
