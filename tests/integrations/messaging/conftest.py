"""A stand-in for the clinic's webhook endpoints, for the fake Twilio to post to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

from integrations.messaging.twilio_provider import EMPTY_TWIML


@dataclass(frozen=True)
class Delivery:
    """One webhook request as the clinic would see it: the full URL it was posted to, its
    headers and its form."""

    url: str
    headers: dict[str, str]
    form: dict[str, str]


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True
    deliveries: list[Delivery]
    arrived: threading.Condition


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        delivery = Delivery(
            url=f"http://127.0.0.1:{self.server.server_port}{self.path}",
            headers={name.lower(): value for name, value in self.headers.items()},
            form=dict(parse_qsl(raw, keep_blank_values=True)),
        )
        with self.server.arrived:
            self.server.deliveries.append(delivery)
            self.server.arrived.notify_all()
        body = EMPTY_TWIML.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class Receiver:
    def __init__(self, server: _Receiver) -> None:
        self._server = server

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    @property
    def deliveries(self) -> list[Delivery]:
        with self._server.arrived:
            return list(self._server.deliveries)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """The first ``count`` deliveries, once they have arrived."""
        with self._server.arrived:
            self._server.arrived.wait_for(
                lambda: len(self._server.deliveries) >= count, timeout=timeout
            )
            return list(self._server.deliveries[:count])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = _Receiver(("127.0.0.1", 0), _ReceiverHandler)
    server.deliveries = []
    server.arrived = threading.Condition()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield Receiver(server)
    server.shutdown()
    thread.join()
    server.server_close()
