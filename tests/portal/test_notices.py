"""The portal's text messages: the booking confirmation names the time in the branch's zone, the
doctor, the address and the signed link; until a messaging gateway exists the demo logs them and
a real installation keeps them queued."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from django.utils import translation

from clinic.outbox.models import OutboxMessage
from portal.notices import BOOKING_CHANNEL, booking_confirmation_queue, phone_text_deliver
from scheduling.models import BookingChannel
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.scheduling.factories import local, tomorrow

from .test_pages import Clinic, clinic_build

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(settings: Any) -> Clinic:
    return clinic_build(settings)


def test_the_confirmation_names_the_visit_and_carries_the_link(site: Clinic) -> None:
    starts_at = local(tomorrow(), "10:00")
    appointment = appointment_book(
        actor=site.account,
        request=BookingRequest(
            branch=site.branch,
            services=[site.service],
            starts_at=starts_at,
            channel=BookingChannel.PORTAL,
            doctor=site.doctor,
            primary=PrimaryPatient(
                last_name="Иванова",
                first_name="Мария",
                patronymic="",
                phone="+79165551234",
                birth_date=datetime.date(1980, 1, 1),
            ),
        ),
    )
    with translation.override("en"):
        booking_confirmation_queue(
            appointment=appointment, phone="+79165551234", link="https://clinic.example/a/x/"
        )
    message = OutboxMessage.objects.get(channel=BOOKING_CHANNEL)
    text = message.payload["text"]
    assert message.payload["to"] == "+79165551234"
    assert "10:00" in text
    assert "Petrov I. I." in text and "Moscow, Tverskaya 1" in text
    assert "https://clinic.example/a/x/" in text


def test_the_demo_logs_the_text_and_a_real_installation_keeps_it_queued(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    message = OutboxMessage(channel=BOOKING_CHANNEL, payload={"to": "+7916", "text": "Hello"})
    settings.DEMO_MODE = True
    with caplog.at_level(logging.WARNING):
        phone_text_deliver(message)
    assert "Hello" in caplog.text
    settings.DEMO_MODE = False
    with pytest.raises(ConnectionError):
        phone_text_deliver(message)


def test_with_an_sms_provider_the_text_goes_out_as_an_sms(settings: Any) -> None:
    from integrations.messaging.fake_twilio import FakeTwilio

    fake = FakeTwilio.start(port=0)
    try:
        settings.MESSAGING_PROVIDERS = {
            "sms": {
                "provider": "twilio",
                "account_sid": fake.account_sid,
                "auth_token": fake.auth_token,
                "sms_from": "+15005550006",
                "base_url": fake.url,
            }
        }
        settings.DEMO_MODE = False
        message = OutboxMessage.objects.create(
            channel=BOOKING_CHANNEL, payload={"to": "+79165551234", "text": "Hello"}
        )
        phone_text_deliver(message)
        posts = [r for r in fake.sent if r["method"] == "POST"]
        assert [(r["form"]["To"], r["form"]["Body"]) for r in posts] == [("+79165551234", "Hello")]
    finally:
        fake.stop()
