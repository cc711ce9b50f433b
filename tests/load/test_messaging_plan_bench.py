"""Benchmark: planning the reminders of a day of 100,000 visits (target: under 60 s, with
memory that does not grow with the number of visits).

One organization with four branches in four time zones (Kaliningrad, Moscow, Samara,
Yekaterinburg), about 2,900 doctors working 08:00-20:00 in 20-minute slots and 60,000
patients; tomorrow's visits are generated in SQL with their service lines and history rows
(``messaging_bench_support``), one in 21 of them cancelled. Three rules are active: the day
before at 18:00 local time, two hours before, and the day before at 19:00 for two of the ten
services only. The planner runs the day before at 16:50 Moscow time, when every visit of the
next local day is within the look-ahead of all three rules.

First 10,000 open visits are planned, then (the messages cleared) 100,000: ``plan_reminders``
and a second run that must plan nothing, then (cleared again) ``plan_all``. Each run is traced
with ``tracemalloc``; the planner streams inside PostgreSQL, so its peak must not grow with the
visits. Prints the build steps, the wall times, rows per second, the peaks of both sizes, the
slowest statement and its plan. Asserts the exact counts, a peak under 50 MiB that stays
within a MiB or a factor of two of the 10,000-visit peak, and a loose time bound of 300 s (the
line says whether the 60 s target was met).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from messaging import planner
from messaging.models import Message
from tests.scheduling.factories import tomorrow

from .messaging_bench_support import (
    Network,
    doctors_for,
    drop_lookup_tables,
    explain_plan,
    messages_clear,
    network_create,
    open_visits,
    open_visits_of_limited_services,
    people_create,
    plan_nodes,
    traced,
    trigger_milliseconds,
    visits_add,
    visits_for_open,
)

pytestmark = [pytest.mark.load, pytest.mark.timeout(900), pytest.mark.django_db(transaction=True)]

VISITS = int(os.environ.get("CLINIC_BENCH_PLAN_VISITS", "100000"))
SMALL_VISITS = VISITS // 10
TARGET_SECONDS = 60.0
BOUND_SECONDS = 300.0
PEAK_BOUND_MIB = 50.0
MIB = 1024 * 1024


def _expected(network: Network, upto: int) -> dict[int, int]:
    """Messages per rule for visits ``0 .. upto - 1``: every open visit for the two general
    rules, the open visits of the limited services for the third."""
    return {
        network.day_before.pk: open_visits(upto),
        network.two_hours_before.pk: open_visits(upto),
        network.preparation.pk: open_visits_of_limited_services(upto),
    }


def _by_rule(results: list[planner.PlanResult]) -> dict[int, int]:
    return {result.rule_id: result.planned for result in results}


class StatementLog:
    """The planning statements as executed, with their parameters, time and rows written."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any, float, int]] = []

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        result = execute(sql, params, many, context)
        if sql.startswith(f"INSERT INTO {Message._meta.db_table}"):
            rows = max(context["cursor"].rowcount, 0)
            self.statements.append((sql, params, time.perf_counter() - started, rows))
        return result


def _due_times_off_local_evening(network: Network) -> int:
    """Day-before messages whose due time is not 18:00 in their branch's zone (must be 0)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM messaging_message m JOIN core_branch b ON b.id = m.branch_id
            WHERE m.rule_id = %s AND (m.due_at AT TIME ZONE b.time_zone)::time <> '18:00'
            """,
            [network.day_before.pk],
        )
        (count,) = cursor.fetchone()
    return int(count)


def test_planning_reminders_for_a_day_of_100k_visits(capsys: Any) -> None:
    all_visits = visits_for_open(VISITS)
    small_visits = visits_for_open(SMALL_VISITS)
    started = time.perf_counter()
    network = network_create(tomorrow())
    people_create(network, doctors=doctors_for(all_visits))
    visits_add(network, small_visits)
    build_seconds = time.perf_counter() - started

    def plan() -> dict[int, int]:
        return _by_rule(planner.plan_reminders(network.now))

    small = traced(plan)
    small_again = traced(plan)
    messages_clear()

    started = time.perf_counter()
    visits_add(network, all_visits)
    drop_lookup_tables()
    build_seconds += time.perf_counter() - started
    log = StatementLog()
    with connection.execute_wrapper(log):
        big = traced(plan)
    big_again = traced(plan)
    planned_rows = Message.objects.count()
    off_evening = _due_times_off_local_evening(network)
    messages_clear()
    everything = traced(lambda: planner.plan_all(network.now))
    everything_again = traced(lambda: planner.plan_all(network.now))

    slowest_sql, slowest_params, slowest_seconds, slowest_rows = max(
        log.statements, key=lambda statement: statement[2]
    )
    messages_clear()
    report = explain_plan(slowest_sql, slowest_params)

    planned = sum(big.result.values())
    with capsys.disabled():
        print()
        print(
            f"reminder planning bench: {network.visits:,} visits tomorrow "
            f"({open_visits(network.visits):,} open), {network.doctors:,} doctors, "
            f"{len(network.branches)} branches in 4 time zones, {len(network.rules)} rules; "
            f"build {build_seconds:.1f} s"
        )
        for label, seconds in network.steps:
            print(f"  build step {seconds:7.1f} s  {label}")
        print(
            f"  plan_reminders, {open_visits(small_visits):,} open visits: "
            f"{sum(small.result.values()):,} messages in {small.seconds:.2f} s, "
            f"tracemalloc peak {small.peak_bytes / MIB:.3f} MiB; "
            f"again: {sum(small_again.result.values())} in {small_again.seconds:.2f} s"
        )
        print(
            f"  plan_reminders, {open_visits(network.visits):,} open visits: {planned:,} messages "
            f"in {big.seconds:.2f} s ({planned / big.seconds:,.0f} rows/s), "
            f"tracemalloc peak {big.peak_bytes / MIB:.3f} MiB "
            f"(target < {TARGET_SECONDS:.0f} s: "
            f"{'met' if big.seconds < TARGET_SECONDS else 'NOT met'})"
        )
        for rule in network.rules:
            print(f"    {rule.name}: {big.result[rule.pk]:,}")
        print(
            f"  again (exactly once): {sum(big_again.result.values())} messages "
            f"in {big_again.seconds:.2f} s, peak {big_again.peak_bytes / MIB:.3f} MiB"
        )
        print(
            f"  plan_all: {everything.result:,} messages in {everything.seconds:.2f} s "
            f"({everything.result / everything.seconds:,.0f} rows/s), "
            f"peak {everything.peak_bytes / MIB:.3f} MiB; again: {everything_again.result} in "
            f"{everything_again.seconds:.2f} s"
        )
        print(
            f"  memory, {SMALL_VISITS:,} vs {VISITS:,} visits: "
            f"{small.peak_bytes / 1024:.0f} KiB vs {big.peak_bytes / 1024:.0f} KiB "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
        inserted = int(report["Plan"].get("Tuples Inserted", slowest_rows))
        print(
            f"  {len(log.statements)} statements (rule x branch); slowest {slowest_seconds:.2f} s "
            f"for {slowest_rows:,} rows; explained again: server {report['Execution Time']:.0f} "
            f"ms, of which foreign-key checks {trigger_milliseconds(report):.0f} ms, "
            f"{inserted:,} rows, WAL {report['Plan'].get('WAL Bytes', 0) / max(inserted, 1):,.0f} "
            f"bytes and {report['Plan'].get('WAL Records', 0) / max(inserted, 1):.1f} records a "
            f"row; plan: {' > '.join(plan_nodes(report['Plan']))}"
        )

    assert small.result == _expected(network, small_visits)
    assert big.result == _expected(network, all_visits)
    assert set(small_again.result.values()) == set(big_again.result.values()) == {0}
    assert planned_rows == planned
    assert everything.result == planned
    assert everything_again.result == 0
    assert off_evening == 0
    assert big.seconds < BOUND_SECONDS
    assert big.peak_bytes < PEAK_BOUND_MIB * MIB
    assert big.peak_bytes < max(2 * small.peak_bytes, small.peak_bytes + MIB)
    assert everything.peak_bytes < PEAK_BOUND_MIB * MIB
    assert inserted == slowest_rows
