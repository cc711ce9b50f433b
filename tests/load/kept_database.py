"""Benchmark databases that are built once and kept on the server between runs.

A benchmark with a large data set builds it in a database of its own, records what it was built
with in a ``bench_meta`` row (a fingerprint and the load time), and reuses it while the
fingerprint matches; new migrations are applied to the kept data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import connection


def server_connection(dbname: str) -> psycopg.Connection[Any]:
    """An autocommit connection to ``dbname`` on the server the tests use."""
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
    )


def kept_database_matches(name: str, fingerprint: str) -> tuple[bool, float]:
    """Whether ``name`` exists and was built with ``fingerprint``; and how long it took."""
    with server_connection("postgres") as server:
        exists = server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    if not exists:
        return False, 0.0
    with server_connection(name) as bench:
        has_meta = bench.execute("SELECT to_regclass('bench_meta') IS NOT NULL").fetchone()
        if not (has_meta and has_meta[0]):
            return False, 0.0
        row = bench.execute("SELECT fingerprint, load_seconds FROM bench_meta").fetchone()
    return (row is not None and row[0] == fingerprint), (float(row[1]) if row else 0.0)


def recreate_database(name: str) -> None:
    with server_connection("postgres") as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.execute(f'CREATE DATABASE "{name}"')


def timed(steps: list[tuple[str, float]], label: str, action: Callable[[], Any]) -> Any:
    """Run ``action`` and append how long it took to ``steps`` under ``label``."""
    started = time.perf_counter()
    result = action()
    steps.append((label, time.perf_counter() - started))
    return result
