"""Free slots: what the booking screens offer, for many doctors and days at once.

Every slot offered here passes ``services.plan_booking`` for the doctor: the same working
intervals (in the branch only), ad-hoc breaks, service duration and buffer, occupancies, holds,
quotas, channel notice and horizon, the service's channels, the doctor's services and the age
limits. The work is done in Python over rows read with a fixed number of queries (one per table,
whatever the number of doctors or days), so that fifty doctors over two weeks stay cheap:
occupancies are read once for all doctors and the whole range through the GiST index of the
exclusion constraint.

Rooms and devices a service needs are not searched here: the booking picks them and refuses
with ``no_room_free`` / ``no_equipment_free`` in the rare case none is free.
"""

from __future__ import annotations

import datetime
import math
import uuid
import zoneinfo
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain, compress, repeat
from operator import add, itemgetter, le, mod, sub
from typing import Any, NamedTuple

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncDate
from django.db.models.query import prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.models import Branch

from . import holds
from .errors import SchedulingError
from .models import (
    Appointment,
    AppointmentService,
    BookingChannel,
    PayerKind,
    QuotaScope,
    Resource,
    ResourceKind,
    Service,
    WorkSchedule,
)
from .plan_cache import plan_cache
from .schedules import Interval, WorkInterval, working_intervals
from .services import DEFAULT_CHANNEL_RULES, doctor_performs, period_bounds

FREE = "free"
HELD = "held"

# The longest an occupancy can last: a visit of at most a day plus a buffer of at most a day
# (``services.plan_booking`` and ``Service.buffer_after_minutes`` enforce both).
MAX_OCCUPANCY = datetime.timedelta(days=2)

# Each doctor's busy time as the open ranges of starts it rules out, in epoch seconds: a booking
# [s, s + duration) with its buffer overlaps an occupancy (a, b) exactly when
# a - duration - buffer < s < b. Read through the partial B-tree index on (resource, start) of
# active occupancies: one lasts at most MAX_OCCUPANCY, so one starting earlier than that before
# ``low`` cannot reach it. The ranges come back unmerged, in start order (the index's order, so
# the ordered aggregate sorts nothing), as int8 arrays read in binary: merging a doctor's few
# hundred ranges costs less in Python than RANGE_AGG on the server, and parsing range literals
# in Python would cost more than the query.
OCCUPANCY_SQL = """
    SELECT "resource_id",
           ARRAY_AGG(FLOOR(DATE_PART('epoch', LOWER("during")))::int8 - %(shift)s
                     ORDER BY LOWER("during")),
           ARRAY_AGG(CEIL(DATE_PART('epoch', UPPER("during")))::int8 ORDER BY LOWER("during"))
      FROM "scheduling_occupancy"
     WHERE "is_active"
       AND "resource_id" = ANY(%(ids)s)
       AND LOWER("during") >= %(since)s
       AND LOWER("during") < %(high)s
       AND UPPER("during") > %(low)s
     GROUP BY "resource_id"
"""

# The small reads are plain SQL through the same cursor: building them with the ORM would cost
# more than running them.
CHANNEL_RULE_SQL = """
    SELECT "min_notice_minutes", "horizon_days"
      FROM "scheduling_channelrule"
     WHERE "organization_id" = %(organization)s AND "channel" = %(channel)s
     ORDER BY "id"
     LIMIT 1
"""

# Ad-hoc breaks overlapping [low, high) as the open ranges of starts they rule out: a booking
# [s, s + duration) overlaps a break (a, b) exactly when a - duration < s < b.
BREAKS_SQL = """
    SELECT "resource_id",
           ARRAY_AGG(FLOOR(DATE_PART('epoch', "starts_at"))::int8 - %(shift)s),
           ARRAY_AGG(CEIL(DATE_PART('epoch', "ends_at"))::int8)
      FROM "scheduling_schedulebreak"
     WHERE "resource_id" = ANY(%(ids)s) AND "starts_at" < %(high)s AND "ends_at" > %(low)s
     GROUP BY "resource_id"
"""

# The active quotas of the payer kind, the services or the doctors.
QUOTAS_SQL = """
    SELECT "scope", "payer_kind", "service_id", "resource_id", "period", "limit"
      FROM "scheduling_quota"
     WHERE "organization_id" = %(organization)s
       AND "is_active"
       AND (("scope" = %(payer_scope)s AND "payer_kind" = %(payer)s)
            OR ("scope" = %(service_scope)s AND "service_id" = ANY(%(services)s))
            OR ("scope" = %(doctor_scope)s AND "resource_id" = ANY(%(ids)s)))
"""


class _QuotaRule(NamedTuple):
    scope: str
    payer_kind: str
    service_id: int | None
    resource_id: int | None
    period: str
    limit: int


# Below and beyond every epoch second.
_NO_REACH = -(1 << 62)
_FAR = 1 << 62


class Slot(NamedTuple):
    """A time a doctor can take the services: free, or held at another screen for now.

    Times are kept as epoch seconds (a two-week grid of fifty doctors is thousands of slots,
    and building two datetimes for each would cost more than finding them); ``starts_at`` and
    ``ends_at`` give the aware datetimes.
    """

    doctor_id: int
    doctor_public_id: uuid.UUID
    doctor_name: str
    start: int
    end: int
    state: str

    @property
    def starts_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.start, datetime.UTC)

    @property
    def ends_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.end, datetime.UTC)


_start_of = itemgetter(Slot._fields.index("start"))


def _open_starts(starts: list[int], lows: Sequence[int], highs: Sequence[int]) -> Iterable[bool]:
    """For each start, whether it lies in none of the open ranges (lows[i], highs[i]).

    ``lows`` must be sorted. A start ``s`` lies in one exactly when the farthest reach of the
    ranges opening before it, ``max(highs[i] for lows[i] < s)``, passes it; the prefix maxima
    and the lookups run in C, without a Python step per start or per range. A range that is
    empty (high <= low) reaches no start after its low. Two ranges that only touch, (1, 3) and
    (3, 5), leave 3 open.
    """
    reach = [_NO_REACH, *accumulate(highs, max)]
    return map(le, map(reach.__getitem__, map(bisect_left, repeat(lows), starts)), starts)


def _sorted_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Non-empty ranges (lo, hi) as their lows and highs, by low."""
    ordered = sorted((low, high) for low, high in ranges if low < high)
    return [low for low, _high in ordered], [high for _low, high in ordered]


def _gaps(lows: list[int], highs: list[int]) -> tuple[list[int], list[int]]:
    """The closed stretches [lo, hi] that none of the non-empty open ranges (lows[i], highs[i])
    covers, sorted and disjoint, as their lows and highs (the first and last are unbounded).

    ``lows`` must be sorted. A stretch ends at each low that nothing opened before it reaches
    past (the prefix maximum of the highs), and starts at that maximum; computed in C, without a
    Python step per range. Two ranges that only touch, (1, 3) and (3, 5), leave [3, 3].
    """
    gap_lows = [_NO_REACH, *accumulate(highs, max)]
    gap_highs = [*lows, _FAR]
    real = list(map(le, gap_lows, gap_highs))
    return list(compress(gap_lows, real)), list(compress(gap_highs, real))


def _grid_starts(
    base: int, step: int, low: int, high: int, gap_lows: list[int], gap_highs: list[int]
) -> Iterable[int]:
    """The grid points ``base + k * step`` in [low, high] that lie in one of the gaps."""
    first = bisect_left(gap_highs, low)  # the first gap that ends at ``low`` or later
    stop = bisect_right(gap_lows, high)  # after the last gap that starts by ``high``
    if first >= stop:
        return ()
    lows = gap_lows[first:stop]
    highs = gap_highs[first:stop]
    lows[0] = max(lows[0], low)
    highs[-1] = min(highs[-1], high)
    # The first grid point at or after each gap's low is low + (base - low) mod step.
    firsts = map(add, lows, map(mod, map(sub, repeat(base), lows), repeat(step)))
    return chain.from_iterable(map(range, firsts, map(add, highs, repeat(1)), repeat(step)))


def _seconds(ranges: Iterable[Interval]) -> list[tuple[int, int]]:
    return [(int(a.timestamp()), math.ceil(b.timestamp())) for a, b in ranges]


def _binary_cursor() -> Any:
    """A cursor of Django's connection that reads results in binary (int8 arrays come back as
    lists of ints without parsing text), still logged and wrapped like Django's own cursors."""
    connection.ensure_connection()
    # Django's own cursor class binds parameters on the client, which rules out binary results.
    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY
    if connection.queries_logged:
        return CursorDebugWrapper(raw, connection)
    return CursorWrapper(raw, connection)


def _read_pipelined(statements: list[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
    """Run read statements in one round trip (libpq's pipeline mode) and return their rows.

    The reads of a search do not depend on each other's results; sent one after another, each
    would wait for the previous one's answer on a busy server.
    """
    connection.ensure_connection()
    cursors = [_binary_cursor() for _ in statements]
    with connection.connection.pipeline():
        for cursor, (sql, params) in zip(cursors, statements, strict=True):
            cursor.execute(sql, params)
    try:
        return [cursor.fetchall() for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def _check_channel(channel: str, services: Sequence[Service]) -> None:
    if channel not in BookingChannel.values:
        raise SchedulingError(
            "unknown_channel",
            _("Unknown booking channel “%(value)s”.") % {"value": channel},
            field="channel",
        )
    for service in services:
        if channel not in service.channels:
            raise SchedulingError(
                "channel_not_allowed",
                _("“%(service)s” cannot be booked through the channel “%(channel)s”.")
                % {"service": service.name, "channel": BookingChannel(channel).label},
                field="channel",
            )


def _age_allowed(age: int | None, low: int | None, high: int | None) -> bool:
    if age is None:
        return True
    return (low is None or age >= low) and (high is None or age <= high)


def _candidates(
    *,
    organization_id: int,
    services: Sequence[Service],
    branch: Branch,
    doctors: Sequence[Resource] | None,
    specialty: str | None,
    patient_age: int | None,
) -> list[Resource]:
    """Active doctors of the organization who perform every service, fit the patient's age and
    have a schedule in the branch (the given doctors only, when some are given)."""
    query = (
        Resource.objects.filter(
            organization_id=organization_id, kind=ResourceKind.DOCTOR, is_active=True
        )
        .filter(Exists(WorkSchedule.objects.filter(resource=OuterRef("pk"), branch=branch)))
        .select_related("staff")
        .order_by("name", "pk")
    )
    if doctors is not None:
        query = query.filter(pk__in=[doctor.pk for doctor in doctors])
    else:
        requirements = [
            r for service in services for r in service.requirements.all() if r.kind == "doctor"
        ]
        if requirements:
            named = {r.resource_id for r in requirements if r.resource_id}
            specialty_ids = {r.specialty_id for r in requirements if r.specialty_id}
            query = query.filter(Q(pk__in=named) | Q(staff__specialty_id__in=specialty_ids))
    if specialty:
        query = query.filter(staff__specialty__code=specialty)
    return [
        doctor
        for doctor in query
        if all(doctor_performs(doctor, service) for service in services)
        and _age_allowed(patient_age, doctor.min_patient_age, doctor.max_patient_age)
    ]


def _quota_blocked_days(
    *,
    organization_id: int,
    quotas: Sequence[_QuotaRule],
    days: Sequence[datetime.date],
) -> tuple[set[datetime.date], dict[int, set[datetime.date]]]:
    """Local days whose quota (of ``quotas``, those that apply) is used up: for everyone, and
    per doctor.

    Counts the same appointments ``services._check_quotas`` counts (active status, start inside
    the quota's period), grouped by day in at most two queries whatever the number of quotas.
    """
    everyone: set[datetime.date] = set()
    per_doctor: dict[int, set[datetime.date]] = defaultdict(set)
    if not quotas or not days:
        return everyone, per_doctor
    zone = timezone.get_current_timezone()

    def midnight(day: datetime.date) -> datetime.datetime:
        return datetime.datetime.combine(day, datetime.time(), tzinfo=zone)

    bounds = {
        (quota.period, day): period_bounds(quota.period, midnight(day))
        for quota in quotas
        for day in days
    }
    low = min(b[0] for b in bounds.values())
    high = max(b[1] for b in bounds.values())
    booked = Appointment.objects.filter(
        organization_id=organization_id,
        starts_at__gte=low,
        starts_at__lt=high,
        status__occupies=True,
    )
    day_of = TruncDate("starts_at", tzinfo=zone)
    counts: dict[tuple[str, object], dict[datetime.date, int]] = defaultdict(dict)
    if any(q.scope in (QuotaScope.DOCTOR, QuotaScope.PAYER) for q in quotas):
        by_doctor_and_payer = (
            booked.annotate(day=day_of)
            .values("doctor_id", "payer_kind", "day")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for row in by_doctor_and_payer:
            for subject in (("doctor", row["doctor_id"]), ("payer", row["payer_kind"])):
                per_day = counts[subject]
                per_day[row["day"]] = per_day.get(row["day"], 0) + row["n"]
    if any(q.scope == QuotaScope.SERVICE for q in quotas):
        by_service = (
            AppointmentService.objects.filter(appointment__in=booked)
            .annotate(day=TruncDate("appointment__starts_at", tzinfo=zone))
            .values("service_id", "day")
            .annotate(n=Count("appointment_id", distinct=True))
            .order_by()
        )
        for row in by_service:
            counts[("service", row["service_id"])][row["day"]] = row["n"]

    for quota in quotas:
        if quota.scope == QuotaScope.DOCTOR:
            key: tuple[str, object] = ("doctor", quota.resource_id)
        elif quota.scope == QuotaScope.SERVICE:
            key = ("service", quota.service_id)
        else:
            key = ("payer", quota.payer_kind)
        per_day = counts.get(key, {})
        for day in days:
            start, end = bounds[(quota.period, day)]
            used = sum(n for d, n in per_day.items() if start.date() <= d < end.date())
            if used >= quota.limit:
                if quota.scope == QuotaScope.DOCTOR and quota.resource_id is not None:
                    per_doctor[quota.resource_id].add(day)
                else:
                    everyone.add(day)
    return everyone, per_doctor


def free_slots(
    *,
    organization_id: int,
    services: Sequence[Service],
    branch: Branch,
    date_from: datetime.date,
    date_to: datetime.date,
    channel: str,
    doctors: Sequence[Resource] | None = None,
    specialty: str | None = None,
    patient_age: int | None = None,
    hold_token: str | None = None,
    payer_kind: str = PayerKind.SELF_PAY,
) -> list[Slot]:
    """Slots of the candidate doctors on the local days [date_from, date_to], by time then name.

    A slot held at another screen is returned with the state ``held`` (the screen greys it out);
    the caller's own hold (``hold_token``) shows as free. Raises ``SchedulingError`` for an
    unknown channel or a service that cannot be booked through it.
    """
    services = list(services)
    if not services:
        raise SchedulingError("no_service", _("Choose at least one service."), field="services")
    _check_channel(channel, services)
    for service in services:
        if service.organization_id != organization_id or not service.is_active:
            raise SchedulingError(
                "unknown_service",
                _("Unknown or inactive service “%(value)s”.") % {"value": service.code},
                field="services",
            )
    if not all(_age_allowed(patient_age, s.min_age, s.max_age) for s in services):
        return []
    prefetch_related_objects(services, "requirements", "kind")
    plan_key = (
        organization_id,
        branch.pk,
        tuple(service.pk for service in services),
        specialty,
        tuple(doctor.pk for doctor in doctors) if doctors is not None else None,
        patient_age,
        date_from,
        date_to,
    )

    def plan() -> tuple[list[Resource], dict[int, list[WorkInterval]]]:
        found = _candidates(
            organization_id=organization_id,
            services=services,
            branch=branch,
            doctors=doctors,
            specialty=specialty,
            patient_age=patient_age,
        )
        if not found or date_to < date_from:
            return found, {}
        return found, working_intervals(found, date_from, date_to)

    candidates, planned = plan_cache.get_or_compute(plan_key, plan)
    if not candidates or date_to < date_from:
        return []

    duration = sum((service.duration for service in services), datetime.timedelta())
    buffer = max(service.buffer_after for service in services)
    duration_s = int(duration.total_seconds())
    buffer_s = int(buffer.total_seconds())
    # The working time still ahead bounds the reads; the channel's notice, read in the same
    # round trip, narrows it afterwards (a wider read finds the same slots).
    now = timezone.now()
    intervals: dict[int, list[WorkInterval]] = {
        pk: [i for i in found if i.branch_id == branch.pk and i.ends_at > now]
        for pk, found in planned.items()
    }
    everything = [i for found in intervals.values() for i in found]
    if not everything:
        return []
    low = min(i.starts_at for i in everything)
    high = max(i.ends_at for i in everything) + buffer
    ids = [pk for pk, found in intervals.items() if found]
    held = holds.held_ranges(ids, low, high, except_token=hold_token or "")
    rule, break_rows, busy_rows, quota_rows = _read_pipelined(
        [
            (CHANNEL_RULE_SQL, {"organization": organization_id, "channel": channel}),
            (BREAKS_SQL, {"ids": ids, "low": low, "high": high, "shift": duration_s}),
            (
                OCCUPANCY_SQL,
                {
                    "ids": ids,
                    "since": low - MAX_OCCUPANCY,
                    "low": low,
                    "high": high,
                    "shift": duration_s + buffer_s,
                },
            ),
            (
                QUOTAS_SQL,
                {
                    "organization": organization_id,
                    "payer_scope": QuotaScope.PAYER.value,
                    "payer": payer_kind,
                    "service_scope": QuotaScope.SERVICE.value,
                    "services": [service.pk for service in services],
                    "doctor_scope": QuotaScope.DOCTOR.value,
                    "ids": ids,
                },
            ),
        ]
    )
    notice_minutes, horizon_days = rule[0] if rule else DEFAULT_CHANNEL_RULES.get(channel, (0, 180))
    earliest = now + datetime.timedelta(minutes=notice_minutes)
    latest = now + datetime.timedelta(days=horizon_days)
    intervals = {pk: [i for i in found if i.ends_at > earliest] for pk, found in intervals.items()}
    breaks: dict[int, tuple[list[int], list[int]]] = {
        resource_id: (lows, highs) for resource_id, lows, highs in break_rows
    }
    busy: dict[int, tuple[list[int], list[int]]] = {
        resource_id: (lows, highs) for resource_id, lows, highs in busy_rows
    }
    quotas = [_QuotaRule(*row) for row in quota_rows]
    closed_for_all: set[datetime.date] = set()
    closed_for_doctor: dict[int, set[datetime.date]] = {}
    if quotas:
        closed_for_all, closed_for_doctor = _quota_blocked_days(
            organization_id=organization_id,
            quotas=quotas,
            days=[
                date_from + datetime.timedelta(days=n)
                for n in range((date_to - date_from).days + 1)
            ],
        )

    slots: list[Slot] = []
    earliest_s = math.ceil(earliest.timestamp())
    latest_s = int(latest.timestamp())
    zone = zoneinfo.ZoneInfo(branch.time_zone)

    def day_bounds(day: datetime.date) -> tuple[int, int]:
        first = datetime.datetime.combine(day, datetime.time(), tzinfo=zone)
        return int(first.timestamp()), int((first + datetime.timedelta(days=1)).timestamp())

    for doctor in candidates:
        own = intervals.get(doctor.pk)
        if not own:
            continue
        # Starts that busy time, breaks and used-up quota days rule out (a day whose quota is
        # used up rules out every start in it), and the gaps they leave.
        lows, highs = busy.get(doctor.pk, ([], []))
        closed = closed_for_all | closed_for_doctor.get(doctor.pk, set())
        if doctor.pk in breaks or closed:
            extra = list(zip(*breaks.get(doctor.pk, ([], [])), strict=True))
            for day in closed:
                day_start, day_end = day_bounds(day)
                extra.append((day_start - 1, day_end))
            lows, highs = _sorted_ranges([*zip(lows, highs, strict=True), *extra])
        gap_lows, gap_highs = _gaps(lows, highs)
        # The grid points of each working interval (base + k * step) inside the gaps at which
        # the services fit before the interval ends, within the notice and the horizon.
        step = doctor.grid_step_minutes * 60
        starts: list[int] = []
        for interval in own:
            base = int(interval.starts_at.timestamp())
            starts.extend(
                _grid_starts(
                    base,
                    step,
                    max(base, earliest_s),
                    min(int(interval.ends_at.timestamp()) - duration_s, latest_s),
                    gap_lows,
                    gap_highs,
                )
            )
        held_lows, held_highs = _sorted_ranges(
            (a - duration_s - buffer_s, b) for a, b in _seconds(held.get(doctor.pk, ()))
        )
        states: Iterable[str] = repeat(FREE)
        if held_lows:
            states = [
                FREE if open_ else HELD for open_ in _open_starts(starts, held_lows, held_highs)
            ]
        # Built by C-level iterators: the common case is thousands of free slots.
        slots.extend(
            map(
                tuple.__new__,
                repeat(Slot),
                zip(
                    repeat(doctor.pk),
                    repeat(doctor.public_id),
                    repeat(doctor.name),
                    starts,
                    map(add, starts, repeat(duration_s)),
                    states,
                ),
            )
        )
    # Stable: slots of one time stay in the candidates' order (by name).
    slots.sort(key=_start_of)
    return slots


def nearest_free(
    *,
    organization_id: int,
    services: Sequence[Service],
    branch: Branch,
    channel: str,
    from_date: datetime.date,
    days: int = 30,
    limit: int = 10,
    patient_age: int | None = None,
    hold_token: str | None = None,
) -> list[Slot]:
    """The earliest free slots across every doctor who performs the services ("nearest free
    time"), searched over ``days`` days from ``from_date``; held slots are left out."""
    slots = free_slots(
        organization_id=organization_id,
        services=services,
        branch=branch,
        date_from=from_date,
        date_to=from_date + datetime.timedelta(days=max(days, 1) - 1),
        channel=channel,
        patient_age=patient_age,
        hold_token=hold_token,
    )
    return [slot for slot in slots if slot.state == FREE][:limit]
