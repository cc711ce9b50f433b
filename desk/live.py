"""Live updates for the schedule grid: a Server-Sent Events stream and a version to poll.

``schedule_events`` streams what ``scheduling.live.schedule_changed`` publishes on the branch's
Redis channel. Under ASGI (uvicorn, production and ``dev.py run``) it is an async generator on
``redis.asyncio`` pub/sub, so an open grid holds a socket and no thread; each stream ends after
``ASGI_STREAM_SECONDS`` so that permissions are checked again on the browser's reconnect. Under
WSGI (the test server, a gthread gunicorn) an open stream does hold a thread, so the stream is a
blocking loop that ends after ``WSGI_STREAM_SECONDS`` and EventSource reconnects by itself.

Every stream starts with ``retry: 1000`` and an ``event: version`` carrying the branch's counter,
read after subscribing: a grid that compares it with the last version it saw knows whether it
missed a change while reconnecting. Then one ``event: schedule`` per change (its JSON as data,
its version as the event id) and a comment every ``HEARTBEAT_SECONDS`` so proxies keep the
connection open.

``schedule_version`` is the fallback for browsers or proxies that cannot keep a stream: the
counter alone, read from Redis, polled every second and a half.

Permissions are checked before anything is streamed: a login with the booking capability, in a
branch the user works in (404 otherwise, so a branch's existence is not revealed).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.utils.translation import gettext as _
from redis.backoff import NoBackoff

from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record
from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from clinic.core.selectors import branch_get_for_actor
from scheduling import live as schedule_live
from scheduling.live import channel_name, version_key

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
WSGI_STREAM_SECONDS = 25.0
ASGI_STREAM_SECONDS = 600.0
RETRY_MILLISECONDS = 1000


def _sync_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=1,
        socket_timeout=HEARTBEAT_SECONDS + 5,
        retry=redis.retry.Retry(NoBackoff(), 1),
    )


def _async_client(socket_timeout: float) -> redis.asyncio.Redis:
    """A connection of its own per stream (pub/sub needs one); one immediate retry, not
    redis-py's default of three with backoff that would keep a refused grid waiting."""
    return redis.asyncio.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=1,
        socket_timeout=socket_timeout,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
    )


def _authorise(request: HttpRequest) -> str | HttpResponse:
    """The public id of the branch asked for, or the response that refuses the request.

    Synchronous (it reads the session and the database): async callers wrap it in
    ``sync_to_async``.
    """
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not has_capability(user, Capability.BOOK_APPOINTMENT):
        security_event_record(
            kind=SecurityEventKind.ACCESS_DENIED,
            request=request,
            user=user,
            detail="page schedule live updates",
        )
        raise PermissionDenied
    raw = request.GET.get("branch", "").strip()
    if not raw:
        return HttpResponseBadRequest(
            _("The branch is missing: add ?branch= with the branch's public id."),
            content_type="text/plain; charset=utf-8",
        )
    try:
        public_id = uuid.UUID(raw)
    except ValueError:
        return HttpResponseBadRequest(
            _("The branch “%(value)s” is not a branch id.") % {"value": raw},
            content_type="text/plain; charset=utf-8",
        )
    branch = branch_get_for_actor(actor=user, public_id=public_id)
    return str(branch.public_id)


def _unavailable() -> JsonResponse:
    return JsonResponse(
        {"error": _("Live updates are unavailable: the message server cannot be reached.")},
        status=503,
    )


def _event(name: str, data: str, event_id: int | None = None) -> str:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {data}")
    return "\n".join(lines) + "\n\n"


def _schedule_event(raw: bytes | str) -> str:
    data = raw.decode() if isinstance(raw, bytes) else raw
    try:
        version = int(json.loads(data).get("version"))
    except (ValueError, TypeError, AttributeError):
        version = None
    return _event("schedule", data, version)


def _version_event(raw: bytes | str | None) -> str:
    return _event("version", json.dumps({"version": int(raw) if raw else 0}))


async def _asgi_stream(branch_public_id: str) -> AsyncIterator[str]:
    """Hold the stream on the event loop; Django cancels it when the browser goes away."""
    client = _async_client(HEARTBEAT_SECONDS + 5)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    loop_time = time.monotonic
    try:
        await pubsub.subscribe(channel_name(branch_public_id))
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        yield _version_event(await client.get(version_key(branch_public_id)))
        deadline = loop_time() + ASGI_STREAM_SECONDS
        next_heartbeat = loop_time() + HEARTBEAT_SECONDS
        while loop_time() < deadline:
            wait = max(0.0, min(next_heartbeat, deadline) - loop_time())
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if message is not None and message.get("type") == "message":
                yield _schedule_event(message["data"])
            if loop_time() >= next_heartbeat:
                yield ": heartbeat\n\n"
                next_heartbeat = loop_time() + HEARTBEAT_SECONDS
    except redis.RedisError as exc:
        logger.warning("Live schedule stream of branch %s ended: %s", branch_public_id, exc)
    finally:
        try:
            await pubsub.aclose()
            await client.aclose()
        except redis.RedisError:  # the connection is gone either way
            pass


def _wsgi_stream(branch_public_id: str) -> Iterator[str]:
    """A short blocking stream for servers with a thread per request; the browser reconnects."""
    client = _sync_client()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel_name(branch_public_id))
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        yield _version_event(client.get(version_key(branch_public_id)))
        deadline = time.monotonic() + WSGI_STREAM_SECONDS
        next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        while time.monotonic() < deadline:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                yield _schedule_event(message["data"])
            if time.monotonic() >= next_heartbeat:
                yield ": heartbeat\n\n"
                next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
    except redis.RedisError as exc:
        logger.warning("Live schedule stream of branch %s ended: %s", branch_public_id, exc)
    finally:
        try:
            pubsub.close()
            client.close()
        except redis.RedisError:
            pass


async def _redis_reachable(branch_public_id: str) -> bool:
    client = _async_client(1)
    try:
        await client.get(version_key(branch_public_id))
    except redis.RedisError as exc:
        logger.warning("Live schedule updates are unavailable: %s", exc)
        return False
    finally:
        await client.aclose()
    return True


async def schedule_events(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The branch's schedule changes as Server-Sent Events, for the open grid.

    Answers 503 (and the grid polls instead) when Redis cannot be reached, rather than opening a
    stream that would end at once and be retried every second.
    """
    result = await sync_to_async(_authorise)(request)
    if isinstance(result, HttpResponse):
        return result
    if not await _redis_reachable(result):
        return _unavailable()
    # An async iterator under WSGI would be read to its end before the first byte is sent.
    asgi = isinstance(request, ASGIRequest)
    stream: AsyncIterator[str] | Iterator[str] = (
        _asgi_stream(result) if asgi else _wsgi_stream(result)
    )
    response = StreamingHttpResponse(stream, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def schedule_version(request: HttpRequest) -> HttpResponse:
    """The branch's change counter as JSON, for grids that poll instead of streaming."""
    result = _authorise(request)
    if isinstance(result, HttpResponse):
        return result
    try:
        version = schedule_live.schedule_version(result)
    except redis.RedisError as exc:
        logger.warning("Live schedule updates are unavailable: %s", exc)
        return _unavailable()
    response = JsonResponse({"version": version})
    response["Cache-Control"] = "no-cache, no-store"
    return response
