"""Rate limits on Redis: fixed windows counted with INCR, one key per limit, subject and window.

Used where the portal is open to anyone: sending codes and booking. A limit is checked before
the work is done, so a refused request costs one Redis round trip. When Redis cannot be reached
the limit refuses (``RateLimitUnavailable``): a code sent without limits is an SMS bill and an
abuse vector, a booking refused for a minute is not.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import redis
from django.conf import settings

from clinic.core.redis_client import fast_redis as _client


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per ``seconds`` for one subject (a phone, an IP address)."""

    name: str
    count: int
    seconds: int


class RateLimitUnavailable(Exception):
    """Redis is down: the limit cannot be checked."""


def _key(limit: Limit, subject: str, window: int) -> str:
    # Subjects are phones and addresses: keep them out of Redis in the clear.
    digest = hashlib.sha256(f"{settings.SECRET_KEY}:{subject}".encode()).hexdigest()[:32]
    return f"clinic:ratelimit:{limit.name}:{digest}:{window}"


def limit_reached(limit: Limit, subject: str) -> bool:
    """Count one event for ``subject``; True when it is over the limit in the current window."""
    window = int(time.time()) // limit.seconds
    key = _key(limit, subject, window)
    try:
        pipe = _client().pipeline()
        pipe.incr(key)
        pipe.expire(key, limit.seconds + 1)
        count, _expiry = pipe.execute()
    except redis.RedisError as exc:
        raise RateLimitUnavailable(str(exc)) from exc
    return int(count) > limit.count


def seconds_left(limit: Limit) -> int:
    """How long until the current window of ``limit`` ends."""
    return limit.seconds - int(time.time()) % limit.seconds
