"""/api/v1/scheduling/appointments/: booking and changes over HTTP, errors in the one format."""

from __future__ import annotations

import datetime

import pytest
from django.utils import translation
from rest_framework.test import APIClient

from clinic.core.roles import Role
from scheduling.models import Appointment, Occupancy
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db

URL = "/api/v1/scheduling/appointments/"


@pytest.fixture
def setup() -> dict:
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    therapist = doctor(branch, specialty=specialty, name="Dr Orlova")
    works(therapist)
    service = service_for(specialty, organization=branch.organization, code="B01.047.001")
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    client = APIClient()
    client.force_authenticate(registrar.user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"  # messages are asserted in English
    return {
        "branch": branch,
        "doctor": therapist,
        "service": service,
        "client": client,
        "user": registrar.user,
        "patient": PersonFactory(organization=branch.organization, last_name="Смирнова"),
    }


def body(s: dict, hhmm: str = "10:00", **changes) -> dict:
    data = {
        "branch": str(s["branch"].public_id),
        "services": [s["service"].code],
        "starts_at": local(tomorrow(), hhmm).isoformat(),
        "channel": "desk",
        "patient": str(s["patient"].public_id),
        "doctor": str(s["doctor"].public_id),
    }
    data.update(changes)
    return data


def test_booking_returns_201_with_the_appointment(setup):
    response = setup["client"].post(URL, body(setup), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "booked"
    assert data["doctor_name"] == "Dr Orlova"
    assert data["services"][0]["code"] == "B01.047.001"
    assert data["patient"] == str(setup["patient"].public_id)


def test_a_clash_is_409_naming_the_doctor_and_time_but_not_the_patient(setup):
    setup["client"].post(URL, body(setup), format="json")
    other = PersonFactory(organization=setup["branch"].organization, last_name="Другая")
    with translation.override("en"):
        response = setup["client"].post(
            URL, body(setup, "10:15", patient=str(other.public_id)), format="json"
        )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "slot_taken"
    assert error["conflict"]["resource"] == "Dr Orlova"
    assert "Смирнова" not in response.content.decode()
    assert Appointment.objects.count() == 1


def test_idempotency_key_replays_and_rejects_different_data(setup):
    first = setup["client"].post(URL, body(setup), format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    again = setup["client"].post(URL, body(setup), format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = setup["client"].post(
        URL, body(setup, "12:00"), format="json", HTTP_IDEMPOTENCY_KEY="abc-1"
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert Appointment.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"services": ["NOPE-1"]}, "services", "unknown_service"),
        ({"doctor": "00000000-0000-0000-0000-000000000000"}, "doctor", "unknown_resource"),
        ({"patient": "00000000-0000-0000-0000-000000000000"}, "patient", "unknown_patient"),
        ({"kind": "nonsense"}, "kind", "unknown_code"),
    ],
)
def test_unknown_things_are_field_errors_quoting_the_value(setup, changes, field, code):
    with translation.override("en"):
        response = setup["client"].post(URL, body(setup, **changes), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    value = next(iter(changes.values()))
    value = value[0] if isinstance(value, list) else value
    assert value in error["fields"][field][0]
    assert Appointment.objects.count() == 0


def test_booking_outside_working_time_is_400_with_a_reason(setup):
    with translation.override("en"):
        response = setup["client"].post(URL, body(setup, "19:00"), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "outside_working_time"
    assert "does not work" in response.json()["error"]["fields"]["starts_at"][0]


def test_a_cashier_cannot_book_and_nothing_is_written(setup):
    cashier = staff_with_role(
        Role.CASHIER, organization=setup["branch"].organization, branches=[setup["branch"]]
    )
    client = APIClient()
    client.force_authenticate(cashier.user)
    response = client.post(URL, body(setup), format="json")
    assert response.status_code == 403
    assert Appointment.objects.count() == 0
    assert Occupancy.objects.count() == 0


def test_list_is_scoped_to_the_actors_branches_in_fixed_queries(
    setup, django_assert_max_num_queries
):
    for hhmm in ("10:00", "10:30", "11:00", "11:30"):
        setup["client"].post(URL, body(setup, hhmm), format="json")
    elsewhere = BranchFactory(organization=setup["branch"].organization)
    outsider = staff_with_role(
        Role.REGISTRAR, organization=setup["branch"].organization, branches=[elsewhere]
    )
    with django_assert_max_num_queries(12):
        response = setup["client"].get(URL, {"date_from": tomorrow().isoformat()})
    assert response.status_code == 200
    assert response.json()["count"] == 4
    client = APIClient()
    client.force_authenticate(outsider.user)
    assert client.get(URL).json()["count"] == 0


def test_move_cancel_trash_restore_status_and_history(setup):
    client = setup["client"]
    created = client.post(URL, body(setup), format="json").json()
    base = f"{URL}{created['id']}/"
    moved = client.post(
        base + "move/",
        {"starts_at": local(tomorrow(), "11:00").isoformat(), "reason": "patient asked"},
        format="json",
    )
    assert moved.status_code == 200, moved.json()
    assert moved.json()["starts_at"].startswith(local(tomorrow(), "11:00").isoformat()[:16])
    cancelled = client.post(base + "cancel/", {"reason": "patient_request"}, format="json")
    assert cancelled.json()["status"] == "cancelled"
    trash = client.get(URL + "trash/").json()
    assert [row["id"] for row in trash["results"]] == [created["id"]]
    restored = client.post(base + "restore/")
    assert restored.json()["status"] == "booked"
    arrived = client.post(base + "status/", {"status": "arrived"}, format="json")
    assert arrived.json()["status"] == "arrived"
    bad = client.post(base + "status/", {"status": "booked"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "status_not_allowed"
    history = client.get(base + "history/").json()
    assert history[0]["action"] == "insert"
    assert any("starts_at" in entry["changes"] for entry in history)
    assert any(entry["reason"] == "patient asked" for entry in history)
    assert all(entry["user"] == setup["user"].username for entry in history)


def test_copy_and_follow_up(setup):
    client = setup["client"]
    created = client.post(URL, body(setup), format="json").json()
    copy = client.post(
        f"{URL}{created['id']}/copy/",
        {"starts_at": local(tomorrow(), "15:00").isoformat()},
        format="json",
    )
    assert copy.status_code == 201, copy.json()
    assert copy.json()["copied_from"] == created["id"]
    doctor_client = APIClient()
    doctor_client.force_authenticate(setup["doctor"].staff.user)
    follow_up = doctor_client.post(
        f"{URL}{created['id']}/follow-up/",
        {
            "starts_at": local(tomorrow() + datetime.timedelta(days=7), "10:00").isoformat(),
            "services": [setup["service"].code],
            "kind": "repeat",
        },
        format="json",
    )
    assert follow_up.status_code == 201, follow_up.json()
    assert follow_up.json()["follow_up_of"] == created["id"]
    assert follow_up.json()["kind"] == "repeat"
    assert follow_up.json()["channel"] == "doctor"
