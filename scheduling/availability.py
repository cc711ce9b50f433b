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

import bisect
import datetime
import math
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import partial
from itertools import repeat
from operator import attrgetter
from typing import NamedTuple

from django.db import connection
from django.db.models import Count, Exists, F, FloatField, Func, OuterRef, Q
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
    Quota,
    QuotaScope,
    Resource,
    ResourceKind,
    Service,
    WorkSchedule,
)
from .plan_cache import plan_cache
from .schedules import Interval, WorkInterval, break_intervals, working_intervals
from .services import _period_bounds, channel_rule, doctor_performs

FREE = "free"
HELD = "held"

# The longest an occupancy can last: a visit of at most a day plus a buffer of at most a day
# (``services.plan_booking`` and ``Service.buffer_after_minutes`` enforce both).
MAX_OCCUPANCY = datetime.timedelta(days=2)

OCCUPANCY_SQL = """
    SELECT "resource_id",
           ARRAY_AGG(FLOOR(DATE_PART('epoch', LOWER("busy")))::int8),
           ARRAY_AGG(CEIL(DATE_PART('epoch', UPPER("busy")))::int8)
      FROM (
            SELECT "resource_id", UNNEST(RANGE_AGG("during")) AS "busy"
              FROM "scheduling_occupancy"
             WHERE "is_active"
               AND "resource_id" = ANY(%s)
               AND LOWER("during") >= %s
               AND LOWER("during") < %s
               AND UPPER("during") > %s
             GROUP BY "resource_id"
           ) AS "merged"
     GROUP BY "resource_id"
"""


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


_new_slot = partial(tuple.__new__, Slot)


def _merged_open(ranges: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Merge open ranges (lo, hi) into sorted, disjoint ones; returns their lows and highs.

    Two open ranges that only touch, (1, 3) and (3, 5), stay apart: 3 lies in neither.
    """
    lows: list[int] = []
    highs: list[int] = []
    for low, high in sorted(ranges):
        if high <= low:
            continue
        if lows and low < highs[-1]:
            highs[-1] = max(highs[-1], high)
        else:
            lows.append(low)
            highs.append(high)
    return lows, highs


def _inside(lows: list[int], highs: list[int], point: int) -> bool:
    """Whether ``point`` lies in one of the merged open ranges (lows[i], highs[i])."""
    index = bisect.bisect_left(lows, point) - 1
    return index >= 0 and lows[index] < point < highs[index]


def _allowed(low: int, high: int, lows: list[int], highs: list[int]) -> Iterable[tuple[int, int]]:
    """The closed stretches of [low, high] that no open range (lows[i], highs[i]) covers."""
    cursor = low
    index = bisect.bisect_right(highs, low)  # the first range that ends after ``low``
    while index < len(lows) and lows[index] < high and cursor <= high:
        if lows[index] >= cursor:
            yield cursor, lows[index]
        cursor = max(cursor, highs[index])
        index += 1
    if cursor <= high:
        yield cursor, high


def _seconds(ranges: Iterable[Interval]) -> list[tuple[int, int]]:
    return [(int(a.timestamp()), math.ceil(b.timestamp())) for a, b in ranges]


def _epoch(bound: str) -> Func:
    """The lower or upper bound of ``during`` as epoch seconds."""
    return Func(
        F("during"),
        template=f"EXTRACT(EPOCH FROM {bound.upper()}(%(expressions)s))::float8",
        output_field=FloatField(),
    )


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
    services: Sequence[Service],
    doctor_ids: Sequence[int],
    payer_kind: str,
    days: Sequence[datetime.date],
) -> tuple[set[datetime.date], dict[int, set[datetime.date]]]:
    """Local days whose quota is used up: for everyone, and per doctor.

    Counts the same appointments ``services._check_quotas`` counts (active status, start inside
    the quota's period), grouped by day in at most three queries whatever the number of quotas.
    """
    quotas = list(
        Quota.objects.filter(
            Q(scope=QuotaScope.PAYER, payer_kind=payer_kind)
            | Q(scope=QuotaScope.SERVICE, service_id__in=[s.pk for s in services])
            | Q(scope=QuotaScope.DOCTOR, resource_id__in=list(doctor_ids)),
            organization_id=organization_id,
            is_active=True,
        )
    )
    everyone: set[datetime.date] = set()
    per_doctor: dict[int, set[datetime.date]] = defaultdict(set)
    if not quotas or not days:
        return everyone, per_doctor
    zone = timezone.get_current_timezone()

    def midnight(day: datetime.date) -> datetime.datetime:
        return datetime.datetime.combine(day, datetime.time(), tzinfo=zone)

    bounds = {
        (quota.period, day): _period_bounds(quota.period, midnight(day))
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
    notice_minutes, horizon_days = channel_rule(organization_id, channel)
    now = timezone.now()
    earliest = now + datetime.timedelta(minutes=notice_minutes)
    latest = now + datetime.timedelta(days=horizon_days)

    intervals: dict[int, list[WorkInterval]] = {
        pk: [i for i in found if i.branch_id == branch.pk and i.ends_at > earliest]
        for pk, found in planned.items()
    }
    everything = [i for found in intervals.values() for i in found]
    if not everything:
        return []
    low = min(i.starts_at for i in everything)
    high = max(i.ends_at for i in everything) + buffer
    ids = [pk for pk, found in intervals.items() if found]
    breaks = break_intervals(ids, low, high)
    occupied: dict[int, list[tuple[int, int]]] = defaultdict(list)
    # Through the partial B-tree index on (resource, start) of active occupancies: one lasts at
    # most MAX_OCCUPANCY, so one starting earlier than that before ``low`` cannot reach it.
    # Each doctor's busy time comes back merged, as two arrays of epoch seconds: parsing
    # thousands of range literals in Python would cost more than the query itself.
    with connection.cursor() as cursor:
        cursor.execute(OCCUPANCY_SQL, [ids, low - MAX_OCCUPANCY, high, low])
        for resource_id, lowers, uppers in cursor.fetchall():
            occupied[resource_id] = list(zip(lowers, uppers, strict=True))
    held = holds.held_ranges(ids, low, high, except_token=hold_token or "")
    days = [date_from + datetime.timedelta(days=n) for n in range((date_to - date_from).days + 1)]
    closed_for_all, closed_for_doctor = _quota_blocked_days(
        organization_id=organization_id,
        services=services,
        doctor_ids=ids,
        payer_kind=payer_kind,
        days=days,
    )

    slots: list[Slot] = []
    duration_s = int(duration.total_seconds())
    buffer_s = int(buffer.total_seconds())
    earliest_s = math.ceil(earliest.timestamp())
    latest_s = int(latest.timestamp())
    zone = zoneinfo.ZoneInfo(branch.time_zone)

    def day_bounds(day: datetime.date) -> tuple[int, int]:
        first = datetime.datetime.combine(day, datetime.time(), tzinfo=zone)
        return int(first.timestamp()), int((first + datetime.timedelta(days=1)).timestamp())

    for doctor in candidates:
        own = intervals.get(doctor.pk, [])
        if not own:
            continue
        # Starts each thing rules out, as open ranges (lo, hi): a booking [s, s + duration) with
        # its buffer overlaps an occupancy (a, b) exactly when a - duration - buffer < s < b,
        # and overlaps a break when a - duration < s < b. A day whose quota is used up rules
        # out every start in it.
        blocked = [(a - duration_s - buffer_s, b) for a, b in occupied.get(doctor.pk, ())]
        blocked += [(a - duration_s, b) for a, b in _seconds(breaks.get(doctor.pk, ()))]
        for day in closed_for_all | closed_for_doctor.get(doctor.pk, set()):
            day_start, day_end = day_bounds(day)
            blocked.append((day_start - 1, day_end))
        lows, highs = _merged_open(blocked)
        held_lows, held_highs = _merged_open(
            (a - duration_s - buffer_s, b) for a, b in _seconds(held.get(doctor.pk, ()))
        )
        step = doctor.grid_step_minutes * 60
        doctor_id, doctor_public_id, doctor_name = doctor.pk, doctor.public_id, doctor.name
        for interval in own:
            base = int(interval.starts_at.timestamp())
            window_low = max(base, earliest_s)
            window_high = min(int(interval.ends_at.timestamp()) - duration_s, latest_s)
            for first, last in _allowed(window_low, window_high, lows, highs):
                # Grid points base + k * step inside [first, last].
                k_first = -(-(first - base) // step)
                k_last = (last - base) // step
                grid = range(base + k_first * step, base + k_last * step + 1, step)
                if held_lows:
                    slots.extend(
                        Slot(
                            doctor_id,
                            doctor_public_id,
                            doctor_name,
                            start,
                            start + duration_s,
                            HELD if _inside(held_lows, held_highs, start) else FREE,
                        )
                        for start in grid
                    )
                else:
                    # Built by C-level iterators: the common case is thousands of free slots.
                    slots.extend(
                        map(
                            _new_slot,
                            zip(
                                repeat(doctor_id),
                                repeat(doctor_public_id),
                                repeat(doctor_name),
                                grid,
                                range(grid.start + duration_s, grid.stop + duration_s, step),
                                repeat(FREE),
                            ),
                        )
                    )
    # Stable: slots of one time stay in the candidates' order (by name).
    slots.sort(key=attrgetter("start"))
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
