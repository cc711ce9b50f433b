"""The data of the reminder-planning benchmark: a network of branches in four time zones and a
day of visits, written with ``INSERT ... SELECT generate_series``.

Reference rows (organization, branches, services, rules) go through the ORM. Doctors (a staff
row and its resource each), patients, visits and their service lines are generated in SQL with
every constraint and trigger in place, so the history tables fill as they would in production.
Visit ``n`` is a pure function of ``n``: its doctor (``n // SLOTS_PER_DAY``, and the doctor's
branch), its 20-minute slot of the branch's local day, its patient, its service and whether it
was cancelled; the expected number of planned reminders is computed from the same rule.
"""

from __future__ import annotations

import datetime
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import connection, transaction

from clinic.core.models import Branch, Organization
from messaging.models import MessageChannel, ReminderRule, RuleEvent
from scheduling.models import AppointmentKind, AppointmentStatus, Service
from tests.core.factories import BranchFactory, OrganizationFactory, SpecialtyFactory
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import ServiceFactory

# Russia has kept standard time all year since 2014: the offsets below hold on every date.
ZONES = ("Europe/Kaliningrad", "Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg")
FIRST_SLOT = datetime.time(8, 0)
SLOT_MINUTES = 20
SLOTS_PER_DAY = 36  # 08:00 to 20:00
CANCELLED_EVERY = 21  # visit n with n % 21 == 20 was cancelled: 1 in 21
SERVICES = 10
LIMITED_SERVICES = (0, 1)  # the third rule reminds only of these (1 visit in 5)
PATIENTS = 60_000
PATIENT_STRIDE = 7_919  # prime to PATIENTS: consecutive visits go to scattered patients
# The planner runs the day before at 13:50 UTC (16:50 in Moscow): every visit of the next local
# day in the four zones is then within the look-ahead of both rules, and the day-before reminder
# of Yekaterinburg (18:00 local, 13:00 UTC) is late by less than the staleness limit.
PLANNER_RUNS_AT = datetime.time(13, 50, tzinfo=datetime.UTC)

T = TypeVar("T")


@dataclass
class Network:
    """The organization, its branches and services, and the reminder rules under test."""

    organization: Organization
    branches: list[Branch]
    services: list[Service]
    day_before: ReminderRule
    two_hours_before: ReminderRule
    preparation: ReminderRule
    day: datetime.date
    doctors: int = 0
    visits: int = 0
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def rules(self) -> list[ReminderRule]:
        return [self.day_before, self.two_hours_before, self.preparation]

    @property
    def now(self) -> datetime.datetime:
        return datetime.datetime.combine(self.day - datetime.timedelta(days=1), PLANNER_RUNS_AT)


def open_visits(upto: int) -> int:
    """Visits ``0 .. upto - 1`` that are booked or confirmed (not cancelled)."""
    return upto - (upto + 1) // CANCELLED_EVERY


def visits_for_open(count: int) -> int:
    """How many visits to generate so that ``count`` of them are open."""
    upto = count
    while open_visits(upto) < count:
        upto += 1
    return upto


def open_visits_of_limited_services(upto: int) -> int:
    return sum(
        1
        for n in range(upto)
        if n % CANCELLED_EVERY != CANCELLED_EVERY - 1 and n % SERVICES in LIMITED_SERVICES
    )


def timed(steps: list[tuple[str, float]], label: str, action: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = action()
    steps.append((label, time.perf_counter() - started))
    return result


@dataclass
class Traced:
    """One call's result, wall time and the peak of Python memory it allocated."""

    result: Any
    seconds: float
    peak_bytes: int


def traced(action: Callable[[], Any]) -> Traced:
    """Run ``action`` under ``tracemalloc``: the peak counts only what the call allocates."""
    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = action()
        seconds = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return Traced(result, seconds, peak)


def execute(sql: str, params: dict[str, Any] | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


def network_create(day: datetime.date) -> Network:
    """The organization, four branches (one per zone), the services and three active rules:
    the day before at 18:00 local time, two hours before, and the day before at 19:00 for the
    services that need preparation only."""
    organization = OrganizationFactory(short_name="Reminder bench network")
    branches = [
        BranchFactory(organization=organization, name=f"Bench branch {zone}", time_zone=zone)
        for zone in ZONES
    ]
    services = [
        ServiceFactory(organization=organization, code=f"RB.{number:02d}", name=f"Visit {number}")
        for number in range(SERVICES)
    ]

    def rule(name: str, event: str, **fields: Any) -> ReminderRule:
        return ReminderRule.objects.create(
            organization=organization,
            name=name,
            event=event,
            template_code=name.lower().replace(" ", "-"),
            channels=[MessageChannel.WHATSAPP, MessageChannel.SMS],
            **fields,
        )

    day_before = rule(
        "Day before", RuleEvent.DAYS_BEFORE, offset_days=1, send_time=datetime.time(18, 0)
    )
    two_hours_before = rule("Two hours before", RuleEvent.MINUTES_BEFORE, offset_minutes=120)
    preparation = rule(
        "Preparation", RuleEvent.DAYS_BEFORE, offset_days=1, send_time=datetime.time(19, 0)
    )
    preparation.services.set([services[index] for index in LIMITED_SERVICES])
    return Network(
        organization=organization,
        branches=branches,
        services=services,
        day_before=day_before,
        two_hours_before=two_hours_before,
        preparation=preparation,
        day=day,
    )


def _session_for_bulk_load() -> None:
    """Every trigger still fires. The history triggers read these settings and catch the error
    when one is missing, a subtransaction per row; with them set the load is linear."""
    execute("SET synchronous_commit = off")
    execute("SELECT set_config('pgtrigger.ignore', '{}', false)")
    execute(
        "SELECT set_config('pghistory.context_id', gen_random_uuid()::text, false), "
        "set_config('pghistory.context_metadata', %(metadata)s, false)",
        {"metadata": '{"bench": "reminder planning"}'},
    )


def _session_reset() -> None:
    execute("RESET synchronous_commit")
    execute("RESET pgtrigger.ignore")
    execute("RESET pghistory.context_id")
    execute("RESET pghistory.context_metadata")


DOCTORS_SQL = """
INSERT INTO core_staff (
    public_id, created_at, updated_at, last_name, first_name, patronymic, position, snils,
    frmr_id, status, organization_id, specialty_id
)
SELECT gen_random_uuid(), now(), now(), 'Benchdoctor' || n, 'Ivan', 'Petrovich', 'Doctor', '',
       '', 'active', %(org)s, %(specialty)s
FROM generate_series(0, %(doctors)s - 1) AS n
"""

RESOURCES_SQL = """
INSERT INTO scheduling_resource (
    public_id, created_at, updated_at, kind, name, equipment_type, grid_step_minutes, is_active,
    branch_id, organization_id, staff_id
)
SELECT gen_random_uuid(), now(), now(), 'doctor', s.last_name, '', %(step)s, true,
       (%(branches)s::bigint[])[1 + (substr(s.last_name, 12)::int %% %(branch_count)s)],
       s.organization_id, s.id
FROM core_staff s
WHERE s.organization_id = %(org)s AND s.last_name LIKE 'Benchdoctor%%'
"""

PATIENTS_SQL = """
INSERT INTO patients_person (public_id, last_name, name_key, {columns})
SELECT gen_random_uuid(), 'Benchpatient' || n, 'benchpatient' || n, {columns}
FROM patients_person, generate_series(0, %(patients)s - 1) AS n
WHERE id = %(template)s
"""

# Visit n: doctor n / 36 (in the doctor's branch), slot n % 36 of the branch's local day.
VISITS_SQL = """
INSERT INTO scheduling_appointment (
    id, public_id, created_at, updated_at, organization_id, branch_id, patient_id,
    primary_last_name, primary_first_name, primary_patronymic, primary_phone, needs_completion,
    kind_id, doctor_id, starts_at, ends_at, status_id, channel, booking_type,
    communication_status, payer_kind, note, idempotency_fingerprint, cancelled_at
)
SELECT %(first_id)s + n - %(from)s, gen_random_uuid(), now(), now(), %(org)s, d.branch_id, p.id,
       '', '', '', '', false, %(kind)s, d.id, slot.starts_at,
       slot.starts_at + make_interval(mins => %(slot_minutes)s),
       CASE WHEN n %% %(cancelled_every)s = %(cancelled_every)s - 1 THEN %(cancelled)s
            WHEN n %% 2 = 0 THEN %(booked)s ELSE %(confirmed)s END,
       'desk', 'planned', 'not_contacted', 'self_pay', '', '',
       CASE WHEN n %% %(cancelled_every)s = %(cancelled_every)s - 1 THEN now() END
FROM generate_series(%(from)s, %(upto)s - 1) AS n
JOIN bench_doctor d ON d.idx = n / %(slots)s
JOIN bench_patient p ON p.idx = (n::bigint * %(stride)s) %% %(patients)s
JOIN core_branch b ON b.id = d.branch_id
CROSS JOIN LATERAL (
    SELECT ((%(day)s::date + %(first_slot)s::time)
            + make_interval(mins => (n %% %(slots)s) * %(slot_minutes)s))
           AT TIME ZONE b.time_zone AS starts_at
) AS slot
"""

LINES_SQL = """
INSERT INTO scheduling_appointmentservice (appointment_id, service_id, quantity)
SELECT %(first_id)s + n - %(from)s, (%(services)s::bigint[])[1 + n %% %(service_count)s], 1
FROM generate_series(%(from)s, %(upto)s - 1) AS n
"""

ANALYZED = (
    "core_staff",
    "scheduling_resource",
    "patients_person",
    "scheduling_appointment",
    "scheduling_appointmentservice",
    "scheduling_appointmentevent",
)


def people_create(network: Network, *, doctors: int) -> None:
    """``doctors`` doctors spread over the branches and ``PATIENTS`` patients, with lookup
    tables from their number to their row."""
    organization = network.organization
    _session_for_bulk_load()
    try:
        specialty = SpecialtyFactory(code="rb-doctor", name="Reminder bench doctor")
        params: dict[str, Any] = {
            "org": organization.pk,
            "specialty": specialty.pk,
            "doctors": doctors,
            "step": SLOT_MINUTES,
            "branches": [branch.pk for branch in network.branches],
            "branch_count": len(network.branches),
            "patients": PATIENTS,
        }
        timed(
            network.steps, f"{doctors:,} doctors' staff rows", lambda: execute(DOCTORS_SQL, params)
        )
        timed(
            network.steps, f"{doctors:,} doctor resources", lambda: execute(RESOURCES_SQL, params)
        )
        execute(
            """
            CREATE TEMPORARY TABLE bench_doctor AS
            SELECT substr(r.name, 12)::int AS idx, r.id, r.branch_id FROM scheduling_resource r
            WHERE r.organization_id = %(org)s AND r.name LIKE 'Benchdoctor%%'
            """,
            params,
        )
        execute("ALTER TABLE bench_doctor ADD PRIMARY KEY (idx)")
        template = PersonFactory(organization=organization)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT column_name FROM information_schema.columns
                WHERE table_name = 'patients_person'
                  AND column_name NOT IN ('id', 'public_id', 'last_name', 'name_key')
                ORDER BY ordinal_position
                """
            )
            columns = ", ".join(f'"{name}"' for (name,) in cursor.fetchall())
        params["template"] = template.pk
        timed(
            network.steps,
            f"{PATIENTS:,} patients",
            lambda: execute(PATIENTS_SQL.format(columns=columns), params),
        )
        execute(
            """
            CREATE TEMPORARY TABLE bench_patient AS
            SELECT substr(p.last_name, 13)::int AS idx, p.id FROM patients_person p
            WHERE p.organization_id = %(org)s AND p.last_name LIKE 'Benchpatient%%'
            """,
            params,
        )
        execute("ALTER TABLE bench_patient ADD PRIMARY KEY (idx)")
    finally:
        _session_reset()
    network.doctors = doctors


def visits_add(network: Network, upto: int) -> None:
    """Visits ``network.visits .. upto - 1`` with their service lines, then ``ANALYZE``."""
    start = network.visits
    statuses = dict(AppointmentStatus.objects.values_list("code", "pk"))
    params: dict[str, Any] = {
        "org": network.organization.pk,
        "kind": AppointmentKind.objects.get(code="primary").pk,
        "from": start,
        "upto": upto,
        "slots": SLOTS_PER_DAY,
        "slot_minutes": SLOT_MINUTES,
        "first_slot": FIRST_SLOT,
        "day": network.day,
        "stride": PATIENT_STRIDE,
        "patients": PATIENTS,
        "cancelled_every": CANCELLED_EVERY,
        "cancelled": statuses[AppointmentStatus.CANCELLED],
        "booked": statuses[AppointmentStatus.BOOKED],
        "confirmed": statuses[AppointmentStatus.CONFIRMED],
        "services": [service.pk for service in network.services],
        "service_count": len(network.services),
    }
    count = upto - start
    _session_for_bulk_load()
    try:
        with connection.cursor() as cursor:
            # A block of ids taken up front: a visit's service line is derived from its number.
            cursor.execute("SELECT pg_get_serial_sequence('scheduling_appointment', 'id')")
            (sequence,) = cursor.fetchone()
            cursor.execute("SELECT nextval(%s)", [sequence])
            (params["first_id"],) = cursor.fetchone()
            cursor.execute("SELECT setval(%s, %s)", [sequence, params["first_id"] + count - 1])
        timed(
            network.steps,
            f"{count:,} visits (with their history rows)",
            lambda: execute(VISITS_SQL, params),
        )
        timed(network.steps, f"{count:,} service lines", lambda: execute(LINES_SQL, params))
    finally:
        _session_reset()
    timed(
        network.steps,
        "vacuum analyze",
        lambda: [execute(f"VACUUM ANALYZE {table}") for table in ANALYZED],
    )
    network.visits = upto


def messages_clear() -> None:
    """An empty message table, as before the first planning of a day."""
    execute("TRUNCATE messaging_message CASCADE")


def drop_lookup_tables() -> None:
    execute("DROP TABLE IF EXISTS bench_doctor, bench_patient")


def doctors_for(visits: int) -> int:
    return -(-visits // SLOTS_PER_DAY)


class _RolledBack(Exception):
    """Leaves the block of an ``EXPLAIN ANALYZE`` so that its inserts are undone."""


def explain_plan(sql: str, params: Any) -> dict[str, Any]:
    """``EXPLAIN (ANALYZE, BUFFERS, WAL)`` of a planning statement, its inserts rolled back.

    The foreign keys are checked at once rather than at commit, so that their triggers' time is
    part of the report as it is part of the statement's cost when the planner commits.
    """
    report: dict[str, Any] = {}
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) " + sql, params)
                [report] = cursor.fetchone()[0]
            raise _RolledBack
    except _RolledBack:
        pass
    return report


def trigger_milliseconds(report: dict[str, Any]) -> float:
    """Time spent in the triggers of an explained statement (the foreign-key checks)."""
    return float(sum(trigger["Time"] for trigger in report.get("Triggers", [])))


def plan_nodes(plan: dict[str, Any]) -> list[str]:
    """Every node of a plan as "Node Type [on relation] [using index]", depth first."""
    label = plan["Node Type"]
    if "Relation Name" in plan:
        label += f" on {plan['Relation Name']}"
    if "Index Name" in plan:
        label += f" using {plan['Index Name']}"
    found = [label]
    for child in plan.get("Plans", []):
        found += plan_nodes(child)
    return found
