"""Benchmark: the desk's day grid of thirty doctors over a year of history.

Uses the availability benchmark's kept database (fifty doctors, a year of appointments, the
coming two weeks half booked; see ``test_availability_bench``) and renders the whole page
(``/desk/schedule/``: toolbar, grid, every middleware) for the first thirty doctors on the next
weekday, as a logged-in registrar of the branch, 20 times. Prints p50/p95 of the server time
and the number of queries for 10 and for 30 doctors, which must be equal. Target: under 300 ms.
"""

from __future__ import annotations

import datetime
import gc
import statistics
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinic.core.models import Staff
from clinic.core.roles import Role
from scheduling.models import Resource, ResourceKind
from tests.core.factories import StaffFactory, UserFactory

from . import test_availability_bench as availability
from .test_availability_bench import Bench, _percentile

# The kept database of fifty doctors and a year of appointments, built by the availability bench.
bench = availability.bench

pytestmark = [pytest.mark.load, pytest.mark.timeout(1800)]

RUNS = 20
TARGET_MS = 300.0
REGISTRAR = "grid-bench-registrar"


def _registrar(branch: Any) -> Any:
    """The bench's registrar, made once and kept with the database."""
    user = get_user_model().objects.filter(username=REGISTRAR).first()
    if user is not None and Staff.objects.filter(user=user).exists():
        return user
    user = UserFactory(username=REGISTRAR, roles=[Role.REGISTRAR])
    StaffFactory(user=user, organization=branch.organization, branches=[branch])
    return user


def _next_weekday() -> datetime.date:
    day = timezone.localdate() + datetime.timedelta(days=1)
    while day.isoweekday() > 5:
        day += datetime.timedelta(days=1)
    return day


def test_day_grid_of_thirty_doctors(bench: Bench, django_db_blocker: Any, capsys: Any) -> None:
    with django_db_blocker.unblock():
        client = Client()
        client.force_login(_registrar(bench.branch))
        doctors = list(
            Resource.objects.filter(branch=bench.branch, kind=ResourceKind.DOCTOR)
            .order_by("name")
            .values_list("pk", flat=True)
        )
        day = _next_weekday().isoformat()

        def grid(count: int) -> Any:
            return client.get(
                "/desk/schedule/",
                {"branch": str(bench.branch.public_id), "date": day, "doctor": doctors[:count]},
            )

        for count in (10, 30):  # warm both: the first call of each pays for the plan cache
            assert grid(count).status_code == 200
        counts = {}
        for count in (10, 30):
            with CaptureQueriesContext(connection) as captured:
                response = grid(count)
            assert response.status_code == 200
            counts[count] = len(captured.captured_queries)
        html = response.content.decode()
        assert html.count('class="schedule-grid__head"') == 30
        booked = html.count("slot slot--booked")
        gc.collect()
        gc.freeze()
        timings = []
        for _ in range(RUNS):
            started = time.perf_counter()
            assert grid(30).status_code == 200
            timings.append((time.perf_counter() - started) * 1000)
        gc.unfreeze()
    p95 = _percentile(timings, 0.95)
    with capsys.disabled():
        print(
            f"\ndesk day grid, 30 doctors on {day} ({bench.appointments:,} appointments in the "
            f"database, {booked} on the grid), {RUNS} runs: p50 {statistics.median(timings):.0f} "
            f"ms, p95 {p95:.0f} ms, max {max(timings):.0f} ms "
            f"(target < {TARGET_MS:.0f} ms: {'met' if p95 < TARGET_MS else 'NOT met'}); "
            f"queries: {counts[10]} for 10 doctors, {counts[30]} for 30"
        )
    assert counts[10] == counts[30]
    assert booked > 0
