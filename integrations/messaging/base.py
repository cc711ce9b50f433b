"""What the messaging domain hands to a provider (Twilio, an SMTP server, another SMS gateway)
and what it gets back, independent of the provider's protocol.

A provider answers ``send`` with the message it accepted (``SentMessage``) or raises one of two
errors, so the caller can decide without knowing the provider:

- ``ProviderUnavailable``: nothing final was said (no connection, a timeout, 5xx, 429); send
  again later. ``may_have_been_sent`` says whether the request may have reached the provider,
  in which case a retry can deliver the message twice;
- ``ProviderRejected``: the provider refused this message for good (a bad number, an opted-out
  recipient, wrong credentials). ``undeliverable_on_channel`` marks refusals that concern only
  the channel (the number is not on WhatsApp, WhatsApp's 24-hour window is closed, a mailbox
  does not exist): the same text may still reach the patient by another channel.

Delivery reports arrive later, out of order and sometimes twice; ``status_advances`` says
whether a report moves a message forward, so an old "sent" never overwrites "delivered".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

__all__ = [
    "DRIVERS",
    "Channel",
    "DeliveryStatus",
    "InboundMessage",
    "MessagingError",
    "MessagingProvider",
    "OutgoingMessage",
    "ProviderRejected",
    "ProviderUnavailable",
    "SentMessage",
    "StatusUpdate",
    "provider_for",
    "status_advances",
]


class Channel(StrEnum):
    WHATSAPP = "whatsapp"
    SMS = "sms"
    EMAIL = "email"


class DeliveryStatus(StrEnum):
    """Where a message is on its way to the patient.

    The forward order is queued < sending < sent < delivered < read. ``failed`` (never left the
    provider), ``undelivered`` (the carrier or WhatsApp gave up) and ``canceled`` are final and
    are only reached from before ``delivered``: a delivered message does not become undelivered.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    CANCELED = "canceled"

    @property
    def is_failure(self) -> bool:
        return self in _FAILURES

    @property
    def is_final(self) -> bool:
        """Nothing can follow: a failure, or read (the last thing a provider reports)."""
        return self in _FAILURES or self is DeliveryStatus.READ


_FAILURES = frozenset({DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED, DeliveryStatus.CANCELED})

_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENDING: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
    DeliveryStatus.FAILED: 3,
    DeliveryStatus.UNDELIVERED: 3,
    DeliveryStatus.CANCELED: 3,
}


def status_advances(old: DeliveryStatus | None, new: DeliveryStatus) -> bool:
    """Whether a report of ``new`` should replace the recorded ``old`` (``None``: nothing
    recorded yet). Reports that repeat the status, go backwards, follow a final status or
    contradict a delivery are ignored, so the reports of one message's progress, applied in
    whatever order they arrive, end in the last state the provider reported."""
    if old is None:
        return True
    if old.is_final:
        return False
    return _RANK[new] > _RANK[old]


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to one recipient.

    ``to`` is an E.164 number (``+79001234567``) for SMS and WhatsApp and an e-mail address for
    e-mail. WhatsApp allows free text (``body``) only within 24 hours of the patient's last
    message; outside that window the message must be an approved template, given as
    ``content_sid`` (Twilio's ``HX…`` id) and ``content_variables`` (``{"1": "12 May"}``), and
    ``body`` is then not sent. ``status_callback`` is the URL delivery reports are posted to.
    ``idempotency_key`` is the caller's reference for this message, the same on every retry:
    the SMTP driver makes it the Message-ID, the Twilio driver (whose API has no idempotency)
    adds it to the status callback URL as ``client_ref`` so reports can be matched even when
    the answer to ``send`` was lost. ``sender`` is the branch's own number or address, when it
    has one; empty, the provider's configured sender is used."""

    to: str
    body: str
    channel: Channel
    _: KW_ONLY
    subject: str = ""
    html_body: str = ""
    content_sid: str = ""
    content_variables: Mapping[str, str] = field(default_factory=dict)
    status_callback: str = ""
    idempotency_key: str = ""
    sender: str = ""


@dataclass(frozen=True)
class SentMessage:
    """A message the provider accepted: ``provider_id`` is its id there (Twilio's ``SM…`` sid,
    the e-mail's Message-ID), ``status`` what the provider said at once, ``raw`` its answer as
    received, kept for support cases."""

    provider_id: str
    status: DeliveryStatus
    channel: Channel
    error_code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InboundMessage:
    """A message a patient sent to the clinic. ``sender`` and ``recipient`` are E.164 numbers
    without a channel prefix; ``button_payload`` is the id of a WhatsApp quick-reply button the
    patient pressed (empty for typed text)."""

    provider_id: str
    channel: Channel
    sender: str
    recipient: str
    body: str
    profile_name: str = ""
    button_payload: str = ""
    media_urls: tuple[str, ...] = ()
    raw: dict[str, str] = field(default_factory=dict)


class StatusUpdate(NamedTuple):
    """A delivery report: the provider's message id, the status it reports and, for a failure,
    the provider's error code."""

    sid: str
    status: DeliveryStatus
    error_code: str | None


class MessagingError(Exception):
    """Anything a provider call ended with other than an accepted message."""


class ProviderUnavailable(MessagingError):
    """The provider could not be reached or could not answer now (refused connection, timeout,
    5xx, 429, a 4xx SMTP reply). Send again later. ``may_have_been_sent`` is false only when the
    request certainly did not arrive (no connection, or the provider said it was too busy);
    ``retry_after_seconds`` is the provider's hint when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        may_have_been_sent: bool = False,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.may_have_been_sent = may_have_been_sent
        self.retry_after_seconds = retry_after_seconds


class ProviderRejected(MessagingError):
    """The provider (or the driver, before sending) refused the message for good. Sending it
    again gives the same answer; a person, a code change or another channel has to act.

    ``code`` is the provider's error code as text (Twilio ``"21211"``, SMTP ``"550"``, or the
    driver's own word such as ``"invalid_message"``). ``undeliverable_on_channel`` means the
    recipient cannot be reached on this channel but may be on another; ``opted_out`` means the
    recipient asked this sender to stop (STOP on SMS) and must not be messaged there again."""

    def __init__(
        self,
        code: str,
        description: str,
        *,
        status_code: int | None = None,
        undeliverable_on_channel: bool = False,
        opted_out: bool = False,
    ) -> None:
        super().__init__(f"[{code}] {description}")
        self.code = code
        self.description = description
        self.status_code = status_code
        self.undeliverable_on_channel = undeliverable_on_channel
        self.opted_out = opted_out


class MessagingProvider(Protocol):
    @property
    def channels(self) -> frozenset[Channel]:
        """The channels this provider, as configured, can send on."""
        ...

    def send(self, message: OutgoingMessage) -> SentMessage:
        """Hand one message to the provider. Raises ``ProviderUnavailable`` or
        ``ProviderRejected``; a message on a channel not in ``channels`` is rejected with the
        code ``unsupported_channel``."""
        ...


DRIVERS: dict[str, str] = {
    "twilio": "integrations.messaging.twilio_provider.TwilioProvider",
    "smtp": "integrations.messaging.email.SmtpProvider",
}
"""Driver classes by the ``provider`` setting. A driver is a class with
``from_config(config) -> driver`` that satisfies ``MessagingProvider``; another SMS gateway is
one more module and one more line here."""


def provider_for(config: Mapping[str, Any]) -> MessagingProvider:
    """The provider a messaging settings block describes, e.g. ``{"provider": "twilio",
    "account_sid": "AC…", "auth_token": "…", "sms_from": "+1…"}`` or ``{"provider": "smtp",
    "host": "…", "from_email": "…"}``; each driver's ``from_config`` lists its settings.
    Raises ``ValueError`` for an unknown provider or missing settings."""
    name = config.get("provider")
    path = DRIVERS.get(name) if isinstance(name, str) else None
    if path is None:
        raise ValueError(
            _("Unknown messaging provider %(name)r: use %(choices)s.")
            % {"name": name, "choices": ", ".join(repr(key) for key in sorted(DRIVERS))}
        )
    driver = import_string(path)
    provider: MessagingProvider = driver.from_config(config)
    return provider
