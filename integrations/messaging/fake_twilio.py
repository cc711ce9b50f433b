"""A fake Twilio Messages API for tests and the demo: one HTTP server speaking
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` and
``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`` as Twilio does, so the real
``twilio`` library can be pointed at it.

It checks HTTP Basic authentication with the account sid and auth token (401, code 20003) and
validates a new message roughly as Twilio does: a ``To`` (21604) in E.164, with a
``whatsapp:`` prefix for WhatsApp (21211); a ``From`` or ``MessagingServiceSid`` (21603) on the
same channel as ``To`` (63007); either a ``Body`` (21602, at most 1600 characters: 21617) or a
``ContentSid`` of a registered template (21655) with valid ``ContentVariables`` (21654, 21656);
a ``StatusCallback`` that is an http(s) URL (21609). Errors answer Twilio's JSON error body
``{"code", "message", "more_info", "status"}``. A new message answers 201 with the message
resource, status ``queued`` (``accepted`` when only a messaging service was given).

After answering, the fake moves the message on as Twilio would and posts a status callback
for each step to the message's ``StatusCallback``, form-encoded and signed with
``X-Twilio-Signature`` exactly as Twilio signs (HMAC-SHA1 of the URL and the sorted
parameters, keyed with the auth token): ``sent`` then ``delivered`` (and ``read`` on WhatsApp
when ``whatsapp_read`` is set). A number set to fail with ``fail_number`` gets ``failed`` (or
``sent`` then ``undelivered`` for carrier errors 30xxx) with its ``ErrorCode``, or is refused
at once with a 400 when ``on_create`` is set. Callbacks go out one at a time, in order, from a
single worker thread; ``settle()`` waits until they are all out.

Modes, switched in process (``set_mode``) or over HTTP (``POST /__fake__/mode {"mode": ...,
"slow_seconds": n}``): ``ok``; ``down`` (every API request answers 500, code 20500); ``busy``
(429, code 20429); ``slow`` (requests are carried out and answered after ``slow_seconds``, so a
client with a shorter timeout gives up although the message exists).

``inbound(from_, to, body, webhook_url)`` posts a signed inbound message to the clinic's
webhook, as Twilio does when a patient writes.

Controls: ``set_mode``, ``fail_number``, ``clear_failures``, ``add_template``, ``inbound``,
``settle``, ``sent``, ``messages``, ``callbacks``, ``inbound_deliveries``, ``state()``; over HTTP
``POST /__fake__/mode``, ``POST /__fake__/fail {"number", "error_code", "status",
"on_create"}``, ``POST /__fake__/template {"content_sid", "text"}``, ``POST /__fake__/inbound
{"from", "to", "body", "webhook_url", ...}`` and ``GET /__fake__/state``. Standard library and
the ``twilio`` library's request validator only.

In process: ``fake = FakeTwilio.start(port=0)``; ``fake.url`` is the ``base_url`` setting of
the Twilio provider; ``fake.stop()``. As a process:
``python -m integrations.messaging.fake_twilio --port 16750``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import json
import queue
import re
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from twilio.request_validator import RequestValidator

from clinic.core.fake_peer import FakeHandler, FakeReply, ModalFakePeer, QuietFakeServer

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "MODES", "FakeTwilio", "main"]

MODES = ("ok", "down", "busy", "slow")
API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "fa4e".ljust(32, "0")
DEFAULT_AUTH_TOKEN = "fake_twilio_auth_token"  # noqa: S105 - the fake's own test token
WHATSAPP_PREFIX = "whatsapp:"
BODY_LIMIT = 1600
CALLBACK_TIMEOUT = 5.0

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
MESSAGE_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")

ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21211: "Invalid 'To' Phone Number",
    21408: (
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number"
    ),
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number is not currently reachable via SMS",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21654: "ContentSid Required",
    21655: "The ContentSid is Invalid",
    21656: "The ContentVariables Parameter is invalid",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    63003: "Channel could not find To address",
    63007: "Twilio could not find a Channel with the specified From address",
    63016: (
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template."
    ),
    63024: "Invalid message recipient",
    63032: "User's number is part of an experiment",
    63049: "Meta chose not to deliver this WhatsApp marketing message",
}


class _Invalid(Exception):
    """A request Twilio would refuse: becomes its JSON error body."""

    def __init__(self, code: int, message: str = "", status: int = 400) -> None:
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, f"Error {code}")
        self.status = status
        super().__init__(self.message)


@dataclass
class _Reply(FakeReply):
    """An answer, and the status callbacks its message is to get once it is out."""

    progress: list[tuple[str, list[tuple[str, int | None]]]] = field(default_factory=list)


@dataclass(frozen=True)
class _Failure:
    error_code: int
    status: str
    on_create: bool


def _json_reply(status: int, body: Any, **options: Any) -> _Reply:
    return _Reply(status, json.dumps(body, ensure_ascii=False).encode(), **options)


def _error_reply(invalid: _Invalid, **options: Any) -> _Reply:
    body = {
        "code": invalid.code,
        "message": invalid.message,
        "more_info": f"https://www.twilio.com/docs/errors/{invalid.code}",
        "status": invalid.status,
    }
    return _json_reply(invalid.status, body, **options)


def _now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def _address(value: str) -> tuple[bool, str]:
    """Whether an address is a WhatsApp one, and its number without the prefix."""
    if value.startswith(WHATSAPP_PREFIX):
        return True, value[len(WHATSAPP_PREFIX) :]
    return False, value


def _form(raw: bytes) -> dict[str, list[str]]:
    return parse_qs(raw.decode(errors="replace"), keep_blank_values=True)


def _rendered(template: str, variables: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda match: variables.get(match.group(1), match.group(0)), template)


def _variables(text: str) -> dict[str, str]:
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise _Invalid(21656) from error
    if not isinstance(parsed, dict):
        raise _Invalid(21656)
    for value in parsed.values():
        if (
            not isinstance(value, str)
            or not value.strip()
            or "\n" in value
            or "\t" in value
            or "     " in value
        ):
            raise _Invalid(21656)
    return {str(key): value for key, value in parsed.items()}


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _Handler(FakeHandler):
    def replied(self, reply: Any) -> None:
        for sid, steps in getattr(reply, "progress", ()):
            self.server.fake._schedule(sid, steps)


class FakeTwilio(ModalFakePeer):
    """The fake Twilio and its HTTP server; see the module docstring for the behaviour."""

    handler_class = _Handler
    server_class = QuietFakeServer
    thread_name = "fake-twilio"
    modes = MODES

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        slow_seconds: float = 2.0,
        whatsapp_read: bool = False,
        templates: Mapping[str, str] | None = None,
    ) -> None:
        self._modes_init(slow_seconds)
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._whatsapp_read = whatsapp_read
        self._templates: dict[str, str] = dict(templates or {})
        self._failures: dict[str, _Failure] = {}
        self._sent: list[dict[str, Any]] = []
        self._messages: dict[str, dict[str, Any]] = {}
        self._callbacks: list[dict[str, Any]] = []
        self._inbound: list[dict[str, Any]] = []
        self._pending = 0
        self._settled = threading.Condition(self._lock)
        self._queue: queue.Queue[tuple[str, list[tuple[str, int | None]]] | None] = queue.Queue()
        self._worker = threading.Thread(
            target=self._deliver_callbacks, name="fake-twilio-callbacks", daemon=True
        )
        self._worker.start()
        self._listen(host, port)

    def stop(self) -> None:
        super().stop()
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()

    @property
    def url(self) -> str:
        """The API base, as the Twilio provider's ``base_url`` setting expects it."""
        return self.root_url

    @property
    def account_sid(self) -> str:
        return self._account_sid

    @property
    def auth_token(self) -> str:
        return self._auth_token

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every API request received, in order: method, path, headers, form (the last value
        of each parameter), status."""
        with self._lock:
            return copy.deepcopy(self._sent)

    @property
    def messages(self) -> dict[str, dict[str, Any]]:
        """The messages by sid, as the API shows them now."""
        with self._lock:
            return copy.deepcopy(self._messages)

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        """Every status callback tried: url, params, signature, and status or error."""
        with self._lock:
            return copy.deepcopy(self._callbacks)

    @property
    def inbound_deliveries(self) -> list[dict[str, Any]]:
        """Every inbound message posted by ``inbound``, with its outcome."""
        with self._lock:
            return copy.deepcopy(self._inbound)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": self._mode,
                "slow_seconds": self._slow_seconds,
                "failures": {
                    number: {
                        "error_code": failure.error_code,
                        "status": failure.status,
                        "on_create": failure.on_create,
                    }
                    for number, failure in self._failures.items()
                },
                "templates": dict(self._templates),
                "messages": self.messages,
                "sent": self.sent,
                "callbacks": self.callbacks,
                "inbound": self.inbound_deliveries,
            }

    # Controls.

    def fail_number(
        self, number: str, error_code: int, *, status: str = "", on_create: bool = False
    ) -> None:
        """Make messages to ``number`` (the address as Twilio sees it: ``+7900…`` for SMS,
        ``whatsapp:+7900…`` for WhatsApp) fail with ``error_code``: refused at once with a 400
        when ``on_create``, otherwise accepted and then reported ``failed`` (or ``sent`` and
        ``undelivered``; the default for carrier errors 30xxx)."""
        chosen = status or ("undelivered" if 30000 <= error_code < 31000 else "failed")
        if chosen not in ("failed", "undelivered"):
            raise ValueError(f"a failing status is 'failed' or 'undelivered', not {chosen!r}")
        with self._lock:
            self._failures[number] = _Failure(int(error_code), chosen, on_create)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def add_template(self, content_sid: str, text: str) -> None:
        """Register an approved content template; ``{{1}}`` placeholders take the message's
        ContentVariables."""
        if not CONTENT_SID.match(content_sid):
            raise ValueError(f"{content_sid!r} is not a content sid (HX and 32 hex digits)")
        with self._lock:
            self._templates[content_sid] = text

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until every scheduled status callback has gone out; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
        return True

    def inbound(
        self,
        from_: str,
        to: str,
        body: str,
        webhook_url: str,
        *,
        profile_name: str = "",
        button_payload: str = "",
        button_text: str = "",
        media_urls: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A patient writes: post a signed inbound message to ``webhook_url`` as Twilio does
        and return what happened (url, params, signature, status and the reply body, or
        error)."""
        sid = "SM" + uuid.uuid4().hex
        whatsapp, number = _address(from_)
        params = {
            "AccountSid": self._account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": str(len(media_urls)),
            "NumSegments": "1",
        }
        if whatsapp:
            params["ProfileName"] = profile_name
            params["WaId"] = number.lstrip("+")
        if button_payload:
            params["ButtonPayload"] = button_payload
            params["ButtonText"] = button_text or button_payload
        for index, url in enumerate(media_urls):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = "image/jpeg"
        outcome = self._post_signed(webhook_url, params)
        with self._lock:
            self._inbound.append(copy.deepcopy(outcome))
        return outcome

    # Status callbacks.

    def _schedule(self, sid: str, steps: list[tuple[str, int | None]]) -> None:
        with self._lock:
            self._pending += 1
        self._queue.put((sid, steps))

    def _deliver_callbacks(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            sid, steps = item
            try:
                for status, error_code in steps:
                    self._advance(sid, status, error_code)
            finally:
                with self._settled:
                    self._pending -= 1
                    self._settled.notify_all()

    def _advance(self, sid: str, status: str, error_code: int | None) -> None:
        with self._lock:
            message = self._messages[sid]
            message["status"] = status
            message["date_updated"] = _now()
            if status == "sent":
                message["date_sent"] = message["date_updated"]
            if error_code is not None:
                message["error_code"] = error_code
                message["error_message"] = ERROR_MESSAGES.get(error_code, f"Error {error_code}")
            callback = message.get("_status_callback") or ""
            params = {
                "AccountSid": self._account_sid,
                "ApiVersion": API_VERSION,
                "From": message["from"] or "",
                "To": message["to"],
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
            }
            if message["messaging_service_sid"]:
                params["MessagingServiceSid"] = message["messaging_service_sid"]
            if message["to"].startswith(WHATSAPP_PREFIX):
                params["ChannelPrefix"] = "whatsapp"
                params["ChannelToAddress"] = _address(message["to"])[1]
            if error_code is not None:
                params["ErrorCode"] = str(error_code)
        if callback:
            outcome = self._post_signed(callback, params)
            with self._lock:
                self._callbacks.append(outcome)

    def _post_signed(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        """POST form parameters to ``url`` with Twilio's signature; outside the lock, since the
        receiver may call this fake back before it answers."""
        signature = RequestValidator(self._auth_token).compute_signature(url, params)
        request = urllib.request.Request(  # noqa: S310 - the test's own receiver URL
            url,
            data=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
                "User-Agent": "TwilioProxy/1.1",
            },
            method="POST",
        )
        outcome: dict[str, Any] = {"url": url, "params": params, "signature": signature}
        try:
            with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT) as answer:  # noqa: S310
                outcome["status"] = answer.status
                outcome["body"] = answer.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            outcome["status"] = error.code
            outcome["body"] = error.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as error:
            outcome["error"] = str(error)
        return outcome

    # HTTP.

    def handle(self, method: str, path: str, raw: bytes, headers: dict[str, str]) -> _Reply:
        """One HTTP request and its reply."""
        if path.startswith("/__fake__/"):
            return self._control(method, path, raw)
        form = _form(raw)
        with self._lock:
            mode = self._mode
            delay = self._slow_seconds if mode == "slow" else 0.0
            try:
                status, answer, progress = self._api(mode, method, path, form, headers)
                reply = _json_reply(status, answer, delay_seconds=delay, progress=progress)
            except _Invalid as invalid:
                extra = {}
                if invalid.status == 401:
                    extra["WWW-Authenticate"] = 'Basic realm="Twilio API"'
                reply = _error_reply(invalid, headers=extra, delay_seconds=delay)
            self._sent.append(
                {
                    "method": method,
                    "path": path,
                    "headers": headers,
                    "form": {key: values[-1] for key, values in form.items()},
                    "status": reply.status,
                }
            )
        return reply

    def _api(
        self,
        mode: str,
        method: str,
        path: str,
        form: dict[str, list[str]],
        headers: dict[str, str],
    ) -> tuple[int, Any, list[tuple[str, list[tuple[str, int | None]]]]]:
        if mode == "down":
            raise _Invalid(20500, status=500)
        if mode == "busy":
            raise _Invalid(20429, status=429)
        lowered = {name.lower(): value for name, value in headers.items()}
        if not self._authorised(lowered.get("authorization", "")):
            raise _Invalid(20003, status=401)
        match = MESSAGES_PATH.match(path)
        if match and method == "POST":
            self._own_account(match.group(1))
            return self._create(form)
        match = MESSAGE_PATH.match(path)
        if match and method == "GET":
            self._own_account(match.group(1))
            message = self._messages.get(match.group(2))
            if message is None:
                raise _Invalid(20404, status=404)
            return 200, self._shown(message), []
        raise _Invalid(20404, status=404)

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self._account_sid}:{self._auth_token}"

    def _own_account(self, account_sid: str) -> None:
        if account_sid != self._account_sid:
            raise _Invalid(20404, status=404)

    def _create(
        self, form: dict[str, list[str]]
    ) -> tuple[int, Any, list[tuple[str, list[tuple[str, int | None]]]]]:
        values = {key: items[-1] for key, items in form.items()}
        to = values.get("To", "")
        sender = values.get("From", "")
        service = values.get("MessagingServiceSid", "")
        if not to:
            raise _Invalid(21604)
        if not sender and not service:
            raise _Invalid(21603)
        whatsapp, number = _address(to)
        if not E164.match(number):
            raise _Invalid(21211, f"Invalid 'To' Phone Number: {to}")
        if sender and _address(sender)[0] != whatsapp:
            raise _Invalid(63007)
        content_sid = values.get("ContentSid", "")
        variables_text = values.get("ContentVariables", "")
        if content_sid:
            template = self._templates.get(content_sid)
            if template is None or not CONTENT_SID.match(content_sid):
                raise _Invalid(21655)
            variables = _variables(variables_text) if variables_text else {}
            body = _rendered(template, variables)
        elif variables_text:
            raise _Invalid(21654)
        else:
            body = values.get("Body", "")
            if not body and not form.get("MediaUrl"):
                raise _Invalid(21602)
            if len(body) > BODY_LIMIT:
                raise _Invalid(21617)
        callback = values.get("StatusCallback", "")
        if callback and not _http_url(callback):
            raise _Invalid(21609)
        failure = self._failures.get(to)
        if failure is not None and failure.on_create:
            raise _Invalid(failure.error_code)
        sid = "SM" + uuid.uuid4().hex
        now = _now()
        message: dict[str, Any] = {
            "account_sid": self._account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": str(len(form.get("MediaUrl", []))),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if sender else "accepted",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{self._account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{self._account_sid}/Messages/{sid}.json",
            "_status_callback": callback,
            "_content_sid": content_sid,
            "_content_variables": variables_text,
        }
        self._messages[sid] = message
        steps: list[tuple[str, int | None]]
        if failure is None:
            steps = [("sent", None), ("delivered", None)]
            if whatsapp and self._whatsapp_read:
                steps.append(("read", None))
        elif failure.status == "undelivered":
            steps = [("sent", None), ("undelivered", failure.error_code)]
        else:
            steps = [("failed", failure.error_code)]
        return 201, self._shown(message), [(sid, steps)]

    @staticmethod
    def _shown(record: dict[str, Any]) -> dict[str, Any]:
        """The message as the API shows it, without the fake's private fields."""
        return {key: copy.deepcopy(value) for key, value in record.items() if key[0] != "_"}

    # Controls over HTTP.

    def _control(self, method: str, path: str, raw: bytes) -> _Reply:
        if method == "GET" and path == "/__fake__/state":
            return _json_reply(200, self.state())
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return _json_reply(400, {"error": "body is not JSON"})
        if not isinstance(body, dict):
            return _json_reply(400, {"error": "body is not a JSON object"})
        try:
            if method == "POST" and path == "/__fake__/mode":
                slow_seconds = body.get("slow_seconds")
                self.set_mode(
                    str(body.get("mode")),
                    slow_seconds=None if slow_seconds is None else float(slow_seconds),
                )
                return _json_reply(200, {"mode": self.mode})
            if method == "POST" and path == "/__fake__/fail":
                self.fail_number(
                    str(body["number"]),
                    int(body["error_code"]),
                    status=str(body.get("status") or ""),
                    on_create=bool(body.get("on_create", False)),
                )
                return _json_reply(200, self.state()["failures"])
            if method == "POST" and path == "/__fake__/template":
                self.add_template(str(body["content_sid"]), str(body["text"]))
                return _json_reply(200, {"templates": sorted(self.state()["templates"])})
            if method == "POST" and path == "/__fake__/inbound":
                outcome = self.inbound(
                    str(body["from"]),
                    str(body["to"]),
                    str(body.get("body") or ""),
                    str(body["webhook_url"]),
                    profile_name=str(body.get("profile_name") or ""),
                    button_payload=str(body.get("button_payload") or ""),
                    button_text=str(body.get("button_text") or ""),
                )
                return _json_reply(200, outcome)
        except (KeyError, TypeError, ValueError) as error:
            return _json_reply(400, {"error": str(error)})
        return _json_reply(404, {"error": f"no control {method} {path}"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m integrations.messaging.fake_twilio",
        description="A fake Twilio Messages API: SMS and WhatsApp, signed status callbacks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=16750)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    parser.add_argument("--whatsapp-read", action="store_true")
    parser.add_argument(
        "--template",
        action="append",
        default=[],
        metavar="HX…=TEXT",
        help="an approved content template, e.g. 'HX…=Your visit is on {{1}}'; repeatable",
    )
    arguments = parser.parse_args(argv)
    templates = {}
    for item in arguments.template:
        content_sid, separator, text = item.partition("=")
        if not separator or not CONTENT_SID.match(content_sid):
            parser.error(f"--template wants HX<32 hex digits>=TEXT, not {item!r}")
        templates[content_sid] = text
    fake = FakeTwilio(
        arguments.host,
        arguments.port,
        account_sid=arguments.account_sid,
        auth_token=arguments.auth_token,
        slow_seconds=arguments.slow_seconds,
        whatsapp_read=arguments.whatsapp_read,
        templates=templates,
    )

    def stop(signal_number: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"Fake Twilio listening on {fake.root_url}", flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
