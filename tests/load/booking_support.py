"""Shared setup for the booking benchmarks: a clinic, a real gunicorn server and an HTTP booker.

The server is a separate process (gunicorn, several workers and threads) on the committed test
database, so the benchmarks measure what production runs: real sockets, real concurrency between
processes, and the database locks as the only thing that keeps two bookings apart.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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
