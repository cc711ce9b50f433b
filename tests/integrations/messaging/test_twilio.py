"""The Twilio driver, through the real ``twilio`` library, against the fake Twilio over real
HTTP on 127.0.0.1, and the webhook helpers against what the fake posts."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.http import QueryDict
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from integrations.messaging import (
    Channel,
    DeliveryStatus,
    OutgoingMessage,
    ProviderRejected,
    ProviderUnavailable,
    StatusUpdate,
    provider_for,
    status_advances,
)
from integrations.messaging.fake_twilio import FakeTwilio
from integrations.messaging.twilio_provider import (
    EMPTY_TWIML,
    TwilioProvider,
    inbound_parse,
    is_channel_undeliverable,
    is_opt_out,
    signature_valid,
    status_parse,
)

from .conftest import Receiver

ACCOUNT_SID = "AC" + "5e1f" * 8
AUTH_TOKEN = "clinic_test_auth_token"
SMS_FROM = "+15005550006"
WHATSAPP_FROM = "+14155238886"
PATIENT = "+79161234567"
REMINDER_TEMPLATE = "HX" + "a1b2c3d4" * 4
PROJECT_DIR = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    server = FakeTwilio.start(port=0, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    server.add_template(REMINDER_TEMPLATE, "Приём {{1}} в {{2}}. Ответьте 1, чтобы подтвердить.")
    yield server
    server.stop()


def provider(fake: FakeTwilio, **overrides: Any) -> TwilioProvider:
    config = {
        "provider": "twilio",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "sms_from": SMS_FROM,
        "whatsapp_from": WHATSAPP_FROM,
        "base_url": fake.url,
        "timeout": 5,
        **overrides,
    }
    driver = provider_for(config)
    assert isinstance(driver, TwilioProvider)
    return driver


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sms_goes_to_the_messages_api_with_auth_and_the_reference_in_the_callback(
    fake: FakeTwilio, receiver: Receiver
) -> None:
    callback = receiver.url("/webhooks/twilio/status?message=42")

    sent = provider(fake).send(
        OutgoingMessage(
            PATIENT,
            "Ваш приём завтра в 10:00",
            Channel.SMS,
            status_callback=callback,
            idempotency_key="reminder-42",
        )
    )

    [request] = fake.sent
    headers = {name.lower(): value for name, value in request["headers"].items()}
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert (request["method"], request["path"], request["status"]) == (
        "POST",
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        201,
    )
    assert headers["authorization"] == f"Basic {credentials}"
    assert request["form"] == {
        "To": PATIENT,
        "From": SMS_FROM,
        "Body": "Ваш приём завтра в 10:00",
        "StatusCallback": f"{callback}&client_ref=reminder-42",
    }
    assert sent.provider_id in fake.messages
    assert sent.provider_id.startswith("SM") and len(sent.provider_id) == 34
    assert (sent.status, sent.channel, sent.error_code) == (
        DeliveryStatus.QUEUED,
        Channel.SMS,
        None,
    )
    assert (sent.raw["to"], sent.raw["from"], sent.raw["body"], sent.raw["status"]) == (
        PATIENT,
        SMS_FROM,
        "Ваш приём завтра в 10:00",
        "queued",
    )


def test_whatsapp_free_text_uses_whatsapp_addresses(fake: FakeTwilio) -> None:
    sent = provider(fake).send(OutgoingMessage(PATIENT, "Добрый день!", Channel.WHATSAPP))

    [request] = fake.sent
    assert request["form"] == {
        "To": f"whatsapp:{PATIENT}",
        "From": f"whatsapp:{WHATSAPP_FROM}",
        "Body": "Добрый день!",
    }
    assert (sent.channel, sent.raw["to"]) == (Channel.WHATSAPP, f"whatsapp:{PATIENT}")


def test_whatsapp_template_sends_content_sid_and_variables_without_body(
    fake: FakeTwilio,
) -> None:
    sent = provider(fake).send(
        OutgoingMessage(
            f"whatsapp:{PATIENT}",
            "ignored outside the window",
            Channel.WHATSAPP,
            content_sid=REMINDER_TEMPLATE,
            content_variables={"1": "12 мая", "2": "10:30"},
        )
    )

    [request] = fake.sent
    assert request["form"] == {
        "To": f"whatsapp:{PATIENT}",
        "From": f"whatsapp:{WHATSAPP_FROM}",
        "ContentSid": REMINDER_TEMPLATE,
        "ContentVariables": '{"1": "12 мая", "2": "10:30"}',
    }
    assert json.loads(request["form"]["ContentVariables"]) == {"1": "12 мая", "2": "10:30"}
    assert sent.raw["body"] == "Приём 12 мая в 10:30. Ответьте 1, чтобы подтвердить."


def test_a_messaging_service_alone_sends_on_both_channels_without_from(
    fake: FakeTwilio,
) -> None:
    service_sid = "MG" + "0" * 32
    driver = provider(fake, sms_from="", whatsapp_from="", messaging_service_sid=service_sid)

    sent = driver.send(OutgoingMessage(PATIENT, "Hello", Channel.WHATSAPP))

    assert driver.channels == frozenset({Channel.SMS, Channel.WHATSAPP})
    [request] = fake.sent
    assert request["form"] == {
        "To": f"whatsapp:{PATIENT}",
        "MessagingServiceSid": service_sid,
        "Body": "Hello",
    }
    assert (sent.status, sent.raw["status"]) == (DeliveryStatus.QUEUED, "accepted")


def test_wrong_credentials_are_rejected_with_twilio_code_20003(fake: FakeTwilio) -> None:
    with pytest.raises(ProviderRejected) as raised:
        provider(fake, auth_token="not-the-token").send(
            OutgoingMessage(PATIENT, "Hello", Channel.SMS)
        )

    assert (raised.value.code, raised.value.status_code) == ("20003", 401)
    assert (raised.value.undeliverable_on_channel, raised.value.opted_out) == (False, False)
    assert fake.messages == {}


def test_twilio_down_is_unavailable_and_may_have_sent(fake: FakeTwilio) -> None:
    fake.set_mode("down")

    with pytest.raises(ProviderUnavailable) as raised:
        provider(fake).send(OutgoingMessage(PATIENT, "Hello", Channel.SMS))

    assert raised.value.may_have_been_sent is True
    assert [request["status"] for request in fake.sent] == [500]
    assert fake.messages == {}


def test_twilio_busy_is_unavailable_and_nothing_was_sent(fake: FakeTwilio) -> None:
    fake.set_mode("busy")

    with pytest.raises(ProviderUnavailable) as raised:
        provider(fake).send(OutgoingMessage(PATIENT, "Hello", Channel.SMS))

    assert raised.value.may_have_been_sent is False
    assert [request["status"] for request in fake.sent] == [429]


def test_no_server_is_unavailable_and_nothing_was_sent() -> None:
    driver = TwilioProvider(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        sms_from=SMS_FROM,
        base_url=f"http://127.0.0.1:{free_port()}",
        timeout=2,
    )

    with pytest.raises(ProviderUnavailable) as raised:
        driver.send(OutgoingMessage(PATIENT, "Hello", Channel.SMS))

    assert raised.value.may_have_been_sent is False


def test_a_timeout_is_unavailable_although_twilio_created_the_message(fake: FakeTwilio) -> None:
    fake.set_mode("slow", slow_seconds=1.5)

    with pytest.raises(ProviderUnavailable) as raised:
        provider(fake, timeout=0.3).send(OutgoingMessage(PATIENT, "Hello", Channel.SMS))

    assert raised.value.may_have_been_sent is True
    assert [message["to"] for message in fake.messages.values()] == [PATIENT]


def test_an_opted_out_number_is_rejected_as_opted_out(fake: FakeTwilio) -> None:
    fake.fail_number(PATIENT, 21610, on_create=True)

    with pytest.raises(ProviderRejected) as raised:
        provider(fake).send(OutgoingMessage(PATIENT, "Hello", Channel.SMS))

    assert (raised.value.code, raised.value.status_code) == ("21610", 400)
    assert "Attempt to send to unsubscribed recipient" in raised.value.description
    assert (raised.value.opted_out, raised.value.undeliverable_on_channel) == (True, False)


def test_a_number_without_whatsapp_is_rejected_as_undeliverable_on_the_channel(
    fake: FakeTwilio,
) -> None:
    fake.fail_number(f"whatsapp:{PATIENT}", 63003, on_create=True)

    with pytest.raises(ProviderRejected) as raised:
        provider(fake).send(OutgoingMessage(PATIENT, "Hello", Channel.WHATSAPP))
    sms = provider(fake).send(OutgoingMessage(PATIENT, "Hello", Channel.SMS))

    assert (raised.value.code, raised.value.undeliverable_on_channel) == ("63003", True)
    assert sms.status is DeliveryStatus.QUEUED


def test_an_invalid_number_is_rejected_by_twilio(fake: FakeTwilio) -> None:
    with pytest.raises(ProviderRejected) as raised:
        provider(fake).send(OutgoingMessage("89161234567", "Hello", Channel.SMS))

    assert (raised.value.code, raised.value.status_code) == ("21211", 400)
    assert raised.value.undeliverable_on_channel is False


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (OutgoingMessage(PATIENT, "", Channel.SMS), "21602"),
        (OutgoingMessage("  ", "Hello", Channel.SMS), "21604"),
        (OutgoingMessage(f"whatsapp:{PATIENT}", "Hello", Channel.SMS), "21211"),
        (
            OutgoingMessage(PATIENT, "", Channel.WHATSAPP, content_variables={"1": "x"}),
            "21654",
        ),
        (OutgoingMessage(PATIENT, "", Channel.WHATSAPP, content_sid="HX123"), "21655"),
        (
            OutgoingMessage(
                PATIENT,
                "",
                Channel.WHATSAPP,
                content_sid=REMINDER_TEMPLATE,
                content_variables={"1": "12 мая\n10:30"},
            ),
            "21656",
        ),
        (
            OutgoingMessage(
                PATIENT,
                "",
                Channel.WHATSAPP,
                content_sid=REMINDER_TEMPLATE,
                content_variables={"1": " "},
            ),
            "21656",
        ),
        (OutgoingMessage("patient@example.org", "Hello", Channel.EMAIL), "unsupported_channel"),
    ],
)
def test_messages_twilio_would_refuse_are_refused_before_sending(
    fake: FakeTwilio, message: OutgoingMessage, code: str
) -> None:
    with pytest.raises(ProviderRejected) as raised:
        provider(fake).send(message)

    assert raised.value.code == code
    assert fake.sent == []


def test_whatsapp_without_a_whatsapp_sender_is_an_unsupported_channel(fake: FakeTwilio) -> None:
    driver = provider(fake, whatsapp_from="")

    with pytest.raises(ProviderRejected) as raised:
        driver.send(OutgoingMessage(PATIENT, "Hello", Channel.WHATSAPP))

    assert driver.channels == frozenset({Channel.SMS})
    assert raised.value.code == "unsupported_channel"
    assert fake.sent == []


def test_the_fake_validates_what_the_driver_does_not_check(fake: FakeTwilio) -> None:
    """Requests straight to the fake: its answers are Twilio's error bodies."""
    url = f"{fake.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    auth = (ACCOUNT_SID, AUTH_TOKEN)

    def post(form: dict[str, str]) -> tuple[int, Any]:
        answer = requests.post(url, data=form, auth=auth, timeout=5)
        return answer.status_code, answer.json()["code"]

    assert post({"From": SMS_FROM, "Body": "x"}) == (400, 21604)
    assert post({"To": PATIENT, "Body": "x"}) == (400, 21603)
    assert post({"To": PATIENT, "From": SMS_FROM}) == (400, 21602)
    assert post({"To": PATIENT, "From": SMS_FROM, "Body": "x" * 1601}) == (400, 21617)
    assert post({"To": f"whatsapp:{PATIENT}", "From": SMS_FROM, "Body": "x"}) == (400, 63007)
    assert post(
        {"To": PATIENT, "From": SMS_FROM, "ContentSid": "HX" + "0" * 32}  # not registered
    ) == (400, 21655)
    assert post(
        {
            "To": PATIENT,
            "From": SMS_FROM,
            "ContentSid": REMINDER_TEMPLATE,
            "ContentVariables": "[1]",
        }
    ) == (400, 21656)
    assert post({"To": PATIENT, "From": SMS_FROM, "Body": "x", "StatusCallback": "ftp://x"}) == (
        400,
        21609,
    )
    other_account = url.replace(ACCOUNT_SID, "AC" + "0" * 32)
    assert requests.post(other_account, data={}, auth=auth, timeout=5).status_code == 404
    assert fake.messages == {}


def test_status_callbacks_arrive_in_order_signed_and_are_accepted(
    fake: FakeTwilio, receiver: Receiver
) -> None:
    callback = receiver.url("/webhooks/twilio/status")
    sent = provider(fake).send(
        OutgoingMessage(
            PATIENT, "Hello", Channel.SMS, status_callback=callback, idempotency_key="m-7"
        )
    )

    assert fake.settle()
    deliveries = receiver.wait_for(2)

    assert [delivery.url for delivery in deliveries] == [f"{callback}?client_ref=m-7"] * 2
    updates = [status_parse(delivery.form) for delivery in deliveries]
    assert updates == [
        StatusUpdate(sent.provider_id, DeliveryStatus.SENT, None),
        StatusUpdate(sent.provider_id, DeliveryStatus.DELIVERED, None),
    ]
    for delivery in deliveries:
        signature = delivery.headers["x-twilio-signature"]
        assert signature_valid(delivery.url, delivery.form, signature, AUTH_TOKEN)
        assert delivery.form["AccountSid"] == ACCOUNT_SID
        assert delivery.form["To"] == PATIENT
    assert provider(fake).fetch(sent.provider_id).status is DeliveryStatus.DELIVERED


def test_forged_or_altered_callbacks_are_refused(fake: FakeTwilio, receiver: Receiver) -> None:
    provider(fake).send(
        OutgoingMessage(
            PATIENT, "Hello", Channel.SMS, status_callback=receiver.url("/webhooks/status")
        )
    )
    assert fake.settle()
    [delivery, _] = receiver.wait_for(2)
    signature = delivery.headers["x-twilio-signature"]
    altered = {**delivery.form, "MessageStatus": "delivered"}
    added = {**delivery.form, "ErrorCode": "30003"}
    forged = RequestValidator("someone-else").compute_signature(delivery.url, delivery.form)

    assert signature_valid(delivery.url, delivery.form, signature, AUTH_TOKEN)
    assert not signature_valid(delivery.url, altered, signature, AUTH_TOKEN)
    assert not signature_valid(delivery.url, added, signature, AUTH_TOKEN)
    assert not signature_valid(f"{delivery.url}?x=1", delivery.form, signature, AUTH_TOKEN)
    assert not signature_valid(delivery.url, delivery.form, forged, AUTH_TOKEN)
    assert not signature_valid(delivery.url, delivery.form, signature, "other-token")
    assert not signature_valid(delivery.url, delivery.form, "", AUTH_TOKEN)


def test_signature_check_reads_a_django_querydict(fake: FakeTwilio, receiver: Receiver) -> None:
    provider(fake).send(
        OutgoingMessage(
            PATIENT, "Hello", Channel.SMS, status_callback=receiver.url("/webhooks/status")
        )
    )
    assert fake.settle()
    [delivery, _] = receiver.wait_for(2)
    posted = QueryDict(mutable=True)
    for key, value in delivery.form.items():
        posted[key] = value

    assert signature_valid(delivery.url, posted, delivery.headers["x-twilio-signature"], AUTH_TOKEN)
    assert status_parse(posted).status is DeliveryStatus.SENT


def test_whatsapp_outside_the_window_fails_later_with_63016_and_asks_for_another_channel(
    fake: FakeTwilio, receiver: Receiver
) -> None:
    fake.fail_number(f"whatsapp:{PATIENT}", 63016)
    sent = provider(fake).send(
        OutgoingMessage(
            PATIENT, "Hello", Channel.WHATSAPP, status_callback=receiver.url("/webhooks/status")
        )
    )

    assert fake.settle()
    [delivery] = receiver.wait_for(1)
    update = status_parse(delivery.form)

    assert sent.status is DeliveryStatus.QUEUED
    assert update == StatusUpdate(sent.provider_id, DeliveryStatus.FAILED, "63016")
    assert is_channel_undeliverable(update.error_code)
    assert delivery.form["ChannelPrefix"] == "whatsapp"
    fetched = provider(fake).fetch(sent.provider_id)
    assert (fetched.status, fetched.error_code, fetched.channel) == (
        DeliveryStatus.FAILED,
        "63016",
        Channel.WHATSAPP,
    )


def test_an_unreachable_sms_number_is_sent_then_undelivered_with_30003(
    fake: FakeTwilio, receiver: Receiver
) -> None:
    fake.fail_number(PATIENT, 30003)
    sent = provider(fake).send(
        OutgoingMessage(
            PATIENT, "Hello", Channel.SMS, status_callback=receiver.url("/webhooks/status")
        )
    )

    assert fake.settle()
    updates = [status_parse(delivery.form) for delivery in receiver.wait_for(2)]

    assert updates == [
        StatusUpdate(sent.provider_id, DeliveryStatus.SENT, None),
        StatusUpdate(sent.provider_id, DeliveryStatus.UNDELIVERED, "30003"),
    ]
    assert not is_channel_undeliverable("30003")
    assert not is_opt_out("30003")


def test_whatsapp_read_receipts_come_after_delivery(receiver: Receiver) -> None:
    with FakeTwilio.start(
        port=0, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, whatsapp_read=True
    ) as fake:
        provider(fake).send(
            OutgoingMessage(
                PATIENT,
                "Hello",
                Channel.WHATSAPP,
                status_callback=receiver.url("/webhooks/status"),
            )
        )
        assert fake.settle()
    statuses = [status_parse(delivery.form).status for delivery in receiver.wait_for(3)]

    assert statuses == [DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ]


def test_fetch_refuses_a_malformed_sid_and_reports_an_unknown_one(fake: FakeTwilio) -> None:
    with pytest.raises(ProviderRejected) as malformed:
        provider(fake).fetch("../Accounts")
    with pytest.raises(ProviderRejected) as unknown:
        provider(fake).fetch("SM" + "0" * 32)

    assert malformed.value.code == "invalid_message"
    assert (unknown.value.code, unknown.value.status_code) == ("20404", 404)
    assert [request["path"] for request in fake.sent] == [
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM{'0' * 32}.json"
    ]


def test_an_inbound_whatsapp_reply_is_signed_and_parsed(
    fake: FakeTwilio, receiver: Receiver
) -> None:
    webhook = receiver.url("/webhooks/twilio/inbound")

    outcome = fake.inbound(
        f"whatsapp:{PATIENT}",
        f"whatsapp:{WHATSAPP_FROM}",
        "Подтверждаю",
        webhook,
        profile_name="Анна",
        button_payload="confirm-42",
    )

    [delivery] = receiver.deliveries
    message = inbound_parse(delivery.form)
    assert (outcome["status"], outcome["body"]) == (200, EMPTY_TWIML)
    assert signature_valid(
        delivery.url, delivery.form, delivery.headers["x-twilio-signature"], AUTH_TOKEN
    )
    assert (
        message.channel,
        message.sender,
        message.recipient,
        message.body,
        message.profile_name,
        message.button_payload,
        message.media_urls,
    ) == (
        Channel.WHATSAPP,
        PATIENT,
        WHATSAPP_FROM,
        "Подтверждаю",
        "Анна",
        "confirm-42",
        (),
    )
    assert message.provider_id == delivery.form["MessageSid"]
    assert message.raw == delivery.form
    assert fake.inbound_deliveries == [outcome]


def test_an_inbound_sms_with_a_picture_is_parsed(fake: FakeTwilio, receiver: Receiver) -> None:
    fake.inbound(
        PATIENT,
        SMS_FROM,
        "",
        receiver.url("/webhooks/twilio/inbound"),
        media_urls=["https://api.twilio.com/media/ME1"],
    )

    [delivery] = receiver.deliveries
    message = inbound_parse(delivery.form)
    assert (message.channel, message.sender, message.body, message.media_urls) == (
        Channel.SMS,
        PATIENT,
        "",
        ("https://api.twilio.com/media/ME1",),
    )


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"From": PATIENT, "To": SMS_FROM},
        {"MessageSid": "SM1", "To": SMS_FROM},
        {"MessageSid": "SM1", "From": "messenger:123", "To": SMS_FROM},
    ],
)
def test_an_inbound_form_without_what_twilio_always_sends_is_refused(
    form: dict[str, str],
) -> None:
    with pytest.raises(ProviderRejected) as raised:
        inbound_parse(form)

    assert raised.value.code == "invalid_webhook"


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"MessageSid": "SM1"},
        {"MessageStatus": "sent"},
        {"MessageSid": "SM1", "MessageStatus": "received"},
        {"MessageSid": "SM1", "MessageStatus": "exploded"},
    ],
)
def test_a_status_form_that_is_not_a_delivery_report_is_refused(form: dict[str, str]) -> None:
    with pytest.raises(ProviderRejected) as raised:
        status_parse(form)

    assert raised.value.code == "invalid_webhook"


def test_status_parse_reads_the_legacy_sms_fields() -> None:
    update = status_parse({"SmsSid": "SM9", "SmsStatus": "undelivered", "ErrorCode": "30005"})

    assert update == StatusUpdate("SM9", DeliveryStatus.UNDELIVERED, "30005")


def test_reports_applied_out_of_order_never_move_a_message_back(
    fake: FakeTwilio, receiver: Receiver
) -> None:
    provider(fake).send(
        OutgoingMessage(
            PATIENT, "Hello", Channel.SMS, status_callback=receiver.url("/webhooks/status")
        )
    )
    assert fake.settle()
    updates = [status_parse(delivery.form) for delivery in receiver.wait_for(2)]
    recorded: DeliveryStatus | None = None

    for update in reversed(updates):
        if status_advances(recorded, update.status):
            recorded = update.status

    assert recorded is DeliveryStatus.DELIVERED


def test_a_fake_in_its_own_process_is_steered_over_http(receiver: Receiver) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integrations.messaging.fake_twilio",
            "--port",
            str(port),
            "--account-sid",
            ACCOUNT_SID,
            "--auth-token",
            AUTH_TOKEN,
            "--template",
            f"{REMINDER_TEMPLATE}=Visit on {{{{1}}}}",
        ],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        root = f"http://127.0.0.1:{port}"
        assert process.stdout.readline().strip() == f"Fake Twilio listening on {root}"
        driver = TwilioProvider(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            whatsapp_from=WHATSAPP_FROM,
            base_url=root,
            timeout=5,
        )
        requests.post(f"{root}/__fake__/mode", json={"mode": "busy"}, timeout=5)
        with pytest.raises(ProviderUnavailable):
            driver.send(OutgoingMessage(PATIENT, "Hello", Channel.WHATSAPP))
        requests.post(f"{root}/__fake__/mode", json={"mode": "ok"}, timeout=5)
        failing = requests.post(
            f"{root}/__fake__/fail",
            json={"number": f"whatsapp:{PATIENT}", "error_code": 63024},
            timeout=5,
        )
        sent = driver.send(
            OutgoingMessage(
                PATIENT,
                "",
                Channel.WHATSAPP,
                content_sid=REMINDER_TEMPLATE,
                content_variables={"1": "12 May"},
                status_callback=receiver.url("/webhooks/status"),
            )
        )
        [delivery] = receiver.wait_for(1)
        inbound = requests.post(
            f"{root}/__fake__/inbound",
            json={
                "from": f"whatsapp:{PATIENT}",
                "to": f"whatsapp:{WHATSAPP_FROM}",
                "body": "STOP",
                "webhook_url": receiver.url("/webhooks/inbound"),
            },
            timeout=5,
        )
        state = requests.get(f"{root}/__fake__/state", timeout=5).json()
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert failing.json() == {
        f"whatsapp:{PATIENT}": {"error_code": 63024, "status": "failed", "on_create": False}
    }
    assert sent.raw["body"] == "Visit on 12 May"
    assert status_parse(delivery.form) == StatusUpdate(
        sent.provider_id, DeliveryStatus.FAILED, "63024"
    )
    assert signature_valid(
        delivery.url, delivery.form, delivery.headers["x-twilio-signature"], AUTH_TOKEN
    )
    assert inbound.json()["status"] == 200
    assert inbound_parse(receiver.deliveries[1].form).body == "STOP"
    assert [request["status"] for request in state["sent"]] == [429, 201]
    assert state["messages"][sent.provider_id]["status"] == "failed"


@translation.override("en")  # the messages are compared in English
def test_provider_for_refuses_incomplete_twilio_settings() -> None:
    base = {"provider": "twilio", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}

    with pytest.raises(ValueError, match="auth_token"):
        provider_for({"provider": "twilio", "account_sid": ACCOUNT_SID, "sms_from": SMS_FROM})
    with pytest.raises(ValueError, match="at least one sender"):
        provider_for(base)
    with pytest.raises(ValueError, match="timeout"):
        provider_for({**base, "sms_from": SMS_FROM, "timeout": "0"})
    driver = provider_for({**base, "sms_from": SMS_FROM})
    assert driver.channels == frozenset({Channel.SMS})


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "MessageSid",
                "SmsSid",
                "MessageStatus",
                "ErrorCode",
                "From",
                "To",
                "Body",
                "NumMedia",
                "MediaUrl0",
            ]
        ),
        TEXT,
    )
)
def test_webhook_parsers_answer_or_refuse_any_form(form: dict[str, str]) -> None:
    """Outside input never makes a parser fail with anything but ``ProviderRejected``."""
    for parse in (status_parse, inbound_parse):
        try:
            parse(form)
        except ProviderRejected as refused:
            assert refused.code == "invalid_webhook"


@given(
    st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,11}", fullmatch=True), TEXT, max_size=8),
    st.from_regex(r"/[a-z/]{0,20}(\?[a-z]{1,5}=[a-z0-9]{0,5})?", fullmatch=True),
)
def test_a_signature_made_as_twilio_makes_it_is_valid_and_any_change_breaks_it(
    form: dict[str, str], path: str
) -> None:
    url = f"https://clinic.example.org{path}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)

    assert signature_valid(url, form, signature, AUTH_TOKEN)
    assert not signature_valid(url, {**form, "Injected": "1"}, signature, AUTH_TOKEN)
    assert not signature_valid(url + "x", form, signature, AUTH_TOKEN)


def test_status_callback_reference_keeps_the_callers_query(fake: FakeTwilio) -> None:
    provider(fake).send(
        OutgoingMessage(
            PATIENT,
            "Hello",
            Channel.SMS,
            status_callback="https://clinic.example.org/hooks?a=1&client_ref=old",
            idempotency_key="new ref/1",
        )
    )

    [request] = fake.sent
    parts = urlsplit(request["form"]["StatusCallback"])
    assert parse_qsl(parts.query) == [("a", "1"), ("client_ref", "new ref/1")]
