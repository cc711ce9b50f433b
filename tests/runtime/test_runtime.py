"""The embedded runtime: starts real servers, reuses running ones, and fails with one clear line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from clinic.runtime import RuntimeConfigError, mask_password, resolve_services
from clinic.runtime.postgres import EmbeddedPostgres
from clinic.runtime.redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield int(listener.getsockname()[1])


@pytest.fixture
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


def test_embedded_postgres_starts_serves_queries_and_is_reused(var_dir: Path) -> None:
    server = EmbeddedPostgres(base_dir=var_dir / "postgres", port=free_port())
    try:
        running = server.ensure_running()
        pid = running.running_pid()
        assert pid is not None
        with psycopg.connect(running.url.replace("postgres://", "postgresql://")) as connection:
            extensions = {
                row[0] for row in connection.execute("SELECT name FROM pg_available_extensions")
            }
            assert connection.execute("SELECT current_database()").fetchone() == ("clinic",)
        assert {"btree_gist", "pg_trgm"} <= extensions
        again = EmbeddedPostgres(base_dir=var_dir / "postgres", port=free_port()).ensure_running()
        assert again.running_pid() == pid
        assert again.port == running.port, "a running server is joined on its own port"
    finally:
        assert server.stop() is True
    assert server.running_pid() is None


def test_embedded_postgres_on_a_busy_port_says_what_to_fix(var_dir: Path, busy_port: int) -> None:
    server = EmbeddedPostgres(base_dir=var_dir / "postgres", port=busy_port)
    with pytest.raises(RuntimeConfigError) as raised:
        server.ensure_running()
    message = str(raised.value)
    assert f"Port {busy_port}" in message
    assert "CLINIC_EMBEDDED_PG_PORT" in message
    assert "\n" not in message
    assert server.running_pid() is None


def test_embedded_redis_starts_answers_and_is_reused(var_dir: Path) -> None:
    server = EmbeddedRedis(base_dir=var_dir / "redis", port=free_port())
    try:
        running = server.ensure_running()
        pid = running.running_pid()
        client = redis.Redis.from_url(running.url)
        assert client.set("runtime-test", "1", nx=True, px=5000) is True
        assert client.set("runtime-test", "2", nx=True, px=5000) is None
        again = EmbeddedRedis(base_dir=var_dir / "redis", port=free_port()).ensure_running()
        assert again.running_pid() == pid
        assert again.port == running.port
    finally:
        assert server.stop() is True
    assert server.running_pid() is None


def test_embedded_redis_on_a_busy_port_says_what_to_fix(var_dir: Path, busy_port: int) -> None:
    with pytest.raises(RuntimeConfigError, match="CLINIC_EMBEDDED_REDIS_PORT"):
        EmbeddedRedis(base_dir=var_dir / "redis", port=busy_port).ensure_running()


def test_configured_urls_are_used_without_starting_anything(
    monkeypatch: pytest.MonkeyPatch, var_dir: Path
) -> None:
    monkeypatch.setenv("CLINIC_VAR_DIR", str(var_dir))
    monkeypatch.setenv("DATABASE_URL", "postgres://clinic:secret@db.internal:5432/clinic")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/2")
    services = resolve_services()
    assert services.database_url == "postgres://clinic:secret@db.internal:5432/clinic"
    assert services.redis_url == "redis://cache.internal:6379/2"
    assert "secret" not in services.describe()
    assert list(var_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://root@localhost/clinic", "is not a PostgreSQL URL"),
        ("DATABASE_URL", "postgres://root@localhost", "names no database"),
        ("REDIS_URL", "http://localhost:6379", "is not a Redis URL"),
        ("CLINIC_EMBEDDED_PG_PORT", "eighty", "is not a TCP port number"),
    ],
)
def test_malformed_configuration_is_rejected_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://h:6379/0")
    if variable == "CLINIC_EMBEDDED_PG_PORT":
        monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv(variable, value)
    with pytest.raises(RuntimeConfigError) as raised:
        resolve_services()
    assert expected in str(raised.value)
    assert variable in str(raised.value)


def test_password_is_masked_in_messages() -> None:
    assert mask_password("postgres://u:hunter2@h:5432/d") == "postgres://u:***@h:5432/d"
    assert mask_password("redis://h:6379/0") == "redis://h:6379/0"


def _manage(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic.settings.base", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unreachable_database_url_gives_one_line_not_a_traceback() -> None:
    result = _manage("runtime", "check", DATABASE_URL="postgres://clinic@127.0.0.1:1/clinic")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Cannot connect to the database postgres://clinic@127.0.0.1:1/clinic" in result.stderr
    assert "fix DATABASE_URL" in result.stderr


def test_busy_embedded_port_gives_one_line_not_a_traceback(var_dir: Path, busy_port: int) -> None:
    result = _manage(
        "check",
        CLINIC_VAR_DIR=str(var_dir),
        CLINIC_EMBEDDED_PG_PORT=str(busy_port),
        DATABASE_URL="",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: Port {busy_port} for the embedded PostgreSQL is in use by another program: "
        f"set CLINIC_EMBEDDED_PG_PORT to a free port, stop that program, "
        f"or set DATABASE_URL to use an existing server."
    ]


def test_runtime_check_names_the_database_and_redis_in_use(db: Any) -> None:
    from django.db import connection

    database = connection.settings_dict
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    result = _manage("runtime", "check", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Database: PostgreSQL from DATABASE_URL ({url})")
    assert "; Redis: " in result.stdout


def test_a_busy_default_port_is_replaced_by_a_free_one(var_dir: Path, busy_port: int) -> None:
    """Without an explicit port, a second checkout's servers take free ports instead of failing."""
    postgres = EmbeddedPostgres(base_dir=var_dir / "postgres", port=busy_port, port_fixed=False)
    cache = EmbeddedRedis(base_dir=var_dir / "redis", port=busy_port, port_fixed=False)
    try:
        running_postgres = postgres.ensure_running()
        running_redis = cache.ensure_running()
        assert busy_port not in (running_postgres.port, running_redis.port)
        assert redis.Redis.from_url(running_redis.url).ping()
        with psycopg.connect(running_postgres.url.replace("postgres://", "postgresql://")) as db:
            assert db.execute("SELECT 1").fetchone() == (1,)
        assert EmbeddedRedis(base_dir=var_dir / "redis", port=1).ensure_running().port == (
            running_redis.port
        )
    finally:
        postgres.stop()
        cache.stop()
