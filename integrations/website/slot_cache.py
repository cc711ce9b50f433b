"""A short-lived cache of rendered free-slot answers, exact to the last booking.

Websites and aggregators ask the same slot searches over and over; computing each answer costs
tens of milliseconds of Python, serving a stored one well under one. An answer is stored with
*the branch's schedule version* (``scheduling.live``), which every booking, move, cancellation,
hold and release in the branch increments as it commits, so the first request after any change
misses the cache and sees the change. What does not bump the version (a hold lapsing, the
minimum notice moving on, a work schedule edited) is covered by the time to live.

An answer of the current version is fresh for ``SLOT_CACHE_SECONDS``. After that, for up to
``STALE_SECONDS`` more, it is still served while a single request of the process computes its
successor *after its own answer has been sent* (``RefreshingResponse``): a search that has
just expired costs no visitor a wait, and a burst of expiring searches is recomputed one at a
time instead of all at once, each holding the process's interpreter lock for tens of
milliseconds. Older answers are never served: the request computes a new one before answering.
With Redis unreachable there is no version and no caching.

Entries live in the worker process: a lookup costs one Redis GET (the version) and no database
query at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.http import HttpResponse

from scheduling import live

logger = logging.getLogger(__name__)

SLOT_CACHE_SECONDS = 2.0
STALE_SECONDS = 2.0
# A refresh not finished by then (its response was never closed) no longer blocks the next one.
REFRESH_CLAIM_SECONDS = 10.0
MAX_ENTRIES = 2048

Key = tuple[str, str]  # (branch public id, request)


@dataclass(frozen=True)
class _Entry:
    version: int
    stored_at: float
    body: bytes


@dataclass(frozen=True)
class Lookup:
    """What the cache holds for one request: the answer to serve (None: compute it now), and
    whether this request has claimed the process's refresh of that answer."""

    key: Key | None
    version: int | None
    body: bytes | None = None
    refresh_claimed: bool = False


class _Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._refresh_claimed_at: float | None = None

    def lookup(self, key: Key, version: int) -> Lookup:
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is None or found.version != version:
                return Lookup(key, version)
            age = now - found.stored_at
            if age <= SLOT_CACHE_SECONDS:
                return Lookup(key, version, found.body)
            if age > SLOT_CACHE_SECONDS + STALE_SECONDS:
                del self._entries[key]
                return Lookup(key, version)
            claimed = self._refresh_claimed_at
            if claimed is not None and now - claimed <= REFRESH_CLAIM_SECONDS:
                return Lookup(key, version, found.body)
            self._refresh_claimed_at = now
            return Lookup(key, version, found.body, refresh_claimed=True)

    def put(self, key: Key, version: int, body: bytes) -> None:
        with self._lock:
            self._entries[key] = _Entry(version, time.monotonic(), body)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def discard(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def refresh_release(self) -> None:
        with self._lock:
            self._refresh_claimed_at = None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._refresh_claimed_at = None


_store = _Store()


def _version(branch_public_id: Any) -> int | None:
    try:
        return live.schedule_version(branch_public_id)
    except redis.RedisError:
        return None


def lookup(branch_public_id: Any, request_key: str) -> Lookup:
    """The stored answer to ``request_key`` in the branch, if it may still be served."""
    version = _version(branch_public_id)
    if version is None:
        return Lookup(None, None)
    return _store.lookup((str(branch_public_id), request_key), version)


def remember(found: Lookup, body: bytes) -> None:
    """Store ``body``, computed after ``found`` was looked up, under the version read then (a
    change committed meanwhile has bumped the version, so it is never hidden)."""
    if found.key is not None and found.version is not None:
        _store.put(found.key, found.version, body)


def refresh(found: Lookup, compute: Callable[[], bytes]) -> None:
    """Compute the successor of the stale answer ``found`` served, under the version read now,
    and release the process's refresh claim. Never raises: the answer is already sent, and a
    failed refresh only drops the entry so that the next request computes (and reports) it."""
    assert found.key is not None
    try:
        version = _version(found.key[0])
        if version is None:
            _store.discard(found.key)
            return
        body = compute()
        _store.put(found.key, version, body)
    except Exception:
        logger.exception("Refreshing the free-slot answer %s failed", found.key[1])
        _store.discard(found.key)
    finally:
        _store.refresh_release()


class RefreshingResponse(HttpResponse):
    """A stored answer whose refresh runs when the server closes the response, i.e. once the
    body has been written to the client (WSGI and ASGI servers and Django's test client all
    close a response after sending it)."""

    def __init__(self, body: bytes, *, after_sending: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._after_sending: Callable[[], None] | None = after_sending

    def close(self) -> None:
        after_sending, self._after_sending = self._after_sending, None
        try:
            if after_sending is not None:
                after_sending()
        finally:
            super().close()


def answer(
    branch_public_id: Any, request_key: str, compute: Callable[[], bytes], *, content_type: str
) -> HttpResponse:
    """The answer to ``request_key``: stored, or computed now (and stored), or stored but stale
    and refreshed once it has been sent."""
    found = lookup(branch_public_id, request_key)
    if found.body is None:
        body = compute()
        remember(found, body)
        return HttpResponse(body, content_type=content_type)
    if found.refresh_claimed:
        return RefreshingResponse(
            found.body,
            after_sending=lambda: refresh(found, compute),
            content_type=content_type,
        )
    return HttpResponse(found.body, content_type=content_type)


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


def forget_answers() -> None:
    """Drop every stored answer and any refresh claim; the schedules read stay."""
    _store.clear()


def forget_all() -> None:
    """Drop every stored answer, any refresh claim and the schedules read (tests)."""
    global _schedules
    forget_answers()
    with _schedules_lock:
        _schedules = None
