"""The public FHIR R4 API: resource shapes and references, slot search against the engine,
booking through the portal channel, refusals as OperationOutcomes, bounded query counts."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from integrations.website import slot_cache
from integrations.website.fhir import SERVICE_SYSTEM, SlotKey, schedule_id
from patients.models import ContactKind
from scheduling import holds
from scheduling.availability import free_slots
from scheduling.models import Appointment, BookingChannel
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.billing.factories import PriceFactory, PriceListFactory
from tests.core.factories import BranchFactory
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import local, tomorrow

from .conftest import Website, another_doctor

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.integrations.urls")]

FHIR_JSON = "application/fhir+json"


def get(client: Client, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    response = client.get(f"/fhir/{path}", params)
    assert response["Content-Type"].startswith(FHIR_JSON)
    return response.status_code, json.loads(response.content)


def engine_slots(site: Website, day: datetime.date) -> list[Any]:
    return free_slots(
        organization_id=site.branch.organization_id,
        services=[site.service],
        branch=site.branch,
        date_from=day,
        date_to=day,
        channel=BookingChannel.PORTAL,
        doctors=[site.doctor],
    )


def slot_search(client: Client, site: Website, day: datetime.date) -> dict[str, Any]:
    status, bundle = get(
        client,
        "Slot",
        schedule=schedule_id(site.doctor.public_id, site.branch.public_id),
        **{"service-type": f"{SERVICE_SYSTEM}|{site.service.public_id}"},
        start=[f"ge{day.isoformat()}", f"lt{(day + datetime.timedelta(days=1)).isoformat()}"],
    )
    assert status == 200
    return bundle


def booking(site: Website, start: datetime.datetime, **patient: Any) -> dict[str, Any]:
    key = SlotKey(site.doctor.public_id, site.service.public_id, int(start.timestamp()))
    contained = {
        "resourceType": "Patient",
        "id": "patient",
        "name": [{"family": "Сидоров", "given": ["Пётр", "Ильич"]}],
        "telecom": [{"system": "phone", "value": "8 (916) 555-12-34"}],
        "birthDate": "1975-03-14",
    }
    contained.update(patient)
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "contained": [contained],
        "slot": [{"reference": f"Slot/{key.encode()}"}],
        "serviceType": [
            {"coding": [{"system": SERVICE_SYSTEM, "code": str(site.service.public_id)}]}
        ],
        "participant": [{"actor": {"reference": "#patient"}, "status": "needs-action"}],
    }


def post(client: Client, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    response = client.post(
        "/fhir/Appointment", json.dumps(body), content_type=FHIR_JSON, headers=headers
    )
    return response.status_code, json.loads(response.content)


def test_practitioner_list_and_read_show_the_active_doctor_with_his_specialty(
    client: Client, website: Website
) -> None:
    status, bundle = get(client, "Practitioner")
    assert status == 200
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert bundle["link"][0]["relation"] == "self"
    practitioner = bundle["entry"][0]["resource"]
    assert practitioner["id"] == str(website.doctor.public_id)
    assert bundle["entry"][0]["fullUrl"].endswith(f"/fhir/Practitioner/{practitioner['id']}")
    staff = website.doctor.staff
    assert practitioner["name"][0]["family"] == staff.last_name
    assert practitioner["qualification"][0]["code"]["coding"][0]["code"] == "therapist"
    status, single = get(client, f"Practitioner/{website.doctor.public_id}")
    assert status == 200 and single == practitioner


def test_unknown_and_inactive_ids_are_404_operation_outcomes(
    client: Client, website: Website
) -> None:
    status, outcome = get(client, "Practitioner/not-a-uuid")
    assert status == 404
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"
    assert "not-a-uuid" in outcome["issue"][0]["diagnostics"]
    status, outcome = get(client, f"Location/{website.closed_branch.public_id}")
    assert status == 404 and outcome["issue"][0]["code"] == "not-found"
    website.doctor.is_active = False
    website.doctor.save(update_fields=["is_active"])
    assert get(client, f"Practitioner/{website.doctor.public_id}")[0] == 404


def test_locations_are_the_public_branches_with_address_and_phone(
    client: Client, website: Website
) -> None:
    status, bundle = get(client, "Location")
    assert status == 200 and bundle["total"] == 1
    location = bundle["entry"][0]["resource"]
    assert location["id"] == str(website.branch.public_id)
    assert location["name"] == "Central"
    assert location["address"] == {"text": "Moscow, Tverskaya 1"}
    assert location["telecom"] == [{"system": "phone", "value": "+74951234567", "use": "work"}]


def test_healthcare_services_are_the_portal_services_with_duration_and_exact_price(
    client: Client, website: Website
) -> None:
    response = client.get("/fhir/HealthcareService")
    assert b'"value":1500.00,' in response.content  # the stored digits, not a float
    bundle = json.loads(response.content)
    assert bundle["total"] == 1
    service = bundle["entry"][0]["resource"]
    assert service["id"] == str(website.service.public_id)
    assert service["name"] == "Therapist visit"
    duration, price = service["extension"]
    assert duration["valueDuration"]["value"] == 30
    assert price["extension"][0]["valueReference"] == {
        "reference": f"Location/{website.branch.public_id}"
    }
    assert price["extension"][1]["valueMoney"]["currency"] == "RUB"
    assert service["location"][0]["reference"] == f"Location/{website.branch.public_id}"


def test_schedule_names_the_practitioner_and_the_location_it_joins(
    client: Client, website: Website
) -> None:
    status, bundle = get(client, "Schedule")
    assert status == 200 and bundle["total"] == 1
    schedule = bundle["entry"][0]["resource"]
    assert schedule["id"] == schedule_id(website.doctor.public_id, website.branch.public_id)
    assert [actor["reference"] for actor in schedule["actor"]] == [
        f"Practitioner/{website.doctor.public_id}",
        f"Location/{website.branch.public_id}",
    ]
    assert [c["coding"][0]["code"] for c in schedule["serviceType"]] == [
        str(website.service.public_id)
    ]
    assert get(client, f"Schedule/{schedule['id']}") == (200, schedule)


def test_slot_search_returns_exactly_the_engine_slots_and_drops_a_booked_one(
    client: Client, website: Website, django_capture_on_commit_callbacks: Any
) -> None:
    day = tomorrow()
    expected = engine_slots(website, day)
    bundle = slot_search(client, website, day)
    found = [entry["resource"] for entry in bundle["entry"]]
    assert [s["start"] for s in found] == [
        s.starts_at.strftime("%Y-%m-%dT%H:%M:%SZ") for s in expected
    ]
    assert len(found) == 11  # 09:00 to 11:30 on the 15-minute grid
    assert {s["status"] for s in found} == {"free"}
    assert found[0]["schedule"]["reference"] == (
        f"Schedule/{schedule_id(website.doctor.public_id, website.branch.public_id)}"
    )
    with django_capture_on_commit_callbacks(execute=True):  # the commit bumps the version
        appointment_book(
            actor=website.account,
            request=BookingRequest(
                branch=website.branch,
                services=[website.service],
                starts_at=local(day, "10:00"),
                channel=BookingChannel.DESK,
                doctor=website.doctor,
                primary=PrimaryPatient(last_name="Other", phone="+79160000000"),
            ),
        )
    after = [entry["resource"]["start"] for entry in slot_search(client, website, day)["entry"]]
    taken = local(day, "10:00").astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert taken not in after
    assert after == [s.starts_at.strftime("%Y-%m-%dT%H:%M:%SZ") for s in engine_slots(website, day)]


def test_a_slot_held_at_the_desk_is_busy_tentative(client: Client, website: Website) -> None:
    day = tomorrow()
    start = local(day, "09:00")
    holds.slot_hold(
        resource_ids=[website.doctor.pk],
        starts_at=start,
        ends_at=start + datetime.timedelta(minutes=30),
    )
    statuses = {
        entry["resource"]["start"]: entry["resource"]["status"]
        for entry in slot_search(client, website, day)["entry"]
    }
    # The hold rules out the starts whose half hour overlaps it: 09:00 and 09:15.
    held = [moment for moment, state in statuses.items() if state == "busy-tentative"]
    utc = [local(day, hhmm).astimezone(datetime.UTC) for hhmm in ("09:00", "09:15")]
    assert held == [moment.strftime("%Y-%m-%dT%H:%M:%SZ") for moment in utc]
    assert list(statuses.values()).count("free") == 9


@pytest.mark.parametrize(
    ("params", "name", "value"),
    [
        ({"start": "ge2026-13-45"}, "start", "ge2026-13-45"),
        ({"start": ["ge2026-01-01", "lt2026-03-01"]}, "start", "ge2026-01-01&lt2026-03-01"),
        ({"_count": "501"}, "_count", "501"),
        ({"_count": "many"}, "_count", "many"),
        ({"service-type": "http://other|x"}, "service-type", "http://other|x"),
        ({"schedule": "Schedule/zzz"}, "schedule", "Schedule/zzz"),
    ],
)
def test_bad_slot_parameters_are_400_naming_the_parameter_and_value(
    client: Client, website: Website, params: dict[str, Any], name: str, value: str
) -> None:
    query: dict[str, Any] = {
        "schedule": schedule_id(website.doctor.public_id, website.branch.public_id),
        "service-type": str(website.service.public_id),
        **params,
    }
    status, outcome = get(client, "Slot", **query)
    assert status == 400
    issue = outcome["issue"][0]
    assert outcome["resourceType"] == "OperationOutcome"
    assert issue["code"] == "invalid"
    assert issue["expression"] == [name]
    assert name in issue["diagnostics"] and value in issue["diagnostics"]


def test_slot_search_needs_a_service_type(client: Client, website: Website) -> None:
    status, outcome = get(
        client, "Slot", schedule=schedule_id(website.doctor.public_id, website.branch.public_id)
    )
    assert status == 400 and outcome["issue"][0]["expression"] == ["service-type"]


def test_posting_an_appointment_books_through_the_portal_channel_and_a_second_gets_409(
    client: Client, website: Website
) -> None:
    start = local(tomorrow(), "09:30")
    status, resource = post(client, booking(website, start))
    assert status == 201, resource
    assert resource["resourceType"] == "Appointment" and resource["status"] == "booked"
    booked = Appointment.objects.get(public_id=resource["id"])
    assert booked.channel == BookingChannel.PORTAL
    assert booked.starts_at == start
    assert booked.doctor == website.doctor and booked.branch == website.branch
    assert booked.patient is None and booked.needs_completion
    assert (booked.primary_last_name, booked.primary_first_name, booked.primary_patronymic) == (
        "Сидоров",
        "Пётр",
        "Ильич",
    )
    assert booked.primary_phone == "+79165551234"
    assert booked.primary_birth_date == datetime.date(1975, 3, 14)
    assert booked.created_by == website.account
    assert resource["participant"][0]["actor"]["reference"] == (
        f"Practitioner/{website.doctor.public_id}"
    )

    status, outcome = post(
        client,
        booking(website, start, name=[{"family": "Кузнецова", "given": ["Анна"]}]),
    )
    assert status == 409
    assert outcome["issue"][0]["code"] == "conflict"
    assert "Сидоров" not in json.dumps(outcome, ensure_ascii=False)
    assert Appointment.objects.count() == 1


def test_a_returning_patient_is_linked_to_the_existing_person(
    client: Client, website: Website
) -> None:
    person = PersonFactory(
        organization=website.branch.organization,
        last_name="Сидоров",
        first_name="Пётр",
        patronymic="Ильич",
        birth_date=datetime.date(1975, 3, 14),
    )
    ContactFactory(person=person, kind=ContactKind.MOBILE, value="+79165551234")
    status, resource = post(client, booking(website, local(tomorrow(), "10:30")))
    assert status == 201
    booked = Appointment.objects.get(public_id=resource["id"])
    assert booked.patient == person and not booked.needs_completion


def test_the_same_phone_with_another_name_is_not_linked(client: Client, website: Website) -> None:
    person = PersonFactory(
        organization=website.branch.organization, birth_date=datetime.date(1975, 3, 14)
    )
    ContactFactory(person=person, kind=ContactKind.MOBILE, value="+79165551234")
    status, resource = post(client, booking(website, local(tomorrow(), "10:30")))
    assert status == 201
    assert Appointment.objects.get(public_id=resource["id"]).patient is None


def test_an_idempotency_key_replays_the_same_appointment(client: Client, website: Website) -> None:
    body = booking(website, local(tomorrow(), "11:00"))
    first_status, first = post(client, body, **{"Idempotency-Key": "site-42"})
    second_status, second = post(client, body, **{"Idempotency-Key": "site-42"})
    assert (first_status, second_status) == (201, 200)
    assert first["id"] == second["id"]
    assert Appointment.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "expression", "value"),
    [
        ({"birthDate": "14.03.1975"}, "Patient.birthDate", "14.03.1975"),
        ({"telecom": [{"system": "phone", "value": "12"}]}, "Patient.telecom", "12"),
        ({"name": [{"family": "Сидоров"}]}, "Patient.name", None),
    ],
)
def test_bad_patient_fields_are_400_naming_the_field(
    client: Client, website: Website, change: dict[str, Any], expression: str, value: str | None
) -> None:
    status, outcome = post(client, booking(website, local(tomorrow(), "09:00"), **change))
    assert status == 400
    issue = outcome["issue"][0]
    assert issue["expression"] == [expression]
    if value is not None:
        assert value in issue["diagnostics"]
    assert Appointment.objects.count() == 0


def test_a_malformed_slot_reference_is_400(client: Client, website: Website) -> None:
    body = booking(website, local(tomorrow(), "09:00"))
    body["slot"] = [{"reference": "Slot/nonsense"}]
    status, outcome = post(client, body)
    assert status == 400 and outcome["issue"][0]["expression"] == ["Appointment.slot"]


def test_without_the_website_account_online_booking_is_refused_and_nothing_is_written(
    client: Client, website: Website, settings: Any
) -> None:
    settings.WEBSITE_BOOKING_USERNAME = ""
    status, outcome = post(client, booking(website, local(tomorrow(), "09:00")))
    assert status == 503 and outcome["issue"][0]["code"] == "transient"
    assert Appointment.objects.count() == 0


@pytest.mark.parametrize("path", ["Practitioner", "Location", "HealthcareService", "Schedule"])
def test_lists_cost_the_same_queries_whatever_the_number_of_doctors(
    client: Client,
    website: Website,
    path: str,
    django_assert_num_queries: Any,
    django_assert_max_num_queries: Any,
) -> None:
    with django_assert_max_num_queries(50) as one:
        client.get(f"/fhir/{path}")
    for number in range(3):
        another_doctor(website, f"Doctor {number}")
    with django_assert_num_queries(len(one.captured_queries)):
        response = client.get(f"/fhir/{path}")
    assert response.status_code == 200


def test_slot_search_cost_does_not_grow_with_the_days(
    client: Client,
    website: Website,
    django_assert_num_queries: Any,
    django_assert_max_num_queries: Any,
) -> None:
    """Asked for 31 days, the engine still reads each table once."""
    query = {
        "schedule": schedule_id(website.doctor.public_id, website.branch.public_id),
        "service-type": str(website.service.public_id),
    }
    day = timezone.localdate()
    one_day = {**query, "start": [f"ge{day}", f"lt{day + datetime.timedelta(days=1)}"]}
    month = {**query, "start": [f"ge{day}", f"lt{day + datetime.timedelta(days=31)}"]}
    with django_assert_max_num_queries(50) as short:
        client.get("/fhir/Slot", one_day)
    slot_cache.forget_all()  # both searches read the bookable schedules
    with django_assert_num_queries(len(short.captured_queries)):
        response = client.get("/fhir/Slot", month)
    assert response.status_code == 200
    expected = free_slots(
        organization_id=website.branch.organization_id,
        services=[website.service],
        branch=website.branch,
        date_from=day,
        date_to=day + datetime.timedelta(days=30),
        channel=BookingChannel.PORTAL,
        doctors=[website.doctor],
    )
    assert json.loads(response.content)["total"] == len(expected) >= 11 * 30


def test_each_branch_shows_its_own_price_by_billing_rule(client: Client, website: Website) -> None:
    """A branch's own list overrides the all-branch one; the other branch keeps the general
    price (both read in one query)."""
    north = BranchFactory(organization=website.branch.organization, name="North")
    own = PriceListFactory(organization=north.organization, branch=north)
    PriceFactory(price_list=own, service=website.service, amount=Decimal("1700.50"))
    bundle = get(client, "HealthcareService")[1]
    prices = {
        ext["extension"][0]["valueReference"]["reference"]: ext["extension"][1]["valueMoney"]
        for ext in bundle["entry"][0]["resource"]["extension"][1:]
    }
    assert prices == {
        f"Location/{website.branch.public_id}": {"value": 1500.0, "currency": "RUB"},
        f"Location/{north.public_id}": {"value": 1700.5, "currency": "RUB"},
    }
