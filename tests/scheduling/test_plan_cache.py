"""The cache of working-time plans is never stale: any change to what a plan is computed from,
through the ORM, a bulk update or raw SQL, is seen by the next availability query."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduling.availability import free_slots
from scheduling.models import BookingChannel, ExceptionKind, ScheduleException, WorkSchedule
from scheduling.plan_cache import _event_tables, plan_cache
from scheduling.services import LOCK_RESOURCE, BookingRequest, booking_context
from tests.core.factories import BranchFactory, SpecialtyFactory

from .factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup() -> dict[str, Any]:
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    therapist = doctor(branch, specialty=specialty, grid_step_minutes=30)
    schedule = works(therapist, break_from=None, break_to=None)
    service = service_for(specialty, organization=branch.organization)
    return {"branch": branch, "doctor": therapist, "service": service, "schedule": schedule}


def starts(s: dict[str, Any]) -> list[str]:
    slots = free_slots(
        organization_id=s["branch"].organization_id,
        services=[s["service"]],
        branch=s["branch"],
        date_from=tomorrow(),
        date_to=tomorrow(),
        channel=BookingChannel.DESK,
    )
    return [f"{slot.starts_at.astimezone(datetime.UTC):%H:%M}" for slot in slots]


def test_a_bulk_update_of_a_schedule_is_seen_at_once(setup):
    assert starts(setup)[0] == "06:00"  # 09:00 in Moscow
    WorkSchedule.objects.filter(pk=setup["schedule"].pk).update(start_time=datetime.time(12))
    assert starts(setup)[0] == "09:00"


def test_raw_sql_changes_are_seen_too(setup):
    assert len(starts(setup)) == 16
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE scheduling_workschedule SET end_time = '10:00' WHERE id = %s",
            [setup["schedule"].pk],
        )
    assert starts(setup) == ["06:00", "06:30"]


def test_an_exception_added_after_a_query_removes_the_day(setup):
    assert starts(setup)
    ScheduleException.objects.create(
        resource=setup["doctor"],
        kind=ExceptionKind.SICK_LEAVE,
        date_from=tomorrow(),
        date_to=tomorrow(),
    )
    assert starts(setup) == []


def test_repeated_queries_reuse_the_plan(setup):
    plan_cache.clear()
    with CaptureQueriesContext(connection) as cold:
        first = starts(setup)
    with CaptureQueriesContext(connection) as warm:
        again = starts(setup)
    assert again == first
    # The warm query reads the version instead of the candidates and the three schedule tables.
    assert len(cold.captured_queries) == 10
    assert len(warm.captured_queries) == 5


def test_the_booking_context_reads_the_same_version_as_the_cache(setup):
    """The booking context (a PL/pgSQL function) reads the version from the event tables of
    ``PLAN_SOURCES`` in their order; a booking would otherwise use a stale plan."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'scheduling_booking_context'")
        (source,) = cursor.fetchone()
    assert f"pg_advisory_xact_lock({LOCK_RESOURCE}, locked.id::integer)" in source
    read = [
        line.split(" FROM ")[1].rstrip("),")
        for line in source.splitlines()
        if "max(pgh_id)" in line
    ]
    assert read == _event_tables()

    request = BookingRequest(
        branch=setup["branch"],
        services=[setup["service"]],
        starts_at=local(tomorrow(), "10:00"),
        channel=BookingChannel.DESK,
        doctor=setup["doctor"],
    )
    start = request.starts_at
    version = booking_context(request, start, start + datetime.timedelta(minutes=30)).plan_version
    assert version == plan_cache.version()
    WorkSchedule.objects.filter(pk=setup["schedule"].pk).update(start_time=datetime.time(10))
    changed = booking_context(request, start, start + datetime.timedelta(minutes=30)).plan_version
    assert changed == plan_cache.version() != version
