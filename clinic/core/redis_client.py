"""The Redis client of the features that must not wait for Redis (slot holds, live updates,
rate limits): short timeouts and one immediate retry, for a pooled connection that went stale.
redis-py's default of three retries with backoff would hold a booking screen up for seconds
while Redis is down; each caller decides what "unavailable" means for it."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


@lru_cache(maxsize=1)
def fast_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
    )
