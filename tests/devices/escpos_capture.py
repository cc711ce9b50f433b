"""A local TCP server standing in for an ESC/POS network printer: it keeps every byte sent."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest


class EscposCapture(socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EscposCaptureHandler)
        self.received: list[bytes] = []
        self.connection_closed = threading.Event()


class EscposCaptureHandler(socketserver.BaseRequestHandler):
    server: EscposCapture

    def handle(self) -> None:
        chunks = []
        while chunk := self.request.recv(4096):
            chunks.append(chunk)
        self.server.received.append(b"".join(chunks))
        self.server.connection_closed.set()


@pytest.fixture
def printer() -> Iterator[EscposCapture]:
    server = EscposCapture()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()
