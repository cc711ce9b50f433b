"""The schedules API: resources, the service catalogue, reference data, schedules, exceptions,
breaks, the production calendar and history; who may read and who may write."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.core.models import RoomType
from clinic.core.roles import Role
from scheduling.models import (
    CalendarDay,
    Resource,
    ResourceKind,
    ScheduleBreak,
    ScheduleException,
    ServiceRequirement,
    WorkSchedule,
)
from tests.core.factories import BranchFactory, RoomFactory, SpecialtyFactory, staff_with_role

from .factories import ServiceFactory, device, doctor, kind, local, service_for

pytestmark = pytest.mark.django_db

API = "/api/v1/scheduling/"


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def setup() -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    organization = branch.organization
    specialty = SpecialtyFactory(name="Therapist")
    therapist = doctor(branch, specialty=specialty, name="Dr Petrov")
    clients = {
        role: token_client(staff_with_role(role, organization=organization, branches=[branch]).user)
        for role in (Role.REGISTRAR, Role.DOCTOR, Role.HEAD_OF_REGISTRY, Role.ADMINISTRATOR)
    }
    return {
        "branch": branch,
        "organization": organization,
        "specialty": specialty,
        "doctor": therapist,
        "clients": clients,
    }


SCHEDULE = {
    "date_from": "2030-01-07",
    "weekdays": [1, 2, 3, 4, 5],
    "start_time": "09:00",
    "end_time": "18:00",
    "break_start": "13:00",
    "break_end": "14:00",
}


def post_schedule(setup: dict[str, Any], role: str = Role.ADMINISTRATOR, **changes: Any) -> Any:
    body = {**SCHEDULE, "resource": str(setup["doctor"].public_id), **changes}
    return setup["clients"][role].post(f"{API}schedules/", body, format="json")


# Resources ---------------------------------------------------------------------------------------


def test_resources_list_shows_only_the_actors_branches(setup, django_assert_max_num_queries):
    other_branch = BranchFactory(organization=setup["organization"])
    doctor(other_branch, name="Dr Elsewhere")
    device(setup["branch"])
    for _ in range(5):
        doctor(setup["branch"])
    with django_assert_max_num_queries(5):  # auth and role lookups, then one query
        response = setup["clients"][Role.REGISTRAR].get(f"{API}resources/")
    assert response.status_code == 200
    names = [row["name"] for row in response.json()]
    assert "Dr Petrov" in names
    assert "Dr Elsewhere" not in names
    assert len(names) == 7
    petrov = next(row for row in response.json() if row["name"] == "Dr Petrov")
    assert petrov["kind"] == "doctor"
    assert petrov["specialty"] == "Therapist"
    assert petrov["branch"] == str(setup["branch"].public_id)


def test_resources_list_filters_by_kind(setup):
    device(setup["branch"], "ecg")
    response = setup["clients"][Role.REGISTRAR].get(f"{API}resources/", {"kind": "equipment"})
    assert [(r["kind"], r["equipment_type"]) for r in response.json()] == [("equipment", "ecg")]


def test_administrator_adds_a_room_resource(setup):
    space = RoomFactory(branch=setup["branch"], number="201", room_type=RoomType.ULTRASOUND)
    response = setup["clients"][Role.ADMINISTRATOR].post(
        f"{API}resources/",
        {
            "branch": str(setup["branch"].public_id),
            "kind": "room",
            "name": "Ultrasound room",
            "room": str(space.public_id),
            "grid_step_minutes": 20,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    created = Resource.objects.get(public_id=response.json()["id"])
    assert (created.kind, created.room, created.grid_step_minutes) == ("room", space, 20)


def test_grid_step_out_of_range_is_a_400_naming_field_and_value(setup):
    response = setup["clients"][Role.HEAD_OF_REGISTRY].post(
        f"{API}resources/",
        {
            "branch": str(setup["branch"].public_id),
            "kind": "equipment",
            "name": "ECG",
            "equipment_type": "ecg",
            "grid_step_minutes": 90,
        },
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"] == (
        "Grid step, minutes “90”: Ensure this value is less than or equal to 60."
    )
    assert Resource.objects.filter(kind=ResourceKind.EQUIPMENT).count() == 0


def test_registrar_may_not_add_a_resource(setup):
    response = setup["clients"][Role.REGISTRAR].post(
        f"{API}resources/",
        {
            "branch": str(setup["branch"].public_id),
            "kind": "equipment",
            "name": "ECG",
            "equipment_type": "ecg",
        },
        format="json",
    )
    assert response.status_code == 403
    assert Resource.objects.count() == 1


# Services and reference data ---------------------------------------------------------------------


def test_services_catalogue_lists_requirements_channels_durations_and_ages(
    setup, django_assert_max_num_queries
):
    paediatric = service_for(
        setup["specialty"],
        organization=setup["organization"],
        code="B01.031.001",
        name="Paediatrician visit",
        duration_minutes=None,
        max_age=17,
        channels=["desk", "portal"],
    )
    ServiceRequirement.objects.create(
        service=paediatric, kind=ResourceKind.ROOM, room_type=RoomType.CONSULTING
    )
    for _ in range(4):
        service_for(setup["specialty"], organization=setup["organization"])
    ServiceFactory()  # another organization's
    with django_assert_max_num_queries(7):
        response = setup["clients"][Role.REGISTRAR].get(f"{API}services/")
    assert response.status_code == 200
    assert len(response.json()) == 5
    row = next(r for r in response.json() if r["code"] == "B01.031.001")
    assert row["duration_minutes"] == kind("primary").default_duration_minutes
    assert row["max_age"] == 17
    assert row["min_age"] is None
    assert row["channels"] == ["desk", "portal"]
    assert row["requirements"] == [
        {
            "kind": "doctor",
            "specialty": "Therapist",
            "resource": None,
            "room_type": "",
            "equipment_type": "",
        },
        {
            "kind": "room",
            "specialty": None,
            "resource": None,
            "room_type": "consulting",
            "equipment_type": "",
        },
    ]


def test_reference_lists_statuses_with_colours_and_kinds_with_durations(
    setup, django_assert_max_num_queries
):
    with django_assert_max_num_queries(8):
        response = setup["clients"][Role.DOCTOR].get(f"{API}reference/")
    assert response.status_code == 200
    body = response.json()
    booked = next(s for s in body["appointment_statuses"] if s["code"] == "booked")
    assert booked == {
        "code": "booked",
        "name": "Записан",
        "colour": "#3b82f6",
        "occupies": True,
        "is_final": False,
    }
    assert [s["code"] for s in body["appointment_statuses"]] == [
        "booked",
        "confirmed",
        "arrived",
        "in_progress",
        "completed",
        "no_show",
        "cancelled",
    ]
    repeat = next(k for k in body["appointment_kinds"] if k["code"] == "repeat")
    assert repeat["default_duration_minutes"] == 20
    assert {r["code"] for r in body["cancel_reasons"]} >= {"patient_request", "doctor_absent"}
    assert {s["code"] for s in body["information_sources"]} >= {"website", "referral"}
    assert body["booking_channels"] == [
        {"code": "desk", "name": "Reception desk"},
        {"code": "call_centre", "name": "Call centre"},
        {"code": "portal", "name": "Online portal"},
        {"code": "doctor", "name": "Doctor"},
    ]
    assert [t["code"] for t in body["booking_types"]] == [
        "planned",
        "urgent",
        "walk_in",
        "follow_up",
    ]


def test_reference_needs_a_login():
    assert APIClient().get(f"{API}reference/").status_code in (401, 403)


# Schedules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.HEAD_OF_REGISTRY, Role.ADMINISTRATOR])
def test_head_and_administrator_create_a_schedule(setup, role):
    response = post_schedule(setup, role)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["weekdays"] == [1, 2, 3, 4, 5]
    assert (body["start_time"], body["break_start"]) == ("09:00:00", "13:00:00")
    assert body["resource"] == str(setup["doctor"].public_id)
    assert WorkSchedule.objects.get().created_by is not None


@pytest.mark.parametrize("role", [Role.REGISTRAR, Role.DOCTOR])
def test_registrar_and_doctor_get_403_and_nothing_changes(setup, role):
    assert post_schedule(setup, role).status_code == 403
    assert WorkSchedule.objects.count() == 0
    schedule = post_schedule(setup).json()
    client = setup["clients"][role]
    url = f"{API}schedules/{schedule['id']}/"
    assert client.patch(url, {"end_time": "12:00"}, format="json").status_code == 403
    assert client.delete(url).status_code == 403
    body = {"resource": str(setup["doctor"].public_id)}
    exception = {**body, "kind": "vacation", "date_from": "2030-02-01", "date_to": "2030-02-05"}
    assert client.post(f"{API}exceptions/", exception, format="json").status_code == 403
    pause = {**body, "starts_at": "2030-02-01T10:00:00Z", "ends_at": "2030-02-01T11:00:00Z"}
    assert client.post(f"{API}breaks/", pause, format="json").status_code == 403
    day = {"day_type": "holiday"}
    assert client.put(f"{API}calendar/2030-01-08/", day, format="json").status_code == 403
    stored = WorkSchedule.objects.get()
    assert (stored.end_time, stored.date_to) == (datetime.time(18, 0), None)
    assert ScheduleException.objects.count() == 0
    assert ScheduleBreak.objects.count() == 0
    assert CalendarDay.objects.count() == 0


def test_registrar_reads_schedules_with_a_fixed_number_of_queries(
    setup, django_assert_max_num_queries
):
    post_schedule(setup)
    for _ in range(4):
        extra = doctor(setup["branch"])
        post_schedule(setup, resource=str(extra.public_id))
    with django_assert_max_num_queries(5):
        response = setup["clients"][Role.REGISTRAR].get(f"{API}schedules/")
    assert response.status_code == 200
    assert len(response.json()) == 5
    only = setup["clients"][Role.REGISTRAR].get(
        f"{API}schedules/", {"resource": str(setup["doctor"].public_id), "on": "2030-01-09"}
    )
    assert [row["resource_name"] for row in only.json()] == ["Dr Petrov"]
    before = setup["clients"][Role.REGISTRAR].get(f"{API}schedules/", {"on": "2029-12-31"})
    assert before.json() == []


def test_invalid_schedule_is_a_400_naming_the_field(setup):
    response = post_schedule(setup, end_time="08:00")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"] == "End “08:00”: The shift ends at 08:00:00, not after its start."
    assert WorkSchedule.objects.count() == 0


def test_unknown_resource_is_a_400_naming_the_value(setup):
    response = post_schedule(setup, resource="not-a-uuid")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"resource": ["Must be a valid UUID."]}
    assert WorkSchedule.objects.count() == 0


def test_patch_changes_and_delete_ends_a_schedule_then_history_shows_who(setup):
    created = post_schedule(setup, Role.HEAD_OF_REGISTRY).json()
    url = f"{API}schedules/{created['id']}/"
    admin = setup["clients"][Role.ADMINISTRATOR]
    patched = admin.patch(url, {"end_time": "17:00", "reason": "shorter day"}, format="json")
    assert patched.status_code == 200, patched.json()
    assert patched.json()["end_time"] == "17:00:00"
    ended = admin.delete(f"{url}?date_to=2030-06-30")
    assert ended.status_code == 200
    assert ended.json()["date_to"] == "2030-06-30"
    history = setup["clients"][Role.REGISTRAR].get(f"{url}history/")
    assert history.status_code == 200
    events = history.json()
    assert [e["event"] for e in events] == ["insert", "update", "update"]
    head_user = WorkSchedule.objects.get().created_by
    assert events[0]["user"] == head_user.get_username()
    assert events[1]["reason"] == "shorter day"
    assert events[1]["changes"]["end_time"] == ["18:00:00", "17:00:00"]
    assert events[2]["changes"]["date_to"] == [None, "2030-06-30"]


def test_ending_before_the_start_is_a_400(setup):
    created = post_schedule(setup).json()
    response = setup["clients"][Role.ADMINISTRATOR].delete(
        f"{API}schedules/{created['id']}/?date_to=2029-01-01"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "date_to": ["To “2029-01-01”: a schedule cannot end before it starts (2030-01-07)."]
    }
    assert WorkSchedule.objects.get().date_to is None


def test_schedule_of_another_branch_is_404(setup):
    created = post_schedule(setup).json()
    outsider = token_client(
        staff_with_role(
            Role.ADMINISTRATOR,
            organization=setup["organization"],
            branches=[BranchFactory(organization=setup["organization"])],
        ).user
    )
    assert outsider.get(f"{API}schedules/{created['id']}/").status_code == 404
    assert outsider.get(f"{API}schedules/{created['id']}/history/").status_code == 404


# Exceptions, breaks, calendar --------------------------------------------------------------------


def test_exception_and_break_are_added_listed_and_removed(setup):
    admin = setup["clients"][Role.ADMINISTRATOR]
    resource = str(setup["doctor"].public_id)
    exception = admin.post(
        f"{API}exceptions/",
        {
            "resource": resource,
            "kind": "vacation",
            "date_from": "2030-02-01",
            "date_to": "2030-02-14",
        },
        format="json",
    )
    assert exception.status_code == 201, exception.json()
    listed = setup["clients"][Role.REGISTRAR].get(f"{API}exceptions/", {"resource": resource})
    assert [(e["kind"], e["date_to"]) for e in listed.json()] == [("vacation", "2030-02-14")]
    pause = admin.post(
        f"{API}breaks/",
        {
            "resource": resource,
            "starts_at": local(datetime.date(2030, 2, 20), "10:00").isoformat(),
            "ends_at": local(datetime.date(2030, 2, 20), "11:00").isoformat(),
            "reason": "meeting",
        },
        format="json",
    )
    assert pause.status_code == 201, pause.json()
    assert pause.json()["reason"] == "meeting"
    assert admin.delete(f"{API}exceptions/{exception.json()['id']}/").status_code == 204
    assert admin.delete(f"{API}breaks/{pause.json()['id']}/").status_code == 204
    assert ScheduleException.objects.count() == 0
    assert ScheduleBreak.objects.count() == 0


def test_calendar_day_put_then_listed_by_year_then_cleared(setup, django_assert_max_num_queries):
    admin = setup["clients"][Role.ADMINISTRATOR]
    put = admin.put(
        f"{API}calendar/2030-01-08/", {"day_type": "holiday", "name": "Christmas"}, format="json"
    )
    assert put.status_code == 200, put.json()
    admin.put(f"{API}calendar/2030-03-02/", {"day_type": "working"}, format="json")
    admin.put(f"{API}calendar/2031-01-01/", {"day_type": "holiday"}, format="json")
    with django_assert_max_num_queries(6):
        listed = setup["clients"][Role.REGISTRAR].get(f"{API}calendar/", {"year": 2030})
    assert listed.json() == [
        {
            "date": "2030-01-08",
            "day_type": "holiday",
            "shortened_by_minutes": 60,
            "name": "Christmas",
        },
        {"date": "2030-03-02", "day_type": "working", "shortened_by_minutes": 60, "name": ""},
    ]
    assert admin.delete(f"{API}calendar/2030-01-08/").status_code == 204
    assert CalendarDay.objects.count() == 2


def test_calendar_with_a_bad_year_or_date_is_a_400(setup):
    client = setup["clients"][Role.ADMINISTRATOR]
    bad_year = client.get(f"{API}calendar/", {"year": "soon"})
    assert bad_year.status_code == 400
    assert bad_year.json()["error"]["message"] == "“soon” is not a year."
    bad_date = client.put(f"{API}calendar/2030-13-40/", {"day_type": "holiday"}, format="json")
    assert bad_date.status_code == 400
    assert bad_date.json()["error"]["message"] == "“2030-13-40” is not a date (YYYY-MM-DD)."


def test_change_stranding_an_appointment_is_refused_then_forced(setup):
    from scheduling.services import BookingRequest, appointment_book
    from tests.patients.factories import PersonFactory

    from .factories import tomorrow, works

    schedule = works(setup["doctor"])
    service = service_for(setup["specialty"], organization=setup["organization"])
    registrar = staff_with_role(
        Role.REGISTRAR, organization=setup["organization"], branches=[setup["branch"]]
    ).user
    appointment_book(
        actor=registrar,
        request=BookingRequest(
            branch=setup["branch"],
            services=[service],
            starts_at=local(tomorrow(), "10:00"),
            channel="desk",
            patient=PersonFactory(organization=setup["organization"]),
            doctor=setup["doctor"],
        ),
    )
    admin = setup["clients"][Role.ADMINISTRATOR]
    url = f"{API}schedules/{schedule.public_id}/"
    refused = admin.patch(url, {"start_time": "12:00"}, format="json")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "appointments_affected"
    assert error["count"] == 1
    assert len(error["appointments"]) == 1
    forced = admin.patch(url, {"start_time": "12:00", "force": True}, format="json")
    assert forced.status_code == 200
    assert forced.json()["start_time"] == "12:00:00"
