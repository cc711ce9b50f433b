"""A doctor's absence: the affected appointments, bulk moves and cancellations with notices."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import translation
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.core.roles import Role
from clinic.outbox.models import OutboxMessage
from scheduling.absence import (
    CANCELLED,
    MOVED,
    NOTICE_CHANNEL,
    REFUSED,
    absence_affected,
    absence_register,
    appointments_bulk_cancel,
    appointments_bulk_move,
)
from scheduling.errors import SchedulingError
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    BookingChannel,
    CancelReason,
    ExceptionKind,
    ScheduleException,
    WaitlistOffer,
)
from scheduling.services import BookingRequest, appointment_book, appointment_cancel
from scheduling.waitlist import waitlist_add
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_relay_kick(monkeypatch: Any) -> None:
    """Committed outbox rows would signal a Celery relay; the tests read the rows instead."""
    monkeypatch.setattr("clinic.outbox.services._kick_relay", lambda channel: None)


@pytest.fixture
def clinic() -> dict[str, Any]:
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    petrov = doctor(branch, specialty=specialty, name="Dr Petrov")
    ivanov = doctor(branch, specialty=specialty, name="Dr Ivanov")
    works(petrov)
    works(ivanov)
    organization = branch.organization
    return {
        "branch": branch,
        "petrov": petrov,
        "ivanov": ivanov,
        "service": service_for(specialty, organization=organization),
        "head": staff_with_role(
            Role.HEAD_OF_REGISTRY, organization=organization, branches=[branch]
        ).user,
        "registrar": staff_with_role(
            Role.REGISTRAR, organization=organization, branches=[branch]
        ).user,
        "cashier": staff_with_role(Role.CASHIER, organization=organization, branches=[branch]).user,
    }


def book(
    c: dict[str, Any], hhmm: str, *, who: str = "petrov", day: datetime.date | None = None
) -> Appointment:
    request = BookingRequest(
        branch=c["branch"],
        services=[c["service"]],
        starts_at=local(day or tomorrow(), hhmm),
        channel=BookingChannel.DESK,
        patient=PersonFactory(organization=c["branch"].organization),
        doctor=c[who],
    )
    return appointment_book(actor=c["registrar"], request=request)


def register(c: dict[str, Any], **changes: Any) -> tuple[ScheduleException, list[Appointment]]:
    values: dict[str, Any] = {
        "actor": c["head"],
        "doctor": c["petrov"],
        "kind": ExceptionKind.SICK_LEAVE,
        "date_from": tomorrow(),
        "date_to": tomorrow(),
    }
    values.update(changes)
    return absence_register(**values)


def notices() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(channel=NOTICE_CHANNEL).order_by("id"))


def test_register_records_the_absence_and_lists_the_appointments_it_hits(
    clinic: dict[str, Any],
) -> None:
    ten = book(clinic, "10:00")
    eleven = book(clinic, "11:00")
    book(clinic, "10:00", day=tomorrow() + datetime.timedelta(days=1))
    book(clinic, "10:00", who="ivanov")
    cancelled = book(clinic, "12:00")
    appointment_cancel(
        actor=clinic["registrar"],
        appointment=cancelled,
        reason=CancelReason.objects.get(code="patient_request"),
    )
    exception, affected = register(clinic, note="  flu  ")
    assert [a.pk for a in affected] == [ten.pk, eleven.pk]
    assert exception.resource == clinic["petrov"]
    assert exception.kind == ExceptionKind.SICK_LEAVE
    assert (exception.date_from, exception.date_to) == (tomorrow(), tomorrow())
    assert exception.note == "flu"
    assert [a.pk for a in absence_affected(clinic["petrov"], tomorrow(), tomorrow())] == [
        ten.pk,
        eleven.pk,
    ]


def test_register_refuses_backwards_dates_naming_the_field(clinic: dict[str, Any]) -> None:
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        register(clinic, date_from=tomorrow() + datetime.timedelta(days=2))
    assert caught.value.code == "invalid_window"
    assert caught.value.field == "date_to"
    assert str(caught.value.message) == (
        f"The end date {tomorrow().isoformat()} is before the start date "
        f"{(tomorrow() + datetime.timedelta(days=2)).isoformat()}."
    )
    assert not ScheduleException.objects.exists()


def test_a_registrar_may_not_register_an_absence(clinic: dict[str, Any]) -> None:
    with pytest.raises(PermissionDenied):
        register(clinic, actor=clinic["registrar"])
    assert not ScheduleException.objects.exists()


def test_bulk_move_to_another_doctor_moves_each_it_can_and_refuses_the_busy_one(
    clinic: dict[str, Any],
) -> None:
    ten = book(clinic, "10:00")
    eleven = book(clinic, "11:00")
    book(clinic, "11:15", who="ivanov")
    _, affected = register(clinic)
    with translation.override("en"):
        results = appointments_bulk_move(
            actor=clinic["registrar"], appointments=affected, to_doctor=clinic["ivanov"]
        )
    assert [(r.appointment.pk, r.outcome, r.code) for r in results] == [
        (ten.pk, MOVED, ""),
        (eleven.pk, REFUSED, "slot_taken"),
    ]
    assert "Dr Ivanov is busy from" in results[1].message
    ten.refresh_from_db()
    eleven.refresh_from_db()
    assert ten.doctor == clinic["ivanov"]
    assert ten.starts_at == local(tomorrow(), "10:00")
    assert eleven.doctor == clinic["petrov"]
    assert eleven.occupancies.get().resource == clinic["petrov"]
    [notice] = notices()
    assert notice.payload == {
        "appointment": str(ten.public_id),
        "patient": str(ten.patient.public_id),
        "phone": "",
        "event": "moved",
        "starts_at": local(tomorrow(), "10:00").isoformat(),
        "doctor": "Dr Ivanov",
        "previous_starts_at": local(tomorrow(), "10:00").isoformat(),
        "previous_doctor": "Dr Petrov",
        "reason": "",
    }


def test_bulk_move_by_days_keeps_the_clock_time(clinic: dict[str, Any]) -> None:
    ten = book(clinic, "10:00")
    _, affected = register(clinic)
    results = appointments_bulk_move(actor=clinic["registrar"], appointments=affected, shift_days=2)
    assert [r.outcome for r in results] == [MOVED]
    ten.refresh_from_db()
    assert ten.starts_at == local(tomorrow() + datetime.timedelta(days=2), "10:00")
    assert ten.doctor == clinic["petrov"]
    assert [n.payload["event"] for n in notices()] == ["moved"]


def test_bulk_move_into_the_absence_is_refused_and_leaves_the_appointment(
    clinic: dict[str, Any],
) -> None:
    day_before = book(clinic, "10:00", day=tomorrow() + datetime.timedelta(days=1))
    register(
        clinic,
        date_from=tomorrow() + datetime.timedelta(days=2),
        date_to=tomorrow() + datetime.timedelta(days=2),
    )
    results = appointments_bulk_move(
        actor=clinic["registrar"], appointments=[day_before], shift_days=1
    )
    assert [(r.outcome, r.code) for r in results] == [(REFUSED, "outside_working_time")]
    day_before.refresh_from_db()
    assert day_before.starts_at == local(tomorrow() + datetime.timedelta(days=1), "10:00")
    assert notices() == []


def test_bulk_cancel_cancels_each_and_notifies_each_patient(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    ten = book(clinic, "10:00")
    eleven = book(clinic, "11:00")
    waitlist_add(
        actor=clinic["registrar"],
        branch=clinic["branch"],
        patient=PersonFactory(organization=clinic["branch"].organization),
        service=clinic["service"],
    )
    _, affected = register(clinic)
    reason = CancelReason.objects.get(code="doctor_absent")
    with django_capture_on_commit_callbacks(execute=True):
        results = appointments_bulk_cancel(
            actor=clinic["registrar"], appointments=affected, reason=reason
        )
    assert [(r.appointment.pk, r.outcome) for r in results] == [
        (ten.pk, CANCELLED),
        (eleven.pk, CANCELLED),
    ]
    for appointment in (ten, eleven):
        appointment.refresh_from_db()
        assert appointment.status.code == AppointmentStatus.CANCELLED
        assert appointment.cancel_reason == reason
    sent = notices()
    assert [(n.payload["appointment"], n.payload["event"], n.payload["reason"]) for n in sent] == [
        (str(ten.public_id), "cancelled", "doctor_absent"),
        (str(eleven.public_id), "cancelled", "doctor_absent"),
    ]
    # The absent doctor's freed time is not offered to the waitlist.
    assert not WaitlistOffer.objects.exists()


def test_bulk_changes_by_a_cashier_are_refused_before_any_change(clinic: dict[str, Any]) -> None:
    ten = book(clinic, "10:00")
    with pytest.raises(PermissionDenied):
        appointments_bulk_cancel(
            actor=clinic["cashier"],
            appointments=[ten],
            reason=CancelReason.objects.get(code="doctor_absent"),
        )
    with pytest.raises(PermissionDenied):
        appointments_bulk_move(
            actor=clinic["cashier"], appointments=[ten], to_doctor=clinic["ivanov"]
        )
    ten.refresh_from_db()
    assert ten.status.code == AppointmentStatus.BOOKED
    assert ten.doctor == clinic["petrov"]
    assert notices() == []


def test_bulk_move_without_a_target_is_refused(clinic: dict[str, Any]) -> None:
    ten = book(clinic, "10:00")
    with pytest.raises(SchedulingError) as caught:
        appointments_bulk_move(actor=clinic["registrar"], appointments=[ten])
    assert caught.value.code == "nothing_to_change"


# --- API -----------------------------------------------------------------------------------------


def api_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_api_register_then_bulk_move_and_bulk_cancel(clinic: dict[str, Any]) -> None:
    ten = book(clinic, "10:00")
    eleven = book(clinic, "11:00")
    book(clinic, "11:00", who="ivanov")
    registered = api_client(clinic["head"]).post(
        "/api/v1/scheduling/absences/",
        {
            "doctor": str(clinic["petrov"].public_id),
            "kind": "vacation",
            "date_from": tomorrow().isoformat(),
            "date_to": tomorrow().isoformat(),
        },
        format="json",
    )
    assert registered.status_code == 201, registered.content
    body = registered.json()
    assert body["absence"]["doctor_name"] == "Dr Petrov"
    assert body["absence"]["kind"] == "vacation"
    assert [a["id"] for a in body["affected"]] == [str(ten.public_id), str(eleven.public_id)]

    client = api_client(clinic["registrar"])
    moved = client.post(
        "/api/v1/scheduling/absences/bulk-move/",
        {
            "appointments": [a["id"] for a in body["affected"]],
            "to_doctor": str(clinic["ivanov"].public_id),
        },
        format="json",
    )
    assert moved.status_code == 200, moved.content
    results = moved.json()["results"]
    assert [(r["appointment"], r["outcome"], r["code"]) for r in results] == [
        (str(ten.public_id), "moved", ""),
        (str(eleven.public_id), "refused", "slot_taken"),
    ]
    assert results[0]["result"]["doctor_name"] == "Dr Ivanov"
    assert results[1]["result"]["doctor_name"] == "Dr Petrov"

    cancelled = client.post(
        "/api/v1/scheduling/absences/bulk-cancel/",
        {"appointments": [str(eleven.public_id)]},
        format="json",
    )
    assert cancelled.status_code == 200, cancelled.content
    [result] = cancelled.json()["results"]
    assert result["outcome"] == "cancelled"
    assert result["result"]["status"] == "cancelled"
    assert result["result"]["cancel_reason"] == "doctor_absent"
    assert [n.payload["event"] for n in notices()] == ["moved", "cancelled"]


def test_api_unknown_appointment_is_a_field_error(clinic: dict[str, Any]) -> None:
    hidden = book(clinic, "10:00")
    other_branch = BranchFactory(organization=clinic["branch"].organization)
    outsider = staff_with_role(
        Role.REGISTRAR, organization=other_branch.organization, branches=[other_branch]
    )
    response = api_client(outsider.user).post(
        "/api/v1/scheduling/absences/bulk-cancel/",
        {"appointments": [str(hidden.public_id)]},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_appointment"
    assert "appointments" in error["fields"]


def test_api_cashier_gets_403_and_nothing_changes(clinic: dict[str, Any]) -> None:
    ten = book(clinic, "10:00")
    client = api_client(clinic["cashier"])
    registered = client.post(
        "/api/v1/scheduling/absences/",
        {
            "doctor": str(clinic["petrov"].public_id),
            "kind": "sick_leave",
            "date_from": tomorrow().isoformat(),
            "date_to": tomorrow().isoformat(),
        },
        format="json",
    )
    assert registered.status_code == 403
    cancelled = client.post(
        "/api/v1/scheduling/absences/bulk-cancel/",
        {"appointments": [str(ten.public_id)]},
        format="json",
    )
    assert cancelled.status_code == 403
    moved = client.post(
        "/api/v1/scheduling/absences/bulk-move/",
        {"appointments": [str(ten.public_id)], "shift_days": 1},
        format="json",
    )
    assert moved.status_code == 403
    assert not ScheduleException.objects.exists()
    ten.refresh_from_db()
    assert ten.status.code == AppointmentStatus.BOOKED
    assert ten.starts_at == local(tomorrow(), "10:00")
    assert notices() == []
