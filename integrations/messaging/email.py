"""E-mail to patients through an SMTP server of the clinic's choosing.

The message is built with Django's ``EmailMessage`` (headers, encodings, an HTML alternative)
but sent over a connection this driver opens itself, not through ``EMAIL_BACKEND``: the
clinic's patient mail goes through its own server and account, and the driver needs the SMTP
reply codes to tell a refused recipient (5xx: permanent) from a server that cannot take mail
now (no connection, a timeout, 4xx: try later).

The caller's idempotency key becomes the Message-ID, so a message sent again after a lost
answer carries the same id and the receiving side (and bounce handling) can tell it is one.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Mapping
from email.utils import make_msgid, parseaddr
from typing import Any

from django.core.exceptions import ValidationError
from django.core.mail import BadHeaderError, EmailMessage, EmailMultiAlternatives
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from .base import (
    Channel,
    DeliveryStatus,
    MessagingError,
    OutgoingMessage,
    ProviderRejected,
    ProviderUnavailable,
    SentMessage,
)

__all__ = ["SmtpProvider"]

DEFAULT_TIMEOUT = 15.0
MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SmtpProvider:
    """One SMTP server and sender address. Opens a connection per message: patient mail is
    a trickle, and a fresh connection never fails on a server that dropped an idle one."""

    channels = frozenset({Channel.EMAIL})

    def __init__(
        self,
        *,
        host: str,
        from_email: str,
        port: int | None = None,
        username: str = "",
        password: str = "",
        use_tls: bool = False,
        use_ssl: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if use_tls and use_ssl:
            raise ValueError(_("Use either STARTTLS ('use_tls') or implicit TLS ('use_ssl')."))
        self.host = host
        self.port = port if port is not None else 465 if use_ssl else 587 if use_tls else 25
        self.from_email = from_email
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.use_ssl = use_ssl
        self.timeout = timeout
        self._envelope_from = parseaddr(from_email)[1]
        self._domain = self._envelope_from.rpartition("@")[2] or "localhost"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmtpProvider:
        """Settings: ``host`` and ``from_email`` (required; ``from_email`` may carry a display
        name, "Clinic <noreply@clinic.example>"); ``port`` (default 25, 587 with ``use_tls``,
        465 with ``use_ssl``); ``username`` and ``password`` to log in; ``use_tls`` (STARTTLS)
        or ``use_ssl`` (implicit TLS); ``timeout`` in seconds."""
        missing = [key for key in ("host", "from_email") if not config.get(key)]
        if missing:
            raise ValueError(
                _("The SMTP provider needs the %(keys)s setting.")
                % {"keys": ", ".join(repr(key) for key in missing)}
            )
        try:
            validate_email(parseaddr(str(config["from_email"]))[1])
        except ValidationError as error:
            raise ValueError(
                _("The SMTP setting 'from_email' is not an e-mail address: %(value)r")
                % {"value": config["from_email"]}
            ) from error
        try:
            port = None if config.get("port") in (None, "") else int(config["port"])
            timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        except (TypeError, ValueError) as error:
            raise ValueError(
                _("The SMTP settings 'port' and 'timeout' must be numbers.")
            ) from error
        if timeout <= 0 or (port is not None and not 0 < port < 65536):
            raise ValueError(_("The SMTP settings 'port' and 'timeout' are out of range."))
        return cls(
            host=str(config["host"]),
            from_email=str(config["from_email"]),
            port=port,
            username=str(config.get("username") or ""),
            password=str(config.get("password") or ""),
            use_tls=bool(config.get("use_tls", False)),
            use_ssl=bool(config.get("use_ssl", False)),
            timeout=timeout,
        )

    def send(self, message: OutgoingMessage) -> SentMessage:
        recipient, message_id, content = self._built(message)
        stage = "connecting"
        try:
            smtp = (
                smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
                if self.use_ssl
                else smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            )
            with smtp:
                if self.use_tls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
                stage = "sending"
                smtp.sendmail(self._envelope_from, [recipient], content)
                stage = "sent"
        except (smtplib.SMTPException, OSError) as error:
            if stage == "sent":
                return self._sent(message_id, recipient)
            raise _failure(error, sending=stage == "sending") from error
        return self._sent(message_id, recipient)

    def _sent(self, message_id: str, recipient: str) -> SentMessage:
        return SentMessage(
            provider_id=message_id,
            status=DeliveryStatus.SENT,
            channel=Channel.EMAIL,
            raw={
                "message_id": message_id,
                "to": recipient,
                "from": self.from_email,
                "server": f"{self.host}:{self.port}",
            },
        )

    def _built(self, message: OutgoingMessage) -> tuple[str, str, bytes]:
        """The recipient, the Message-ID and the message as bytes on the wire."""
        if message.channel is not Channel.EMAIL:
            raise ProviderRejected(
                "unsupported_channel",
                _("The SMTP provider sends e-mail only, not %(channel)s.")
                % {"channel": message.channel},
            )
        recipient = message.to.strip()
        try:
            validate_email(recipient)
        except ValidationError as error:
            raise ProviderRejected(
                "invalid_message",
                _("%(to)r is not an e-mail address.") % {"to": recipient},
            ) from error
        if not message.body and not message.html_body:
            raise ProviderRejected("invalid_message", _("The e-mail has no text."))
        if message.idempotency_key:
            local = MESSAGE_ID_UNSAFE.sub("-", message.idempotency_key)
            message_id = f"<{local}@{self._domain}>"
        else:
            message_id = make_msgid(domain=self._domain)
        headers = {"Message-ID": message_id}
        email: EmailMessage
        if message.html_body:
            alternatives = EmailMultiAlternatives(
                message.subject,
                message.body,
                message.sender or self.from_email,
                [recipient],
                headers=headers,
            )
            alternatives.attach_alternative(message.html_body, "text/html")
            email = alternatives
        else:
            email = EmailMessage(
                message.subject,
                message.body,
                message.sender or self.from_email,
                [recipient],
                headers=headers,
            )
        try:
            content = email.message().as_bytes(linesep="\r\n")
        except BadHeaderError as error:
            raise ProviderRejected(
                "invalid_message", _("The e-mail's subject or an address has a line break.")
            ) from error
        return recipient, message_id, content


def _failure(error: Exception, *, sending: bool) -> MessagingError:
    """An SMTP failure as the caller needs it: 5xx replies are permanent, the rest is worth
    another try later."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()), (0, b""))
        return _by_code(code, reply, recipient=True)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return ProviderRejected(
            "smtp_not_supported",
            _("The SMTP server does not support what the settings ask for: %(error)s")
            % {"error": error},
        )
    if isinstance(error, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
        return ProviderUnavailable(
            _("The SMTP server did not accept a session: %(code)s %(reply)s")
            % {"code": error.smtp_code, "reply": _text(error.smtp_error)}
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return _by_code(error.smtp_code, error.smtp_error, recipient=False)
    return ProviderUnavailable(
        _("No answer from the SMTP server: %(error)s")
        % {"error": str(error) or type(error).__name__},
        may_have_been_sent=sending,
    )


def _by_code(code: int, reply: bytes | str, *, recipient: bool) -> MessagingError:
    text = _text(reply)
    if 500 <= code < 600:
        return ProviderRejected(
            str(code),
            text or _("The SMTP server refused the message."),
            status_code=code,
            undeliverable_on_channel=recipient,
        )
    return ProviderUnavailable(
        _("The SMTP server cannot take the message now: %(code)s %(reply)s")
        % {"code": code, "reply": text}
    )


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
