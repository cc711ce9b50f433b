"""The running part of a local fake of an outside system (a fiscal register, a payment gateway,
a mail server): a server on a local port, HTTP unless the fake says otherwise, served from a
thread in tests or from ``python -m`` as a process (the demo's register is one). Each fake
supplies its request handler and its behaviour."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any


class QuietFakeServer(FakeServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that gave up on a slow answer is expected here."""


@dataclass
class FakeReply:
    """What a fake answers one HTTP request with; ``delay_seconds`` holds the answer back (a
    slow peer)."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


def json_reply(status: int, body: Any, **options: Any) -> FakeReply:
    return FakeReply(status, json.dumps(body, ensure_ascii=False).encode(), **options)


class FakeHandler(BaseHTTPRequestHandler):
    """Hands each request to ``server.fake.handle(method, path, raw body, headers)`` and writes
    the ``FakeReply`` it returns; ``replied`` runs after the answer is written."""

    server: FakeServer

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: each fake keeps its own record of requests."""

    def replied(self, reply: Any) -> None:
        """What the fake does once the answer is out (nothing by default)."""

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        reply = self.server.fake.handle(method, path, raw, dict(self.headers.items()))
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        self.replied(reply)


class FakePeer:
    """Start, stop and address a fake; subclasses set ``handler_class`` and ``server_class`` and
    call ``_listen`` from their ``__init__``."""

    handler_class: type[socketserver.BaseRequestHandler] = BaseHTTPRequestHandler
    server_class: type[socketserver.TCPServer] = FakeServer
    thread_name = "fake-peer"

    def _listen(self, host: str, port: int) -> None:
        self._host = host
        self._server = self.server_class((host, port), self.handler_class)
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, port: int = 0, host: str = "127.0.0.1", **options: Any) -> Self:
        """A fake serving in a background thread; ``port=0`` picks a free port."""
        fake = cls(host, port, **options)  # type: ignore[call-arg]
        fake._thread = threading.Thread(
            target=fake._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{cls.thread_name}-{fake.port}",
            daemon=True,
        )
        fake._thread.start()
        return fake

    def serve_forever(self) -> None:
        """Serve in the calling thread (the ``python -m`` entry point)."""
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://{self._host}:{self.port}"


class ModalFakePeer(FakePeer):
    """A fake that can be switched between ``modes`` ("ok" first, then the failures it plays:
    down, busy, slow ...) in process with ``set_mode`` or over its control endpoint; subclasses
    call ``_modes_init`` first in their ``__init__`` (it also makes the fake's ``_lock``)."""

    modes: tuple[str, ...] = ("ok",)

    def _modes_init(self, slow_seconds: float) -> None:
        self._lock = threading.RLock()
        self._mode = self.modes[0]
        self._slow_seconds = slow_seconds

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    def set_mode(self, mode: str, *, slow_seconds: float | None = None) -> None:
        if mode not in self.modes:
            raise ValueError(f"unknown mode {mode!r}: one of {', '.join(self.modes)}")
        with self._lock:
            self._mode = mode
            if slow_seconds is not None:
                self._slow_seconds = slow_seconds
