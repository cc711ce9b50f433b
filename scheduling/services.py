"""Booking and changing appointments without ever double-booking.

Every write runs in one transaction that

1. takes per-resource (and per-quota) advisory locks in a fixed order, so concurrent bookers of
   one doctor queue instead of deadlocking or failing on the constraint in a burst;
2. checks the rules (working time, breaks, age, channel, notice, horizon, quotas, holds) with
   the same functions availability uses;
3. writes the appointment and its occupancy rows, whose exclusion constraint is the final word:
   a clash that slips past the checks still becomes a ``SlotConflict`` (HTTP 409), never a 500.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pghistory
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import Q, prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg import errors as pg_errors

from clinic.core.models import Branch, Staff
from clinic.core.sql import insert_returning_id, saved_as
from patients.models import Person

from . import holds, live, policies
from .errors import IdempotencyKeyReused, SchedulingError, SlotConflict, unknown_resource
from .models import (
    Appointment,
    AppointmentKind,
    AppointmentService,
    AppointmentStatus,
    BookingChannel,
    BookingType,
    CancelReason,
    ChannelRule,
    InformationSource,
    Occupancy,
    PayerKind,
    Quota,
    QuotaPeriod,
    QuotaScope,
    ReferringAgent,
    Resource,
    ResourceKind,
    Service,
)
from .plan_cache import plan_cache
from .schedules import (
    break_intervals,
    has_schedule,
    overlaps,
    within_working_time,
    working_intervals,
)

T = TypeVar("T")

logger = logging.getLogger(__name__)

EXCLUSION_CONSTRAINT = "scheduling_occupancy_no_overlap"
IDEMPOTENCY_CONSTRAINT = "scheduling_appointment_idempotency_key_key"

# Namespaces of the two-key advisory locks (pg_advisory_xact_lock(namespace, id)).
LOCK_RESOURCE = 7301  # also taken by the booking context function (migration 0006)
LOCK_QUOTA = 7302

DEFAULT_CHANNEL_RULES: dict[str, tuple[int, int]] = {
    # channel: (minimum notice in minutes, horizon in days)
    BookingChannel.DESK: (0, 180),
    BookingChannel.CALL_CENTRE: (0, 180),
    BookingChannel.DOCTOR: (0, 365),
    BookingChannel.PORTAL: (60, 60),
}
DEFAULT_CHANNEL_RULE = (0, 180)


@dataclass
class PrimaryPatient:
    """A patient known only by name, phone and birth date, to be registered at the first visit."""

    last_name: str
    phone: str
    first_name: str = ""
    patronymic: str = ""
    birth_date: datetime.date | None = None


@dataclass
class BookingRequest:
    """What a booking screen sends. Resources not given are chosen from the services' needs."""

    branch: Branch
    services: Sequence[Service]
    starts_at: datetime.datetime
    channel: str
    patient: Person | None = None
    primary: PrimaryPatient | None = None
    doctor: Resource | None = None
    room: Resource | None = None
    equipment: Sequence[Resource] = ()
    kind: AppointmentKind | None = None
    duration_minutes: int | None = None
    booking_type: str = BookingType.PLANNED
    information_source: InformationSource | None = None
    payer_kind: str = PayerKind.SELF_PAY
    note: str = ""
    assistant: Staff | None = None
    referring_agent: ReferringAgent | None = None
    hold_token: str | None = None
    idempotency_key: str | None = None
    follow_up_of: Appointment | None = None
    copied_from: Appointment | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """What makes two requests with one idempotency key "the same request"."""
        data = {
            "branch": self.branch.pk,
            "services": sorted(service.pk for service in self.services),
            "starts_at": self.starts_at.astimezone(datetime.UTC).isoformat(),
            "channel": self.channel,
            "patient": self.patient.pk if self.patient else None,
            "primary": [
                self.primary.last_name,
                self.primary.first_name,
                self.primary.patronymic,
                self.primary.phone,
                self.primary.birth_date.isoformat() if self.primary.birth_date else None,
            ]
            if self.primary
            else None,
            "doctor": self.doctor.pk if self.doctor else None,
            "room": self.room.pk if self.room else None,
            "equipment": sorted(resource.pk for resource in self.equipment),
            "duration": self.duration_minutes,
            "kind": self.kind.pk if self.kind else None,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass
class Plan:
    """The checked outcome of a request: which resources for which time."""

    starts_at: datetime.datetime
    ends_at: datetime.datetime
    occupied_until: datetime.datetime
    doctor: Resource | None
    resources: list[Resource]
    room_id: int | None
    kind: AppointmentKind


@dataclass
class BookingContext:
    """What the checks of one booking read, taken in one statement after the advisory locks.

    ``break_resource_ids`` are the resources whose ad-hoc breaks were read (the ones the request
    names); a resource chosen later is not covered and its breaks are read on their own.
    """

    channel_rule: tuple[int, int] | None
    plan_version: tuple[Any, ...]
    break_resource_ids: frozenset[int]
    breaks: dict[int, list[tuple[datetime.datetime, datetime.datetime]]]
    has_active_quotas: bool
    booked_status: AppointmentStatus | None


def booking_context(
    request: BookingRequest, start: datetime.datetime, occupied_until: datetime.datetime
) -> BookingContext:
    """Take the advisory locks of the resources the request names, then read the channel rule,
    the plan-cache version, the breaks of those resources over [start, occupied_until),
    whether the organization has active quotas, and the 'booked' status: one round trip.

    Call inside the booking transaction. The function (migration 0006) is VOLATILE, so its read
    takes a fresh snapshot after the locks and sees every change committed by the booking or
    the schedule change that held them.
    """
    resource_ids = sorted({r.pk for r in _named_resources(request)})
    with connection.cursor() as cursor:
        cursor.execute(
            BOOKING_CONTEXT_SQL,
            {
                "organization": request.branch.organization_id,
                "channel": request.channel,
                "resources": resource_ids,
                "start": start,
                "until": occupied_until,
                "booked": AppointmentStatus.BOOKED,
            },
        )
        row = cursor.fetchone()
    assert row is not None
    rule, break_owners, break_starts, break_ends, has_quotas, versions, status = row
    breaks: dict[int, list[tuple[datetime.datetime, datetime.datetime]]] = {}
    for owner, starts_at, ends_at in zip(
        break_owners or [], break_starts or [], break_ends or [], strict=True
    ):
        breaks.setdefault(owner, []).append((starts_at, ends_at))
    booked_status = None
    if status is not None:
        status = json.loads(status)  # Django reads jsonb as text
        fields = AppointmentStatus._meta.concrete_fields
        booked_status = AppointmentStatus.from_db(
            connection.alias, [f.attname for f in fields], [status[f.column] for f in fields]
        )
    return BookingContext(
        channel_rule=(int(rule[0]), int(rule[1])) if rule is not None else None,
        plan_version=plan_cache.version_of(versions),
        break_resource_ids=frozenset(resource_ids),
        breaks=breaks,
        has_active_quotas=bool(has_quotas),
        booked_status=booked_status,
    )


# The statement of ``booking_context``, with named parameters. The function (migration 0005 of
# this app) is PL/pgSQL so that its plan is prepared once per connection, not on every booking.
BOOKING_CONTEXT_SQL = """
    SELECT * FROM scheduling_booking_context(
      %(organization)s, %(channel)s, %(resources)s::bigint[], %(start)s, %(until)s, %(booked)s
    )
"""


# --- locking and conflicts ---------------------------------------------------------------------


def advisory_lock(keys: Iterable[tuple[int, int]]) -> None:
    """Take transaction-level advisory locks in ascending order (call inside the transaction).

    The fixed order is what prevents deadlocks between bookings of overlapping resource sets.
    """
    ordered = sorted(set(keys))
    if not ordered:
        return
    with connection.cursor() as cursor:
        for namespace, key in ordered:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, key])


def _constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", "") or ""


def _conflict_error(
    resources: Sequence[Resource],
    start: datetime.datetime,
    end: datetime.datetime,
    exclude_appointment_id: int | None = None,
) -> SlotConflict:
    """Name the resource and the time of the first clashing occupancy, without its patient."""
    clash = (
        Occupancy.objects.filter(
            resource__in=resources,
            is_active=True,
            during__overlap=DateTimeTZRange(start, end, "[)"),
        )
        .exclude(appointment_id=exclude_appointment_id or 0)
        .select_related("resource")
        .order_by("resource_id")
        .first()
    )
    if clash is None:  # freed again between the failure and this read
        return SlotConflict("slot_taken", _("This time has just been taken. Choose another time."))
    local = timezone.localtime
    return SlotConflict(
        "slot_taken",
        _("%(resource)s is busy from %(start)s to %(end)s. Choose another time.")
        % {
            "resource": clash.resource.name,
            "start": local(clash.during.lower).strftime("%d.%m.%Y %H:%M"),
            "end": local(clash.during.upper).strftime("%H:%M"),
        },
        resource_name=clash.resource.name,
        starts_at=clash.during.lower,
        ends_at=clash.during.upper,
    )


def _busy(
    resource: Resource,
    start: datetime.datetime,
    end: datetime.datetime,
    exclude_appointment_id: int | None,
) -> bool:
    return (
        Occupancy.objects.filter(
            resource=resource, is_active=True, during__overlap=DateTimeTZRange(start, end, "[)")
        )
        .exclude(appointment_id=exclude_appointment_id or 0)
        .exists()
    )


# --- the rules ---------------------------------------------------------------------------------


def channel_rule(organization_id: int, channel: str) -> tuple[int, int]:
    """(minimum notice in minutes, horizon in days) for a channel of an organization."""
    rule = ChannelRule.objects.filter(organization_id=organization_id, channel=channel).first()
    if rule is not None:
        return rule.min_notice_minutes, rule.horizon_days
    return DEFAULT_CHANNEL_RULES.get(channel, DEFAULT_CHANNEL_RULE)


def doctor_performs(doctor: Resource, service: Service) -> bool:
    """A doctor performs a service whose doctor requirement names him or his specialty."""
    requirements = [r for r in service.requirements.all() if r.kind == ResourceKind.DOCTOR]
    if not requirements:
        return True
    specialty_id = doctor.staff.specialty_id if doctor.staff else None
    return any(
        r.resource_id == doctor.pk
        or (r.specialty_id is not None and r.specialty_id == specialty_id)
        for r in requirements
    )


def _age_on(request: BookingRequest, day: datetime.date) -> int | None:
    if request.patient is not None:
        return request.patient.age_on(day)
    born = request.primary.birth_date if request.primary else None
    if born is None:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _check_age(age: int | None, low: int | None, high: int | None, who: str) -> None:
    if age is None or (low is None and high is None):
        return
    if (low is not None and age < low) or (high is not None and age > high):
        if high is not None and low is None:
            message = _("%(who)s sees patients up to %(high)s years old; this patient is %(age)s.")
        elif low is not None and high is None:
            message = _("%(who)s sees patients from %(low)s years old; this patient is %(age)s.")
        else:
            message = _("%(who)s sees patients aged %(low)s to %(high)s; this patient is %(age)s.")
        raise SchedulingError(
            "age_not_allowed",
            message % {"who": who, "low": low, "high": high, "age": age},
            field="patient",
        )


def _check_time_window(
    request: BookingRequest, start: datetime.datetime, context: BookingContext | None = None
) -> None:
    now = timezone.now()
    if start < now:
        raise SchedulingError(
            "in_past",
            _("The time %(start)s has already passed.")
            % {"start": timezone.localtime(start).strftime("%d.%m.%Y %H:%M")},
            field="starts_at",
        )
    if context is not None:
        notice, horizon = context.channel_rule or DEFAULT_CHANNEL_RULES.get(
            request.channel, DEFAULT_CHANNEL_RULE
        )
    else:
        notice, horizon = channel_rule(request.branch.organization_id, request.channel)
    if start < now + datetime.timedelta(minutes=notice):
        raise SchedulingError(
            "too_soon",
            _("Through this channel a visit is booked at least %(minutes)s minutes ahead.")
            % {"minutes": notice},
            field="starts_at",
        )
    if start > now + datetime.timedelta(days=horizon):
        raise SchedulingError(
            "beyond_horizon",
            _("Through this channel a visit is booked at most %(days)s days ahead.")
            % {"days": horizon},
            field="starts_at",
        )


def _check_working_time(
    resource: Resource,
    start: datetime.datetime,
    end: datetime.datetime,
    branch_id: int,
    context: BookingContext | None = None,
) -> int | None:
    """Raise unless [start, end) lies in the resource's working time in the branch and outside
    its breaks; return the room the schedule puts the resource in that day."""
    # The branch's date of ``start`` is within a day of the server's; the three days around it
    # hold the working day whatever the branch's time zone.
    server_day = timezone.localtime(start).date()
    days = plan_cache.get_or_compute(
        ("working", resource.pk, server_day),
        lambda: working_intervals(
            [resource],
            server_day - datetime.timedelta(days=1),
            server_day + datetime.timedelta(days=1),
        ),
        version=context.plan_version if context is not None else None,
    )
    intervals = [i for i in days[resource.pk] if i.branch_id == branch_id]
    inside = within_working_time(intervals, start, end)
    if inside is None:
        same_day = [i for i in intervals if i.starts_at < end and start < i.ends_at] or [
            i for i in intervals if i.date == i.local_date_of(start)
        ]
        if (
            same_day
            and min(i.starts_at for i in same_day) <= start
            and end <= max(i.ends_at for i in same_day)
        ):
            raise SchedulingError(
                "in_break",
                _("%(resource)s has a break at this time.") % {"resource": resource.name},
                field="starts_at",
            )
        raise SchedulingError(
            "outside_working_time",
            _("%(resource)s does not work at %(start)s in this branch.")
            % {
                "resource": resource.name,
                "start": timezone.localtime(start).strftime("%d.%m.%Y %H:%M"),
            },
            field="starts_at",
        )
    if context is not None and resource.pk in context.break_resource_ids:
        breaks = context.breaks.get(resource.pk, [])
    else:
        breaks = break_intervals([resource.pk], start, end).get(resource.pk, [])
    if overlaps(breaks, start, end):
        raise SchedulingError(
            "in_break",
            _("%(resource)s has a break at this time.") % {"resource": resource.name},
            field="starts_at",
        )
    return inside.room_id


def _pick(
    candidates: Iterable[Resource],
    start: datetime.datetime,
    end: datetime.datetime,
    branch_id: int,
    exclude_appointment_id: int | None,
    scheduled: set[int],
    context: BookingContext | None = None,
) -> Resource | None:
    for candidate in candidates:
        if _busy(candidate, start, end, exclude_appointment_id):
            continue
        if candidate.pk in scheduled:
            try:
                _check_working_time(candidate, start, end, branch_id, context)
            except SchedulingError:
                continue
        return candidate
    return None


def booking_span(
    request: BookingRequest,
) -> tuple[datetime.datetime, datetime.datetime, datetime.datetime]:
    """(start, end, end of the buffer after) of a request with at least one service."""
    start = request.starts_at
    if timezone.is_naive(start):
        raise SchedulingError(
            "naive_time", _("Give the time with its UTC offset."), field="starts_at"
        )
    services = request.services
    if request.duration_minutes is not None:
        if not 5 <= request.duration_minutes <= 24 * 60:
            raise SchedulingError(
                "invalid_duration",
                _("A visit lasts from 5 minutes to 24 hours, not %(value)s minutes.")
                % {"value": request.duration_minutes},
                field="duration_minutes",
            )
        duration = datetime.timedelta(minutes=request.duration_minutes)
    else:
        duration = sum((service.duration for service in services), datetime.timedelta())
    end = start + duration
    return start, end, end + max(service.buffer_after for service in services)


def plan_booking(
    request: BookingRequest,
    *,
    exclude_appointment_id: int | None = None,
    context: BookingContext | None = None,
) -> Plan:
    """Check a request against every rule and choose its resources (no writes).

    Call inside the booking transaction after the advisory locks, so that what is checked is
    what is written. ``context`` (``booking_context``, read after those locks) saves the reads
    it covers; whatever it does not cover is read here.
    """
    branch = request.branch
    services = list(request.services)
    if not services:
        raise SchedulingError("no_service", _("Choose at least one service."), field="services")
    prefetch_related_objects(services, "requirements")  # no query when already prefetched
    for service in services:
        if service.organization_id != branch.organization_id or not service.is_active:
            raise SchedulingError(
                "unknown_service",
                _("Unknown or inactive service “%(value)s”.") % {"value": service.code},
                field="services",
            )
        if request.channel not in service.channels:
            raise SchedulingError(
                "channel_not_allowed",
                _("“%(service)s” cannot be booked through the channel “%(channel)s”.")
                % {
                    "service": service.name,
                    "channel": BookingChannel(request.channel).label,
                },
                field="channel",
            )
    if request.patient is None and (
        request.primary is None or not request.primary.last_name or not request.primary.phone
    ):
        raise SchedulingError(
            "patient_required",
            _("Choose a patient or give the new patient's last name and phone."),
            field="patient",
        )
    start, end, occupied_until = booking_span(request)
    kind = request.kind or services[0].kind
    _check_time_window(request, start, context)

    age = _age_on(request, timezone.localtime(start).date())
    for service in services:
        _check_age(age, service.min_age, service.max_age, service.name)

    requirements = [r for service in services for r in service.requirements.all()]
    resources: list[Resource] = []
    doctor = request.doctor
    for given, name in ((doctor, "doctor"), (request.room, "room")):
        if given is not None and (
            not given.is_active or given.organization_id != branch.organization_id
        ):
            raise unknown_resource(given.public_id, name)
    for device in request.equipment:
        if not device.is_active or device.organization_id != branch.organization_id:
            raise unknown_resource(device.public_id, "equipment")

    doctor_requirements = [r for r in requirements if r.kind == ResourceKind.DOCTOR]
    if doctor is not None:
        if doctor.kind != ResourceKind.DOCTOR:
            raise unknown_resource(doctor.public_id, "doctor")
        for service in services:
            if not doctor_performs(doctor, service):
                raise SchedulingError(
                    "service_not_performed",
                    _("%(doctor)s does not perform “%(service)s”.")
                    % {"doctor": doctor.name, "service": service.name},
                    field="services",
                )
    elif doctor_requirements:
        named = [r.resource for r in doctor_requirements if r.resource is not None]
        specialty_ids = {r.specialty_id for r in doctor_requirements if r.specialty_id}
        candidates: list[Resource] = named or list(
            Resource.objects.filter(
                kind=ResourceKind.DOCTOR,
                is_active=True,
                organization_id=branch.organization_id,
                staff__specialty_id__in=specialty_ids,
            )
            .select_related("staff")
            .order_by("pk")
        )
        candidates = [c for c in candidates if all(doctor_performs(c, s) for s in services)]
        doctor = _pick(
            candidates,
            start,
            occupied_until,
            branch.pk,
            exclude_appointment_id,
            {c.pk for c in candidates},
            context,
        )
        if doctor is None:
            raise SlotConflict("no_doctor_free", _("No doctor for this service is free then."))

    room_id: int | None = None
    if doctor is not None:
        _check_age(age, doctor.min_patient_age, doctor.max_patient_age, doctor.name)
        room_id = _check_working_time(doctor, start, end, branch.pk, context)
        resources.append(doctor)

    scheduled = has_schedule([r.pk for r in (request.room, *request.equipment) if r is not None])
    room_requirements = [r for r in requirements if r.kind == ResourceKind.ROOM]
    room = request.room
    if room is not None:
        if room.kind != ResourceKind.ROOM:
            raise unknown_resource(room.public_id, "room")
        resources.append(room)
        room_id = room.room_id
    elif room_requirements:
        requirement = room_requirements[0]
        if requirement.resource is not None:
            candidates = [requirement.resource]
        else:
            candidates = list(
                Resource.objects.filter(
                    kind=ResourceKind.ROOM,
                    is_active=True,
                    branch=branch,
                    room__room_type=requirement.room_type,
                ).order_by("pk")
            )
            # The doctor's own room for the day comes first when it is of the right type.
            candidates.sort(key=lambda c: c.room_id != room_id)
        scheduled |= has_schedule([c.pk for c in candidates])
        room = _pick(
            candidates,
            start,
            occupied_until,
            branch.pk,
            exclude_appointment_id,
            scheduled,
            context,
        )
        if room is None:
            raise SlotConflict("no_room_free", _("No suitable room is free then."))
        resources.append(room)
        room_id = room.room_id

    equipment = list(request.equipment)
    for requirement in (r for r in requirements if r.kind == ResourceKind.EQUIPMENT):
        if any(
            d.pk == requirement.resource_id or (d.equipment_type == requirement.equipment_type)
            for d in equipment
        ):
            continue
        if requirement.resource is not None:
            candidates = [requirement.resource]
        else:
            candidates = list(
                Resource.objects.filter(
                    kind=ResourceKind.EQUIPMENT,
                    is_active=True,
                    branch=branch,
                    equipment_type=requirement.equipment_type,
                ).order_by("pk")
            )
        scheduled |= has_schedule([c.pk for c in candidates])
        picked = _pick(
            candidates,
            start,
            occupied_until,
            branch.pk,
            exclude_appointment_id,
            scheduled,
            context,
        )
        if picked is None:
            raise SlotConflict(
                "no_equipment_free",
                _("No “%(type)s” is free then.")
                % {"type": requirement.equipment_type or requirement.resource},
            )
        equipment.append(picked)
    for resource in [r for r in (request.room, *equipment) if r is not None]:
        if resource.pk in scheduled:
            _check_working_time(resource, start, end, branch.pk, context)
    resources.extend(equipment)
    if not resources:
        raise SchedulingError(
            "no_resource", _("Choose a doctor, a room or a device."), field="doctor"
        )
    return Plan(
        starts_at=start,
        ends_at=end,
        occupied_until=occupied_until,
        doctor=doctor,
        resources=resources,
        room_id=room_id,
        kind=kind,
    )


def period_bounds(
    period: str, moment: datetime.datetime
) -> tuple[datetime.datetime, datetime.datetime]:
    local = timezone.localtime(moment)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == QuotaPeriod.DAY:
        return day, day + datetime.timedelta(days=1)
    if period == QuotaPeriod.WEEK:
        monday = day - datetime.timedelta(days=day.weekday())
        return monday, monday + datetime.timedelta(days=7)
    first = day.replace(day=1)
    following = (first + datetime.timedelta(days=32)).replace(day=1)
    return first, following


def _quotas_for(
    request: BookingRequest, plan: Plan, context: BookingContext | None = None
) -> list[Quota]:
    if context is not None and not context.has_active_quotas:
        return []
    service_ids = [service.pk for service in request.services]
    condition = Q(scope=QuotaScope.PAYER, payer_kind=request.payer_kind) | Q(
        scope=QuotaScope.SERVICE, service_id__in=service_ids
    )
    if plan.doctor is not None:
        condition |= Q(scope=QuotaScope.DOCTOR, resource_id=plan.doctor.pk)
    return list(
        Quota.objects.filter(
            condition, organization_id=request.branch.organization_id, is_active=True
        )
    )


def _check_quotas(
    request: BookingRequest, plan: Plan, quotas: list[Quota], exclude_appointment_id: int | None
) -> None:
    """Count active appointments of each quota's period; call under the quotas' locks."""
    for quota in quotas:
        low, high = period_bounds(quota.period, plan.starts_at)
        booked = Appointment.objects.filter(
            organization_id=quota.organization_id,
            starts_at__gte=low,
            starts_at__lt=high,
            status__occupies=True,
        ).exclude(pk=exclude_appointment_id or 0)
        if quota.scope == QuotaScope.PAYER:
            booked = booked.filter(payer_kind=quota.payer_kind)
        elif quota.scope == QuotaScope.SERVICE:
            booked = booked.filter(lines__service_id=quota.service_id or 0)
        else:
            booked = booked.filter(doctor_id=quota.resource_id)
        if booked.count() >= quota.limit:
            raise SchedulingError(
                "quota_exceeded",
                _("The quota “%(quota)s” is used up for this period.") % {"quota": quota},
                field="starts_at",
            )


class _Clash(Exception):
    """The exclusion constraint refused an occupancy.

    Raised out of the booking transaction, which then rolls back; the conflict is described
    after that, so the insert needs no savepoint of its own (two round trips fewer per booking).
    """

    def __init__(
        self,
        resources: Sequence[Resource],
        starts_at: datetime.datetime,
        ends_at: datetime.datetime,
        exclude_appointment_id: int | None,
    ) -> None:
        super().__init__("occupancy clash")
        self.resources = resources
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.exclude_appointment_id = exclude_appointment_id


OCCUPANCIES_SQL = f"""
    INSERT INTO {Occupancy._meta.db_table} (appointment_id, resource_id, during, is_active)
    SELECT %(appointment)s, resource_id, tstzrange(%(start)s, %(until)s, '[)'), true
    FROM unnest(%(resources)s::bigint[]) AS resource_id
"""  # noqa: S608 (table names from the models)

# A new appointment, its service lines and its occupancies in one statement (one round trip);
# ``{appointment_insert}`` is the appointment's INSERT ... RETURNING id, the other values are
# positional parameters: service ids, start, end, resource ids. Data-modifying CTEs always run
# to completion, and a clash on the exclusion constraint undoes all three.
BOOKING_WRITE_SQL = f"""
    WITH appointment AS ({{appointment_insert}}),
    lines AS (
      INSERT INTO {AppointmentService._meta.db_table} (appointment_id, service_id, quantity)
      SELECT appointment.id, service_id, 1
      FROM appointment, unnest(%s::bigint[]) AS service_id
    ),
    occupancies AS (
      INSERT INTO {Occupancy._meta.db_table} (appointment_id, resource_id, during, is_active)
      SELECT appointment.id, resource_id, tstzrange(%s, %s, '[)'), true
      FROM appointment, unnest(%s::bigint[]) AS resource_id
    )
    SELECT id FROM appointment
"""  # noqa: S608 (table names from the models)


def _clash_on(exc: IntegrityError, plan: Plan, exclude_appointment_id: int | None) -> _Clash:
    """``exc`` as a ``_Clash`` if the exclusion constraint raised it; any other refusal is
    re-raised as it is."""
    if _constraint_name(exc) != EXCLUSION_CONSTRAINT:
        raise exc
    return _Clash(plan.resources, plan.starts_at, plan.occupied_until, exclude_appointment_id)


def _write_occupancies(appointment: Appointment, plan: Plan, exclude_appointment_id: int) -> None:
    """Insert the occupancy rows of a moved appointment; a clash aborts the transaction with
    ``_Clash``.

    Call inside ``_with_deadlock_retry``, which turns the clash into a ``SlotConflict``.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                OCCUPANCIES_SQL,
                {
                    "appointment": appointment.pk,
                    "start": plan.starts_at,
                    "until": plan.occupied_until,
                    "resources": [resource.pk for resource in plan.resources],
                },
            )
    except IntegrityError as exc:
        raise _clash_on(exc, plan, exclude_appointment_id) from exc


def _insert_booking(appointment: Appointment, plan: Plan, service_ids: Sequence[int]) -> None:
    """Insert a new appointment with its service lines and occupancies in one statement
    (``BOOKING_WRITE_SQL``); a clash aborts the transaction with ``_Clash``."""
    insert_sql, insert_params = insert_returning_id(appointment)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                BOOKING_WRITE_SQL.format(appointment_insert=insert_sql),
                [
                    *insert_params,
                    list(service_ids),
                    plan.starts_at,
                    plan.occupied_until,
                    [resource.pk for resource in plan.resources],
                ],
            )
            row = cursor.fetchone()
    except IntegrityError as exc:
        raise _clash_on(exc, plan, None) from exc
    assert row is not None
    saved_as(appointment, row[0])


def _status(code: str) -> AppointmentStatus:
    return AppointmentStatus.objects.get(code=code)


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


def _existing_for_key(key: str, fingerprint: str) -> Appointment | None:
    existing = Appointment.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    if existing.idempotency_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "idempotency_key_reused",
            _("The idempotency key “%(key)s” was already used for a different booking.")
            % {"key": key},
            field="idempotency_key",
        )
    existing.replayed = True  # type: ignore[attr-defined]
    return existing


DEADLOCK_ATTEMPTS = 3


def _with_deadlock_retry(work: Callable[[], T]) -> T:
    """Run ``work`` in a transaction, again if PostgreSQL broke a deadlock by aborting it; an
    occupancy clash becomes a ``SlotConflict`` once the transaction has rolled back.

    Resources named in a request are locked before the ones chosen for it, so two bookings can
    still wait on each other in a cycle; PostgreSQL aborts one, and it is simply run again. After
    the last attempt the refusal is a 409 asking to try again, never a 500.
    """
    for attempt in range(DEADLOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                return work()
        except _Clash as clash:
            raise _conflict_error(
                clash.resources, clash.starts_at, clash.ends_at, clash.exclude_appointment_id
            ) from clash
        except OperationalError as exc:
            if not isinstance(exc.__cause__, pg_errors.DeadlockDetected):
                raise
            if attempt == DEADLOCK_ATTEMPTS - 1:
                raise SlotConflict(
                    "schedule_busy", _("The schedule is busy right now. Try again.")
                ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def appointment_book(*, actor: Any, request: BookingRequest) -> Appointment:
    """Book an appointment; the same idempotency key returns the same appointment.

    Raises ``SchedulingError`` (a rule says no), ``SlotConflict`` (the time is taken or held by
    someone else) or ``IdempotencyKeyReused``; nothing is written in any of those cases.
    """
    if not policies.can_book(actor, branch_id=request.branch.pk, channel=request.channel):
        raise PermissionDenied
    fingerprint = request.fingerprint()
    if request.idempotency_key:
        existing = _existing_for_key(request.idempotency_key, fingerprint)
        if existing is not None:
            return existing
    try:
        appointment = _with_deadlock_retry(lambda: _book_locked(actor, request, fingerprint))
    except IntegrityError as exc:
        # Two requests with one key raced: the loser answers with the winner's appointment.
        if request.idempotency_key and _constraint_name(exc) == IDEMPOTENCY_CONSTRAINT:
            existing = _existing_for_key(request.idempotency_key, fingerprint)
            if existing is not None:
                return existing
        raise
    if request.hold_token:
        plan_resources = [o.resource_id for o in appointment.occupancies.all()]
        token = request.hold_token
        holds.slot_release(
            token=token,
            resource_ids=plan_resources,
            starts_at=appointment.starts_at,
            ends_at=appointment.ends_at,
        )
    return appointment


def _lock_keys(
    resources: Iterable[Resource], quotas: Iterable[Quota] = ()
) -> list[tuple[int, int]]:
    return [(LOCK_RESOURCE, r.pk) for r in resources] + [(LOCK_QUOTA, q.pk) for q in quotas]


def _named_resources(request: BookingRequest) -> list[Resource]:
    """The resources the request names itself (the others are chosen by ``plan_booking``)."""
    return [r for r in (request.doctor, request.room, *request.equipment) if r is not None]


def _lock_candidates(request: BookingRequest) -> list[tuple[int, int]]:
    """Lock the resources the request names before any check (the rest are locked once chosen);
    returns the keys locked."""
    keys = _lock_keys(_named_resources(request))
    advisory_lock(keys)
    return keys


_RELATION_FIELDS = [
    field.name for field in Appointment._meta.concrete_fields if field.is_relation
] + ["idempotency_key"]


def _book_locked(actor: Any, request: BookingRequest, fingerprint: str) -> Appointment:
    context = None
    if request.services:
        try:
            start, _end, occupied_until = booking_span(request)
        except SchedulingError:
            pass  # plan_booking raises it in its own order of checks
        else:
            # Takes the named resources' locks itself, in the same round trip.
            context = booking_context(request, start, occupied_until)
    if context is None:
        held = set(_lock_candidates(request))
    else:
        held = set(_lock_keys(_named_resources(request)))
    plan = plan_booking(request, context=context)
    quotas = _quotas_for(request, plan, context)
    advisory_lock(key for key in _lock_keys(plan.resources, quotas) if key not in held)
    _check_quotas(request, plan, quotas, None)
    if holds.held_by_other(
        resource_ids=[r.pk for r in plan.resources],
        starts_at=plan.starts_at,
        ends_at=plan.occupied_until,
        token=request.hold_token,
    ):
        raise SlotConflict(
            "slot_held",
            _("Another operator is holding this time. Choose another time or wait a few minutes."),
        )
    primary = request.primary
    appointment = Appointment(
        organization_id=request.branch.organization_id,
        branch=request.branch,
        patient=request.patient,
        primary_last_name=primary.last_name.strip() if primary else "",
        primary_first_name=primary.first_name.strip() if primary else "",
        primary_patronymic=primary.patronymic.strip() if primary else "",
        primary_phone=primary.phone.strip() if primary else "",
        primary_birth_date=primary.birth_date if primary else None,
        needs_completion=request.patient is None,
        kind=plan.kind,
        doctor=plan.doctor,
        room_id=plan.room_id,
        starts_at=plan.starts_at,
        ends_at=plan.ends_at,
        status=(context and context.booked_status) or _status(AppointmentStatus.BOOKED),
        channel=request.channel,
        booking_type=request.booking_type,
        information_source=request.information_source,
        payer_kind=request.payer_kind,
        note=request.note,
        assistant=request.assistant,
        referring_agent=request.referring_agent,
        follow_up_of=request.follow_up_of,
        copied_from=request.copied_from,
        idempotency_key=request.idempotency_key or None,
        idempotency_fingerprint=fingerprint if request.idempotency_key else "",
        created_by=_user(actor),
        held_at=holds.hold_taken_at(
            token=request.hold_token,
            resource_ids=[r.pk for r in plan.resources],
            starts_at=plan.starts_at,
        )
        if request.hold_token
        else None,
    )
    # Field validation only: the related rows were all just read, and the database enforces the
    # check constraints itself, so full_clean()'s existence and constraint queries are skipped.
    appointment.clean_fields(exclude=_RELATION_FIELDS)
    appointment.clean()
    _insert_booking(appointment, plan, [s.pk for s in request.services])
    live.schedule_changed(
        branch_id=appointment.branch_id,
        resource_ids=[r.pk for r in plan.resources],
        days=[appointment.starts_at],
        kind=live.ChangeKind.BOOKED,
        known=[request.branch, *plan.resources],
        # The desk pops up a notice for a booking made on the website.
        extra={"channel": request.channel, "appointment": str(appointment.public_id)},
    )
    return appointment


# --- changes -----------------------------------------------------------------------------------


def _request_from(appointment: Appointment, **changes: Any) -> BookingRequest:
    """A booking request that reproduces an appointment, with some values changed."""
    occupancies = list(appointment.occupancies.select_related("resource"))
    room = next((o.resource for o in occupancies if o.resource.kind == ResourceKind.ROOM), None)
    equipment = [o.resource for o in occupancies if o.resource.kind == ResourceKind.EQUIPMENT]
    primary = None
    if appointment.patient_id is None:
        primary = PrimaryPatient(
            last_name=appointment.primary_last_name,
            first_name=appointment.primary_first_name,
            patronymic=appointment.primary_patronymic,
            phone=appointment.primary_phone,
            birth_date=appointment.primary_birth_date,
        )
    values: dict[str, Any] = {
        "branch": appointment.branch,
        "services": list(appointment.services.all()),
        "starts_at": appointment.starts_at,
        "channel": appointment.channel,
        "patient": appointment.patient,
        "primary": primary,
        "doctor": appointment.doctor,
        "room": room,
        "equipment": equipment,
        "kind": appointment.kind,
        "duration_minutes": int(
            (appointment.ends_at - appointment.starts_at).total_seconds() // 60
        ),
        "booking_type": appointment.booking_type,
        "information_source": appointment.information_source,
        "payer_kind": appointment.payer_kind,
        "note": appointment.note,
        "assistant": appointment.assistant,
        "referring_agent": appointment.referring_agent,
    }
    values.update(changes)
    return BookingRequest(**values)


def _locked(appointment: Appointment) -> Appointment:
    return (
        Appointment.objects.select_for_update(of=("self",))
        .select_related("status", "branch", "doctor__staff", "patient")
        .get(pk=appointment.pk)
    )


def _ensure_changeable(actor: Any, appointment: Appointment) -> None:
    if not policies.can_change_appointment(actor, appointment):
        raise PermissionDenied
    if appointment.status.is_final:
        raise SchedulingError(
            "appointment_closed",
            _("An appointment in the status “%(status)s” cannot be changed.")
            % {"status": appointment.status.name},
            field="status",
        )


def appointment_details_update(
    *,
    actor: Any,
    appointment: Appointment,
    note: str,
    information_source: InformationSource | None,
    payer_kind: str,
) -> Appointment:
    """Change what the desk records about a visit (note, source, payer); not its time or
    resources, which go through ``appointment_move``."""
    if payer_kind not in PayerKind.values:
        raise SchedulingError(
            "unknown_payer_kind",
            _("Unknown payer “%(value)s”.") % {"value": payer_kind},
            field="payer_kind",
        )
    with transaction.atomic():
        current = _locked(appointment)
        _ensure_changeable(actor, current)
        current.note = note.strip()
        current.information_source = information_source
        current.payer_kind = payer_kind
        current.save(update_fields=["note", "information_source", "payer_kind", "updated_at"])
        _announce(current, live.ChangeKind.STATUS)
    return current


def _announce(appointment: Appointment, kind: str) -> None:
    """Tell the open grids that this appointment changed (after the transaction commits)."""
    resource_ids = list(appointment.occupancies.values_list("resource_id", flat=True))
    live.schedule_changed(
        branch_id=appointment.branch_id,
        resource_ids=resource_ids,
        days=[appointment.starts_at],
        kind=kind,
        known=[appointment.branch],
    )


def _freed(doctor_id: int | None, starts_at: datetime.datetime, ends_at: datetime.datetime) -> None:
    """Offer a freed doctor's time to the waitlist once the change commits.

    The change has committed by then, so a failure to offer is logged rather than turned into
    an error for the person who cancelled or moved.
    """
    if doctor_id is None or ends_at <= timezone.now():
        return
    from .waitlist import waitlist_offer_freed_slot

    freed_at = timezone.now()

    def offer() -> None:
        try:
            waitlist_offer_freed_slot(
                doctor_id=doctor_id, starts_at=starts_at, ends_at=ends_at, freed_at=freed_at
            )
        except Exception:
            logger.exception("Could not offer the freed time of doctor %s", doctor_id)

    transaction.on_commit(offer)


def appointment_move(
    *,
    actor: Any,
    appointment: Appointment,
    starts_at: datetime.datetime | None = None,
    doctor: Resource | None = None,
    room: Resource | None = None,
    duration_minutes: int | None = None,
    reason: str = "",
) -> Appointment:
    """Move to another time, day or doctor, or change the duration; checked like a booking.

    The old occupancies are replaced in the same transaction, so a refused move leaves the
    appointment exactly where it was.
    """

    def work() -> Appointment:
        current = _locked(appointment)
        _ensure_changeable(actor, current)
        old_start, old_end, old_doctor = current.starts_at, current.ends_at, current.doctor
        changes: dict[str, Any] = {"channel": current.channel}
        if starts_at is not None:
            changes["starts_at"] = starts_at
        if doctor is not None:
            changes["doctor"] = doctor
        if room is not None:
            changes["room"] = room
        if duration_minutes is not None:
            changes["duration_minutes"] = duration_minutes
        request = _request_from(current, **changes)
        old_resources = [o.resource for o in current.occupancies.select_related("resource")]
        _lock_candidates(request)
        advisory_lock(_lock_keys(old_resources))
        plan = plan_booking(request, exclude_appointment_id=current.pk)
        quotas = _quotas_for(request, plan)
        advisory_lock(_lock_keys(plan.resources, quotas))
        _check_quotas(request, plan, quotas, current.pk)
        current.occupancies.all().delete()
        _write_occupancies(current, plan, exclude_appointment_id=current.pk)
        current.starts_at = plan.starts_at
        current.ends_at = plan.ends_at
        current.doctor = plan.doctor
        current.room_id = plan.room_id
        with pghistory.context(change_reason=reason.strip() or None):
            current.save(update_fields=["starts_at", "ends_at", "doctor", "room", "updated_at"])
        moved_away = old_doctor != plan.doctor or not (
            plan.starts_at <= old_start and old_end <= plan.ends_at
        )
        if moved_away:
            _freed(old_doctor.pk if old_doctor else None, old_start, old_end)
        live.schedule_changed(
            branch_id=current.branch_id,
            resource_ids=[r.pk for r in (*old_resources, *plan.resources)],
            days=[old_start, plan.starts_at],
            kind=live.ChangeKind.MOVED,
            known=[current.branch, *old_resources, *plan.resources],
        )
        return current

    return _with_deadlock_retry(work)


def appointment_copy(
    *,
    actor: Any,
    appointment: Appointment,
    starts_at: datetime.datetime,
    doctor: Resource | None = None,
    services: Sequence[Service] | None = None,
    idempotency_key: str | None = None,
) -> Appointment:
    """Book the same patient again (another doctor or time), linked to the original."""
    changes: dict[str, Any] = {
        "starts_at": starts_at,
        "copied_from": appointment,
        "idempotency_key": idempotency_key,
        "duration_minutes": None,
    }
    if doctor is not None:
        changes["doctor"] = doctor
    if services is not None:
        changes["services"] = list(services)
        changes["kind"] = None
        changes["room"] = None
        changes["equipment"] = ()
        if doctor is None:
            changes["doctor"] = None
    if doctor is not None and services is None:
        changes["room"] = None
    return appointment_book(actor=actor, request=_request_from(appointment, **changes))


def appointment_follow_up(
    *,
    actor: Any,
    appointment: Appointment,
    starts_at: datetime.datetime,
    services: Sequence[Service],
    kind: AppointmentKind | None = None,
    doctor: Resource | None = None,
    note: str = "",
    idempotency_key: str | None = None,
) -> Appointment:
    """A doctor books a repeat visit, a consultation or a procedure from the current visit."""
    if appointment.patient_id is None:
        raise SchedulingError(
            "patient_not_registered",
            _("Complete the patient's registration before booking a follow-up."),
            field="patient",
        )
    request = BookingRequest(
        branch=appointment.branch,
        services=list(services),
        starts_at=starts_at,
        channel=BookingChannel.DOCTOR,
        patient=appointment.patient,
        doctor=doctor,
        kind=kind,
        booking_type=BookingType.FOLLOW_UP,
        payer_kind=appointment.payer_kind,
        note=note,
        follow_up_of=appointment,
        idempotency_key=idempotency_key,
    )
    return appointment_book(actor=actor, request=request)


def appointment_cancel(
    *, actor: Any, appointment: Appointment, reason: CancelReason, note: str = ""
) -> Appointment:
    """Cancel: the appointment goes to the trash and its time is offered to the waitlist."""
    with transaction.atomic():
        current = _locked(appointment)
        _ensure_changeable(actor, current)
        current.status = _status(AppointmentStatus.CANCELLED)
        current.cancel_reason = reason
        current.cancelled_at = timezone.now()
        if note.strip():
            current.note = f"{current.note}\n{note.strip()}".strip()
        current.save(
            update_fields=["status", "cancel_reason", "cancelled_at", "note", "updated_at"]
        )
        current.occupancies.update(is_active=False)
        _freed(current.doctor_id, current.starts_at, current.ends_at)
        _announce(current, live.ChangeKind.CANCELLED)
    return current


def appointment_restore(
    *,
    actor: Any,
    appointment: Appointment,
    starts_at: datetime.datetime | None = None,
    doctor: Resource | None = None,
) -> Appointment:
    """Take an appointment back out of the trash: at its own time if that is still free and not
    past, or at ``starts_at`` / with ``doctor`` (dropped elsewhere on the grid), where it is
    checked like a booking. Either way in one transaction: a refusal leaves it in the trash."""
    elsewhere = (starts_at is not None and starts_at != appointment.starts_at) or (
        doctor is not None and doctor.pk != appointment.doctor_id
    )
    if elsewhere:
        return _restore_elsewhere(actor, appointment, starts_at, doctor)
    with transaction.atomic():
        current = _locked(appointment)
        if not policies.can_change_appointment(actor, current):
            raise PermissionDenied
        if current.status.code != AppointmentStatus.CANCELLED:
            raise SchedulingError(
                "not_cancelled", _("Only a cancelled appointment can be restored."), field="status"
            )
        if current.starts_at < timezone.now():
            raise SchedulingError(
                "in_past",
                _("The time %(start)s has already passed.")
                % {"start": timezone.localtime(current.starts_at).strftime("%d.%m.%Y %H:%M")},
                field="starts_at",
            )
        occupancies = list(current.occupancies.select_related("resource"))
        advisory_lock(_lock_keys(o.resource for o in occupancies))
        try:
            with transaction.atomic():
                current.occupancies.update(is_active=True)
        except IntegrityError as exc:
            if _constraint_name(exc) != EXCLUSION_CONSTRAINT:
                raise
            during = occupancies[0].during
            raise _conflict_error(
                [o.resource for o in occupancies], during.lower, during.upper, current.pk
            ) from exc
        current.status = _status(AppointmentStatus.BOOKED)
        current.cancel_reason = None
        current.cancelled_at = None
        current.save(update_fields=["status", "cancel_reason", "cancelled_at", "updated_at"])
        _announce(current, live.ChangeKind.RESTORED)
    return current


def _restore_elsewhere(
    actor: Any,
    appointment: Appointment,
    starts_at: datetime.datetime | None,
    doctor: Resource | None,
) -> Appointment:
    with transaction.atomic():
        current = _locked(appointment)
        if not policies.can_change_appointment(actor, current):
            raise PermissionDenied
        if current.status.code != AppointmentStatus.CANCELLED:
            raise SchedulingError(
                "not_cancelled", _("Only a cancelled appointment can be restored."), field="status"
            )
        current.status = _status(AppointmentStatus.BOOKED)
        current.cancel_reason = None
        current.cancelled_at = None
        current.save(update_fields=["status", "cancel_reason", "cancelled_at", "updated_at"])
        # Its occupancies are inactive; the move replaces them with checked new ones.
        return appointment_move(
            actor=actor, appointment=current, starts_at=starts_at, doctor=doctor
        )


# Which status may follow which; ``cancelled`` is reached through appointment_cancel only.
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    AppointmentStatus.BOOKED: frozenset(
        {AppointmentStatus.CONFIRMED, AppointmentStatus.ARRIVED, AppointmentStatus.NO_SHOW}
    ),
    AppointmentStatus.CONFIRMED: frozenset(
        {AppointmentStatus.BOOKED, AppointmentStatus.ARRIVED, AppointmentStatus.NO_SHOW}
    ),
    AppointmentStatus.ARRIVED: frozenset(
        {AppointmentStatus.IN_PROGRESS, AppointmentStatus.CONFIRMED, AppointmentStatus.COMPLETED}
    ),
    AppointmentStatus.IN_PROGRESS: frozenset({AppointmentStatus.COMPLETED}),
}


def appointment_set_status(*, actor: Any, appointment: Appointment, code: str) -> Appointment:
    """Track the patient through the clinic: confirmed, arrived, in progress, completed, no-show.

    A no-show frees the rest of its time for walk-ins and the waitlist.
    """
    with transaction.atomic():
        current = _locked(appointment)
        if not policies.can_set_status(actor, current):
            raise PermissionDenied
        allowed = STATUS_TRANSITIONS.get(current.status.code, frozenset())
        if code not in allowed:
            raise SchedulingError(
                "status_not_allowed",
                _("An appointment in the status “%(from)s” cannot become “%(to)s”.")
                % {"from": current.status.name, "to": code},
                field="status",
            )
        status = _status(code)
        current.status = status
        current.save(update_fields=["status", "updated_at"])
        if not status.occupies:
            current.occupancies.update(is_active=False)
            _freed(current.doctor_id, max(current.starts_at, timezone.now()), current.ends_at)
        _announce(current, live.ChangeKind.STATUS)
    return current
