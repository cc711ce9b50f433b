"""working_intervals: which days a resource works and when, in UTC, from schedules, the
production calendar and exceptions."""

from __future__ import annotations

import datetime

import pytest

from scheduling.models import (
    CalendarDay,
    CalendarDayType,
    ExceptionKind,
    Rotation,
    ScheduleException,
)
from scheduling.schedules import WorkInterval, working_intervals
from tests.core.factories import BranchFactory, OrganizationFactory

from .factories import device, works

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
MONDAY = datetime.date(2030, 1, 7)  # a Monday; 2030-01-12 is the Saturday after it


def day(offset: int) -> datetime.date:
    return MONDAY + datetime.timedelta(days=offset)


def utc(on: datetime.date, hhmm: str) -> datetime.datetime:
    return datetime.datetime.combine(on, datetime.time.fromisoformat(hhmm), tzinfo=UTC)


@pytest.fixture
def resource():
    """A device in a Moscow branch (UTC+3 all year): 09:00 local is 06:00 UTC."""
    return device(BranchFactory())


def dates(intervals: list[WorkInterval]) -> list[datetime.date]:
    return sorted({interval.date for interval in intervals})


def spans(intervals: list[WorkInterval], on: datetime.date) -> list[tuple[str, str]]:
    return [
        (i.starts_at.astimezone(UTC).strftime("%H:%M"), i.ends_at.astimezone(UTC).strftime("%H:%M"))
        for i in intervals
        if i.date == on
    ]


def test_weekday_rotation_works_only_the_chosen_weekdays(resource):
    works(resource, date_from=day(0), weekdays=[1, 3, 5], break_from=None, break_to=None)
    result = working_intervals([resource], day(0), day(13))[resource.pk]
    assert dates(result) == [day(0), day(2), day(4), day(7), day(9), day(11)]


def test_cycle_of_two_on_two_off_counts_from_the_schedule_start(resource):
    works(resource, date_from=day(1), rotation=Rotation.CYCLE, days_on=2, days_off=2, weekdays=[])
    result = working_intervals([resource], day(0), day(9))[resource.pk]
    assert dates(result) == [day(1), day(2), day(5), day(6), day(9)]


def test_cycle_asked_from_mid_cycle_still_counts_from_the_schedule_start(resource):
    works(resource, date_from=day(0), rotation=Rotation.CYCLE, days_on=2, days_off=2, weekdays=[])
    result = working_intervals([resource], day(3), day(8))[resource.pk]
    assert dates(result) == [day(4), day(5), day(8)]


def test_odd_days_of_the_month(resource):
    works(resource, date_from=datetime.date(2030, 1, 1), rotation=Rotation.ODD_DAYS, weekdays=[])
    result = working_intervals([resource], datetime.date(2030, 1, 29), datetime.date(2030, 2, 3))
    assert dates(result[resource.pk]) == [
        datetime.date(2030, 1, 29),
        datetime.date(2030, 1, 31),
        datetime.date(2030, 2, 1),
        datetime.date(2030, 2, 3),
    ]


def test_even_days_of_the_month(resource):
    works(resource, date_from=datetime.date(2030, 1, 1), rotation=Rotation.EVEN_DAYS, weekdays=[])
    result = working_intervals([resource], datetime.date(2030, 1, 29), datetime.date(2030, 2, 3))
    assert dates(result[resource.pk]) == [datetime.date(2030, 1, 30), datetime.date(2030, 2, 2)]


def test_exception_removes_its_days_only(resource):
    works(resource, date_from=day(0), weekdays=[1, 2, 3, 4, 5])
    ScheduleException.objects.create(
        resource=resource, kind=ExceptionKind.SICK_LEAVE, date_from=day(1), date_to=day(3)
    )
    result = working_intervals([resource], day(0), day(4))[resource.pk]
    assert dates(result) == [day(0), day(4)]


def test_holiday_is_off_for_a_schedule_that_follows_the_calendar(resource):
    works(resource, date_from=day(0), weekdays=[1, 2, 3, 4, 5], follows_calendar=True)
    CalendarDay.objects.create(
        organization=resource.organization, date=day(2), day_type=CalendarDayType.HOLIDAY
    )
    result = working_intervals([resource], day(0), day(4))[resource.pk]
    assert dates(result) == [day(0), day(1), day(3), day(4)]


def test_holiday_is_worked_by_a_schedule_that_ignores_the_calendar(resource):
    works(resource, date_from=day(0), weekdays=[1, 2, 3, 4, 5], follows_calendar=False)
    CalendarDay.objects.create(
        organization=resource.organization, date=day(2), day_type=CalendarDayType.HOLIDAY
    )
    result = working_intervals([resource], day(2), day(2))[resource.pk]
    assert dates(result) == [day(2)]


def test_holiday_of_another_organization_does_not_matter(resource):
    works(resource, date_from=day(0), weekdays=[1, 2, 3, 4, 5], follows_calendar=True)
    CalendarDay.objects.create(
        organization=OrganizationFactory(), date=day(2), day_type=CalendarDayType.HOLIDAY
    )
    assert dates(working_intervals([resource], day(2), day(2))[resource.pk]) == [day(2)]


def test_shortened_day_ends_earlier_by_its_minutes(resource):
    works(
        resource,
        date_from=day(0),
        weekdays=[1, 2, 3, 4, 5],
        start="09:00",
        end="18:00",
        follows_calendar=True,
    )
    CalendarDay.objects.create(
        organization=resource.organization,
        date=day(3),
        day_type=CalendarDayType.SHORTENED,
        shortened_by_minutes=90,
    )
    result = working_intervals([resource], day(2), day(3))[resource.pk]
    assert spans(result, day(2)) == [("06:00", "10:00"), ("11:00", "15:00")]
    assert spans(result, day(3)) == [("06:00", "10:00"), ("11:00", "13:30")]


def test_transferred_working_saturday_is_worked_by_a_monday_to_friday_schedule(resource):
    works(resource, date_from=day(0), weekdays=[1, 2, 3, 4, 5], follows_calendar=True)
    CalendarDay.objects.create(
        organization=resource.organization, date=day(5), day_type=CalendarDayType.WORKING
    )
    result = working_intervals([resource], day(4), day(6))[resource.pk]
    assert dates(result) == [day(4), day(5)]
    assert spans(result, day(5)) == [("06:00", "10:00"), ("11:00", "14:00")]


def test_shortened_eve_on_a_weekday_off_is_not_worked(resource):
    works(resource, date_from=day(0), weekdays=[1, 3], follows_calendar=True)
    CalendarDay.objects.create(
        organization=resource.organization, date=day(1), day_type=CalendarDayType.SHORTENED
    )
    result = working_intervals([resource], day(0), day(2))[resource.pk]
    assert dates(result) == [day(0), day(2)]


def test_saturday_not_in_the_calendar_stays_off(resource):
    works(resource, date_from=day(0), weekdays=[1, 2, 3, 4, 5], follows_calendar=True)
    assert working_intervals([resource], day(5), day(6))[resource.pk] == []


def test_later_schedule_overrides_an_earlier_one_on_the_days_both_cover(resource):
    works(resource, date_from=day(0), weekdays=[1, 2, 3, 4, 5], start="09:00", end="18:00")
    works(
        resource,
        date_from=day(2),
        date_to=day(3),
        weekdays=[3],
        start="12:00",
        end="20:00",
        break_from=None,
        break_to=None,
    )
    result = working_intervals([resource], day(1), day(4))[resource.pk]
    assert dates(result) == [day(1), day(2), day(4)]
    assert spans(result, day(2)) == [("09:00", "17:00")]
    assert spans(result, day(4)) == [("06:00", "10:00"), ("11:00", "15:00")]


def test_schedule_ended_gives_no_days_after_its_end(resource):
    works(resource, date_from=day(0), date_to=day(1), weekdays=[1, 2, 3, 4, 5])
    assert dates(working_intervals([resource], day(0), day(4))[resource.pk]) == [day(0), day(1)]


def test_break_is_cut_out_of_the_day(resource):
    works(
        resource, date_from=day(0), start="09:00", end="18:00", break_from="13:00", break_to="14:00"
    )
    result = working_intervals([resource], day(0), day(0))[resource.pk]
    assert [(i.starts_at, i.ends_at) for i in result] == [
        (utc(day(0), "06:00"), utc(day(0), "10:00")),
        (utc(day(0), "11:00"), utc(day(0), "15:00")),
    ]


def test_branch_time_zone_yekaterinburg_nine_local_is_four_utc():
    branch = BranchFactory(time_zone="Asia/Yekaterinburg")
    resource = device(branch)
    works(resource, date_from=day(0), start="09:00", end="18:00", break_from=None, break_to=None)
    result = working_intervals([resource], day(0), day(0))[resource.pk]
    assert [(i.starts_at, i.ends_at) for i in result] == [
        (utc(day(0), "04:00"), utc(day(0), "13:00"))
    ]
    assert result[0].branch_id == branch.pk


def test_dst_free_zone_keeps_the_same_utc_hours_in_winter_and_summer(resource):
    works(resource, date_from=day(0), start="09:00", end="18:00", break_from=None, break_to=None)
    summer = datetime.date(2030, 7, 8)
    result = working_intervals([resource], summer, summer)[resource.pk]
    winter = working_intervals([resource], day(0), day(0))[resource.pk]
    assert spans(result, summer) == spans(winter, day(0)) == [("06:00", "15:00")]


def test_a_resource_without_schedule_has_no_intervals(resource):
    assert working_intervals([resource], day(0), day(6)) == {resource.pk: []}


def test_many_resources_cost_three_queries(django_assert_num_queries):
    branch = BranchFactory()
    resources = [device(branch) for _ in range(5)]
    for item in resources:
        works(item, date_from=day(0))
    with django_assert_num_queries(3):
        result = working_intervals(resources, day(0), day(13))
    assert sum(len(v) for v in result.values()) == 5 * 14 * 2
