"""Twilio Programmable Messaging: SMS and WhatsApp through the Messages API
(``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``), sent with the official ``twilio``
library.

WhatsApp addresses carry the ``whatsapp:`` prefix on Twilio's side; the clinic's records keep
plain E.164 numbers and the driver adds or strips the prefix. Twilio's API has no idempotency
key, so the caller's key travels in the status callback URL (``client_ref``) instead.

Twilio signs every webhook (status callbacks and inbound messages) with ``X-Twilio-Signature``:
an HMAC-SHA1, keyed with the auth token, of the full URL Twilio requested followed by the POST
parameters sorted by name. ``signature_valid`` must see that URL exactly as Twilio used it
(scheme, host, port and query as published, not as seen behind a proxy).

The base URL can be pointed at a local fake (``base_url``): the library hard-codes
``https://api.twilio.com``, and the way its maintainers point it elsewhere is a custom HTTP
client that rewrites the address, which is what ``_RoutedHttpClient`` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from django.utils.translation import gettext as _
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from urllib3.exceptions import MaxRetryError, NewConnectionError

from .base import (
    Channel,
    DeliveryStatus,
    InboundMessage,
    OutgoingMessage,
    ProviderRejected,
    ProviderUnavailable,
    SentMessage,
    StatusUpdate,
)

__all__ = [
    "CLIENT_REF_PARAMETER",
    "EMPTY_TWIML",
    "OPT_OUT_CODES",
    "WHATSAPP_PREFIX",
    "WHATSAPP_UNDELIVERABLE_CODES",
    "TwilioProvider",
    "inbound_parse",
    "is_channel_undeliverable",
    "is_opt_out",
    "signature_valid",
    "status_parse",
]

DEFAULT_TIMEOUT = 15.0
WHATSAPP_PREFIX = "whatsapp:"
CLIENT_REF_PARAMETER = "client_ref"
MEDIA_LIMIT = 10
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
"""The answer to an inbound-message webhook that sends no automatic reply."""

WHATSAPP_UNDELIVERABLE_CODES = frozenset(
    {
        63003,  # the recipient's number is not on WhatsApp
        63016,  # outside the 24-hour window and not a template
        63024,  # Meta considers the recipient invalid (no WhatsApp, terms not accepted)
        63032,  # the recipient is in one of Meta's marketing experiments
        63049,  # Meta chose not to deliver a marketing template
    }
)
"""Twilio error codes meaning "this message cannot reach this patient on WhatsApp", after which
the same text may go by SMS."""

OPT_OUT_CODES = frozenset({21610})
"""The recipient replied STOP to this sender."""

RETRYABLE_CODES = frozenset({20429, 20500, 20503, 63018})
"""Answers that mean "too busy, later": Twilio's rate limits and service errors, and the
WhatsApp rate limit 63018, which is sometimes reported with a 4xx status."""

STATUSES = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "partially_delivered": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "canceled": DeliveryStatus.CANCELED,
}

MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
TWILIO_HOST = re.compile(r"(^|\.)twilio\.com$")


def _code(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def is_channel_undeliverable(error_code: str | int | None) -> bool:
    """Whether a Twilio error code (from ``send`` or a delivery report) means the patient cannot
    be reached on WhatsApp, so another channel should be tried."""
    return _code(error_code) in WHATSAPP_UNDELIVERABLE_CODES


def is_opt_out(error_code: str | int | None) -> bool:
    """Whether a Twilio error code means the patient opted out of this sender."""
    return _code(error_code) in OPT_OUT_CODES


class _RoutedHttpClient(TwilioHttpClient):
    """Twilio's own HTTP client with a timeout, sending what the library addresses to
    ``*.twilio.com`` to ``base_url`` instead when one is set (a local fake)."""

    def __init__(self, *, timeout: float, base_url: str = "") -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        return super().request(
            method,
            self.routed(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )

    def routed(self, url: str) -> str:
        if not self.base_url:
            return url
        parts = urlsplit(url)
        if not TWILIO_HOST.search(parts.hostname or ""):
            return url
        base = urlsplit(self.base_url)
        path = f"{base.path.rstrip('/')}{parts.path}"
        return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))


class TwilioProvider:
    """One Twilio account (or subaccount) and its senders. Cheap to create; holds one HTTP
    session, so keep one per process rather than one per message."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sms_from: str = "",
        whatsapp_from: str = "",
        messaging_service_sid: str = "",
        base_url: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.account_sid = account_sid
        self.sms_from = sms_from
        self.whatsapp_from = _without_prefix(whatsapp_from)
        self.messaging_service_sid = messaging_service_sid
        self._http = _RoutedHttpClient(timeout=timeout, base_url=base_url)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        channels = set()
        if sms_from or messaging_service_sid:
            channels.add(Channel.SMS)
        if whatsapp_from or messaging_service_sid:
            channels.add(Channel.WHATSAPP)
        self.channels: frozenset[Channel] = frozenset(channels)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TwilioProvider:
        """Settings: ``account_sid`` and ``auth_token`` (required); at least one sender:
        ``sms_from`` (a number or alphanumeric sender id), ``whatsapp_from`` (the WhatsApp
        sender's E.164 number) or ``messaging_service_sid``; ``base_url`` (only to reach a
        local fake) and ``timeout`` (seconds for each HTTP exchange)."""
        missing = [key for key in ("account_sid", "auth_token") if not config.get(key)]
        if missing:
            raise ValueError(
                _("The Twilio provider needs the %(keys)s setting.")
                % {"keys": ", ".join(repr(key) for key in missing)}
            )
        senders = ("sms_from", "whatsapp_from", "messaging_service_sid")
        if not any(config.get(key) for key in senders):
            raise ValueError(
                _("The Twilio provider needs at least one sender: %(keys)s.")
                % {"keys": ", ".join(repr(key) for key in senders)}
            )
        try:
            timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        except (TypeError, ValueError):
            timeout = -1.0
        if timeout <= 0:
            raise ValueError(_("The Twilio setting 'timeout' must be a positive number."))
        return cls(
            account_sid=str(config["account_sid"]),
            auth_token=str(config["auth_token"]),
            sms_from=str(config.get("sms_from") or ""),
            whatsapp_from=str(config.get("whatsapp_from") or ""),
            messaging_service_sid=str(config.get("messaging_service_sid") or ""),
            base_url=str(config.get("base_url") or ""),
            timeout=timeout,
        )

    def send(self, message: OutgoingMessage) -> SentMessage:
        arguments = self._arguments(message)
        try:
            created = self._client.messages.create(**arguments)
        except (TwilioRestException, TwilioServiceException) as error:
            raise _refusal(error) from error
        except requests.RequestException as error:
            raise ProviderUnavailable(
                _("No answer from Twilio: %(error)s") % {"error": error},
                may_have_been_sent=_may_have_arrived(error),
            ) from error
        except (TwilioException, ValueError) as error:
            raise ProviderUnavailable(
                _("Twilio answered with something that cannot be read: %(error)s")
                % {"error": error},
                may_have_been_sent=True,
            ) from error
        return _sent(created, message.channel, lenient=True)

    def fetch(self, provider_id: str) -> SentMessage:
        """The message as Twilio knows it now; a way to settle its status when delivery reports
        were lost."""
        if not MESSAGE_SID.match(provider_id):
            raise ProviderRejected(
                "invalid_message",
                _("%(id)r is not a Twilio message sid.") % {"id": provider_id},
            )
        try:
            found = self._client.messages(provider_id).fetch()
        except (TwilioRestException, TwilioServiceException) as error:
            raise _refusal(error) from error
        except requests.RequestException as error:
            raise ProviderUnavailable(
                _("No answer from Twilio: %(error)s") % {"error": error}
            ) from error
        except (TwilioException, ValueError) as error:
            raise ProviderUnavailable(
                _("Twilio answered with something that cannot be read: %(error)s")
                % {"error": error}
            ) from error
        to = str(getattr(found, "to", "") or "")
        channel = Channel.WHATSAPP if to.startswith(WHATSAPP_PREFIX) else Channel.SMS
        return _sent(found, channel, lenient=False)

    def _arguments(self, message: OutgoingMessage) -> dict[str, Any]:
        """The ``messages.create`` arguments, refusing before sending what Twilio would refuse
        with the same code."""
        if message.channel not in self.channels:
            raise ProviderRejected(
                "unsupported_channel",
                _("This Twilio account has no sender for the %(channel)s channel.")
                % {"channel": message.channel},
            )
        number = message.to.strip()
        if not _without_prefix(number):
            raise ProviderRejected("21604", _("The message has no recipient."))
        arguments: dict[str, Any] = {}
        if message.channel is Channel.WHATSAPP:
            arguments["to"] = WHATSAPP_PREFIX + _without_prefix(number)
            sender = _without_prefix(message.sender) or self.whatsapp_from
            if sender:
                arguments["from_"] = WHATSAPP_PREFIX + sender
        else:
            if number.startswith(WHATSAPP_PREFIX):
                raise ProviderRejected(
                    "21211", _("A WhatsApp address cannot receive an SMS: %(to)s") % {"to": number}
                )
            arguments["to"] = number
            sender = message.sender.strip() or self.sms_from
            if sender:
                arguments["from_"] = sender
        if self.messaging_service_sid:
            arguments["messaging_service_sid"] = self.messaging_service_sid
        if message.content_sid:
            if not CONTENT_SID.match(message.content_sid):
                raise ProviderRejected(
                    "21655",
                    _("%(sid)r is not a content template sid.") % {"sid": message.content_sid},
                )
            arguments["content_sid"] = message.content_sid
            if message.content_variables:
                arguments["content_variables"] = _content_variables(message.content_variables)
        elif message.content_variables:
            raise ProviderRejected("21654", _("Template variables were given without a template."))
        elif message.body:
            arguments["body"] = message.body
        else:
            raise ProviderRejected("21602", _("The message has neither a text nor a template."))
        if message.status_callback:
            arguments["status_callback"] = _with_reference(
                message.status_callback, message.idempotency_key
            )
        return arguments


def _without_prefix(address: str) -> str:
    address = address.strip()
    if address.startswith(WHATSAPP_PREFIX):
        return address[len(WHATSAPP_PREFIX) :]
    return address


def _content_variables(variables: Mapping[str, str]) -> str:
    """Twilio refuses (21656) a variable that is empty or holds a newline, a tab or more than
    four spaces in a row; refusing here says which one."""
    for name, value in variables.items():
        if (
            not isinstance(value, str)
            or not value.strip()
            or "\n" in value
            or "\t" in value
            or "     " in value
        ):
            raise ProviderRejected(
                "21656",
                _(
                    "Template variable %(name)s must be non-empty text without line breaks, "
                    "tabs or runs of more than four spaces."
                )
                % {"name": name},
            )
    return json.dumps({str(name): value for name, value in variables.items()}, ensure_ascii=False)


def _with_reference(url: str, reference: str) -> str:
    if not reference:
        return url
    parts = urlsplit(url)
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key != CLIENT_REF_PARAMETER
    ]
    query.append((CLIENT_REF_PARAMETER, reference))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _may_have_arrived(error: requests.RequestException) -> bool:
    """False only when no connection was ever made."""
    if isinstance(error, requests.ConnectTimeout):
        return False
    if isinstance(error, requests.ConnectionError) and error.args:
        cause = error.args[0]
        if isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError):
            return False
    return True


def _refusal(error: Exception) -> Exception:
    status = _code(getattr(error, "status", None))
    code = _code(getattr(error, "code", None))
    if isinstance(error, TwilioServiceException):
        description = str(error.detail or error.title or "")
    else:
        description = str(getattr(error, "msg", "") or "")
    if status == 429 or (status is not None and status >= 500) or code in RETRYABLE_CODES:
        return ProviderUnavailable(
            _("Twilio could not take the request now (HTTP %(status)s, code %(code)s): %(text)s")
            % {"status": status, "code": code, "text": description},
            may_have_been_sent=status is not None and status >= 500,
        )
    return ProviderRejected(
        str(code) if code is not None else f"http_{status}",
        description or _("Twilio refused the request."),
        status_code=status,
        undeliverable_on_channel=is_channel_undeliverable(code),
        opted_out=is_opt_out(code),
    )


def _sent(instance: Any, channel: Channel, *, lenient: bool) -> SentMessage:
    sid = getattr(instance, "sid", None)
    status_text = str(getattr(instance, "status", "") or "")
    status = STATUSES.get(status_text)
    if not isinstance(sid, str) or not sid or (status is None and not lenient):
        raise ProviderUnavailable(
            _("Twilio answered with an unreadable message (sid %(sid)r, status %(status)r).")
            % {"sid": sid, "status": status_text},
            may_have_been_sent=True,
        )
    error_code = getattr(instance, "error_code", None)
    created = getattr(instance, "date_created", None)
    raw = {
        "sid": sid,
        "status": status_text,
        "to": getattr(instance, "to", None),
        "from": getattr(instance, "from_", None),
        "body": getattr(instance, "body", None),
        "messaging_service_sid": getattr(instance, "messaging_service_sid", None),
        "num_segments": getattr(instance, "num_segments", None),
        "price": getattr(instance, "price", None),
        "price_unit": getattr(instance, "price_unit", None),
        "error_code": error_code,
        "error_message": getattr(instance, "error_message", None),
        "date_created": created.isoformat() if created is not None else None,
    }
    return SentMessage(
        provider_id=sid,
        status=status or DeliveryStatus.QUEUED,
        channel=channel,
        error_code=str(error_code) if error_code else None,
        raw=raw,
    )


def _field(form: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = form.get(name)
        if value:
            return str(value)
    return ""


def _required(form: Mapping[str, str], *names: str) -> str:
    value = _field(form, *names)
    if not value:
        raise ProviderRejected(
            "invalid_webhook",
            _("The Twilio webhook has no %(name)s.") % {"name": names[0]},
        )
    return value


def inbound_parse(form: Mapping[str, str]) -> InboundMessage:
    """A patient's message from Twilio's inbound webhook (a Django ``QueryDict`` or any mapping
    of the POST parameters). Check ``signature_valid`` first. A body that is not an inbound
    SMS or WhatsApp message raises ``ProviderRejected`` (code ``invalid_webhook``)."""
    sid = _required(form, "MessageSid", "SmsMessageSid", "SmsSid")
    sender = _required(form, "From")
    recipient = _required(form, "To")
    channel = Channel.WHATSAPP if sender.startswith(WHATSAPP_PREFIX) else Channel.SMS
    if channel is Channel.SMS and ":" in sender:
        raise ProviderRejected(
            "invalid_webhook",
            _("Messages from %(sender)r are neither SMS nor WhatsApp.") % {"sender": sender},
        )
    count = min(_code(form.get("NumMedia")) or 0, MEDIA_LIMIT)
    media = tuple(
        url for url in (str(form.get(f"MediaUrl{index}") or "") for index in range(count)) if url
    )
    return InboundMessage(
        provider_id=sid,
        channel=channel,
        sender=_without_prefix(sender),
        recipient=_without_prefix(recipient),
        body=str(form.get("Body") or ""),
        profile_name=str(form.get("ProfileName") or ""),
        button_payload=str(form.get("ButtonPayload") or ""),
        media_urls=media,
        raw={str(key): str(form[key]) for key in form},
    )


def status_parse(form: Mapping[str, str]) -> StatusUpdate:
    """The delivery report in a Twilio status callback. Check ``signature_valid`` first; pass
    the ``error_code`` of a failure to ``is_channel_undeliverable`` to decide on another
    channel. A body that is not a report on an outgoing message raises ``ProviderRejected``
    (code ``invalid_webhook``)."""
    sid = _required(form, "MessageSid", "SmsSid")
    status_text = _required(form, "MessageStatus", "SmsStatus")
    status = STATUSES.get(status_text)
    if status is None:
        raise ProviderRejected(
            "invalid_webhook",
            _("%(status)r is not a status of an outgoing message.") % {"status": status_text},
        )
    error_code = _field(form, "ErrorCode")
    return StatusUpdate(sid=sid, status=status, error_code=error_code or None)


def signature_valid(url: str, form: Mapping[str, str], signature: str, auth_token: str) -> bool:
    """Whether ``signature`` (the ``X-Twilio-Signature`` header) is Twilio's signature, made
    with ``auth_token``, of a POST of ``form`` to ``url``. ``url`` is the full public URL
    Twilio was given, query included."""
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, form, signature))
