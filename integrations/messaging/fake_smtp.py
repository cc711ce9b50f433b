"""A small SMTP server for tests: enough of RFC 5321 for ``smtplib`` to deliver a message
(EHLO/HELO, AUTH PLAIN and LOGIN when credentials are set, MAIL FROM, RCPT TO, DATA, RSET,
NOOP, QUIT), recording every message it accepts. STARTTLS is not offered.

Controls: ``refuse(address)`` answers RCPT TO for that address with a permanent 550 (or any
code given, a 4xx for a temporary refusal); ``set_mode("down")`` greets every connection with
421 and hangs up. ``messages`` holds what was accepted.

Started and stopped like the HTTP fakes: ``fake = FakeSmtp.start(port=0)``, ``fake.port``,
``fake.stop()``, or as a context manager. Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import email.policy
import socketserver
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from clinic.core.fake_peer import FakePeer

__all__ = ["FakeSmtp", "ReceivedMail"]

MODES = ("ok", "down")
LINE_LIMIT = 65536


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: the envelope and the data as received (CRLF line ends, dot
    stuffing removed)."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        """The data parsed, with the wire's CRLF line ends turned into Python's newlines."""
        parsed = email.message_from_bytes(
            self.data.replace(b"\r\n", b"\n"), policy=email.policy.default
        )
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeSmtp

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that hangs up mid-session is expected here."""


class _Session(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        fake = self.server.fake
        if fake.mode == "down":
            self._reply("421 4.3.2 Service not available, closing transmission channel")
            return
        self._authenticated = not fake.username
        self._reset()
        self._reply(f"220 {fake.hostname} ESMTP fake")
        while True:
            line = self.rfile.readline(LINE_LIMIT)
            if not line:
                return
            command = line.decode(errors="replace").rstrip("\r\n")
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                self._reply("221 2.0.0 Bye")
                return
            self._command(verb, argument)

    def _command(self, verb: str, argument: str) -> None:
        fake = self.server.fake
        if verb == "EHLO":
            self._reset()
            lines = [fake.hostname, "8BITMIME", "SIZE 10485760"]
            if fake.username:
                lines.append("AUTH PLAIN LOGIN")
            lines.append("SMTPUTF8")
            self._reply(
                "\r\n".join(
                    f"250{'-' if index < len(lines) - 1 else ' '}{text}"
                    for index, text in enumerate(lines)
                )
            )
        elif verb == "HELO":
            self._reset()
            self._reply(f"250 {fake.hostname}")
        elif verb == "AUTH":
            self._auth(argument)
        elif verb in ("RSET", "NOOP"):
            if verb == "RSET":
                self._reset()
            self._reply("250 2.0.0 Ok")
        elif verb == "MAIL":
            if not self._authenticated:
                self._reply("530 5.7.0 Authentication required")
                return
            self._reset()
            self._mail_from = _path(argument, "FROM:")
            self._in_transaction = True
            self._reply("250 2.1.0 Ok")
        elif verb == "RCPT":
            self._recipient(_path(argument, "TO:"))
        elif verb == "DATA":
            self._data()
        else:
            self._reply("502 5.5.2 Error: command not recognized")

    def _recipient(self, address: str) -> None:
        if not self._in_transaction:
            self._reply("503 5.5.1 Error: need MAIL command")
            return
        refusal = self.server.fake.refusal(address)
        if refusal is not None:
            self._reply(refusal)
            return
        self._recipients.append(address)
        self._reply("250 2.1.5 Ok")

    def _data(self) -> None:
        if not self._recipients:
            self._reply("554 5.5.1 Error: no valid recipients")
            return
        self._reply("354 End data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline(LINE_LIMIT)
            if not line:
                return
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b".."):
                line = line[1:]
            lines.append(line.rstrip(b"\r\n") + b"\r\n")
        queue_id = uuid.uuid4().hex[:12].upper()
        self.server.fake._accept(
            ReceivedMail(self._mail_from, tuple(self._recipients), b"".join(lines))
        )
        self._reset()
        self._reply(f"250 2.0.0 Ok: queued as {queue_id}")

    def _auth(self, argument: str) -> None:
        fake = self.server.fake
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if not fake.username or mechanism not in ("PLAIN", "LOGIN"):
            self._reply("504 5.5.4 Unrecognized authentication type")
            return
        try:
            if mechanism == "PLAIN":
                response = initial or self._challenge("")
                _, username, password = _decoded(response).split("\0", 2)
            else:
                username = _decoded(initial or self._challenge("VXNlcm5hbWU6"))
                password = _decoded(self._challenge("UGFzc3dvcmQ6"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            self._reply("501 5.5.2 Cannot decode response")
            return
        if (username, password) == (fake.username, fake.password):
            self._authenticated = True
            self._reply("235 2.7.0 Authentication successful")
        else:
            self._reply("535 5.7.8 Error: authentication failed")

    def _challenge(self, text: str) -> str:
        self._reply(f"334 {text}")
        return self.rfile.readline(LINE_LIMIT).decode(errors="replace").strip()

    def _reset(self) -> None:
        self._mail_from = ""
        self._recipients: list[str] = []
        self._in_transaction = False

    def _reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()


def _path(argument: str, prefix: str) -> str:
    """The address of ``MAIL FROM:<a@b> SIZE=1`` or ``RCPT TO:<a@b>``."""
    text = argument.strip()
    if text.upper().startswith(prefix):
        text = text[len(prefix) :].strip()
    text = text.split(" ", 1)[0]
    return text.removeprefix("<").removesuffix(">")


def _decoded(text: str) -> str:
    return base64.b64decode(text, validate=True).decode()


class FakeSmtp(FakePeer):
    """The fake SMTP server; see the module docstring for the behaviour."""

    handler_class = _Session
    server_class = _Server
    thread_name = "fake-smtp"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "",
        password: str = "",
        hostname: str = "fake-smtp.test",
    ) -> None:
        self._lock = threading.Lock()
        self._mode = "ok"
        self._refusals: dict[str, str] = {}
        self._messages: list[ReceivedMail] = []
        self.username = username
        self.password = password
        self.hostname = hostname
        self._listen(host, port)

    @property
    def host(self) -> str:
        return self._host

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
        with self._lock:
            self._mode = mode

    def refuse(
        self, address: str, *, code: int = 550, reply: str = "5.1.1 <{address}>: User unknown"
    ) -> None:
        """Answer RCPT TO for ``address`` with ``code`` (550: permanent, 4xx: try later)."""
        with self._lock:
            self._refusals[address.lower()] = f"{code} {reply.format(address=address)}"

    def refusal(self, address: str) -> str | None:
        with self._lock:
            return self._refusals.get(address.lower())

    def _accept(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)
