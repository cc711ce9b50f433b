"""Planning: rules turn visits and their history into ``planned`` messages, each exactly once
however often planning runs, at the right local time, and never for cancelled visits."""

from __future__ import annotations

import datetime
import threading

import pytest
from django.db import connection
from django.utils import timezone

from messaging import planner
from messaging.models import Message, MessageState, RuleEvent
from scheduling.models import AppointmentStatus, CancelReason
from scheduling.services import appointment_cancel, appointment_move, appointment_set_status
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import ServiceFactory, local

from .conftest import Clinic

pytestmark = pytest.mark.django_db


def in_days(days: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=days)


def test_a_day_before_reminder_is_planned_once_at_the_local_time(clinic: Clinic) -> None:
    visit = clinic.book(in_days(2), "10:00")
    rule = clinic.rule(RuleEvent.DAYS_BEFORE, offset_days=1, send_time=datetime.time(18, 0))
    now = local(in_days(1), "12:00")
    assert planner.plan_all(now) == 1
    assert planner.plan_all(now) == 0  # beat fired again
    message = Message.objects.get(rule=rule)
    assert message.appointment == visit
    assert message.patient == clinic.patient
    assert message.state == MessageState.PLANNED
    assert message.due_at == local(in_days(1), "18:00")
    assert message.planned_for == visit.starts_at


def test_reminders_skip_cancelled_visits_and_a_moved_visit_gets_a_new_one(
    clinic: Clinic,
) -> None:
    kept = clinic.book(in_days(2), "10:00")
    dropped = clinic.book(in_days(2), "11:00")
    appointment_cancel(
        actor=clinic.registrar, appointment=dropped, reason=CancelReason.objects.first()
    )
    rule = clinic.rule(RuleEvent.MINUTES_BEFORE, offset_minutes=120)
    now = local(in_days(1), "12:00")
    planner.plan_reminders(now)
    assert list(Message.objects.filter(rule=rule).values_list("appointment", flat=True)) == [
        kept.pk
    ]
    appointment_move(actor=clinic.registrar, appointment=kept, starts_at=local(in_days(2), "15:00"))
    planner.plan_reminders(now)
    due = sorted(Message.objects.filter(rule=rule).values_list("due_at", flat=True))
    assert due == [local(in_days(2), "08:00"), local(in_days(2), "13:00")]


def test_a_reminder_whose_time_has_long_passed_is_not_planned(clinic: Clinic) -> None:
    clinic.book(in_days(1), "10:00")
    clinic.rule(RuleEvent.DAYS_BEFORE, offset_days=1, send_time=datetime.time(9, 0))
    # Booked in the evening for tomorrow morning: yesterday-at-9 is gone.
    assert planner.plan_reminders(local(timezone.localdate(), "20:00"))[0].planned == 0


def test_rules_limited_to_services_plan_only_those_visits(clinic: Clinic) -> None:
    other = ServiceFactory(organization=clinic.organization, name="Other")
    clinic.book(in_days(2), "10:00")
    rule = clinic.rule(RuleEvent.MINUTES_BEFORE, offset_minutes=60)
    rule.services.add(other)
    assert planner.plan_reminders(local(in_days(2), "08:30"))[0].planned == 0
    rule.services.add(clinic.service)
    assert planner.plan_reminders(local(in_days(2), "08:30"))[0].planned == 1


def test_bookings_moves_cancellations_and_status_changes_plan_their_messages(
    clinic: Clinic,
) -> None:
    booked = clinic.rule(RuleEvent.BOOKED)
    moved = clinic.rule(RuleEvent.MOVED)
    cancelled = clinic.rule(RuleEvent.CANCELLED)
    feedback = clinic.rule(
        RuleEvent.AFTER_STATUS, status_code=AppointmentStatus.COMPLETED, offset_minutes=90
    )
    visit = clinic.book(in_days(1), "09:00")  # a day ahead: a time today may have passed
    other = clinic.book(in_days(1), "10:00")
    later = timezone.now() + datetime.timedelta(minutes=1)
    planner.plan_events(later)
    assert Message.objects.filter(rule=booked).count() == 2

    appointment_move(
        actor=clinic.registrar, appointment=other, starts_at=local(in_days(1), "12:00")
    )
    appointment_cancel(
        actor=clinic.registrar, appointment=other, reason=CancelReason.objects.first()
    )
    for code in (
        AppointmentStatus.ARRIVED,
        AppointmentStatus.IN_PROGRESS,
        AppointmentStatus.COMPLETED,
    ):
        appointment_set_status(actor=clinic.registrar, appointment=visit, code=code)
    planner.plan_events(timezone.now() + datetime.timedelta(minutes=1))
    planner.plan_events(timezone.now() + datetime.timedelta(minutes=2))  # and again: no change
    assert Message.objects.filter(rule=booked).count() == 2
    assert list(Message.objects.filter(rule=moved).values_list("appointment", flat=True)) == [
        other.pk
    ]
    assert list(Message.objects.filter(rule=cancelled).values_list("appointment", flat=True)) == [
        other.pk
    ]
    sent_after = Message.objects.get(rule=feedback)
    assert sent_after.appointment == visit
    assert sent_after.due_at > timezone.now() + datetime.timedelta(minutes=80)


def test_events_younger_than_the_settle_time_wait_for_the_next_run(clinic: Clinic) -> None:
    rule = clinic.rule(RuleEvent.BOOKED)
    clinic.book(in_days(1), "10:00")
    planner.plan_events(timezone.now())
    assert not Message.objects.filter(rule=rule).exists()
    planner.plan_events(timezone.now() + planner.EVENT_SETTLE * 2)
    assert Message.objects.filter(rule=rule).count() == 1


def test_birthdays_are_greeted_once_a_year(clinic: Clinic) -> None:
    today = timezone.localdate()
    clinic.patient.birth_date = today.replace(year=1980)
    clinic.patient.save(update_fields=["birth_date"])
    clinic.book(in_days(1), "10:00")
    rule = clinic.rule(RuleEvent.BIRTHDAY, send_time=datetime.time(23, 59))
    now = local(today, "08:00")
    assert planner.plan_birthdays(now)[0].planned == 1
    assert planner.plan_birthdays(now)[0].planned == 0
    assert Message.objects.get(rule=rule).patient == clinic.patient


@pytest.mark.django_db(transaction=True)
def test_two_planners_at_once_plan_each_message_once(clinic: Clinic) -> None:
    for hour in ("09:00", "10:00", "11:00", "12:00"):
        clinic.book(in_days(2), hour)
    clinic.rule(RuleEvent.DAYS_BEFORE, offset_days=1, send_time=datetime.time(18, 0))
    clinic.rule(RuleEvent.BOOKED)
    now = local(in_days(1), "12:00")
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            planner.plan_all(now)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Message.objects.filter(rule__event=RuleEvent.DAYS_BEFORE).count() == 4
    assert Message.objects.filter(rule__event=RuleEvent.BOOKED).count() == 4


def test_completing_a_visit_plans_the_way_to_the_next_one_that_day(clinic: Clinic) -> None:
    rule = clinic.rule(RuleEvent.NEXT_VISIT)
    day = in_days(1)  # the planner follows the visit's own day; a time today may have passed
    first = clinic.book(day, "09:00")
    second = clinic.book(day, "11:00")
    clinic.book(in_days(2), "10:00")  # the next day's visit is not "next" that day
    lone = clinic.book(day, "12:00", patient=PersonFactory(organization=clinic.organization))
    for code in (
        AppointmentStatus.ARRIVED,
        AppointmentStatus.IN_PROGRESS,
        AppointmentStatus.COMPLETED,
    ):
        appointment_set_status(actor=clinic.registrar, appointment=first, code=code)
        appointment_set_status(actor=clinic.registrar, appointment=lone, code=code)
    planner.plan_events(timezone.now() + datetime.timedelta(minutes=1))
    message = Message.objects.get(rule=rule)
    assert message.appointment == second
    assert message.planned_for == second.starts_at
    assert message.patient == clinic.patient
