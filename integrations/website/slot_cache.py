"""A short-lived cache of rendered free-slot answers, exact to the last booking.

Websites and aggregators ask the same slot searches over and over; computing each answer costs
tens of milliseconds of Python, serving a stored one well under one. An answer is stored under
its request *and the branch's schedule version* (``scheduling.live``), which every booking,
move, cancellation, hold and release in the branch increments as it commits, so the first
request after any change misses the cache and sees the change. What does not bump the version
(a hold lapsing, the minimum notice moving on, a work schedule edited) is covered by the time to
live of ``SLOT_CACHE_SECONDS``. With Redis unreachable there is no version and no caching.

Entries live in the worker process: a lookup costs one Redis GET (the version) and no database
query at all.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import redis

from scheduling import live

SLOT_CACHE_SECONDS = 2.0
MAX_ENTRIES = 2048


class _Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, bytes]] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            stored_at, body = found
            if now - stored_at > SLOT_CACHE_SECONDS:
                del self._entries[key]
                return None
            return body

    def put(self, key: tuple[Any, ...], body: bytes) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), body)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_store = _Store()


_schedules_lock = threading.Lock()
_schedules: tuple[float, list[Any]] | None = None


def online_schedules_recent() -> list[Any]:
    """``selectors.online_schedules()`` as read at most ``SLOT_CACHE_SECONDS`` ago in this
    process: who is bookable online and for what changes rarely, and reading it costs a cache
    miss most of its time. Bookings never depend on it: they re-check everything."""
    global _schedules
    from .selectors import online_schedules

    now = time.monotonic()
    with _schedules_lock:
        if _schedules is not None and now - _schedules[0] <= SLOT_CACHE_SECONDS:
            return _schedules[1]
    fresh = online_schedules()
    with _schedules_lock:
        _schedules = (now, fresh)
    return fresh


def cache_key(branch_public_id: Any, request_key: str) -> tuple[Any, ...] | None:
    """The key of an answer, or None when the branch's version cannot be read."""
    try:
        version = live.schedule_version(branch_public_id)
    except redis.RedisError:
        return None
    return (str(branch_public_id), version, request_key)


def cached(key: tuple[Any, ...] | None) -> bytes | None:
    return _store.get(key) if key is not None else None


def remember(key: tuple[Any, ...] | None, body: bytes) -> None:
    if key is not None:
        _store.put(key, body)


def forget_all() -> None:
    """Drop every stored answer and the schedules read (tests)."""
    global _schedules
    _store.clear()
    with _schedules_lock:
        _schedules = None
