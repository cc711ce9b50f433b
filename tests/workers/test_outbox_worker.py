"""End to end: a real Celery worker relays outbox messages to a local HTTP peer (webhook)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction

from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.services import outbox_enqueue

ROOT = Path(__file__).resolve().parents[2]


class Peer:
    """A local HTTP server that records what it was sent and fails the first N requests."""

    def __init__(self, failures: int = 0) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.failures_left = failures
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with peer.lock:
                    failing = peer.failures_left > 0
                    peer.failures_left -= 1 if failing else 0
                    if not failing:
                        peer.received.append((self.headers["Idempotency-Key"], body))
                self.send_response(503 if failing else 200)
                self.end_headers()
                self.wfile.write(b"busy" if failing else b"ok")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def worker(transactional_db: Any, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real Celery worker on the test database and the test broker."""
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic.settings.test",
        "DATABASE_URL": (
            f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
        ),
    }
    if settings.get("PASSWORD"):
        env["DATABASE_URL"] = env["DATABASE_URL"].replace(
            f"{settings['USER']}@", f"{settings['USER']}:{settings['PASSWORD']}@"
        )
    log_path = tmp_path / "worker.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "clinic",
            "worker",
            "--pool",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_for(condition: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_worker_delivers_once_with_the_idempotency_key(
    worker: subprocess.Popen[str], settings: Any
) -> None:
    peer = Peer()
    try:
        with transaction.atomic():
            message = outbox_enqueue(
                channel="webhook",
                payload={"url": peer.url, "body": {"appointment": 42}},
                subject="appointment 42",
            )
        delivered = wait_for(
            lambda: OutboxMessage.objects.get(pk=message.pk).state == OutboxState.DELIVERED
        )
        assert delivered, worker.log_path.read_text()  # type: ignore[attr-defined]
        assert peer.received == [(message.idempotency_key, {"appointment": 42})]
        time.sleep(1)
        assert len(peer.received) == 1
    finally:
        peer.close()


def test_worker_retries_a_busy_peer_with_the_same_key(
    worker: subprocess.Popen[str],
) -> None:
    peer = Peer(failures=1)
    try:
        with transaction.atomic():
            message = outbox_enqueue(channel="webhook", payload={"url": peer.url, "body": {"n": 1}})
        assert wait_for(lambda: OutboxMessage.objects.get(pk=message.pk).attempts >= 1)
        assert wait_for(
            lambda: OutboxMessage.objects.get(pk=message.pk).state == OutboxState.PENDING
        )
        current = OutboxMessage.objects.get(pk=message.pk)
        assert "HTTP 503" in current.last_error
        # Make it due now instead of waiting out the backoff, then let the worker retry it.
        OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=current.created_at)
        from clinic.outbox.tasks import outbox_relay_channel

        outbox_relay_channel.apply_async(args=["webhook"], queue="outbox.webhook")
        assert wait_for(
            lambda: OutboxMessage.objects.get(pk=message.pk).state == OutboxState.DELIVERED
        )
        assert peer.received == [(message.idempotency_key, {"n": 1})]
        assert OutboxMessage.objects.get(pk=message.pk).attempt_log.count() == 2
    finally:
        peer.close()


def test_a_peer_that_rejects_the_message_dead_letters_it(transactional_db: Any) -> None:
    from clinic.outbox.services import outbox_relay

    class Rejecting(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(422)
            self.end_headers()
            self.wfile.write(b"unknown patient")

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Rejecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        message = outbox_enqueue(
            channel="webhook",
            payload={"url": f"http://127.0.0.1:{server.server_address[1]}/", "body": {}},
        )
        outbox_relay(channel="webhook")
        message.refresh_from_db()
        assert message.state == OutboxState.DEAD
        assert "HTTP 422" in message.last_error
        assert "unknown patient" in message.last_error
    finally:
        server.shutdown()
