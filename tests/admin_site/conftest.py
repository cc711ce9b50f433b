"""Fixtures of the admin tests: a superuser whose session has passed two-factor verification."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.accounts.models import User
from tests.core.factories import UserFactory

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def login_verified(client: Client, user: User) -> Client:
    """Log ``user`` in and mark the session as verified by a confirmed TOTP device."""
    device = TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)
    client.force_login(user, backend=MODEL_BACKEND)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.fixture
def superuser(db: Any) -> User:
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def admin_client_verified(client: Client, superuser: User) -> Client:
    """A test client logged in as a superuser who has passed the second factor."""
    return login_verified(client, superuser)
