"""The beat task that expires waitlist offers, and the retry of deadlocked bookings."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError
from psycopg import errors as pg_errors

from clinic.celery import _beat_schedule
from scheduling import services
from scheduling.errors import SlotConflict
from scheduling.tasks import expire_waitlist_offers


def test_beat_runs_the_waitlist_expiry_every_minute():
    entry = _beat_schedule()["scheduling-expire-waitlist-offers"]
    assert entry == {"task": "scheduling.expire_waitlist_offers", "schedule": 60.0}


@pytest.mark.django_db
def test_the_expiry_task_calls_the_service(monkeypatch: Any):
    calls: list[int] = []

    def fake_expire() -> int:
        calls.append(1)
        return 3

    monkeypatch.setattr("scheduling.tasks.waitlist_expire_offers", fake_expire)
    assert expire_waitlist_offers() == 3
    assert calls == [1]


def _deadlock() -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = pg_errors.DeadlockDetected("deadlock detected")
    return error


@pytest.mark.django_db
def test_a_deadlocked_booking_is_run_again():
    attempts: list[int] = []

    def work() -> str:
        attempts.append(1)
        if len(attempts) < services.DEADLOCK_ATTEMPTS:
            raise _deadlock()
        return "booked"

    assert services._with_deadlock_retry(work) == "booked"
    assert len(attempts) == services.DEADLOCK_ATTEMPTS


@pytest.mark.django_db
def test_a_booking_that_keeps_deadlocking_is_a_409_not_a_500():
    def work() -> str:
        raise _deadlock()

    with pytest.raises(SlotConflict) as caught:
        services._with_deadlock_retry(work)
    assert caught.value.code == "schedule_busy"
    assert caught.value.status_code == 409


@pytest.mark.django_db
def test_other_operational_errors_are_not_retried():
    attempts: list[int] = []

    def work() -> str:
        attempts.append(1)
        raise OperationalError("connection lost")

    with pytest.raises(OperationalError):
        services._with_deadlock_retry(work)
    assert attempts == [1]
