"""Record reads (access log) and security events."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from clinic.audit.models import AccessLog, SecurityEvent, SecurityEventKind
from clinic.audit.selectors import access_log_for_object
from clinic.audit.services import access_log_record, security_event_record
from tests.core.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_access_log_record_writes_user_type_public_id_ip_and_path(rf: RequestFactory) -> None:
    user = UserFactory.create()
    organization = OrganizationFactory.create()
    request = rf.get("/doctor/cards/42/", REMOTE_ADDR="10.1.2.3")
    request.user = user

    entry = access_log_record(user=user, obj=organization, purpose="treatment", request=request)

    stored = AccessLog.objects.get(pk=entry.pk)
    assert stored.user == user
    assert stored.object_type == "core.Organization"
    assert stored.object_id == str(organization.public_id)
    assert stored.object_id != str(organization.pk)
    assert stored.purpose == "treatment"
    assert stored.ip_address == "10.1.2.3"
    assert stored.path == "/doctor/cards/42/"
    assert stored.occurred_at is not None
    assert list(access_log_for_object(organization)) == [stored]


def test_access_log_record_for_a_model_without_public_id_uses_the_pk() -> None:
    user = UserFactory.create()
    other = UserFactory.create()
    entry = access_log_record(user=user, obj=other)
    assert entry.object_type == "accounts.User"
    assert entry.object_id == str(other.pk)
    assert entry.ip_address is None
    assert entry.path == ""


@pytest.mark.parametrize("remote_addr", ["", "unix:/run/gunicorn.sock", "not-an-ip"])
def test_access_log_record_survives_a_non_ip_remote_addr(
    rf: RequestFactory, remote_addr: str
) -> None:
    request = rf.get("/doctor/cards/1/", REMOTE_ADDR=remote_addr)
    entry = access_log_record(
        user=UserFactory.create(), obj=OrganizationFactory.create(), request=request
    )
    assert AccessLog.objects.get(pk=entry.pk).ip_address is None


def test_access_log_record_stores_ipv6(rf: RequestFactory) -> None:
    request = rf.get("/doctor/cards/1/", REMOTE_ADDR="2001:db8::1")
    entry = access_log_record(
        user=UserFactory.create(), obj=OrganizationFactory.create(), request=request
    )
    assert AccessLog.objects.get(pk=entry.pk).ip_address == "2001:db8::1"


def test_security_event_record_for_an_anonymous_user(rf: RequestFactory) -> None:
    request = rf.post(
        "/accounts/login/", REMOTE_ADDR="192.0.2.10", HTTP_USER_AGENT="Mozilla/5.0 (Test)"
    )
    request.user = AnonymousUser()

    event = security_event_record(
        kind=SecurityEventKind.LOGIN_FAILED,
        request=request,
        user=request.user,
        username="nobody",
        detail="wrong password",
    )

    stored = SecurityEvent.objects.get(pk=event.pk)
    assert stored.kind == SecurityEventKind.LOGIN_FAILED
    assert stored.user is None
    assert stored.username == "nobody"
    assert stored.ip_address == "192.0.2.10"
    assert stored.user_agent == "Mozilla/5.0 (Test)"
    assert stored.path == "/accounts/login/"
    assert stored.detail == "wrong password"


def test_security_event_record_without_request_or_user() -> None:
    event = security_event_record(kind=SecurityEventKind.ACCESS_DENIED)
    stored = SecurityEvent.objects.get(pk=event.pk)
    assert stored.user is None
    assert stored.username == ""
    assert stored.ip_address is None
    assert stored.user_agent == ""
    assert stored.path == ""


def test_security_event_record_takes_the_username_of_an_authenticated_user(
    rf: RequestFactory,
) -> None:
    user = UserFactory.create(username="petrov")
    event = security_event_record(
        kind=SecurityEventKind.LOGIN, request=rf.get("/", REMOTE_ADDR="10.0.0.1"), user=user
    )
    stored = SecurityEvent.objects.get(pk=event.pk)
    assert stored.user == user
    assert stored.username == "petrov"
