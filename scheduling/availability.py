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
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from django.db import connection
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
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
    Occupancy,
    PayerKind,
    Quota,
    QuotaScope,
    Resource,
    ResourceKind,
    Service,
    WorkSchedule,
)
from .schedules import Interval, WorkInterval, break_intervals, working_intervals
from .services import _period_bounds, channel_rule, doctor_performs

FREE = "free"
HELD = "held"


@dataclass(slots=True)
class Slot:
    """A time a doctor can take the services: free, or held at another screen for now."""

    doctor_id: int
    doctor_public_id: uuid.UUID
    doctor_name: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    state: str


class _Busy:
    """Merged, sorted ranges of one resource in epoch seconds, with an O(log n) lookup.

    Epoch seconds rather than datetimes: the slot loop runs tens of thousands of times for
    fifty doctors over two weeks, and integer arithmetic keeps it within the time budget.
    """

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [start for start, _end in merged]
        self.ends = [end for _start, end in merged]

    def blocking_until(self, start: int, end: int) -> int:
        """The end of the range overlapping [start, end) that ends last, or 0 when none does."""
        index = bisect.bisect_left(self.starts, end) - 1  # last range starting before ``end``
        if index >= 0 and self.ends[index] > start:
            return self.ends[index]
        return 0


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
    candidates = _candidates(
        organization_id=organization_id,
        services=services,
        branch=branch,
        doctors=doctors,
        specialty=specialty,
        patient_age=patient_age,
    )
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
        for pk, found in working_intervals(candidates, date_from, date_to).items()
    }
    everything = [i for found in intervals.values() for i in found]
    if not everything:
        return []
    low = min(i.starts_at for i in everything)
    high = max(i.ends_at for i in everything) + buffer
    ids = [pk for pk, found in intervals.items() if found]
    breaks = break_intervals(ids, low, high)
    occupied: dict[int, list[tuple[int, int]]] = defaultdict(list)
    occupancies = (
        Occupancy.objects.filter(
            resource_id__in=ids, is_active=True, during__overlap=DateTimeTZRange(low, high, "[)")
        )
        .annotate(lower=_epoch("lower"), upper=_epoch("upper"))
        .values_list("resource_id", "lower", "upper")
    )
    # Plain rows of numbers: parsing thousands of range literals and running the ORM's
    # per-row converters costs more than the query itself.
    sql, params = occupancies.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for resource_id, lower, upper in cursor.fetchall():
            occupied[resource_id].append((int(lower), math.ceil(upper)))
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
    earliest_s = int(earliest.timestamp()) + (earliest.microsecond > 0)
    latest_s = int(latest.timestamp())
    moments: dict[int, datetime.datetime] = {}

    def moment(epoch: int) -> datetime.datetime:
        """One datetime per distinct time: doctors on one grid share most of their slot times."""
        found = moments.get(epoch)
        if found is None:
            found = moments[epoch] = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        return found

    for doctor in candidates:
        own = intervals.get(doctor.pk, [])
        if not own:
            continue
        closed = closed_for_all | closed_for_doctor.get(doctor.pk, set())
        taken = _Busy(occupied.get(doctor.pk, ()))
        paused = _Busy(_seconds(breaks.get(doctor.pk, ())))
        holding = _Busy(_seconds(held.get(doctor.pk, ())))
        step = doctor.grid_step_minutes * 60
        doctor_id, doctor_public_id, doctor_name = doctor.pk, doctor.public_id, doctor.name
        for interval in own:
            base = int(interval.starts_at.timestamp())
            stop = min(int(interval.ends_at.timestamp()) - duration_s, latest_s)
            start = base
            if start < earliest_s:
                start = base + -(-(earliest_s - base) // step) * step
            while start <= stop:
                end = start + duration_s
                until = end + buffer_s
                blocked = taken.blocking_until(start, until) if taken.starts else 0
                if not blocked and paused.starts:
                    blocked = paused.blocking_until(start, end)
                if blocked:
                    # Jump to the first grid point at or after the end of what is in the way.
                    start = base + -(-(blocked - base) // step) * step
                    continue
                starts_at = moment(start)
                if not closed or timezone.localtime(starts_at).date() not in closed:
                    held_now = bool(holding.starts) and holding.blocking_until(start, until) > 0
                    slots.append(
                        Slot(
                            doctor_id,
                            doctor_public_id,
                            doctor_name,
                            starts_at,
                            moment(end),
                            HELD if held_now else FREE,
                        )
                    )
                start += step
    # Stable: slots of one time stay in the candidates' order (by name).
    slots.sort(key=attrgetter("starts_at"))
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
