"""Channel handlers: how a message of each channel is delivered.

An integration registers its handler once (in its AppConfig.ready). A handler receives the
message (with ``idempotency_key`` and ``payload``) and returns on success; it raises
``PermanentDeliveryError`` for a message the peer will never accept, anything else is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import OutboxMessage

Handler = Callable[["OutboxMessage"], None]


class PermanentDeliveryError(Exception):
    """The peer rejected the message for good: retrying cannot help (dead-letter at once)."""


@dataclass(frozen=True)
class Channel:
    """A channel's handler and queue, and optionally its own retry policy.

    ``max_attempts`` and ``backoff_max_seconds`` override the global settings for a peer that
    must be retried often and for long (a cash register that is switched off for an hour should
    print its receipts soon after it is back, not hours later or never).
    """

    name: str
    handler: Handler
    queue: str
    max_attempts: int | None = None
    backoff_max_seconds: float | None = None


_channels: dict[str, Channel] = {}


def channel_register(
    name: str,
    handler: Handler,
    *,
    queue: str | None = None,
    max_attempts: int | None = None,
    backoff_max_seconds: float | None = None,
) -> Channel:
    """Register (or replace) the handler of a channel; its relay runs on ``queue``."""
    channel = Channel(
        name=name,
        handler=handler,
        queue=queue or f"outbox.{name}",
        max_attempts=max_attempts,
        backoff_max_seconds=backoff_max_seconds,
    )
    _channels[name] = channel
    return channel


def channel_unregister(name: str) -> None:
    _channels.pop(name, None)


def channel_get(name: str) -> Channel | None:
    return _channels.get(name)


def channel_names() -> list[str]:
    return sorted(_channels)


def channel_max_attempts(name: str) -> int:
    from django.conf import settings

    channel = _channels.get(name)
    if channel is not None and channel.max_attempts is not None:
        return channel.max_attempts
    return int(settings.OUTBOX_MAX_ATTEMPTS)
