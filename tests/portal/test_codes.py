"""One-time phone codes: sent through the outbox, verified once, limited per phone and per
address, the same answer for any phone, and refused when Redis is down."""

from __future__ import annotations

import logging
import re

import pytest
from django.utils import timezone

from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.services import outbox_relay
from portal import codes, ratelimit
from portal.codes import CODE_CHANNEL, code_send, code_verify
from portal.errors import PortalError, TooManyRequests
from portal.models import CodePurpose, PhoneCode

pytestmark = pytest.mark.django_db

PHONE = "+79161234567"


def clear_limits() -> None:
    client = ratelimit._client()
    for key in client.scan_iter("clinic:ratelimit:*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def fresh_limits() -> None:
    clear_limits()


def sent_code() -> str:
    message = OutboxMessage.objects.filter(channel=CODE_CHANNEL).order_by("-pk").first()
    assert message is not None
    found = re.search(r"\b(\d{6})\b", message.payload["text"])
    assert found is not None
    return found.group(1)


def test_a_code_is_sent_through_the_outbox_and_works_once() -> None:
    code_send(phone="8 (916) 123-45-67", purpose=CodePurpose.LOGIN, ip="10.0.0.1")
    stored = PhoneCode.objects.get()
    assert stored.phone == PHONE
    code = sent_code()
    assert code not in stored.code_hash  # only a keyed hash is kept
    assert OutboxMessage.objects.get(channel=CODE_CHANNEL).payload["to"] == PHONE
    assert not code_verify(phone=PHONE, purpose=CodePurpose.BOOKING, code=code)  # other purpose
    assert code_verify(phone="+7 916 123 45 67", purpose=CodePurpose.LOGIN, code=code)
    assert not code_verify(phone=PHONE, purpose=CodePurpose.LOGIN, code=code)  # used up


def test_wrong_tries_and_expiry_end_a_code() -> None:
    code_send(phone=PHONE, purpose=CodePurpose.LOGIN)
    code = sent_code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(codes.MAX_WRONG_TRIES):
        assert not code_verify(phone=PHONE, purpose=CodePurpose.LOGIN, code=wrong)
    assert not code_verify(phone=PHONE, purpose=CodePurpose.LOGIN, code=code)  # too many tries
    clear_limits()
    code_send(phone=PHONE, purpose=CodePurpose.LOGIN)
    PhoneCode.objects.filter(used_at__isnull=True, attempts=0).update(expires_at=timezone.now())
    assert not code_verify(phone=PHONE, purpose=CodePurpose.LOGIN, code=sent_code())


def test_limits_per_phone_and_per_address() -> None:
    code_send(phone=PHONE, purpose=CodePurpose.LOGIN, ip="10.0.0.1")
    with pytest.raises(TooManyRequests) as again:
        code_send(phone=PHONE, purpose=CodePurpose.LOGIN, ip="10.0.0.2")
    assert again.value.status_code == 429 and again.value.field == "phone"
    assert PhoneCode.objects.count() == 1
    for number in range(codes.PER_IP_HOUR.count):
        code_send(phone=f"+7916000{number:04d}", purpose=CodePurpose.LOGIN, ip="10.0.0.9")
    with pytest.raises(TooManyRequests):
        code_send(phone="+79169999999", purpose=CodePurpose.LOGIN, ip="10.0.0.9")
    assert PhoneCode.objects.count() == 1 + codes.PER_IP_HOUR.count


def test_a_bad_phone_is_named_and_nothing_is_sent() -> None:
    with pytest.raises(PortalError) as refused:
        code_send(phone="12", purpose=CodePurpose.LOGIN)
    assert refused.value.field == "phone" and "12" in str(refused.value.message)
    assert not PhoneCode.objects.exists() and not OutboxMessage.objects.exists()
    assert not code_verify(phone="12", purpose=CodePurpose.LOGIN, code="000000")


def test_without_redis_no_code_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_args: object) -> bool:
        raise ratelimit.RateLimitUnavailable("connection refused")

    monkeypatch.setattr(codes, "limit_reached", down)
    with pytest.raises(TooManyRequests) as refused:
        code_send(phone=PHONE, purpose=CodePurpose.LOGIN)
    assert refused.value.code == "codes_unavailable"
    assert not PhoneCode.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_demo_writes_the_code_to_the_log(
    caplog: pytest.LogCaptureFixture, settings: object
) -> None:
    settings.DEMO_MODE = True  # type: ignore[attr-defined]
    code_send(phone=PHONE, purpose=CodePurpose.BOOKING)
    with caplog.at_level(logging.WARNING, logger="portal.codes"):
        assert outbox_relay(channel=CODE_CHANNEL).delivered == 1
    assert sent_code() in caplog.text
    settings.DEMO_MODE = False  # type: ignore[attr-defined]
    code_send(phone="+79160000001", purpose=CodePurpose.BOOKING)
    assert outbox_relay(channel=CODE_CHANNEL).retried == 1
    waiting = OutboxMessage.objects.filter(state=OutboxState.PENDING).get()
    assert "No messaging provider" in waiting.last_error


def test_the_admin_lists_the_doctors_online_settings(client: object) -> None:
    from django.test import Client
    from django.urls import reverse

    from portal.models import DoctorOnlineSettings
    from tests.admin_site.conftest import login_verified
    from tests.core.factories import BranchFactory, UserFactory
    from tests.scheduling.factories import doctor

    settings_row = DoctorOnlineSettings.objects.create(
        doctor=doctor(BranchFactory(), name="Dr Online"), show_price=False
    )
    superuser = UserFactory.create(username="root", is_superuser=True, is_staff=True)
    admin = login_verified(Client(HTTP_ACCEPT_LANGUAGE="en"), superuser)
    listing = admin.get(reverse("admin:portal_doctoronlinesettings_changelist"), {"q": "Online"})
    assert listing.status_code == 200
    assert settings_row in list(listing.context["cl"].result_list)
    page = admin.get(reverse("admin:portal_doctoronlinesettings_change", args=[settings_row.pk]))
    assert page.status_code == 200
