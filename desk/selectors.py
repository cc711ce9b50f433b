"""What the schedule grid shows: columns of doctors (or rooms, or one doctor's days), rows of
time, and in each cell free time, an appointment, a break, an absence or time off.

The grid is built in Python from a fixed number of queries (resources, working intervals,
exceptions, breaks, appointments with their patients, statuses and services), whatever the
number of doctors or days, so the day grid of thirty doctors stays fast on a year of history.
The table is laid out with row spans on the finest grid step of the columns shown, so it needs
neither inline styles nor script to be drawn.
"""

from __future__ import annotations

import datetime
import itertools
import math
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.contrib.postgres.expressions import ArraySubquery
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import OuterRef, Prefetch, Q, Subquery
from django.utils.translation import gettext as _

from billing.models import PatientAccount
from clinic.core.models import Branch
from clinic.core.selectors import branch_list
from patients.models import PHONE_KINDS
from scheduling import holds
from scheduling.models import (
    Appointment,
    AppointmentService,
    AppointmentStatus,
    ExceptionKind,
    Occupancy,
    Resource,
    ResourceKind,
    ScheduleBreak,
    ScheduleException,
    Service,
)
from scheduling.schedules import WorkInterval, has_schedule, working_intervals
from scheduling.services import doctor_performs

VIEW_DAYS = {"day": 1, "three_days": 3, "week": 7}
DEFAULT_START = datetime.time(8)
DEFAULT_END = datetime.time(20)

FREE = "free"
HELD = "held"
BOOKED = "booked"
BREAK = "break"
ABSENT = "absent"
OFF = "off"


@dataclass
class Cell:
    """One cell of a column: ``rows`` grid rows from ``starts_at``."""

    kind: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    rows: int
    appointment: Appointment | None = None
    label: str = ""
    markers: list[str] = field(default_factory=list)
    phone: str = ""
    column: int = 0  # the column's position; its header carries the resource's public id

    @property
    def minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)


@dataclass
class Column:
    resource: Resource
    day: datetime.date
    index: int = 0
    absence: str = ""
    cells_by_row: dict[int, Cell] = field(default_factory=dict)
    owner: list[int] = field(default_factory=list)  # row -> first row of the cell covering it

    def cell_at(self, index: int) -> Cell:
        return self.cells_by_row[self.owner[index]]


@dataclass
class Row:
    index: int
    starts_at: datetime.datetime
    label: str
    cells: list[Cell | None]
    minute: int = 0  # minutes from local midnight, for the current-time line


@dataclass
class Grid:
    branch: Branch
    kind: str  # the kind of resource of the columns: doctors are booked from the grid
    days: list[datetime.date]
    step_minutes: int
    columns: list[Column]
    rows: list[Row]
    time_zone: str


def grid_resources(
    *,
    branch: Branch,
    kind: str = ResourceKind.DOCTOR,
    specialty_id: int | None = None,
    service_id: int | None = None,
    resource_ids: Sequence[int] = (),
) -> list[Resource]:
    """The active resources of the branch the grid may show, filtered as the toolbar asks."""
    resources = Resource.objects.filter(branch=branch, kind=kind, is_active=True).select_related(
        "staff__specialty", "room"
    )
    if resource_ids:
        resources = resources.filter(pk__in=list(resource_ids))
    if specialty_id:
        resources = resources.filter(staff__specialty_id=specialty_id)
    found = list(resources.order_by("name"))
    if service_id:
        service = (
            Service.objects.filter(pk=service_id, organization_id=branch.organization_id)
            .prefetch_related("requirements")
            .first()
        )
        found = [r for r in found if service is not None and doctor_performs(r, service)]
    return found


def _local(day: datetime.date, time: datetime.time, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    return datetime.datetime.combine(day, time, tzinfo=zone)


def _age_on(birth_date: datetime.date | None, day: datetime.date) -> int | None:
    if birth_date is None:
        return None
    years = day.year - birth_date.year
    if (day.month, day.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def appointment_markers(appointment: Appointment, day: datetime.date) -> list[str]:
    """Badges of an appointment on the grid: primary patient (no card yet), minor, VIP,
    processed (the visit is over: completed, no-show and the like), and the patient's debt or
    advance (annotated by ``grid_build`` from billing's balances)."""
    markers = []
    patient = appointment.patient
    if patient is None or appointment.needs_completion:
        markers.append("primary")
    birth_date = patient.birth_date if patient is not None else appointment.primary_birth_date
    age = _age_on(birth_date, day)
    if age is not None and age < 18:
        markers.append("minor")
    if patient is not None and patient.is_vip:
        markers.append("vip")
    if appointment.status.is_final:
        markers.append("processed")
    if (getattr(appointment, "patient_debt", None) or 0) > 0:
        markers.append("debt")
    if (getattr(appointment, "patient_advance", None) or 0) > 0:
        markers.append("advance")
    return markers


def phone_of(appointment: Appointment) -> str:
    """The patient's first phone (E.164), or the new patient's typed one; "" if none."""
    if appointment.patient is not None:
        contacts = getattr(appointment.patient, "grid_contacts", None)
        if contacts is None:
            contacts = appointment.patient.contacts.all()
        for contact in contacts:
            if contact.kind in PHONE_KINDS:
                return str(contact.value)
        return ""
    return appointment.primary_phone


def grid_build(
    *,
    branch: Branch,
    day: datetime.date,
    view: str = "day",
    resources: Sequence[Resource],
    working_hours_only: bool = True,
    hide_booked: bool = False,
    hold_token: str | None = None,
) -> Grid:
    """The grid of ``resources`` (already scoped to ``branch``) from ``day`` for the view's
    number of days. The actor must work in the branch (checked by the caller's policy)."""
    zone = zoneinfo.ZoneInfo(branch.time_zone)
    days = [day + datetime.timedelta(days=n) for n in range(VIEW_DAYS.get(view, 1))]
    ids = [resource.pk for resource in resources]
    step = max(5, math.gcd(*({resource.grid_step_minutes for resource in resources} or {15})))
    low = _local(days[0], datetime.time(), zone)
    high = _local(days[-1], datetime.time(), zone) + datetime.timedelta(days=1)

    intervals = working_intervals(list(resources), days[0], days[-1])
    absences: dict[tuple[int, datetime.date], str] = {}
    for resource_id, kind, date_from, date_to in ScheduleException.objects.filter(
        resource_id__in=ids, date_from__lte=days[-1], date_to__gte=days[0]
    ).values_list("resource_id", "kind", "date_from", "date_to"):
        for current in days:
            if date_from <= current <= date_to:
                absences[(resource_id, current)] = str(ExceptionKind(kind).label)
    breaks: dict[int, list[tuple[datetime.datetime, datetime.datetime]]] = defaultdict(list)
    for resource_id, starts_at, ends_at in ScheduleBreak.objects.filter(
        resource_id__in=ids, starts_at__lt=high, ends_at__gt=low
    ).values_list("resource_id", "starts_at", "ends_at"):
        breaks[resource_id].append((starts_at, ends_at))
    # Statuses are a handful of rows: read once and attached, rather than joined and built
    # again for every appointment; the service names come as an array with each appointment.
    statuses = {status.pk: status for status in AppointmentStatus.objects.filter(occupies=True)}
    doctor_ids = [r.pk for r in resources if r.kind == ResourceKind.DOCTOR]
    # Rooms and devices: their appointments are found through their occupancies (a GiST range
    # scan), since an appointment names only its doctor and consulting room.
    other_ids = [r.pk for r in resources if r.kind != ResourceKind.DOCTOR]
    taken_by: dict[int, list[int]] = defaultdict(list)
    if other_ids:
        for resource_id, appointment_id in Occupancy.objects.filter(
            resource_id__in=other_ids,
            is_active=True,
            during__overlap=DateTimeTZRange(low, high, "[)"),
        ).values_list("resource_id", "appointment_id"):
            taken_by[appointment_id].append(resource_id)
    # The patient's balance rides along as two subqueries on the same statement.
    balances = PatientAccount.objects.filter(
        patient_id=OuterRef("patient_id"), organization_id=OuterRef("organization_id")
    )
    appointments = (
        Appointment.objects.filter(
            Q(
                doctor_id__in=doctor_ids,
                # A visit lasts at most a day: the lower bound keeps the index scan to the days
                # shown instead of the doctor's whole history.
                starts_at__gte=low - datetime.timedelta(days=1),
                starts_at__lt=high,
                ends_at__gt=low,
            )
            | Q(pk__in=list(taken_by)),
            status_id__in=list(statuses),
        )
        .select_related("patient")
        .annotate(
            service_names=ArraySubquery(
                AppointmentService.objects.filter(appointment=OuterRef("pk"))
                .order_by("pk")
                .values("service__name")
            ),
            patient_debt=Subquery(balances.values("debt")[:1]),
            patient_advance=Subquery(balances.values("advance")[:1]),
        )
        # A plain list (``to_attr``): a related manager's ``all()`` clones a query each time.
        .prefetch_related(Prefetch("patient__contacts", to_attr="grid_contacts"))
        .order_by("starts_at")
    )
    doctors_shown = set(doctor_ids)
    by_doctor: dict[int, list[Appointment]] = defaultdict(list)
    for appointment in appointments:
        appointment.status = statuses[appointment.status_id]
        if appointment.doctor_id in doctors_shown:
            by_doctor[appointment.doctor_id].append(appointment)
        for resource_id in taken_by.get(appointment.pk, ()):
            by_doctor[resource_id].append(appointment)
    if other_ids:
        # A room or device without a schedule of its own is there whenever the clinic works.
        scheduled = has_schedule(other_ids)
        for resource in resources:
            if resource.pk in other_ids and resource.pk not in scheduled:
                intervals[resource.pk] = [
                    WorkInterval(
                        resource_id=resource.pk,
                        date=current,
                        starts_at=_local(current, DEFAULT_START, zone),
                        ends_at=_local(current, DEFAULT_END, zone),
                        branch_id=branch.pk,
                        room_id=None,
                        time_zone=branch.time_zone,
                    )
                    for current in days
                ]
    held = holds.held_ranges(ids, low.astimezone(datetime.UTC), high, except_token=hold_token)

    # The rows: the working hours of the columns shown, or the whole clinic day.
    first_time, last_time = DEFAULT_START, DEFAULT_END
    local_starts = [i.starts_at.astimezone(zone).time() for own in intervals.values() for i in own]
    local_ends = [i.ends_at.astimezone(zone).time() for own in intervals.values() for i in own]
    if working_hours_only and local_starts:
        first_time, last_time = min(local_starts), max(local_ends)
    elif local_starts:
        first_time = min(first_time, *local_starts)
        last_time = max(last_time, *local_ends)
    first_minutes = (first_time.hour * 60 + first_time.minute) // step * step
    last_minutes = -(-(last_time.hour * 60 + last_time.minute) // step) * step
    if last_minutes <= first_minutes:
        last_minutes = first_minutes + step
    row_count = (last_minutes - first_minutes) // step
    step_delta = datetime.timedelta(minutes=step)

    columns: list[Column] = []
    for current in days:
        for resource in resources:
            column = Column(resource=resource, day=current, index=len(columns))
            column.absence = absences.get((resource.pk, current), "")
            origin = _local(current, datetime.time(), zone) + datetime.timedelta(
                minutes=first_minutes
            )
            _fill_column(
                column,
                origin=origin,
                row_count=row_count,
                step=step_delta,
                working=[
                    (i.starts_at, i.ends_at)
                    for i in intervals.get(resource.pk, [])
                    if i.date == current
                ],
                breaks=breaks.get(resource.pk, []),
                appointments=by_doctor.get(resource.pk, []),
                held=held.get(resource.pk, []),
                resource_step=datetime.timedelta(minutes=resource.grid_step_minutes),
            )
            columns.append(column)

    origin = _local(days[0], datetime.time(), zone) + datetime.timedelta(minutes=first_minutes)
    shown = [
        index
        for index in range(row_count)
        if not hide_booked or any(column.cell_at(index).kind in (FREE, HELD) for column in columns)
    ]
    return Grid(
        branch=branch,
        kind=resources[0].kind if resources else ResourceKind.DOCTOR,
        days=days,
        step_minutes=step,
        columns=columns,
        rows=_rows(shown, columns, origin, step_delta),
        time_zone=branch.time_zone,
    )


def _rows(
    shown: list[int], columns: list[Column], origin: datetime.datetime, step: datetime.timedelta
) -> list[Row]:
    """The table rows of the ``shown`` row indexes: a cell starts on the first shown row it
    covers and spans the shown rows it covers after it; the rest of its rows hold nothing."""
    rows = []
    for position, index in enumerate(shown):
        cells: list[Cell | None] = []
        for column in columns:
            start = column.owner[index]
            if position and column.owner[shown[position - 1]] == start:
                cells.append(None)
                continue
            span = 1
            while position + span < len(shown) and column.owner[shown[position + span]] == start:
                span += 1
            cell = column.cells_by_row[start]
            cells.append(cell if span == cell.rows else replace(cell, rows=span))
        starts_at = origin + index * step
        rows.append(
            Row(
                index=index,
                starts_at=starts_at,
                label=f"{starts_at:%H:%M}",
                cells=cells,
                minute=starts_at.hour * 60 + starts_at.minute,
            )
        )
    return rows


def _fill_column(
    column: Column,
    *,
    origin: datetime.datetime,
    row_count: int,
    step: datetime.timedelta,
    working: list[tuple[datetime.datetime, datetime.datetime]],
    breaks: list[tuple[datetime.datetime, datetime.datetime]],
    appointments: list[Appointment],
    held: list[tuple[datetime.datetime, datetime.datetime]],
    resource_step: datetime.timedelta,
) -> None:
    """Lay the column's cells over its rows: appointments first, then breaks, then free time
    at the doctor's own step inside working hours, and time off everywhere else."""
    end = origin + row_count * step
    taken = [False] * row_count

    def row_of(moment: datetime.datetime) -> int:
        return max(0, min(row_count, int((moment - origin) / step)))

    def place(cell_start: datetime.datetime, cell_end: datetime.datetime, make: Any) -> None:
        first = row_of(cell_start)
        last = max(first + 1, math.ceil((min(cell_end, end) - origin) / step))
        last = min(last, row_count)
        if first >= row_count or cell_end <= origin:
            return
        while first < last and taken[first]:
            first += 1
        stop = first
        while stop < last and not taken[stop]:
            stop += 1
        if stop <= first:
            return
        for index in range(first, stop):
            taken[index] = True
        column.cells_by_row[first] = make(stop - first)

    for appointment in appointments:
        if appointment.ends_at <= origin or appointment.starts_at >= end:
            continue
        markers = appointment_markers(appointment, column.day)
        place(
            appointment.starts_at,
            appointment.ends_at,
            lambda rows, a=appointment, m=markers: Cell(
                BOOKED, a.starts_at, a.ends_at, rows, appointment=a, markers=m, phone=phone_of(a)
            ),
        )
    if column.absence:
        breaks, working = [], []  # the whole day is an absence, apart from its appointments
    # The schedule's own break is the time between two working intervals of the day.
    ordered = sorted(working)
    breaks = [*breaks, *((a[1], b[0]) for a, b in itertools.pairwise(ordered) if a[1] < b[0])]
    for break_start, break_end in breaks:
        place(
            break_start,
            break_end,
            lambda rows, s=break_start, e=break_end: Cell(BREAK, s, e, rows, label=_("Break")),
        )
    for work_start, work_end in working:
        slot_start = work_start
        while slot_start < work_end:
            slot_end = min(slot_start + resource_step, work_end)
            is_held = any(a < slot_end and slot_start < b for a, b in held)
            kind = HELD if is_held else FREE
            place(
                slot_start,
                slot_end,
                lambda rows, s=slot_start, e=slot_end, k=kind: Cell(k, s, e, rows),
            )
            slot_start = slot_end
    # Whatever is left is time off (or the absence): one cell per run of untaken rows.
    rest = ABSENT if column.absence else OFF
    index = 0
    while index < row_count:
        if taken[index]:
            index += 1
            continue
        stop = index
        while stop < row_count and not taken[stop]:
            stop += 1
        column.cells_by_row[index] = Cell(
            rest, origin + index * step, origin + stop * step, stop - index, label=column.absence
        )
        index = stop
    column.owner = [0] * row_count
    for start, cell in column.cells_by_row.items():
        cell.column = column.index
        column.owner[start : start + cell.rows] = [start] * cell.rows


def grid_branches(*, actor: Any) -> list[Branch]:
    """The branches whose grid the actor may open (the ones they work in)."""
    return list(branch_list(actor=actor))
