"""The running part of a local fake of an outside system (a fiscal register, a payment gateway,
a mail server): a server on a local port, HTTP unless the fake says otherwise, served from a
thread in tests or from ``python -m`` as a process (the demo's register is one). Each fake
supplies its request handler and its behaviour."""

from __future__ import annotations

import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any


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
