"""Fixtures of the admin tests: a superuser whose session has passed two-factor verification,
and one row of every model the admin shows."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.accounts.models import User
from clinic.audit.models import AccessLog, SecurityEvent, SecurityEventKind
from clinic.core.models import Staff
from clinic.outbox.models import OutboxAttempt
from tests.core.factories import (
    BranchFactory,
    DepartmentFactory,
    OrganizationFactory,
    RoomFactory,
    SpecialtyFactory,
    StaffFactory,
    UserFactory,
    staff_with_role,
)
from tests.outbox.factories import DeadOutboxMessageFactory

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def login_verified(client: Client, user: User) -> Client:
    """Log ``user`` in and mark the session as verified by a confirmed TOTP device."""
    device = TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)
    client.force_login(user, backend=MODEL_BACKEND)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def staff_login(role: str, *, is_staff: bool = True) -> tuple[Staff, User]:
    """A staff member with one role and their login (flagged ``is_staff`` for the admin)."""
    staff = staff_with_role(role)
    user = staff.user
    assert user is not None
    user.is_staff = is_staff
    user.save(update_fields=["is_staff"])
    return staff, user


@pytest.fixture
def superuser(db: Any) -> User:
    return UserFactory.create(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def admin_client_verified(client: Client, superuser: User) -> Client:
    """A test client logged in as a superuser who has passed the second factor."""
    return login_verified(client, superuser)


@pytest.fixture
def sample_rows(db: Any, superuser: User) -> dict[type[models.Model], models.Model]:
    """One row of every model registered by the clinic's admin modules, keyed by model."""
    organization = OrganizationFactory.create(short_name="Zdorovye", name="Zdorovye Medical LLC")
    branch = BranchFactory.create(organization=organization, name="Central")
    department = DepartmentFactory.create(branch=branch, name="Therapy")
    room = RoomFactory.create(branch=branch, department=department, number="101", name="Consulting")
    specialty = SpecialtyFactory.create(code="THER", name="Therapist")
    staff_user = UserFactory.create(username="petrova", first_name="Anna", last_name="Petrova")
    staff: Staff = StaffFactory.create(
        user=staff_user,
        organization=organization,
        branches=[branch],
        last_name="Petrova",
        first_name="Anna",
        patronymic="Sergeevna",
        specialty=specialty,
        snils="112-233-445 95",
        frmr_id="FRMR-42",
    )
    access = AccessLog.objects.create(
        user=staff_user,
        object_type="patients.MedicalCard",
        object_id="card-1",
        purpose="visit",
        ip_address="10.1.2.3",
        path="/doctor/cards/card-1/",
    )
    event = SecurityEvent.objects.create(
        kind=SecurityEventKind.LOGIN_FAILED,
        username="petrova",
        ip_address="10.1.2.4",
        path="/accounts/login/",
    )
    message = DeadOutboxMessageFactory.create(subject="invoice:77", payload={"to": "+79990000000"})
    now = timezone.now()
    attempt = OutboxAttempt.objects.create(
        message=message,
        number=1,
        started_at=now,
        finished_at=now,
        succeeded=False,
        error="ConnectionError: peer down",
    )
    rows: list[models.Model] = [
        organization,
        branch,
        department,
        room,
        specialty,
        staff,
        staff_user,
        access,
        event,
        message,
        attempt,
    ]
    return {type(row): row for row in rows}
