"""Booking through the service: rules, resource choice, conflicts, idempotency."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import translation

from clinic.core.roles import Role
from scheduling.errors import IdempotencyKeyReused, SchedulingError, SlotConflict
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    BookingChannel,
    CancelReason,
    ChannelRule,
    Occupancy,
    Quota,
    QuotaPeriod,
    QuotaScope,
    ScheduleBreak,
)
from scheduling.services import (
    BookingRequest,
    PrimaryPatient,
    appointment_book,
    appointment_cancel,
    appointment_copy,
    appointment_move,
    appointment_restore,
    appointment_set_status,
)
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import device, doctor, local, room, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic() -> dict:
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    therapist = doctor(branch, specialty=specialty, name="Dr Petrov")
    works(therapist)
    service = service_for(specialty, organization=branch.organization)
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    patient = PersonFactory(organization=branch.organization)
    return {
        "branch": branch,
        "specialty": specialty,
        "doctor": therapist,
        "service": service,
        "actor": registrar.user,
        "patient": patient,
    }


def request_for(c: dict, hhmm: str = "10:00", **changes) -> BookingRequest:
    values = {
        "branch": c["branch"],
        "services": [c["service"]],
        "starts_at": local(tomorrow(), hhmm),
        "channel": BookingChannel.DESK,
        "patient": c["patient"],
        "doctor": c["doctor"],
    }
    values.update(changes)
    return BookingRequest(**values)


def test_booking_occupies_the_doctor_for_the_service_duration(clinic):
    appointment = appointment_book(actor=clinic["actor"], request=request_for(clinic))
    assert appointment.status.code == AppointmentStatus.BOOKED
    assert appointment.ends_at - appointment.starts_at == datetime.timedelta(minutes=30)
    occupancy = Occupancy.objects.get(appointment=appointment)
    assert occupancy.resource == clinic["doctor"]
    assert occupancy.during.lower == local(tomorrow(), "10:00")
    assert occupancy.during.upper == local(tomorrow(), "10:30")


def test_overlapping_booking_is_a_conflict_naming_the_doctor_not_the_patient(clinic):
    appointment_book(actor=clinic["actor"], request=request_for(clinic))
    other = PersonFactory(organization=clinic["branch"].organization)
    with translation.override("en"), pytest.raises(SlotConflict) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, "10:15", patient=other))
    assert caught.value.code == "slot_taken"
    assert "Dr Petrov is busy from" in str(caught.value.message)
    assert clinic["patient"].last_name not in str(caught.value.message)
    assert caught.value.details["conflict"]["resource"] == "Dr Petrov"
    assert Appointment.objects.count() == 1


def test_the_buffer_after_a_service_keeps_the_doctor_busy(clinic):
    clinic["service"].buffer_after_minutes = 10
    clinic["service"].save()
    appointment_book(actor=clinic["actor"], request=request_for(clinic))
    with pytest.raises(SlotConflict):
        appointment_book(actor=clinic["actor"], request=request_for(clinic, "10:30"))
    appointment_book(actor=clinic["actor"], request=request_for(clinic, "10:40"))
    assert Appointment.objects.count() == 2


@pytest.mark.parametrize(
    ("hhmm", "day_offset", "code"),
    [
        ("08:00", 1, "outside_working_time"),
        ("13:15", 1, "in_break"),
        ("16:45", 1, "outside_working_time"),
        ("10:00", -1, "in_past"),
        ("10:00", 400, "beyond_horizon"),
    ],
)
def test_bad_times_are_refused_with_a_reason(clinic, hhmm, day_offset, code):
    start = local(datetime.date.today() + datetime.timedelta(days=day_offset), hhmm)
    with pytest.raises(SchedulingError) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, starts_at=start))
    assert caught.value.code == code
    assert caught.value.field == "starts_at"
    assert Appointment.objects.count() == 0
    assert Occupancy.objects.count() == 0


def test_an_ad_hoc_break_refuses_bookings(clinic):
    ScheduleBreak.objects.create(
        resource=clinic["doctor"],
        starts_at=local(tomorrow(), "11:00"),
        ends_at=local(tomorrow(), "12:00"),
    )
    with pytest.raises(SchedulingError) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:30"))
    assert caught.value.code == "in_break"


def test_a_service_the_doctor_does_not_perform_is_refused(clinic):
    other = service_for(SpecialtyFactory(), organization=clinic["branch"].organization)
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, services=[other]))
    assert caught.value.code == "service_not_performed"
    assert "Dr Petrov does not perform" in str(caught.value.message)


def test_a_child_cannot_be_booked_to_an_adults_only_doctor(clinic):
    clinic["doctor"].min_patient_age = 18
    clinic["doctor"].save()
    child = PersonFactory(
        organization=clinic["branch"].organization,
        birth_date=datetime.date.today() - datetime.timedelta(days=365 * 5),
    )
    with pytest.raises(SchedulingError) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, patient=child))
    assert caught.value.code == "age_not_allowed"


def test_a_channel_not_allowed_for_the_service_is_refused(clinic):
    clinic["service"].channels = [BookingChannel.DESK]
    clinic["service"].save()
    with pytest.raises(SchedulingError) as caught:
        appointment_book(
            actor=clinic["actor"], request=request_for(clinic, channel=BookingChannel.CALL_CENTRE)
        )
    assert caught.value.code == "channel_not_allowed"


def test_the_doctor_is_chosen_by_specialty_when_not_named(clinic):
    appointment = appointment_book(actor=clinic["actor"], request=request_for(clinic, doctor=None))
    assert appointment.doctor == clinic["doctor"]


def test_a_room_and_a_device_required_by_the_service_are_occupied_too(clinic):
    from scheduling.models import ResourceKind, ServiceRequirement

    cabinet = room(clinic["branch"], room_type="ultrasound")
    scanner = device(clinic["branch"], "ultrasound")
    ServiceRequirement.objects.create(
        service=clinic["service"], kind=ResourceKind.ROOM, room_type="ultrasound"
    )
    ServiceRequirement.objects.create(
        service=clinic["service"], kind=ResourceKind.EQUIPMENT, equipment_type="ultrasound"
    )
    appointment = appointment_book(actor=clinic["actor"], request=request_for(clinic))
    assert set(appointment.occupancies.values_list("resource_id", flat=True)) == {
        clinic["doctor"].pk,
        cabinet.pk,
        scanner.pk,
    }
    assert appointment.room_id == cabinet.room_id
    second_doctor = doctor(clinic["branch"], specialty=clinic["specialty"])
    works(second_doctor)
    with pytest.raises(SlotConflict) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, doctor=second_doctor))
    assert caught.value.code == "no_room_free"


def test_a_primary_patient_is_booked_by_name_and_phone_and_flagged(clinic):
    request = request_for(
        clinic,
        patient=None,
        primary=PrimaryPatient(last_name="Сидоров", phone="+79161234567"),
    )
    appointment = appointment_book(actor=clinic["actor"], request=request)
    assert appointment.patient is None
    assert appointment.needs_completion is True
    assert appointment.patient_name == "Сидоров"


def test_the_same_idempotency_key_returns_the_same_appointment(clinic):
    first = appointment_book(
        actor=clinic["actor"], request=request_for(clinic, idempotency_key="k1")
    )
    again = appointment_book(
        actor=clinic["actor"], request=request_for(clinic, idempotency_key="k1")
    )
    assert again.pk == first.pk
    assert again.replayed is True
    with pytest.raises(IdempotencyKeyReused):
        appointment_book(
            actor=clinic["actor"], request=request_for(clinic, "11:00", idempotency_key="k1")
        )
    assert Appointment.objects.count() == 1


def test_a_doctor_may_not_book_through_the_desk_channel(clinic):
    with pytest.raises(PermissionDenied):
        appointment_book(actor=clinic["doctor"].staff.user, request=request_for(clinic))
    assert Appointment.objects.count() == 0


def test_quota_per_doctor_and_day_is_enforced(clinic):
    Quota.objects.create(
        organization=clinic["branch"].organization,
        scope=QuotaScope.DOCTOR,
        resource=clinic["doctor"],
        period=QuotaPeriod.DAY,
        limit=1,
    )
    appointment_book(actor=clinic["actor"], request=request_for(clinic))
    with pytest.raises(SchedulingError) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:00"))
    assert caught.value.code == "quota_exceeded"


def test_move_cancel_restore_and_copy(clinic):
    appointment = appointment_book(actor=clinic["actor"], request=request_for(clinic))
    moved = appointment_move(
        actor=clinic["actor"], appointment=appointment, starts_at=local(tomorrow(), "11:00")
    )
    assert moved.starts_at == local(tomorrow(), "11:00")
    occupancy = Occupancy.objects.get(appointment=appointment)
    assert occupancy.during.lower == local(tomorrow(), "11:00")
    # The old time is free again.
    appointment_book(actor=clinic["actor"], request=request_for(clinic, "10:00"))

    resized = appointment_move(actor=clinic["actor"], appointment=moved, duration_minutes=60)
    assert resized.ends_at == local(tomorrow(), "12:00")

    reason = CancelReason.objects.get(code="patient_request")
    cancelled = appointment_cancel(actor=clinic["actor"], appointment=resized, reason=reason)
    assert cancelled.status.code == AppointmentStatus.CANCELLED
    assert not Occupancy.objects.get(appointment=cancelled).is_active
    taker = appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:30"))
    with pytest.raises(SlotConflict):
        appointment_restore(actor=clinic["actor"], appointment=cancelled)
    appointment_cancel(actor=clinic["actor"], appointment=taker, reason=reason)
    restored = appointment_restore(actor=clinic["actor"], appointment=cancelled)
    assert restored.status.code == AppointmentStatus.BOOKED
    assert Occupancy.objects.get(appointment=restored).is_active

    copy = appointment_copy(
        actor=clinic["actor"], appointment=restored, starts_at=local(tomorrow(), "15:00")
    )
    assert copy.copied_from == restored
    assert copy.patient == restored.patient


def test_a_refused_move_leaves_the_appointment_where_it_was(clinic):
    first = appointment_book(actor=clinic["actor"], request=request_for(clinic))
    appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:00"))
    with pytest.raises(SlotConflict):
        appointment_move(
            actor=clinic["actor"], appointment=first, starts_at=local(tomorrow(), "11:00")
        )
    first.refresh_from_db()
    assert first.starts_at == local(tomorrow(), "10:00")
    assert Occupancy.objects.get(appointment=first).during.lower == local(tomorrow(), "10:00")


def test_status_transitions(clinic):
    appointment = appointment_book(actor=clinic["actor"], request=request_for(clinic))
    appointment_set_status(actor=clinic["actor"], appointment=appointment, code="arrived")
    with pytest.raises(SchedulingError) as caught:
        appointment_set_status(actor=clinic["actor"], appointment=appointment, code="booked")
    assert caught.value.code == "status_not_allowed"
    doctor_user = clinic["doctor"].staff.user
    appointment_set_status(actor=doctor_user, appointment=appointment, code="in_progress")
    done = appointment_set_status(actor=doctor_user, appointment=appointment, code="completed")
    assert done.status.code == AppointmentStatus.COMPLETED


def test_a_failure_to_offer_the_freed_time_does_not_undo_the_cancellation(
    clinic, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    appointment = appointment_book(actor=clinic["actor"], request=request_for(clinic))

    def broken(**kwargs):
        raise RuntimeError("offer store down")

    monkeypatch.setattr("scheduling.waitlist.waitlist_offer_freed_slot", broken)
    reason = CancelReason.objects.get(code="patient_request")
    with django_capture_on_commit_callbacks(execute=True):
        appointment_cancel(actor=clinic["actor"], appointment=appointment, reason=reason)
    appointment.refresh_from_db()
    assert appointment.status.code == AppointmentStatus.CANCELLED
    assert "Could not offer the freed time" in caplog.text


def test_a_warm_booking_of_a_named_doctor_costs_five_queries(clinic, django_assert_num_queries):
    """The policy check, then in the transaction (a savepoint here, BEGIN in production): the
    doctor's lock with one read of everything the checks need, and the appointment with its
    service lines and occupancy in one statement."""
    appointment_book(actor=clinic["actor"], request=request_for(clinic))
    with django_assert_num_queries(5):
        appointment = appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:00"))
    assert appointment.status.code == AppointmentStatus.BOOKED
    assert [line.service_id for line in appointment.lines.all()] == [clinic["service"].pk]
    occupancy = Occupancy.objects.get(appointment=appointment)
    assert (occupancy.resource_id, occupancy.is_active) == (clinic["doctor"].pk, True)
    assert occupancy.during.lower == local(tomorrow(), "11:00")
    assert occupancy.during.upper == local(tomorrow(), "11:30")


def test_a_break_added_after_a_booking_refuses_the_next_booking_in_it(clinic):
    appointment_book(actor=clinic["actor"], request=request_for(clinic))
    ScheduleBreak.objects.create(
        resource=clinic["doctor"],
        starts_at=local(tomorrow(), "11:15"),
        ends_at=local(tomorrow(), "11:45"),
    )
    with pytest.raises(SchedulingError) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:00"))
    assert caught.value.code == "in_break"
    appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:45"))
    assert Appointment.objects.count() == 2


def test_a_quota_added_after_a_booking_is_enforced_on_the_next(clinic):
    appointment_book(actor=clinic["actor"], request=request_for(clinic))
    Quota.objects.create(
        organization=clinic["branch"].organization,
        scope=QuotaScope.SERVICE,
        service=clinic["service"],
        period=QuotaPeriod.DAY,
        limit=2,
    )
    appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:00"))
    with pytest.raises(SchedulingError) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, "12:00"))
    assert caught.value.code == "quota_exceeded"
    assert Appointment.objects.count() == 2


def test_the_organizations_channel_rule_is_applied(clinic):
    appointment_book(actor=clinic["actor"], request=request_for(clinic))
    ChannelRule.objects.create(
        organization=clinic["branch"].organization,
        channel=BookingChannel.DESK,
        min_notice_minutes=0,
        horizon_days=0,
    )
    with pytest.raises(SchedulingError) as caught:
        appointment_book(actor=clinic["actor"], request=request_for(clinic, "11:00"))
    assert caught.value.code == "beyond_horizon"


def test_a_clash_on_the_constraint_is_a_conflict_naming_the_doctor(clinic, monkeypatch):
    """Checks that miss a clash (here: the busy check of a chosen doctor is bypassed) still end
    in a SlotConflict from the exclusion constraint, with nothing written."""
    first = appointment_book(
        actor=clinic["actor"], request=request_for(clinic, doctor=None, idempotency_key="one")
    )
    assert first.doctor == clinic["doctor"]
    monkeypatch.setattr("scheduling.services._busy", lambda *args: False)
    other = PersonFactory(organization=clinic["branch"].organization)
    with translation.override("en"), pytest.raises(SlotConflict) as caught:
        appointment_book(
            actor=clinic["actor"], request=request_for(clinic, "10:15", doctor=None, patient=other)
        )
    assert caught.value.code == "slot_taken"
    assert caught.value.details["conflict"]["resource"] == "Dr Petrov"
    assert Appointment.objects.count() == 1
    assert Occupancy.objects.count() == 1


def test_a_branch_far_east_of_the_server_books_its_early_morning(clinic):
    """06:30 in Vladivostok is the evening before in Moscow: the branch's own day decides."""
    import zoneinfo

    far_east = BranchFactory(
        organization=clinic["branch"].organization, time_zone="Asia/Vladivostok"
    )
    clinic["actor"].staff.branches.add(far_east)
    therapist = doctor(far_east, specialty=clinic["specialty"], name="Dr Kim")
    works(therapist, start="06:00", end="14:00", break_from=None, break_to=None)
    day = datetime.date.today() + datetime.timedelta(days=2)
    start = datetime.datetime.combine(
        day, datetime.time(6, 30), tzinfo=zoneinfo.ZoneInfo("Asia/Vladivostok")
    )
    appointment = appointment_book(
        actor=clinic["actor"],
        request=request_for(clinic, branch=far_east, doctor=therapist, starts_at=start),
    )
    assert appointment.starts_at == start
    with pytest.raises(SchedulingError) as caught:
        appointment_book(
            actor=clinic["actor"],
            request=request_for(
                clinic,
                branch=far_east,
                doctor=therapist,
                starts_at=start.replace(hour=5),
                patient=PersonFactory(organization=clinic["branch"].organization),
            ),
        )
    assert caught.value.code == "outside_working_time"
