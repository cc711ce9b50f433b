"""Tell every open schedule grid that something changed, within a second, through Redis.

A write that changes what a grid shows (a booking, a move, a cancel, a status, a slot hold, a
work schedule) calls ``schedule_changed`` inside its transaction. Once the transaction commits,
one small JSON message per affected branch is PUBLISHed on the channel
``clinic:schedule:<branch public id>`` and the branch's version counter
(``clinic:schedule:<branch public id>:version``) is INCRemented, so that a screen which cannot
hold a stream open can poll the counter instead (``desk/live.py`` serves both).

The channel is named by the branch's *public id*, not its pk: Redis pub/sub ignores the database
number, so several databases sharing one Redis server (test workers, staging beside production)
would otherwise hear each other's branch 1. The version counter lives in the database of
``REDIS_URL`` like every other key.

A message is a hint to re-read, not the change itself: a grid that missed one (a reconnect)
compares versions and re-reads. So the live channel is best effort: with Redis unreachable a
warning is logged and the write that called it has already succeeded.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import zoneinfo
from collections.abc import Iterable
from typing import Any

import redis
from django.db import transaction

from clinic.core.redis_client import fast_redis as _client

logger = logging.getLogger(__name__)

_PREFIX = "clinic:schedule"


class ChangeKind(enum.StrEnum):
    """What happened; the grid may use it to decide how much to re-read."""

    BOOKED = "booked"
    MOVED = "moved"
    CANCELLED = "cancelled"
    RESTORED = "restored"
    STATUS = "status"
    HOLD = "hold"
    RELEASE = "release"
    SCHEDULE = "schedule"
    CALL = "call"  # a call rings: the desk shows who is calling


def channel_name(branch_public_id: Any) -> str:
    """The pub/sub channel of one branch's grids."""
    return f"{_PREFIX}:{branch_public_id}"


def version_key(branch_public_id: Any) -> str:
    """The counter that goes up by one with every change published for the branch."""
    return f"{_PREFIX}:{branch_public_id}:version"


def schedule_changed(
    *,
    branch_id: int | None,
    resource_ids: Iterable[int],
    days: Iterable[datetime.date | datetime.datetime],
    kind: str,
    known: Iterable[Any] = (),
    extra: dict[str, str] | None = None,
) -> None:
    """Announce a change to the grids once the surrounding transaction commits (never if it
    rolls back); outside a transaction it is announced at once.

    ``branch_id`` is the pk of the branch the change belongs to (the appointment's branch), or
    ``None`` when the caller does not know it (a slot hold); the home branches of the resources
    are told as well, since their grids show those resources. ``resource_ids`` are resource pks;
    ``days`` are local dates or aware datetimes (turned into each branch's local date).
    Call with the values already read: the callback runs after the transaction has ended.
    ``known`` are Branch and Resource objects the caller already holds (a booking's branch and
    resources): what they tell is not read again, so a booking costs no extra query. ``extra``
    adds public facts to the message (a booking's channel and appointment id, a call's id):
    never a patient's name or number, which the screen reads through its own permissions.
    """
    change = ChangeKind(kind)  # an unknown kind is a programming error: ValueError at once
    ids = sorted(set(resource_ids))
    moments = list(days)
    facts = _Known.of(known)
    transaction.on_commit(
        lambda: _publish(
            branch_id=branch_id,
            resource_ids=ids,
            days=moments,
            kind=change,
            known=facts,
            extra=dict(extra or {}),
        ),
        robust=True,
    )


class _Known:
    """Public ids and zones of branches, public ids and home branches of resources, as read."""

    def __init__(self) -> None:
        self.branches: dict[int, tuple[Any, str]] = {}
        self.resources: dict[int, tuple[Any, int]] = {}

    @classmethod
    def of(cls, objects: Iterable[Any]) -> _Known:
        from clinic.core.models import Branch
        from scheduling.models import Resource

        facts = cls()
        for obj in objects:
            if isinstance(obj, Branch):
                facts.branches[obj.pk] = (obj.public_id, obj.time_zone)
            elif isinstance(obj, Resource):
                facts.resources[obj.pk] = (obj.public_id, obj.branch_id)
        return facts


def _local_days(
    days: Iterable[datetime.date | datetime.datetime], zone: zoneinfo.ZoneInfo
) -> list[str]:
    found: set[datetime.date] = set()
    for day in days:
        if isinstance(day, datetime.datetime):
            found.add(day.astimezone(zone).date())
        else:
            found.add(day)
    return [day.isoformat() for day in sorted(found)]


def _publish(
    *,
    branch_id: int | None,
    resource_ids: list[int],
    days: list[datetime.date | datetime.datetime],
    kind: ChangeKind,
    known: _Known | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """Publish one message per branch concerned; Redis errors are logged, never raised."""
    from clinic.core.models import Branch
    from scheduling.models import Resource

    known = known or _Known()
    missing = [pk for pk in resource_ids if pk not in known.resources]
    resources = [known.resources[pk] for pk in resource_ids if pk in known.resources]
    if missing:
        resources += list(
            Resource.objects.filter(pk__in=missing).values_list("public_id", "branch_id")
        )
    home_branch_ids = {home for _public_id, home in resources}
    if branch_id is None and not home_branch_ids:
        return
    wanted = home_branch_ids | ({branch_id} if branch_id is not None else set())
    branches = [known.branches[pk] for pk in wanted if pk in known.branches]
    unknown = [pk for pk in wanted if pk not in known.branches]
    if unknown:
        branches += list(
            Branch.objects.filter(pk__in=unknown).values_list("public_id", "time_zone")
        )
    resource_public_ids = sorted(str(public_id) for public_id, _home in resources)
    client = _client()
    for branch_public_id, time_zone in branches:
        message: dict[str, Any] = {
            "kind": str(kind),
            "branch": str(branch_public_id),
            "resources": resource_public_ids,
            "days": _local_days(days, zoneinfo.ZoneInfo(time_zone)),
            **(extra or {}),
        }
        try:
            message["version"] = int(client.incr(version_key(branch_public_id)))
            client.publish(channel_name(branch_public_id), json.dumps(message))
        except redis.RedisError as exc:
            logger.warning(
                "Could not announce a schedule change to branch %s: %s", branch_public_id, exc
            )


def schedule_version(branch_public_id: Any) -> int:
    """The branch's change counter (0 before the first change); raises ``redis.RedisError``."""
    value = _client().get(version_key(branch_public_id))
    return int(value) if value else 0
