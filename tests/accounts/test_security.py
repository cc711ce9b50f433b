"""Login, lockout per user+IP, mandatory two-factor, idle timeout, headers, security events."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.accounts.middleware import LAST_ACTIVITY_KEY
from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.core.roles import Role

from ..conftest import PASSWORD
from ..core.factories import staff_with_role

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
TWO_FACTOR = "/accounts/two-factor/"


def post_login(client: Client, username: str, password: str, ip: str = "10.0.0.1") -> Any:
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


def current_code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def events(kind: str) -> list[SecurityEvent]:
    return list(SecurityEvent.objects.filter(kind=kind).order_by("pk"))


def test_login_lands_in_the_role_workplace_and_records_the_login(client: Client) -> None:
    staff = staff_with_role(Role.CASHIER)
    response = post_login(client, staff.user.username, PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/")["Location"] == "/pos/"
    [login] = events(SecurityEventKind.LOGIN)
    assert (login.user_id, login.ip_address) == (staff.user.pk, "10.0.0.1")


def test_wrong_password_is_refused_and_recorded(client: Client) -> None:
    staff = staff_with_role(Role.REGISTRAR)
    response = post_login(client, staff.user.username, "wrong-password")
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    [failure] = events(SecurityEventKind.LOGIN_FAILED)
    assert failure.username == staff.user.username


def test_lockout_is_per_user_and_ip(client: Client, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    victim = staff_with_role(Role.REGISTRAR).user
    colleague = staff_with_role(Role.REGISTRAR).user
    for _attempt in range(3):
        post_login(client, victim.username, "typo", ip="10.0.0.5")
    locked = post_login(client, victim.username, PASSWORD, ip="10.0.0.5")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    assert len(events(SecurityEventKind.LOCKED_OUT)) >= 1

    # A colleague at the same reception PC still logs in.
    other = Client()
    assert post_login(other, colleague.username, PASSWORD, ip="10.0.0.5").status_code == 302
    # The same person from another PC still logs in.
    elsewhere = Client()
    assert post_login(elsewhere, victim.username, PASSWORD, ip="10.0.0.6").status_code == 302


def test_lockout_ends_after_the_cool_off(client: Client, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    user = staff_with_role(Role.DOCTOR).user
    for _attempt in range(2):
        post_login(client, user.username, "typo", ip="10.0.0.7")
    assert post_login(client, user.username, PASSWORD, ip="10.0.0.7").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - datetime.timedelta(hours=1))
    assert post_login(client, user.username, PASSWORD, ip="10.0.0.7").status_code == 302


@pytest.mark.parametrize("role", [Role.ADMINISTRATOR, Role.HEAD_OF_REGISTRY])
def test_privileged_roles_must_enrol_and_pass_totp(client: Client, role: str) -> None:
    staff = staff_with_role(role)
    staff.user.is_staff = True
    staff.user.save()
    post_login(client, staff.user.username, PASSWORD)
    blocked = client.get("/")
    assert blocked.status_code == 302
    assert blocked["Location"].startswith(TWO_FACTOR)

    enrol = client.get(TWO_FACTOR)
    assert enrol.status_code == 200
    assert enrol.context["enrolling"] is True
    assert enrol.context["qr_data_uri"].startswith("data:image/svg+xml;base64,")
    device = TOTPDevice.objects.get(user=staff.user, confirmed=False)

    wrong_code = "000000" if current_code(device) != "000000" else "111111"
    wrong = client.post(TWO_FACTOR, {"token": wrong_code})
    assert wrong.status_code == 200
    assert wrong.context["form"].errors["token"]
    assert len(events(SecurityEventKind.TWO_FACTOR_FAILED)) == 1
    device.refresh_from_db()
    assert device.throttling_failure_count == 1, "failures slow down further guesses"
    device.throttle_reset()

    passed = client.post(TWO_FACTOR, {"token": current_code(device), "next": "/"})
    assert passed.status_code == 302
    device.refresh_from_db()
    assert device.confirmed is True
    assert len(events(SecurityEventKind.TWO_FACTOR_ENROLLED)) == 1
    home = client.get("/")
    assert home.status_code == 302
    assert not home["Location"].startswith(TWO_FACTOR)


def test_token_with_letters_names_the_value(client: Client) -> None:
    staff = staff_with_role(Role.ADMINISTRATOR)
    client.force_login(staff.user)
    response = client.post(TWO_FACTOR, {"token": "12ab56"})
    assert "12ab56" in str(response.context["form"].errors["token"])


def test_admin_requires_a_verified_second_factor_even_for_superusers(client: Client) -> None:
    staff = staff_with_role(Role.ADMINISTRATOR)
    staff.user.is_superuser = True
    staff.user.is_staff = True
    staff.user.save()
    client.force_login(staff.user)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == f"{TWO_FACTOR}?next=/admin/"
    device = TOTPDevice.objects.create(user=staff.user, name="phone", confirmed=True)
    client.post(TWO_FACTOR, {"token": current_code(device), "next": "/admin/"})
    assert client.get("/admin/").status_code == 200


def test_registrar_needs_no_second_factor(client: Client) -> None:
    staff = staff_with_role(Role.REGISTRAR)
    post_login(client, staff.user.username, PASSWORD)
    assert client.get("/")["Location"] == "/desk/"
    assert client.get("/desk/").status_code == 200


def test_idle_session_expires_and_is_recorded(client: Client, settings: Any) -> None:
    staff = staff_with_role(Role.DOCTOR)
    client.force_login(staff.user)
    assert client.get("/doctor/").status_code == 200
    session = client.session
    idle = settings.SESSION_IDLE_TIMEOUT + datetime.timedelta(minutes=1)
    session[LAST_ACTIVITY_KEY] = (timezone.now() - idle).timestamp()
    session.save()
    response = client.get("/doctor/")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next=/doctor/&expired=1"
    assert "_auth_user_id" not in client.session
    [expired] = events(SecurityEventKind.SESSION_EXPIRED)
    assert expired.user_id == staff.user.pk


def test_the_schedule_s_own_background_requests_are_not_activity(client: Client) -> None:
    """An open grid polls by itself; a PC left with the grid open still times out."""
    staff = staff_with_role(Role.REGISTRAR)
    client.force_login(staff.user)
    assert client.get("/desk/").status_code == 200
    before = client.session[LAST_ACTIVITY_KEY]
    branch = staff.branches.get()
    client.get("/desk/schedule/version/", {"branch": str(branch.public_id)})
    assert client.session[LAST_ACTIVITY_KEY] == before
    client.get("/desk/")
    assert client.session[LAST_ACTIVITY_KEY] > before


def test_active_session_is_kept(client: Client) -> None:
    staff = staff_with_role(Role.DOCTOR)
    client.force_login(staff.user)
    for _request in range(3):
        assert client.get("/doctor/").status_code == 200


def test_denied_workplace_is_recorded(client: Client) -> None:
    staff = staff_with_role(Role.CASHIER)
    client.force_login(staff.user)
    assert client.get("/doctor/").status_code == 403
    [denied] = events(SecurityEventKind.ACCESS_DENIED)
    assert (denied.user_id, denied.path) == (staff.user.pk, "/doctor/")


def test_security_headers(client: Client) -> None:
    response = client.get(LOGIN)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_weak_passwords_are_rejected() -> None:
    for weak in ("12345678901", "password123", "short"):
        with pytest.raises(ValidationError):
            validate_password(weak)
    validate_password("Tverskaya-1-Clinic-2026")


def test_logout_is_recorded(client: Client) -> None:
    staff = staff_with_role(Role.NURSE)
    client.force_login(staff.user)
    client.post("/accounts/logout/")
    assert "_auth_user_id" not in client.session
    assert [event.user_id for event in events(SecurityEventKind.LOGOUT)] == [staff.user.pk]
