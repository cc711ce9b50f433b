"""Slot holds on Redis: a slot picked at one screen shows as held at every other screen.

A hold covers the 5-minute cells of a time range on each resource. Cells are Redis keys set with
``SET key token NX PX ttl`` inside one Lua script, so a hold is taken on all cells or on none;
release deletes only the cells that still carry the owner's token (compare-and-delete). Every
hold also sits in a per-resource sorted set by start time so that availability can list the
holds of a day without scanning keys; members whose keys have expired are skipped and pruned.

A token also remembers its current range and when that hold was taken (``hold_taken_at``), so a
booking made with the hold records how long the person took to book (``Appointment.held_at``).
Holding the same range again while it is still held extends it and keeps the time it was taken.

Holds are for people, not for correctness. When Redis is unreachable, ``slot_hold`` raises
``HoldsUnavailable`` (the screen says so) and everything that only *reads* holds sees none:
booking still works and the exclusion constraint still decides.
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from django.conf import settings

from clinic.core.redis_client import fast_redis as _client

from . import live

logger = logging.getLogger(__name__)

CELL = datetime.timedelta(minutes=5)
_PREFIX = "clinic:hold"

# KEYS: cell keys..., then the per-resource index keys (one per resource, see ARGV[4]).
# ARGV: token, ttl ms, index member JSON, number of index keys, index score.
# Returns the first cell someone else holds, else 1 when the token already held every cell (an
# extension) and 0 when some cell was free (a new hold).
_ACQUIRE = """
local n_index = tonumber(ARGV[4])
local n_cells = #KEYS - n_index
local renewed = 1
for i = 1, n_cells do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[1] then
    return KEYS[i]
  end
  if not owner then
    renewed = 0
  end
end
for i = 1, n_cells do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
for i = n_cells + 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[5], ARGV[3])
  redis.call('PEXPIRE', KEYS[i], 86400000)
end
return renewed
"""

# KEYS: cell keys...; ARGV: token. Deletes only cells the token still owns.
_RELEASE = """
local deleted = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    deleted = deleted + redis.call('DEL', KEYS[i])
  end
end
return deleted
"""


class HoldsUnavailable(Exception):
    """Redis cannot be reached; the caller goes on without a hold."""


class SlotHeld(Exception):
    """Somebody else holds part of the range."""

    def __init__(self, resource_id: int, cell_start: datetime.datetime) -> None:
        super().__init__(f"resource {resource_id} held at {cell_start.isoformat()}")
        self.resource_id = resource_id
        self.cell_start = cell_start


@dataclass(frozen=True)
class Hold:
    token: str
    resource_ids: tuple[int, ...]
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    expires_at: datetime.datetime
    taken_at: datetime.datetime


def hold_ttl_seconds() -> int:
    return int(getattr(settings, "SLOT_HOLD_TTL_SECONDS", 300))


def _cells(start: datetime.datetime, end: datetime.datetime) -> list[int]:
    """Epoch seconds of the 5-minute cells that [start, end) touches."""
    step = int(CELL.total_seconds())
    first = int(start.timestamp()) // step * step
    last = int(end.timestamp())
    return list(range(first, last, step))


def _cell_key(resource_id: int, cell: int) -> str:
    return f"{_PREFIX}:cell:{resource_id}:{cell}"


def _index_key(resource_id: int) -> str:
    return f"{_PREFIX}:index:{resource_id}"


def slot_hold(
    *,
    resource_ids: Iterable[int],
    starts_at: datetime.datetime,
    ends_at: datetime.datetime,
    token: str | None = None,
    ttl_seconds: int | None = None,
) -> Hold:
    """Hold [starts_at, ends_at) on every resource, or raise ``SlotHeld``.

    Passing the token of one's own hold extends it (or moves it to another range the same person
    picked); a new token is made otherwise.
    """
    ids = tuple(sorted(set(resource_ids)))
    token = token or secrets.token_urlsafe(18)
    ttl = ttl_seconds or hold_ttl_seconds()
    cells = _cells(starts_at, ends_at)
    keys = [_cell_key(resource_id, cell) for resource_id in ids for cell in cells]
    member = json.dumps(
        {"t": token, "s": starts_at.timestamp(), "e": ends_at.timestamp(), "k": keys[0]}
    )
    try:
        outcome = _client().eval(
            _ACQUIRE,
            len(keys) + len(ids),
            *keys,
            *[_index_key(resource_id) for resource_id in ids],
            token,
            ttl * 1000,
            member,
            len(ids),
            starts_at.timestamp(),
        )
    except redis.RedisError as exc:
        logger.warning("Slot holds are unavailable: %s", exc)
        raise HoldsUnavailable from exc
    if isinstance(outcome, bytes | str):
        _, _, _, resource_id, cell = (
            outcome.decode() if isinstance(outcome, bytes) else outcome
        ).split(":")
        raise SlotHeld(int(resource_id), datetime.datetime.fromtimestamp(int(cell), datetime.UTC))
    now = datetime.datetime.now(datetime.UTC)
    taken_at = _forget_previous_range(token, ids, keys, member, ttl, now=now, renewed=outcome == 1)
    live.schedule_changed(
        branch_id=None, resource_ids=ids, days=[starts_at], kind=live.ChangeKind.HOLD
    )
    return Hold(
        token=token,
        resource_ids=ids,
        starts_at=starts_at,
        ends_at=ends_at,
        expires_at=now + datetime.timedelta(seconds=ttl),
        taken_at=taken_at,
    )


def _token_key(token: str) -> str:
    return f"{_PREFIX}:token:{token}"


def _forget_previous_range(
    token: str,
    ids: tuple[int, ...],
    keys: list[str],
    member: str,
    ttl: int,
    *,
    now: datetime.datetime,
    renewed: bool,
) -> datetime.datetime:
    """A person who picks another slot with the same token gives up the one picked before.

    Frees the previous range's cells that the new range does not cover (only while the token
    still owns them) and drops it from the listing, then remembers the new range and when its
    hold was taken: ``now``, unless the token ``renewed`` a hold of this very range that it still
    owned, which keeps its first time. Returns that time.
    """
    client = _client()
    taken_at = now
    try:
        previous_json = client.get(_token_key(token))
        if previous_json:
            previous = json.loads(previous_json)
            if renewed and previous["m"] == member and "at" in previous:
                taken_at = datetime.datetime.fromisoformat(previous["at"])
            if previous["m"] != member:
                stale = [key for key in previous["keys"] if key not in set(keys)]
                if stale:
                    client.eval(_RELEASE, len(stale), *stale, token)
                with client.pipeline(transaction=False) as pipe:
                    for resource_id in previous["ids"]:
                        pipe.zrem(_index_key(resource_id), previous["m"])
                    pipe.execute()
        client.set(
            _token_key(token),
            json.dumps({"ids": list(ids), "keys": keys, "m": member, "at": taken_at.isoformat()}),
            px=ttl * 1000,
        )
    except redis.RedisError as exc:  # the old cells simply expire by themselves
        logger.warning("Could not forget a previous slot hold: %s", exc)
    return taken_at


def hold_taken_at(
    *, token: str, resource_ids: Iterable[int], starts_at: datetime.datetime
) -> datetime.datetime | None:
    """When the token's current hold was taken, if that hold starts at ``starts_at`` on one of
    ``resource_ids`` (the booking it is for); None otherwise, once it has expired, or when Redis
    cannot be reached (one GET; nothing is written).
    """
    try:
        raw = _client().get(_token_key(token))
    except redis.RedisError as exc:
        logger.warning("Slot holds are unavailable: %s", exc)
        return None
    if not raw:
        return None
    current = json.loads(raw)
    if "at" not in current or not set(current["ids"]) & set(resource_ids):
        return None
    if json.loads(current["m"])["s"] != starts_at.timestamp():
        return None
    return datetime.datetime.fromisoformat(current["at"])


def slot_release(
    *,
    token: str,
    resource_ids: Iterable[int],
    starts_at: datetime.datetime,
    ends_at: datetime.datetime,
) -> int:
    """Release the cells of the range that the token still holds; returns how many were freed.

    Best effort: with Redis down, the hold simply expires by itself.
    """
    ids = sorted(set(resource_ids))
    cells = _cells(starts_at, ends_at)
    keys = [_cell_key(resource_id, cell) for resource_id in ids for cell in cells]
    try:
        freed = int(_client().eval(_RELEASE, len(keys), *keys, token))
    except redis.RedisError as exc:
        logger.warning("Could not release a slot hold: %s", exc)
        return 0
    if freed:
        live.schedule_changed(
            branch_id=None, resource_ids=ids, days=[starts_at], kind=live.ChangeKind.RELEASE
        )
    return freed


def held_ranges(
    resource_ids: Iterable[int],
    start: datetime.datetime,
    end: datetime.datetime,
    *,
    except_token: str | None = None,
) -> dict[int, list[tuple[datetime.datetime, datetime.datetime]]]:
    """Live holds of each resource overlapping [start, end), other than ``except_token``'s.

    Empty when Redis is unreachable: holds never block anything on their own.
    """
    ids = sorted(set(resource_ids))
    result: dict[int, list[tuple[datetime.datetime, datetime.datetime]]] = {}
    if not ids:
        return result
    # A hold lasts minutes, so one that started a day before ``start`` cannot still overlap.
    low = start.timestamp() - 86400
    try:
        client = _client()
        with client.pipeline(transaction=False) as pipe:
            for resource_id in ids:
                pipe.zrangebyscore(_index_key(resource_id), low, end.timestamp())
            members_by_resource = pipe.execute()
        decoded = [[json.loads(member) for member in members] for members in members_by_resource]
        first_keys = [member["k"] for members in decoded for member in members]
        owners = client.mget(first_keys) if first_keys else []
    except redis.RedisError as exc:
        logger.warning("Slot holds are unavailable: %s", exc)
        return result
    position = 0
    stale: list[tuple[int, str]] = []
    for resource_id, members in zip(ids, decoded, strict=True):
        for member in members:
            owner = owners[position]
            position += 1
            owner_token = owner.decode() if isinstance(owner, bytes) else owner
            if owner_token != member["t"]:
                stale.append((resource_id, json.dumps(member)))
                continue
            if except_token is not None and member["t"] == except_token:
                continue
            hold_start = datetime.datetime.fromtimestamp(member["s"], datetime.UTC)
            hold_end = datetime.datetime.fromtimestamp(member["e"], datetime.UTC)
            if hold_start < end and start < hold_end:
                result.setdefault(resource_id, []).append((hold_start, hold_end))
    if stale:
        try:
            with client.pipeline(transaction=False) as pipe:
                for resource_id, member_json in stale:
                    pipe.zrem(_index_key(resource_id), member_json)
                pipe.execute()
        except redis.RedisError:  # pruning is housekeeping only
            pass
    return result


def held_by_other(
    *,
    resource_ids: Iterable[int],
    starts_at: datetime.datetime,
    ends_at: datetime.datetime,
    token: str | None,
) -> bool:
    """True when someone other than ``token`` holds part of the range (False if Redis is down)."""
    return bool(held_ranges(resource_ids, starts_at, ends_at, except_token=token or ""))
