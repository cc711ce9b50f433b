"""Changing schedules through scheduling.rostering: who may, validation, history, and refusing
changes that would strand booked appointments."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import translation

from clinic.audit.selectors import history_for_object
from clinic.core.roles import Role
from scheduling import rostering
from scheduling.errors import SchedulingError
from scheduling.models import (
    Appointment,
    CalendarDay,
    CalendarDayType,
    ExceptionKind,
    Resource,
    ResourceKind,
    Rotation,
    ScheduleBreak,
    ScheduleException,
    ShiftTemplate,
    WorkSchedule,
)
from scheduling.services import BookingRequest, appointment_book
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db

T = datetime.time.fromisoformat


@pytest.fixture
def setup() -> dict:
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    therapist = doctor(branch, specialty=specialty, name="Dr Petrov")
    actors = {
        role: staff_with_role(role, organization=branch.organization, branches=[branch]).user
        for role in (Role.REGISTRAR, Role.DOCTOR, Role.HEAD_OF_REGISTRY, Role.ADMINISTRATOR)
    }
    return {"branch": branch, "specialty": specialty, "doctor": therapist, "actors": actors}


def create(setup: dict, actor, **changes) -> WorkSchedule:
    values = {
        "resource": setup["doctor"],
        "date_from": datetime.date(2030, 1, 1),
        "weekdays": [1, 2, 3, 4, 5],
        "start_time": T("09:00"),
        "end_time": T("18:00"),
        "break_start": T("13:00"),
        "break_end": T("14:00"),
    }
    values.update(changes)
    return rostering.schedule_create(actor=actor, **values)


@pytest.mark.parametrize("role", [Role.HEAD_OF_REGISTRY, Role.ADMINISTRATOR])
def test_head_of_registry_and_administrator_create_schedules(setup, role):
    schedule = create(setup, setup["actors"][role])
    schedule.refresh_from_db()
    assert schedule.weekdays == [1, 2, 3, 4, 5]
    assert schedule.branch == setup["branch"]
    assert schedule.created_by == setup["actors"][role]


@pytest.mark.parametrize("role", [Role.REGISTRAR, Role.DOCTOR])
def test_registrar_and_doctor_may_not_create_schedules_and_nothing_is_written(setup, role):
    with pytest.raises(PermissionDenied):
        create(setup, setup["actors"][role])
    assert WorkSchedule.objects.count() == 0


@pytest.mark.parametrize("role", [Role.REGISTRAR, Role.DOCTOR])
def test_denied_roles_change_no_schedule_exception_break_or_resource(setup, role):
    schedule = create(setup, setup["actors"][Role.ADMINISTRATOR])
    actor = setup["actors"][role]
    with pytest.raises(PermissionDenied):
        rostering.schedule_update(actor=actor, schedule=schedule, changes={"end_time": T("12:00")})
    with pytest.raises(PermissionDenied):
        rostering.schedule_end(actor=actor, schedule=schedule, date_to=datetime.date(2030, 2, 1))
    with pytest.raises(PermissionDenied):
        rostering.exception_add(
            actor=actor,
            resource=setup["doctor"],
            kind=ExceptionKind.VACATION,
            date_from=datetime.date(2030, 3, 1),
            date_to=datetime.date(2030, 3, 14),
        )
    with pytest.raises(PermissionDenied):
        rostering.break_add(
            actor=actor,
            resource=setup["doctor"],
            starts_at=local(datetime.date(2030, 3, 1), "10:00"),
            ends_at=local(datetime.date(2030, 3, 1), "11:00"),
        )
    with pytest.raises(PermissionDenied):
        rostering.resource_update(
            actor=actor, resource=setup["doctor"], changes={"grid_step_minutes": 30}
        )
    with pytest.raises(PermissionDenied):
        rostering.calendar_day_set(
            actor=actor,
            organization=setup["branch"].organization,
            date=datetime.date(2030, 1, 7),
            day_type=CalendarDayType.HOLIDAY,
        )
    schedule.refresh_from_db()
    setup["doctor"].refresh_from_db()
    assert (schedule.end_time, schedule.date_to) == (T("18:00"), None)
    assert setup["doctor"].grid_step_minutes == 15
    assert ScheduleException.objects.count() == 0
    assert ScheduleBreak.objects.count() == 0
    assert CalendarDay.objects.count() == 0


def test_head_of_registry_of_another_branch_may_not_change_this_one(setup):
    other = staff_with_role(
        Role.HEAD_OF_REGISTRY,
        organization=setup["branch"].organization,
        branches=[BranchFactory(organization=setup["branch"].organization)],
    ).user
    with pytest.raises(PermissionDenied):
        create(setup, other)
    assert WorkSchedule.objects.count() == 0


def test_schedule_copies_times_from_a_shift_template(setup):
    admin = setup["actors"][Role.ADMINISTRATOR]
    template = rostering.shift_template_create(
        actor=admin,
        organization=setup["branch"].organization,
        name="Morning",
        start_time=T("08:00"),
        end_time=T("14:00"),
        break_start=T("11:00"),
        break_end=T("11:30"),
    )
    schedule = rostering.schedule_create(
        actor=admin,
        resource=setup["doctor"],
        date_from=datetime.date(2030, 1, 1),
        weekdays=[1],
        template=template,
    )
    assert (schedule.start_time, schedule.end_time) == (T("08:00"), T("14:00"))
    assert (schedule.break_start, schedule.break_end) == (T("11:00"), T("11:30"))
    assert ShiftTemplate.objects.get().created_by == admin


def test_invalid_shift_is_refused_naming_the_field_and_the_value(setup):
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        create(setup, setup["actors"][Role.ADMINISTRATOR], end_time=T("08:00"))
    assert caught.value.code == "invalid"
    assert caught.value.field == "end_time"
    assert (
        str(caught.value.message) == "End “08:00”: The shift ends at 08:00:00, not after its start."
    )
    assert WorkSchedule.objects.count() == 0


def test_weekday_rotation_without_weekdays_is_refused(setup):
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        create(setup, setup["actors"][Role.ADMINISTRATOR], weekdays=[])
    assert caught.value.field == "weekdays"
    assert str(caught.value.message) == "Weekdays “—”: Choose at least one weekday."


@pytest.mark.parametrize("step", [4, 61])
def test_grid_step_outside_5_to_60_is_refused_naming_the_value(setup, step):
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        rostering.resource_update(
            actor=setup["actors"][Role.ADMINISTRATOR],
            resource=setup["doctor"],
            changes={"grid_step_minutes": step},
        )
    assert caught.value.field == "grid_step_minutes"
    bound = "greater than or equal to 5" if step == 4 else "less than or equal to 60"
    assert (
        str(caught.value.message) == f"Grid step, minutes “{step}”: Ensure this value is {bound}."
    )
    setup["doctor"].refresh_from_db()
    assert setup["doctor"].grid_step_minutes == 15


def test_resource_create_adds_a_device_and_update_changes_its_grid(setup):
    admin = setup["actors"][Role.ADMINISTRATOR]
    device = rostering.resource_create(
        actor=admin,
        branch=setup["branch"],
        kind=ResourceKind.EQUIPMENT,
        name=" Ultrasound 1 ",
        equipment_type="ultrasound",
    )
    updated = rostering.resource_update(
        actor=admin, resource=device, changes={"grid_step_minutes": 20}
    )
    assert (updated.name, updated.grid_step_minutes) == ("Ultrasound 1", 20)
    assert Resource.objects.get(pk=device.pk).grid_step_minutes == 20


def test_device_without_equipment_type_is_refused(setup):
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        rostering.resource_create(
            actor=setup["actors"][Role.ADMINISTRATOR],
            branch=setup["branch"],
            kind=ResourceKind.EQUIPMENT,
            name="Thing",
        )
    assert caught.value.field == "equipment_type"
    assert str(caught.value.message) == "Equipment type “—”: Give the equipment type."


def test_history_records_the_user_and_the_reason_of_each_change(setup):
    head = setup["actors"][Role.HEAD_OF_REGISTRY]
    schedule = create(setup, head, reason="new contract")
    rostering.schedule_update(
        actor=head, schedule=schedule, changes={"end_time": T("17:00")}, reason="shorter day"
    )
    events = list(history_for_object(schedule))
    assert [event.pgh_label for event in events] == ["insert", "update"]
    assert [event.user for event in events] == [head, head]
    assert [event.pgh_context["change_reason"] for event in events] == [
        "new contract",
        "shorter day",
    ]
    assert events[1].pgh_diff["end_time"] == ["18:00:00", "17:00:00"]


def test_exception_and_break_are_added_and_removed_with_history(setup):
    admin = setup["actors"][Role.ADMINISTRATOR]
    exception = rostering.exception_add(
        actor=admin,
        resource=setup["doctor"],
        kind=ExceptionKind.SICK_LEAVE,
        date_from=datetime.date(2030, 3, 1),
        date_to=datetime.date(2030, 3, 5),
    )
    pause = rostering.break_add(
        actor=admin,
        resource=setup["doctor"],
        starts_at=local(datetime.date(2030, 3, 6), "10:00"),
        ends_at=local(datetime.date(2030, 3, 6), "11:00"),
        reason="staff meeting",
    )
    exception_pk, pause_pk = exception.pk, pause.pk
    rostering.exception_remove(actor=admin, exception=exception)
    rostering.break_remove(actor=admin, pause=pause)
    assert ScheduleException.objects.count() == 0
    assert ScheduleBreak.objects.count() == 0
    labels = [e.pgh_label for e in history_for_object(ScheduleException(pk=exception_pk))]
    assert labels == ["insert", "delete"]
    assert [e.user for e in history_for_object(ScheduleBreak(pk=pause_pk))] == [admin, admin]


def test_exception_ending_before_it_starts_is_refused(setup):
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        rostering.exception_add(
            actor=setup["actors"][Role.ADMINISTRATOR],
            resource=setup["doctor"],
            kind=ExceptionKind.DAY_OFF,
            date_from=datetime.date(2030, 3, 5),
            date_to=datetime.date(2030, 3, 1),
        )
    assert caught.value.field == "date_to"
    assert str(caught.value.message) == "To “2030-03-01”: The end date is before the start date."


def test_calendar_day_set_then_cleared(setup):
    admin = setup["actors"][Role.ADMINISTRATOR]
    organization = setup["branch"].organization
    day = rostering.calendar_day_set(
        actor=admin,
        organization=organization,
        date=datetime.date(2030, 1, 7),
        day_type=CalendarDayType.HOLIDAY,
        name="Christmas",
    )
    again = rostering.calendar_day_set(
        actor=admin,
        organization=organization,
        date=datetime.date(2030, 1, 7),
        day_type=CalendarDayType.SHORTENED,
        shortened_by_minutes=120,
    )
    assert again.pk == day.pk
    assert CalendarDay.objects.get().shortened_by_minutes == 120
    rostering.calendar_day_clear(
        actor=admin, organization=organization, date=datetime.date(2030, 1, 7)
    )
    assert CalendarDay.objects.count() == 0


# Appointments left outside working time ---------------------------------------------------------


@pytest.fixture
def booked(setup) -> dict:
    """The doctor works every day 09:00–17:00 (break 13–14) and has a patient tomorrow 10:00."""
    schedule = works(setup["doctor"])
    service = service_for(setup["specialty"], organization=setup["branch"].organization)
    appointment = appointment_book(
        actor=setup["actors"][Role.REGISTRAR],
        request=BookingRequest(
            branch=setup["branch"],
            services=[service],
            starts_at=local(tomorrow(), "10:00"),
            channel="desk",
            patient=PersonFactory(organization=setup["branch"].organization),
            doctor=setup["doctor"],
        ),
    )
    return {**setup, "schedule": schedule, "appointment": appointment}


def test_shortening_the_day_under_an_appointment_is_refused_naming_the_count(booked):
    admin = booked["actors"][Role.ADMINISTRATOR]
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        rostering.schedule_update(
            actor=admin, schedule=booked["schedule"], changes={"start_time": T("11:00")}
        )
    assert caught.value.code == "appointments_affected"
    assert str(caught.value.message) == (
        "1 active appointment would be left outside working time. "
        "Move or cancel it first, or confirm the change anyway."
    )
    assert caught.value.details["count"] == 1
    assert caught.value.details["appointments"][0]["id"] == str(booked["appointment"].public_id)
    booked["schedule"].refresh_from_db()
    assert booked["schedule"].start_time == T("09:00")


def test_forced_change_keeps_the_appointment_and_saves_the_schedule(booked):
    admin = booked["actors"][Role.ADMINISTRATOR]
    rostering.schedule_update(
        actor=admin, schedule=booked["schedule"], changes={"start_time": T("11:00")}, force=True
    )
    booked["schedule"].refresh_from_db()
    assert booked["schedule"].start_time == T("11:00")
    assert Appointment.objects.get().status.code == "booked"
    assert rostering.appointments_outside_working_time([booked["doctor"].pk]) == [
        booked["appointment"]
    ]


def test_vacation_over_an_appointment_is_refused_and_not_written(booked):
    with pytest.raises(SchedulingError) as caught:
        rostering.exception_add(
            actor=booked["actors"][Role.HEAD_OF_REGISTRY],
            resource=booked["doctor"],
            kind=ExceptionKind.VACATION,
            date_from=tomorrow(),
            date_to=tomorrow() + datetime.timedelta(days=7),
        )
    assert caught.value.code == "appointments_affected"
    assert ScheduleException.objects.count() == 0


def test_break_over_an_appointment_is_refused_but_one_beside_it_is_allowed(booked):
    admin = booked["actors"][Role.ADMINISTRATOR]
    with pytest.raises(SchedulingError) as caught:
        rostering.break_add(
            actor=admin,
            resource=booked["doctor"],
            starts_at=local(tomorrow(), "10:15"),
            ends_at=local(tomorrow(), "11:00"),
        )
    assert caught.value.code == "appointments_affected"
    pause = rostering.break_add(
        actor=admin,
        resource=booked["doctor"],
        starts_at=local(tomorrow(), "11:00"),
        ends_at=local(tomorrow(), "12:00"),
    )
    assert list(ScheduleBreak.objects.all()) == [pause]


def test_ending_the_schedule_before_the_appointment_is_refused(booked):
    with pytest.raises(SchedulingError) as caught:
        rostering.schedule_end(
            actor=booked["actors"][Role.ADMINISTRATOR],
            schedule=booked["schedule"],
            date_to=tomorrow() - datetime.timedelta(days=1),
        )
    assert caught.value.code == "appointments_affected"
    booked["schedule"].refresh_from_db()
    assert booked["schedule"].date_to is None


def test_later_schedule_without_the_appointment_day_is_refused(booked):
    """A new schedule overrides the old one; if it does not work that day, the visit strands."""
    weekday = tomorrow().isoweekday()
    other_days = [d for d in range(1, 8) if d != weekday]
    with pytest.raises(SchedulingError) as caught:
        create(
            booked, booked["actors"][Role.ADMINISTRATOR], date_from=tomorrow(), weekdays=other_days
        )
    assert caught.value.code == "appointments_affected"
    assert WorkSchedule.objects.count() == 1


def test_holiday_on_the_appointment_day_is_refused_for_a_calendar_following_schedule(booked):
    WorkSchedule.objects.filter(pk=booked["schedule"].pk).update(follows_calendar=True)
    with pytest.raises(SchedulingError) as caught:
        rostering.calendar_day_set(
            actor=booked["actors"][Role.ADMINISTRATOR],
            organization=booked["branch"].organization,
            date=tomorrow(),
            day_type=CalendarDayType.HOLIDAY,
        )
    assert caught.value.code == "appointments_affected"
    assert CalendarDay.objects.count() == 0


def test_cancelled_appointment_does_not_block_a_change(booked):
    from scheduling.models import AppointmentStatus, Occupancy

    Appointment.objects.update(status=AppointmentStatus.objects.get(code="cancelled"))
    Occupancy.objects.update(is_active=False)
    schedule = rostering.schedule_update(
        actor=booked["actors"][Role.ADMINISTRATOR],
        schedule=booked["schedule"],
        changes={"rotation": Rotation.CYCLE, "days_on": 1, "days_off": 6},
    )
    assert schedule.rotation == Rotation.CYCLE


# Demo data ---------------------------------------------------------------------------------------


def test_load_demo_creates_the_schedule_demo_once():
    """load_demo's schedule part: resources, services, schedules, bookings; a rerun adds none."""
    from django.core.management import call_command

    from clinic.core.demo import DEMO_INN
    from clinic.core.models import Organization
    from scheduling.models import Service

    call_command("load_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    organization = Organization.objects.get(inn=DEMO_INN)
    resources = Resource.objects.filter(organization=organization)
    counts = {
        "doctors": resources.filter(kind=ResourceKind.DOCTOR).count(),
        "rooms": resources.filter(kind=ResourceKind.ROOM).count(),
        "devices": resources.filter(
            kind=ResourceKind.EQUIPMENT, equipment_type="ultrasound"
        ).count(),
        "services": Service.objects.filter(organization=organization).count(),
        "schedules": WorkSchedule.objects.filter(resource__organization=organization).count(),
        "appointments": Appointment.objects.filter(organization=organization).count(),
    }
    assert counts["doctors"] == 11
    assert counts["rooms"] == 22
    assert counts["devices"] == 2
    assert counts["services"] == 4
    assert counts["schedules"] == 11
    assert counts["appointments"] == 12  # 2, 3, 2, 3, 2 over the next five working days
    paediatric = Service.objects.get(organization=organization, code="B01.031.001")
    assert (paediatric.max_age, paediatric.duration_minutes) == (17, 30)
    ultrasound = Service.objects.get(organization=organization, code="A04.16.001")
    assert sorted(ultrasound.requirements.values_list("kind", flat=True)) == [
        "doctor",
        "equipment",
        "room",
    ]
    schedule = WorkSchedule.objects.filter(resource__organization=organization).first()
    assert (schedule.weekdays, schedule.start_time, schedule.end_time) == (
        [1, 2, 3, 4, 5],
        T("09:00"),
        T("18:00"),
    )
    assert (schedule.break_start, schedule.break_end) == (T("13:00"), T("14:00"))
    booked = Appointment.objects.filter(organization=organization)
    assert all(a.status.code == "booked" and a.patient_id for a in booked)

    call_command("load_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Resource.objects.filter(organization=organization).count() == sum(
        counts[k] for k in ("doctors", "rooms", "devices")
    )
    assert Appointment.objects.filter(organization=organization).count() == counts["appointments"]
    assert WorkSchedule.objects.filter(resource__organization=organization).count() == 11
