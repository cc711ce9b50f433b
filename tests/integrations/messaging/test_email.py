"""The SMTP driver against the fake SMTP server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from integrations.messaging import (
    Channel,
    DeliveryStatus,
    OutgoingMessage,
    ProviderRejected,
    ProviderUnavailable,
    provider_for,
)
from integrations.messaging.email import SmtpProvider
from integrations.messaging.fake_smtp import FakeSmtp

FROM_EMAIL = "Клиника «Здоровье» <noreply@clinic.example.org>"
PATIENT_EMAIL = "anna.petrova@example.org"


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    server = FakeSmtp.start(port=0)
    yield server
    server.stop()


def provider(server: FakeSmtp, **overrides: Any) -> SmtpProvider:
    config = {
        "provider": "smtp",
        "host": server.host,
        "port": server.port,
        "from_email": FROM_EMAIL,
        "timeout": 5,
        **overrides,
    }
    driver = provider_for(config)
    assert isinstance(driver, SmtpProvider)
    return driver


def message(**fields: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "to": PATIENT_EMAIL,
        "body": "Здравствуйте!\n.Точка в начале строки.\nЖдём вас 12 мая в 10:30.",
        "channel": Channel.EMAIL,
        "subject": "Напоминание о приёме",
        "idempotency_key": "reminder-42",
    }
    values.update(fields)
    return OutgoingMessage(**values)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_email_is_delivered_with_the_key_as_message_id(smtp: FakeSmtp) -> None:
    sent = provider(smtp).send(message())

    [mail] = smtp.messages
    received = mail.message
    assert (mail.mail_from, mail.recipients) == ("noreply@clinic.example.org", (PATIENT_EMAIL,))
    assert (received["Subject"], received["To"], received["From"]) == (
        "Напоминание о приёме",
        PATIENT_EMAIL,
        FROM_EMAIL,
    )
    assert received["Message-ID"] == "<reminder-42@clinic.example.org>"
    assert received.get_content() == (
        "Здравствуйте!\n.Точка в начале строки.\nЖдём вас 12 мая в 10:30.\n"
    )
    assert (sent.provider_id, sent.status, sent.channel) == (
        "<reminder-42@clinic.example.org>",
        DeliveryStatus.SENT,
        Channel.EMAIL,
    )


def test_sending_again_with_the_same_key_keeps_the_message_id(smtp: FakeSmtp) -> None:
    first = provider(smtp).send(message())
    second = provider(smtp).send(message())

    assert first.provider_id == second.provider_id
    assert [mail.message["Message-ID"] for mail in smtp.messages] == [first.provider_id] * 2


def test_without_a_key_each_email_gets_its_own_message_id(smtp: FakeSmtp) -> None:
    first = provider(smtp).send(message(idempotency_key=""))
    second = provider(smtp).send(message(idempotency_key=""))

    assert first.provider_id != second.provider_id
    assert first.provider_id.endswith("@clinic.example.org>")


def test_an_html_body_goes_as_an_alternative(smtp: FakeSmtp) -> None:
    provider(smtp).send(message(body="Ждём вас.", html_body="<p>Ждём <b>вас</b>.</p>"))

    [mail] = smtp.messages
    received = mail.message
    parts = [
        (part.get_content_type(), part.get_content().strip()) for part in received.iter_parts()
    ]
    assert received.get_content_type() == "multipart/alternative"
    assert parts == [("text/plain", "Ждём вас."), ("text/html", "<p>Ждём <b>вас</b>.</p>")]


def test_a_refused_recipient_is_rejected_as_undeliverable_by_email(smtp: FakeSmtp) -> None:
    smtp.refuse(PATIENT_EMAIL)

    with pytest.raises(ProviderRejected) as raised:
        provider(smtp).send(message())

    assert (raised.value.code, raised.value.status_code) == ("550", 550)
    assert raised.value.description == f"5.1.1 <{PATIENT_EMAIL}>: User unknown"
    assert raised.value.undeliverable_on_channel is True
    assert smtp.messages == []


def test_a_temporary_refusal_is_unavailable(smtp: FakeSmtp) -> None:
    smtp.refuse(PATIENT_EMAIL, code=450, reply="4.2.1 Mailbox busy, try later")

    with pytest.raises(ProviderUnavailable) as raised:
        provider(smtp).send(message())

    assert raised.value.may_have_been_sent is False
    assert "450" in str(raised.value)


def test_a_server_that_will_not_talk_is_unavailable(smtp: FakeSmtp) -> None:
    smtp.set_mode("down")

    with pytest.raises(ProviderUnavailable) as raised:
        provider(smtp).send(message())

    assert raised.value.may_have_been_sent is False
    assert "421" in str(raised.value)


def test_no_server_is_unavailable() -> None:
    driver = SmtpProvider(
        host="127.0.0.1", port=free_port(), from_email="noreply@clinic.example.org", timeout=2
    )

    with pytest.raises(ProviderUnavailable) as raised:
        driver.send(message())

    assert raised.value.may_have_been_sent is False


def test_login_with_the_right_password_sends_and_a_wrong_one_is_rejected() -> None:
    with FakeSmtp.start(port=0, username="clinic", password="s3cret") as server:
        provider(server, username="clinic", password="s3cret").send(message())
        with pytest.raises(ProviderRejected) as wrong:
            provider(server, username="clinic", password="guess").send(message())
        with pytest.raises(ProviderRejected) as anonymous:
            provider(server).send(message())
        delivered = len(server.messages)

    assert delivered == 1
    assert (wrong.value.code, wrong.value.undeliverable_on_channel) == ("535", False)
    assert (anonymous.value.code, anonymous.value.undeliverable_on_channel) == ("530", False)


def test_starttls_asked_of_a_server_without_it_is_rejected(smtp: FakeSmtp) -> None:
    with pytest.raises(ProviderRejected) as raised:
        provider(smtp, use_tls=True).send(message())

    assert raised.value.code == "smtp_not_supported"
    assert smtp.messages == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "not-an-address"}, "invalid_message"),
        ({"body": "", "html_body": ""}, "invalid_message"),
        ({"subject": "Injected\nBcc: someone@example.org"}, "invalid_message"),
        ({"channel": Channel.SMS, "to": "+79161234567"}, "unsupported_channel"),
    ],
)
def test_messages_that_cannot_be_mailed_are_refused_before_sending(
    smtp: FakeSmtp, fields: dict[str, Any], code: str
) -> None:
    with pytest.raises(ProviderRejected) as raised:
        provider(smtp).send(message(**fields))

    assert raised.value.code == code
    assert smtp.messages == []


def test_provider_for_reads_smtp_settings() -> None:
    driver = provider_for(
        {"provider": "smtp", "host": "mail.example.org", "from_email": "a@example.org"}
    )
    tls = provider_for(
        {"provider": "smtp", "host": "h", "from_email": "a@example.org", "use_tls": True}
    )

    assert isinstance(driver, SmtpProvider) and isinstance(tls, SmtpProvider)
    assert (driver.port, tls.port, driver.channels) == (25, 587, frozenset({Channel.EMAIL}))
    with pytest.raises(ValueError, match="host"):
        provider_for({"provider": "smtp", "from_email": "a@example.org"})
    with pytest.raises(ValueError, match="from_email"):
        provider_for({"provider": "smtp", "host": "h", "from_email": "nobody"})
    with pytest.raises(ValueError, match="port"):
        provider_for({"provider": "smtp", "host": "h", "from_email": "a@b.org", "port": "x"})
    with pytest.raises(ValueError, match="STARTTLS"):
        provider_for(
            {
                "provider": "smtp",
                "host": "h",
                "from_email": "a@b.org",
                "use_tls": True,
                "use_ssl": True,
            }
        )
