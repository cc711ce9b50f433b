"""Benchmark: free slots of fifty doctors over two weeks against a year of appointments.

Builds a separate database (``CLINIC_BENCH_AVAILABILITY_DB``, default ``bench_availability``):
one branch, ``CLINIC_BENCH_DOCTORS`` doctors (default 50) working every weekday 08:00–20:00,
and 20-minute appointments on a year of history (95% of the grid booked) plus the coming 14
days (50% booked), each with its service line and occupancy row, inserted with
``INSERT ... SELECT generate_series`` (about 450,000 appointments for 50 doctors). The database
is kept and reused (new migrations are applied to it) while its generator version and size
match; otherwise it is dropped and built again.

Then calls ``free_slots`` for all doctors × the coming 14 days 40 times and prints p50/p95/max,
and the plan node types of the occupancy query the availability code runs (EXPLAIN ANALYZE).
Target p95 < 50 ms; the line says whether it was met. The assertion allows a median of 250 ms:
on a small shared CI machine the tail mostly measures the neighbours (the CPU time is printed
next to the wall time to tell the two apart). The collector is frozen after the warm-up call,
as the web workers do once loaded (clinic/wsgi.py). The plan must not scan the occupancy or
appointment table sequentially.
"""

from __future__ import annotations

import datetime
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinic.core.models import Branch, Specialty
from scheduling.availability import free_slots
from scheduling.models import BookingChannel, Service

from ..core.factories import BranchFactory, OrganizationFactory, SpecialtyFactory
from ..scheduling.factories import doctor, service_for, works
from .kept_database import kept_database_matches, recreate_database, timed

pytestmark = [pytest.mark.load, pytest.mark.timeout(1800)]

BENCH_DB = os.environ.get("CLINIC_BENCH_AVAILABILITY_DB", "bench_availability")
DOCTORS = int(os.environ.get("CLINIC_BENCH_DOCTORS", "50"))
HISTORY_DAYS = 365
AHEAD_DAYS = 14
GENERATOR_VERSION = "2"  # bump when the generated data changes, to rebuild kept databases
ORGANIZATION_NAME = "Availability bench clinic"
SERVICE_CODE = "BENCH.20"
RUNS = 40
MEDIAN_BOUND_MS = 250.0

# One row per booked 20-minute cell of a doctor's weekday; a deterministic hash decides which
# cells are booked (95% of the history, 50% of the coming days). Times are the branch's local
# time, stored in UTC.
APPOINTMENTS_SQL = """
INSERT INTO scheduling_appointment (
    public_id, created_at, updated_at, organization_id, branch_id, primary_last_name,
    primary_first_name, primary_patronymic, primary_phone, needs_completion, kind_id, doctor_id,
    starts_at, ends_at, status_id, channel, booking_type, communication_status, payer_kind, note,
    idempotency_fingerprint
)
SELECT gen_random_uuid(), now(), now(), %(org)s, %(branch)s, 'Bench', '', '', '+70000000000',
       true, %(kind)s, r.id, cell.starts_at, cell.starts_at + interval '20 minutes',
       CASE WHEN cell.day < %(today)s THEN %(completed)s ELSE %(booked)s END,
       'desk', 'planned', 'not_contacted', 'self_pay', '', ''
FROM scheduling_resource r
CROSS JOIN generate_series(%(first)s::date, %(last)s::date, interval '1 day') AS d(day)
CROSS JOIN generate_series(0, 35) AS n(step)
CROSS JOIN LATERAL (
    SELECT d.day::date AS day,
           ((d.day::date + time '08:00') + n.step * interval '20 minutes')
               AT TIME ZONE %(zone)s AS starts_at
) AS cell
WHERE r.organization_id = %(org)s AND r.kind = 'doctor'
  AND extract(isodow FROM d.day) <= 5
  AND abs(hashtext(r.id::text || ':' || d.day::date::text || ':' || n.step::text)) %% 100
      < CASE WHEN cell.day < %(today)s THEN 95 ELSE 50 END
"""

LINES_SQL = """
INSERT INTO scheduling_appointmentservice (appointment_id, service_id, quantity)
SELECT a.id, %(service)s, 1 FROM scheduling_appointment a WHERE a.organization_id = %(org)s
"""

OCCUPANCIES_SQL = """
INSERT INTO scheduling_occupancy (appointment_id, resource_id, during, is_active)
SELECT a.id, a.doctor_id, tstzrange(a.starts_at, a.ends_at, '[)'), true
FROM scheduling_appointment a WHERE a.organization_id = %(org)s
"""

EXCLUSION = "scheduling_occupancy_no_overlap"
TABLES = ("scheduling_appointment", "scheduling_appointmentservice", "scheduling_occupancy")


@dataclass
class Bench:
    branch: Branch
    service: Service
    appointments: int
    load_seconds: float
    steps: list[tuple[str, float]] = field(default_factory=list)
    reused: bool = False


def _fingerprint() -> str:
    return (
        f"generator v{GENERATOR_VERSION}, {DOCTORS} doctors, {HISTORY_DAYS}+{AHEAD_DAYS} days, "
        f"built {timezone.localdate().isoformat()}"
    )


def _execute(sql: str, params: dict[str, Any] | None = None) -> bool:
    """Run one statement; returns True so that it can be used inside a timed lambda."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return True


def _load(steps: list[tuple[str, float]]) -> None:
    """Fill the (migrated, empty) bench database.

    The data is generated relative to the build day, so a kept database is rebuilt the next day
    (the fingerprint carries the date) rather than measuring an emptied future.
    """
    organization = OrganizationFactory(short_name=ORGANIZATION_NAME)
    branch = BranchFactory(organization=organization)
    specialty: Specialty = SpecialtyFactory()
    service = service_for(
        specialty, organization=organization, duration_minutes=20, code=SERVICE_CODE
    )
    today = timezone.localdate()

    def doctors() -> None:
        for number in range(DOCTORS):
            resource = doctor(
                branch, specialty=specialty, name=f"Bench doctor {number:03d}", grid_step_minutes=10
            )
            works(
                resource,
                date_from=today - datetime.timedelta(days=HISTORY_DAYS),
                start="08:00",
                end="20:00",
                break_from=None,
                break_to=None,
                weekdays=[1, 2, 3, 4, 5],
            )

    timed(steps, f"{DOCTORS} doctors and schedules (ORM)", doctors)
    # Bulk load: the pghistory and foreign-key triggers do not fire for this session.
    _execute("SET session_replication_role = replica")
    _execute("SET synchronous_commit = off")
    _execute("SET maintenance_work_mem = '256MB'")
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, code FROM scheduling_appointmentstatus")
        statuses = {code: pk for pk, code in cursor.fetchall()}
        cursor.execute("SELECT id FROM scheduling_appointmentkind WHERE code = 'primary'")
        (kind_id,) = cursor.fetchone()
    params = {
        "org": organization.pk,
        "branch": branch.pk,
        "kind": kind_id,
        "completed": statuses["completed"],
        "booked": statuses["booked"],
        "service": service.pk,
        "today": today,
        "first": today - datetime.timedelta(days=HISTORY_DAYS),
        "last": today + datetime.timedelta(days=AHEAD_DAYS - 1),
        "zone": branch.time_zone,
    }
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i
            WHERE i.indrelid = ANY(%s::regclass[])
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            """,
            [list(TABLES)],
        )
        secondary_indexes = cursor.fetchall()
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s",
            [EXCLUSION],
        )
        (exclusion_definition,) = cursor.fetchone()
    # Indexes and the exclusion constraint are built once after the load, not row by row.
    for name, _definition in secondary_indexes:
        _execute(f"DROP INDEX {name}")
    _execute(f"ALTER TABLE scheduling_occupancy DROP CONSTRAINT {EXCLUSION}")
    timed(steps, "appointments", lambda: _execute(APPOINTMENTS_SQL, params))
    timed(steps, "service lines", lambda: _execute(LINES_SQL, params))
    timed(steps, "occupancies", lambda: _execute(OCCUPANCIES_SQL, params))
    timed(
        steps,
        f"{len(secondary_indexes)} secondary indexes",
        lambda: [_execute(definition) for _name, definition in secondary_indexes],
    )
    timed(
        steps,
        "exclusion constraint (GiST)",
        lambda: _execute(
            f"ALTER TABLE scheduling_occupancy ADD CONSTRAINT {EXCLUSION} {exclusion_definition}"
        ),
    )
    _execute("SET session_replication_role = DEFAULT")
    timed(steps, "vacuum analyze", lambda: [_execute(f"VACUUM ANALYZE {t}") for t in TABLES])
    connection.close()  # measure in a fresh session, without the settings of the load


@pytest.fixture(scope="module")
def bench(django_db_blocker: Any) -> Iterator[Bench]:
    """The bench database, built if missing or stale, as Django's default database."""
    with django_db_blocker.unblock():
        original_name = connection.settings_dict["NAME"]
        fingerprint = _fingerprint()
        reused, load_seconds = kept_database_matches(BENCH_DB, fingerprint)
        connection.close()
        try:
            if not reused:
                recreate_database(BENCH_DB)
            connection.settings_dict["NAME"] = BENCH_DB
            steps: list[tuple[str, float]] = []
            if reused:
                timed(steps, "migrate (kept data)", lambda: call_command("migrate", verbosity=0))
            else:
                started = time.perf_counter()
                timed(steps, "migrate", lambda: call_command("migrate", verbosity=0))
                _load(steps)
                load_seconds = time.perf_counter() - started
                _execute(
                    "CREATE TABLE bench_meta (fingerprint text, load_seconds float, "
                    "built_at timestamptz DEFAULT now())"
                )
                _execute(
                    "INSERT INTO bench_meta (fingerprint, load_seconds) "
                    "VALUES (%(fingerprint)s, %(seconds)s)",
                    {"fingerprint": fingerprint, "seconds": load_seconds},
                )
            service = Service.objects.select_related("organization").get(code=SERVICE_CODE)
            branch = Branch.objects.get(organization_id=service.organization_id)
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM scheduling_appointment")
                (appointments,) = cursor.fetchone()
            yield Bench(branch, service, appointments, load_seconds, steps, reused)
        finally:
            connection.close()
            connection.settings_dict["NAME"] = original_name


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _nodes(plan: dict[str, Any]) -> list[str]:
    """Every node of a plan as "Node Type [on relation] [using index]", depth first."""
    label = plan["Node Type"]
    if "Relation Name" in plan:
        label += f" on {plan['Relation Name']}"
    if "Index Name" in plan:
        label += f" using {plan['Index Name']}"
    found = [label]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


TARGET_P95_MS = 50.0


def test_availability_benchmark(bench: Bench, capsys: Any) -> None:
    today = timezone.localdate()
    last = today + datetime.timedelta(days=AHEAD_DAYS - 1)

    def run() -> int:
        return len(
            free_slots(
                organization_id=bench.service.organization_id,
                services=[bench.service],
                branch=bench.branch,
                date_from=today,
                date_to=last,
                channel=BookingChannel.DESK,
            )
        )

    run()  # the first call of a fresh connection pays for connecting and type information
    # As a web worker does once the application is loaded (clinic/wsgi.py): long-lived objects
    # leave the collector's sight, so a full collection does not stall a request.
    gc.collect()
    gc.freeze()
    timings: list[float] = []
    cpu: list[float] = []
    for _ in range(RUNS):
        started, started_cpu = time.perf_counter(), time.process_time()
        found = run()
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    gc.unfreeze()
    executed: list[tuple[str, Any]] = []

    def record(execute: Callable[..., Any], sql: str, params: Any, *rest: Any) -> Any:
        executed.append((sql, params))
        return execute(sql, params, *rest)

    # The statement and its parameters as executed: statements bound on the server are logged
    # with $n placeholders, which EXPLAIN cannot run.
    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(record):
        run()
    queries = [q["sql"] for q in captured.captured_queries]
    occupancy_sql, occupancy_params = next(
        (sql, params) for sql, params in executed if '"scheduling_occupancy"' in sql
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + occupancy_sql, occupancy_params)
        [report] = cursor.fetchone()[0]
    nodes = _nodes(report["Plan"])
    seq_scans = [
        node
        for node in nodes
        if node.startswith("Seq Scan")
        and node.split(" on ")[-1] in ("scheduling_occupancy", "scheduling_appointment")
    ]
    p50, p95 = _percentile(timings, 0.5), _percentile(timings, 0.95)

    with capsys.disabled():
        print()
        origin = "kept from an earlier run" if bench.reused else "built now"
        print(
            f"availability bench: {bench.appointments:,} appointments, {DOCTORS} doctors in "
            f"{BENCH_DB} ({origin}), build took {bench.load_seconds:.1f} s"
        )
        for label, seconds in bench.steps:
            print(f"  build step {seconds:7.1f} s  {label}")
        print(
            f"  free_slots, {DOCTORS} doctors x {AHEAD_DAYS} days, {RUNS} runs: "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(timings):.1f} ms, "
            f"mean {statistics.mean(timings):.1f} ms; {found:,} slots; {len(queries)} queries "
            f"(target p95 < 50 ms: {'met' if p95 < TARGET_P95_MS else 'NOT met'})"
        )
        print(
            f"  of which Python CPU time: p50 {_percentile(cpu, 0.5):.1f} ms, "
            f"p95 {_percentile(cpu, 0.95):.1f} ms (load average {os.getloadavg()[0]:.1f})"
        )
        print(
            f"  occupancy query: server {report['Execution Time']:.1f} ms, "
            f"plan: {' > '.join(nodes)}"
        )
    assert found > 0
    assert not seq_scans, nodes
    assert p50 < MEDIAN_BOUND_MS
