"""Sending through the real twilio client and a fake Twilio over HTTP: the guards (consent, quiet
hours, caps, moved visits), exactly-once under doubled workers, WhatsApp falling back to SMS,
signed delivery reports applied without going backwards, and two-way confirm / cancel."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from integrations.messaging.fake_twilio import FakeTwilio
from messaging import planner, sender
from messaging.models import (
    BranchSender,
    Conversation,
    Message,
    MessageChannel,
    MessageState,
    MessageTemplate,
    RuleEvent,
)
from patients.models import Consent
from scheduling.models import AppointmentStatus, CommunicationStatus
from scheduling.services import appointment_move
from tests.scheduling.factories import local

from .conftest import PHONE, Clinic

pytestmark = pytest.mark.django_db

SITE = "http://127.0.0.1:9"  # nothing listens: the fake's callbacks are replayed by the tests
WHATSAPP_CONTENT = "HX" + "0" * 31 + "1"


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilio]:
    fake = FakeTwilio.start(port=0)
    config = {
        "provider": "twilio",
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "sms_from": "+15005550001",
        "whatsapp_from": "+14155238886",
        "base_url": fake.url,
        "timeout": 5,
    }
    settings.MESSAGING_PROVIDERS = {"sms": config, "whatsapp": config}
    settings.SITE_URL = SITE
    yield fake
    fake.stop()


def in_days(days: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=days)


def templates(clinic: Clinic, code: str = "reminder") -> None:
    for channel in (MessageChannel.SMS, MessageChannel.WHATSAPP):
        MessageTemplate.objects.create(
            organization=clinic.organization,
            code=code,
            name=code,
            channel=channel,
            language="ru",
            body="{first_name}, ждём вас {date} в {time}, {doctor}, {branch_address}. "
            "Ответьте 1 — приду, 2 — отменить.",
            whatsapp_content_sid=WHATSAPP_CONTENT if channel == MessageChannel.WHATSAPP else "",
            whatsapp_variables=["first_name", "time"],
        )


def planned_reminder(clinic: Clinic, channels: list[str] | None = None, **rule: Any) -> Message:
    visit = clinic.book(in_days(2), "10:00")
    templates(clinic)
    clinic.rule(
        RuleEvent.DAYS_BEFORE,
        template_code="reminder",
        offset_days=1,
        send_time=datetime.time(12, 0),
        channels=channels or [MessageChannel.SMS],
        sets_communication_status=CommunicationStatus.REMINDED,
        asks_to_confirm=True,
        **rule,
    )
    planner.plan_reminders(local(in_days(1), "11:00"))
    return Message.objects.get(appointment=visit)


def test_a_due_reminder_goes_out_once_with_its_text(clinic: Clinic, twilio: FakeTwilio) -> None:
    message = planned_reminder(clinic)
    noon = local(in_days(1), "12:00")
    assert sender.send_due(noon - datetime.timedelta(minutes=1)) == 0  # not due yet
    assert sender.send_due(noon) == 1
    assert sender.send_due(noon) == 0
    sent = [request for request in twilio.sent if request["method"] == "POST"]
    assert len(sent) == 1
    assert sent[0]["form"]["From"] == "+15005550006"  # the branch's own number
    message.refresh_from_db()
    assert message.state == MessageState.QUEUED
    assert message.to == PHONE and message.channel == MessageChannel.SMS
    assert message.body.startswith("Мария, ждём вас")
    assert "10:00" in message.body and "Petrov I. I." in message.body
    assert message.provider_id.startswith("SM")
    assert message.appointment is not None
    message.appointment.refresh_from_db()
    assert message.appointment.communication_status == CommunicationStatus.REMINDED


def test_quiet_hours_hold_the_message_until_the_morning(clinic: Clinic, twilio: FakeTwilio) -> None:
    message = planned_reminder(clinic)
    late = local(in_days(1), "22:30")
    sender.send_due(late)
    message.refresh_from_db()
    assert message.state == MessageState.PLANNED
    assert message.due_at == local(in_days(2), "09:00")
    assert not twilio.sent


def test_without_consent_the_message_is_skipped_with_the_reason(
    clinic: Clinic, twilio: FakeTwilio
) -> None:
    message = planned_reminder(clinic)
    Consent.objects.filter(person=clinic.patient, channel=MessageChannel.SMS).update(
        revoked_on=timezone.localdate()
    )
    with_english(lambda: sender.send_due(local(in_days(1), "12:00")))
    message.refresh_from_db()
    assert message.state == MessageState.SKIPPED
    assert "no consent to SMS" in message.skip_reason
    assert not twilio.sent


def with_english(call: Any) -> Any:
    from django.utils import translation

    with translation.override("en"):
        return call()


def test_the_daily_cap_skips_further_messages(clinic: Clinic, twilio: FakeTwilio) -> None:
    BranchSender.objects.filter(branch=clinic.branch).update(daily_cap=1)
    Message.objects.create(
        organization=clinic.organization,
        patient=clinic.patient,
        channel=MessageChannel.SMS,
        to=PHONE,
        body="earlier",
        state=MessageState.DELIVERED,
        due_at=local(in_days(1), "09:00"),
        state_changed_at=local(in_days(1), "09:00"),
    )
    message = planned_reminder(clinic)
    with_english(lambda: sender.send_due(local(in_days(1), "12:00")))
    message.refresh_from_db()
    assert message.state == MessageState.SKIPPED
    assert "limit" in message.skip_reason


def test_a_moved_visit_drops_its_old_reminder(clinic: Clinic, twilio: FakeTwilio) -> None:
    message = planned_reminder(clinic)
    assert message.appointment is not None
    appointment_move(
        actor=clinic.registrar,
        appointment=message.appointment,
        starts_at=local(in_days(2), "15:00"),
    )
    sender.send_due(local(in_days(1), "12:00"))
    message.refresh_from_db()
    assert message.state == MessageState.SKIPPED
    assert not twilio.sent


def test_a_missing_template_is_named(clinic: Clinic, twilio: FakeTwilio) -> None:
    message = planned_reminder(clinic)
    MessageTemplate.objects.all().delete()
    with_english(lambda: sender.send_due(local(in_days(1), "12:00")))
    message.refresh_from_db()
    assert message.state == MessageState.SKIPPED
    assert "reminder" in message.skip_reason


def test_whatsapp_outside_the_window_sends_the_template_and_falls_back_to_sms(
    clinic: Clinic, twilio: FakeTwilio
) -> None:
    twilio.add_template(WHATSAPP_CONTENT, "{{1}}, ждём вас в {{2}}")
    twilio.fail_number(f"whatsapp:{PHONE}", 63016, on_create=True)
    message = planned_reminder(clinic, channels=[MessageChannel.WHATSAPP, MessageChannel.SMS])
    noon = local(in_days(1), "12:00")
    sender.send_due(noon)
    message.refresh_from_db()
    assert message.state == MessageState.UNDELIVERED
    assert message.error_code == "63016"
    whatsapp_request = next(r for r in twilio.sent if r["method"] == "POST")
    assert whatsapp_request["form"]["ContentSid"] == WHATSAPP_CONTENT
    assert "Мария" in whatsapp_request["form"]["ContentVariables"]
    fallback = Message.objects.get(fallback_of=message)
    assert fallback.channel == MessageChannel.SMS
    sender.send_due(noon)
    fallback.refresh_from_db()
    assert fallback.state == MessageState.QUEUED
    assert fallback.to == PHONE


def test_a_provider_that_is_down_gets_the_message_again_later(
    clinic: Clinic, twilio: FakeTwilio
) -> None:
    message = planned_reminder(clinic)
    twilio.set_mode("busy")
    noon = local(in_days(1), "12:00")
    sender.send_due(noon)
    message.refresh_from_db()
    assert message.state == MessageState.PLANNED
    assert message.attempts == 1
    assert message.due_at > noon
    twilio.set_mode("ok")
    sender.send_due(message.due_at)
    message.refresh_from_db()
    assert message.state == MessageState.QUEUED


def test_a_message_stuck_in_sending_is_failed_not_resent(clinic: Clinic) -> None:
    message = planned_reminder(clinic)
    Message.objects.filter(pk=message.pk).update(
        state=MessageState.SENDING, state_changed_at=timezone.now() - datetime.timedelta(hours=1)
    )
    assert sender.sending_reap() == 1
    message.refresh_from_db()
    assert message.state == MessageState.FAILED


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_each_message_once(clinic: Clinic, twilio: FakeTwilio) -> None:
    templates(clinic)
    for hour in ("09:00", "10:00", "11:00", "12:00", "13:00", "14:00"):
        clinic.book(in_days(2), hour)
    clinic.rule(
        RuleEvent.DAYS_BEFORE,
        template_code="reminder",
        offset_days=1,
        send_time=datetime.time(12, 0),
    )
    planner.plan_reminders(local(in_days(1), "11:00"))
    BranchSender.objects.filter(branch=clinic.branch).update(daily_cap=100)
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            sender.send_due(local(in_days(1), "12:00"), batch=2)
            sender.send_due(local(in_days(1), "12:00"), batch=2)
            sender.send_due(local(in_days(1), "12:00"), batch=2)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    posts = [r for r in twilio.sent if r["method"] == "POST"]
    assert len(posts) == 6
    assert Message.objects.filter(state=MessageState.QUEUED).count() == 6


# -- delivery reports ------------------------------------------------------------------------


def replay(client: Client, outcome: dict[str, Any], *, signature: str | None = None) -> Any:
    parts = urlsplit(outcome["url"])
    path = f"{parts.path}?{parts.query}" if parts.query else parts.path
    return client.post(
        path,
        data=outcome["params"],
        HTTP_X_TWILIO_SIGNATURE=signature if signature is not None else outcome["signature"],
    )


def test_signed_reports_move_the_state_forward_only_and_forged_ones_are_refused(
    clinic: Clinic, twilio: FakeTwilio
) -> None:
    message = planned_reminder(clinic)
    sender.send_due(local(in_days(1), "12:00"))
    assert twilio.settle()
    reports = twilio.callbacks
    assert [r["params"]["MessageStatus"] for r in reports] == ["sent", "delivered"]
    client = Client()
    assert replay(client, reports[0], signature="forged").status_code == 403
    forged = dict(reports[1], params={**reports[1]["params"], "MessageStatus": "read"})
    assert replay(client, forged).status_code == 403  # the body was altered after signing
    assert replay(client, reports[1]).status_code == 204
    assert replay(client, reports[0]).status_code == 204  # late and out of order
    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED


def test_an_undelivered_whatsapp_report_falls_back_to_sms(
    clinic: Clinic, twilio: FakeTwilio
) -> None:
    twilio.add_template(WHATSAPP_CONTENT, "{{1}}, ждём вас в {{2}}")
    twilio.fail_number(f"whatsapp:{PHONE}", 63024)
    message = planned_reminder(clinic, channels=[MessageChannel.WHATSAPP, MessageChannel.SMS])
    sender.send_due(local(in_days(1), "12:00"))
    assert twilio.settle()
    for report in twilio.callbacks:
        assert replay(Client(), report).status_code == 204
    message.refresh_from_db()
    assert message.state in (MessageState.FAILED, MessageState.UNDELIVERED)
    assert Message.objects.filter(fallback_of=message, channel=MessageChannel.SMS).exists()


# -- two-way ---------------------------------------------------------------------------------


def inbound(client: Client, fake: FakeTwilio, body: str, sender_number: str = PHONE) -> Any:
    params = {
        "AccountSid": fake.account_sid,
        "MessageSid": "SM" + str(abs(hash((body, sender_number, timezone.now()))))[:30],
        "From": sender_number,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }
    url = f"{SITE}/messaging/twilio/inbound/"
    signature = RequestValidator(fake.auth_token).compute_signature(url, params)
    return client.post("/messaging/twilio/inbound/", data=params, HTTP_X_TWILIO_SIGNATURE=signature)


def test_yes_confirms_the_visit_and_is_answered(
    clinic: Clinic, twilio: FakeTwilio, settings: Any
) -> None:
    settings.WEBSITE_BOOKING_USERNAME = clinic.registrar.username
    message = planned_reminder(clinic)
    sender.send_due(local(in_days(1), "12:00"))
    response = inbound(Client(), twilio, "Да")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert message.appointment is not None
    message.appointment.refresh_from_db()
    assert message.appointment.status.code == AppointmentStatus.CONFIRMED
    assert message.appointment.communication_status == CommunicationStatus.CONFIRMED
    reply = Message.objects.filter(rule__isnull=True, direction="out").get()
    assert reply.to == PHONE and reply.state == MessageState.PLANNED
    conversation = Conversation.objects.get(address=PHONE)
    assert conversation.patient == clinic.patient
    assert not conversation.needs_answer


def test_no_cancels_and_other_text_waits_for_the_desk(
    clinic: Clinic, twilio: FakeTwilio, settings: Any
) -> None:
    settings.WEBSITE_BOOKING_USERNAME = clinic.registrar.username
    message = planned_reminder(clinic)
    sender.send_due(local(in_days(1), "12:00"))
    inbound(Client(), twilio, "Можно перенести на вечер?")
    conversation = Conversation.objects.get(address=PHONE)
    assert conversation.needs_answer
    inbound(Client(), twilio, "2")
    assert message.appointment is not None
    message.appointment.refresh_from_db()
    assert message.appointment.status.code == AppointmentStatus.CANCELLED
    assert message.appointment.communication_status == CommunicationStatus.DECLINED
    assert Message.objects.filter(direction="in").count() == 2


def test_an_unsigned_inbound_message_is_refused(clinic: Clinic, twilio: FakeTwilio) -> None:
    response = Client().post(
        "/messaging/twilio/inbound/",
        data={"From": PHONE, "To": "+15005550006", "Body": "1", "MessageSid": "SMx"},
        HTTP_X_TWILIO_SIGNATURE="bad",
    )
    assert response.status_code == 403
    assert not Message.objects.exists()
