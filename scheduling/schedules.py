"""When resources work: work schedules, the production calendar, exceptions and breaks.

``working_intervals`` turns the rules of many resources over a date range into concrete UTC
intervals with a fixed number of queries (one per table, whatever the number of resources or
days), so that availability for fifty doctors over two weeks stays cheap. Booking checks use the
same function, so what is offered and what is accepted never disagree.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import Q

from .models import (
    CalendarDay,
    CalendarDayType,
    Resource,
    Rotation,
    ScheduleBreak,
    ScheduleException,
    WorkSchedule,
)

Interval = tuple[datetime.datetime, datetime.datetime]


@dataclass(frozen=True)
class WorkInterval:
    """A stretch of working time of one resource on one local date (break already cut out)."""

    resource_id: int
    date: datetime.date
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    branch_id: int
    room_id: int | None
    time_zone: str = "UTC"

    def local_date_of(self, moment: datetime.datetime) -> datetime.date:
        """The date of ``moment`` in this interval's branch."""
        return moment.astimezone(zoneinfo.ZoneInfo(self.time_zone)).date()


def _day_is_worked(schedule: WorkSchedule, day: datetime.date) -> bool:
    if schedule.rotation == Rotation.WEEKDAYS:
        return day.isoweekday() in schedule.weekdays
    if schedule.rotation == Rotation.CYCLE:
        cycle = schedule.days_on + schedule.days_off
        return (day - schedule.date_from).days % cycle < schedule.days_on
    if schedule.rotation == Rotation.ODD_DAYS:
        return day.day % 2 == 1
    return day.day % 2 == 0


def _calendar_type(calendar: dict[datetime.date, CalendarDay], day: datetime.date) -> str:
    row = calendar.get(day)
    if row is not None:
        return row.day_type
    return CalendarDayType.WORKING if day.isoweekday() <= 5 else CalendarDayType.DAY_OFF


def is_working_day(organization_id: int, day: datetime.date) -> bool:
    """Whether the organization's production calendar makes ``day`` a working day (a shortened
    day is one; without a calendar entry, Monday to Friday are)."""
    row = CalendarDay.objects.filter(organization_id=organization_id, date=day).first()
    kind = _calendar_type({day: row} if row is not None else {}, day)
    return kind in (CalendarDayType.WORKING, CalendarDayType.SHORTENED)


def _local(day: datetime.date, time: datetime.time, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    return datetime.datetime.combine(day, time, tzinfo=zone).astimezone(datetime.UTC)


def _day_intervals(
    schedule: WorkSchedule, day: datetime.date, calendar_day: CalendarDay | None, zone_name: str
) -> list[tuple[datetime.datetime, datetime.datetime]]:
    zone = zoneinfo.ZoneInfo(zone_name)
    start = _local(day, schedule.start_time, zone)
    end = _local(day, schedule.end_time, zone)
    if (
        schedule.follows_calendar
        and calendar_day is not None
        and calendar_day.day_type == CalendarDayType.SHORTENED
    ):
        end -= datetime.timedelta(minutes=calendar_day.shortened_by_minutes)
    if schedule.break_start is not None and schedule.break_end is not None:
        break_start = _local(day, schedule.break_start, zone)
        break_end = _local(day, schedule.break_end, zone)
        pieces = [(start, min(end, break_start)), (max(start, break_end), end)]
    else:
        pieces = [(start, end)]
    return [(a, b) for a, b in pieces if a < b]


def working_intervals(
    resources: Sequence[Resource], date_from: datetime.date, date_to: datetime.date
) -> dict[int, list[WorkInterval]]:
    """Working intervals of each resource on each local date in [date_from, date_to].

    Exceptions (day off, sick leave, vacation) remove whole days; ad-hoc breaks are *not*
    removed here (see ``break_intervals``) because they are times, not days. Of two schedules
    covering one day, the one created later wins.
    """
    ids = [resource.pk for resource in resources]
    result: dict[int, list[WorkInterval]] = {pk: [] for pk in ids}
    if not ids:
        return result
    schedules = list(
        WorkSchedule.objects.filter(resource_id__in=ids, date_from__lte=date_to)
        .filter(Q(date_to__isnull=True) | Q(date_to__gte=date_from))
        .select_related("branch")
        .order_by("resource_id", "-id")
    )
    exceptions: dict[int, list[tuple[datetime.date, datetime.date]]] = defaultdict(list)
    for resource_id, ex_from, ex_to in ScheduleException.objects.filter(
        resource_id__in=ids, date_from__lte=date_to, date_to__gte=date_from
    ).values_list("resource_id", "date_from", "date_to"):
        exceptions[resource_id].append((ex_from, ex_to))
    organization_ids = {resource.organization_id for resource in resources}
    calendars: dict[int, dict[datetime.date, CalendarDay]] = defaultdict(dict)
    for row in CalendarDay.objects.filter(
        organization_id__in=organization_ids, date__gte=date_from, date__lte=date_to
    ):
        calendars[row.organization_id][row.date] = row
    by_resource: dict[int, list[WorkSchedule]] = defaultdict(list)
    for row_schedule in schedules:
        by_resource[row_schedule.resource_id].append(row_schedule)
    organization_of = {resource.pk: resource.organization_id for resource in resources}

    days = [date_from + datetime.timedelta(days=n) for n in range((date_to - date_from).days + 1)]
    for resource_id, own in by_resource.items():
        calendar = calendars.get(organization_of[resource_id], {})
        for day in days:
            if any(a <= day <= b for a, b in exceptions.get(resource_id, ())):
                continue
            schedule = next(
                (s for s in own if s.date_from <= day and (s.date_to is None or day <= s.date_to)),
                None,
            )
            if schedule is None:
                continue
            day_type = _calendar_type(calendar, day)
            transferred_working_day = (
                schedule.follows_calendar
                and schedule.rotation == Rotation.WEEKDAYS
                and day in calendar
                and day.isoweekday() >= 6
                and day_type in (CalendarDayType.WORKING, CalendarDayType.SHORTENED)
            )
            if not (_day_is_worked(schedule, day) or transferred_working_day):
                continue
            # A schedule that follows the calendar skips the days the calendar lists as holidays
            # or days off; an unlisted weekend only matters to the rotation itself.
            if (
                schedule.follows_calendar
                and day in calendar
                and day_type in (CalendarDayType.HOLIDAY, CalendarDayType.DAY_OFF)
            ):
                continue
            for start, end in _day_intervals(
                schedule, day, calendar.get(day), schedule.branch.time_zone
            ):
                result[resource_id].append(
                    WorkInterval(
                        resource_id=resource_id,
                        date=day,
                        starts_at=start,
                        ends_at=end,
                        branch_id=schedule.branch_id,
                        room_id=schedule.room_id,
                        time_zone=schedule.branch.time_zone,
                    )
                )
    return result


def break_intervals(
    resource_ids: Iterable[int], start: datetime.datetime, end: datetime.datetime
) -> dict[int, list[Interval]]:
    """Ad-hoc breaks of each resource that overlap [start, end)."""
    result: dict[int, list[Interval]] = defaultdict(list)
    for resource_id, starts_at, ends_at in ScheduleBreak.objects.filter(
        resource_id__in=list(resource_ids), starts_at__lt=end, ends_at__gt=start
    ).values_list("resource_id", "starts_at", "ends_at"):
        result[resource_id].append((starts_at, ends_at))
    return result


def has_schedule(resource_ids: Iterable[int]) -> set[int]:
    """Which of the resources have any work schedule at all.

    A room or a device without a schedule is available whenever the doctor works; with one, it
    is available only inside it.
    """
    return set(
        WorkSchedule.objects.filter(resource_id__in=list(resource_ids))
        .values_list("resource_id", flat=True)
        .distinct()
    )


def within_working_time(
    intervals: Sequence[WorkInterval], start: datetime.datetime, end: datetime.datetime
) -> WorkInterval | None:
    """The working interval that wholly contains [start, end), if any."""
    for interval in intervals:
        if interval.starts_at <= start and end <= interval.ends_at:
            return interval
    return None


def overlaps(
    intervals: Iterable[Interval], start: datetime.datetime, end: datetime.datetime
) -> bool:
    return any(a < end and start < b for a, b in intervals)
