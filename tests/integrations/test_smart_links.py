"""SMART Scheduling Links: the manifest lists the three NDJSON files, each line is a FHIR
resource, slots reference schedules that reference locations, and every slot carries the
portal's deep link and the branch's phone."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from integrations.website.fhir import (
    BOOKING_DEEP_LINK,
    BOOKING_PHONE,
    SlotKey,
    schedule_id,
    slot_decode,
)
from integrations.website.smart import PUBLISH_DAYS
from scheduling.availability import FREE, free_slots
from scheduling.models import BookingChannel
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.scheduling.factories import local, tomorrow

from .conftest import Website, another_doctor

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.integrations.urls")]


def ndjson(client: Client, url: str) -> list[dict[str, Any]]:
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+ndjson"
    text = b"".join(response.streaming_content).decode()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def manifest(client: Client) -> dict[str, Any]:
    response = client.get("/fhir/$bulk-publish")
    assert response.status_code == 200
    return json.loads(response.content)


def test_manifest_lists_location_schedule_and_slot_files(client: Client, website: Website) -> None:
    found = manifest(client)
    assert found["request"] == "http://testserver/fhir/$bulk-publish"
    assert datetime.datetime.fromisoformat(found["transactionTime"]).tzinfo is not None
    assert [(o["type"], o["url"]) for o in found["output"]] == [
        (kind, f"http://testserver/fhir/$bulk-publish/{kind}.ndjson")
        for kind in ("Location", "Schedule", "Slot")
    ]
    assert found["error"] == []


def test_files_reference_each_other_and_slots_link_to_the_portal(
    client: Client, website: Website
) -> None:
    files = {o["type"]: ndjson(client, o["url"]) for o in manifest(client)["output"]}
    assert [r["resourceType"] for r in files["Location"]] == ["Location"]
    location_ids = {r["id"] for r in files["Location"]}
    schedules = {r["id"]: r for r in files["Schedule"]}
    assert list(schedules) == [schedule_id(website.doctor.public_id, website.branch.public_id)]
    for schedule in schedules.values():
        assert schedule["actor"][1]["reference"].removeprefix("Location/") in location_ids
    slots = files["Slot"]
    today = timezone.localdate()
    expected = [
        s
        for s in free_slots(
            organization_id=website.branch.organization_id,
            services=[website.service],
            branch=website.branch,
            date_from=today,
            date_to=today + datetime.timedelta(days=PUBLISH_DAYS - 1),
            channel=BookingChannel.PORTAL,
            doctors=[website.doctor],
        )
        if s.state == FREE
    ]
    assert len(slots) == len(expected) >= 11 * (PUBLISH_DAYS - 1)
    for slot in slots:
        assert slot["resourceType"] == "Slot" and slot["status"] == "free"
        assert slot["schedule"]["reference"].removeprefix("Schedule/") in schedules
        link, phone = slot["extension"]
        assert link == {
            "url": BOOKING_DEEP_LINK,
            "valueUrl": f"http://testserver/portal/book/?slot={slot['id']}",
        }
        assert phone == {"url": BOOKING_PHONE, "valueString": "+74951234567"}
        key = slot_decode(slot["id"])
        assert (key.doctor_public_id, key.service_public_id) == (
            website.doctor.public_id,
            website.service.public_id,
        )
        assert key.starts_at.strftime("%Y-%m-%dT%H:%M:%SZ") == slot["start"]


def test_a_booked_time_leaves_the_slot_file_once_the_short_cache_expires(
    client: Client, website: Website
) -> None:
    from django.core.cache import cache

    start = local(tomorrow(), "10:00")
    taken = SlotKey(website.doctor.public_id, website.service.public_id, int(start.timestamp()))
    ids = {s["id"] for s in ndjson(client, "/fhir/$bulk-publish/Slot.ndjson")}
    assert taken.encode() in ids
    appointment_book(
        actor=website.account,
        request=BookingRequest(
            branch=website.branch,
            services=[website.service],
            starts_at=start,
            channel=BookingChannel.DESK,
            doctor=website.doctor,
            primary=PrimaryPatient(last_name="Other", phone="+79160000000"),
        ),
    )
    cached = {s["id"] for s in ndjson(client, "/fhir/$bulk-publish/Slot.ndjson")}
    assert cached == ids  # served from the cache within its minute
    cache.clear()
    fresh = {s["id"] for s in ndjson(client, "/fhir/$bulk-publish/Slot.ndjson")}
    assert taken.encode() not in fresh and fresh < ids


def test_an_unknown_file_is_a_404_operation_outcome(client: Client, website: Website) -> None:
    response = client.get("/fhir/$bulk-publish/Patient.ndjson")
    assert response.status_code == 404
    assert json.loads(response.content)["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize("kind", ["Location", "Schedule", "Slot"])
def test_files_cost_the_same_queries_whatever_the_number_of_doctors(
    client: Client,
    website: Website,
    kind: str,
    django_assert_num_queries: Any,
    django_assert_max_num_queries: Any,
) -> None:
    from django.core.cache import cache

    with django_assert_max_num_queries(50) as one:
        ndjson(client, f"/fhir/$bulk-publish/{kind}.ndjson")
    for number in range(3):
        another_doctor(website, f"Doctor {number}")
    cache.clear()
    with django_assert_num_queries(len(one.captured_queries)):
        lines = ndjson(client, f"/fhir/$bulk-publish/{kind}.ndjson")
    assert len(lines) >= 1
