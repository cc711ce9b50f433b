"""What the portal and the FHIR feed offer is never stale: a time booked through any channel,
held by another browser or freed by a cancellation shows as such at the very next request (the
FHIR answers' cache is keyed by the branch's schedule version, which each committed change
bumps), and a booking made in the portal's wizard reaches the branch's desk stream with its
channel, so the desk notices it at once. The tests commit, as real requests do: the version is
bumped after the commit."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from integrations.website.fhir import SERVICE_SYSTEM, schedule_id
from scheduling.models import Appointment, BookingChannel, CancelReason
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.desk.test_live import EVENTS
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import local, tomorrow

from .test_booking import DETAILS, held_for_others, sent_code, slot_at
from .test_booking import fresh_redis as fresh_redis
from .test_pages import Clinic, clinic_build

pytestmark = pytest.mark.django_db(transaction=True)

FHIR = "application/fhir+json"
BOOKED_AT = "10:00"
# A 30-minute visit at 10:00 on a 15-minute grid rules out the starts whose visit would overlap.
OVERLAPPING = ("09:45", "10:00", "10:15")
NEIGHBOURS = ("09:30", "10:30")


@pytest.fixture
def site(settings: Any) -> Clinic:
    return clinic_build(settings)


def fhir_slots(site: Clinic) -> dict[str, str]:
    """Tomorrow's slots of the doctor in the FHIR feed: slot id -> status (a fresh client)."""
    day = tomorrow()
    response = Client().get(
        "/fhir/Slot",
        {
            "schedule": f"Schedule/{schedule_id(site.doctor.public_id, site.branch.public_id)}",
            "service-type": f"{SERVICE_SYSTEM}|{site.service.public_id}",
            "start": [f"ge{day}", f"lt{day + datetime.timedelta(days=1)}"],
        },
    )
    assert response.status_code == 200, response.content
    return {
        entry["resource"]["id"]: entry["resource"]["status"] for entry in response.json()["entry"]
    }


def fhir_free(site: Clinic) -> set[str]:
    return {slot for slot, status in fhir_slots(site).items() if status == "free"}


def portal_offered(site: Clinic) -> set[str]:
    """The slot ids the portal's search page offers for the service (a fresh browser)."""
    page = Client().get("/portal/book/", {"service": str(site.service.public_id)})
    assert page.status_code == 200
    return set(re.findall(r'data-slot="([^"]+)"', page.content.decode()))


def slots_at(site: Clinic, times: tuple[str, ...]) -> set[str]:
    return {slot_at(site, local(tomorrow(), hhmm)) for hhmm in times}


def book_at_the_desk_api(site: Clinic, starts_at: datetime.datetime) -> Appointment:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=site.account).key}")
    response = api.post(
        "/api/v1/scheduling/appointments/",
        {
            "branch": str(site.branch.public_id),
            "services": [site.service.code],
            "starts_at": starts_at.isoformat(),
            "channel": BookingChannel.DESK.value,
            "patient": str(PersonFactory(organization=site.branch.organization).public_id),
            "doctor": str(site.doctor.public_id),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return Appointment.objects.get(public_id=response.json()["id"])


def book_by_the_call_centre(site: Clinic, starts_at: datetime.datetime) -> Appointment:
    return appointment_book(
        actor=site.account,
        request=BookingRequest(
            branch=site.branch,
            services=[site.service],
            starts_at=starts_at,
            channel=BookingChannel.CALL_CENTRE,
            doctor=site.doctor,
            primary=PrimaryPatient(last_name="Сидоров", first_name="Олег", phone="+79160000001"),
        ),
    )


def fhir_appointment(site: Clinic, starts_at: datetime.datetime) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "slot": [{"reference": f"Slot/{slot_at(site, starts_at)}"}],
        "contained": [
            {
                "resourceType": "Patient",
                "id": "p",
                "name": [{"family": "Кузнецова", "given": ["Анна"]}],
                "telecom": [{"system": "phone", "value": "+79165550000"}],
                "birthDate": "1990-05-05",
            }
        ],
        "participant": [{"actor": {"reference": "#p"}}],
    }


def book_through_the_fhir_api(site: Clinic, starts_at: datetime.datetime) -> Appointment:
    response = Client().post(
        "/fhir/Appointment", fhir_appointment(site, starts_at), content_type=FHIR
    )
    assert response.status_code == 201, response.content
    return Appointment.objects.get(public_id=response.json()["id"])


@pytest.mark.parametrize(
    "book",
    [book_at_the_desk_api, book_by_the_call_centre, book_through_the_fhir_api],
    ids=["desk-api", "call-centre-service", "fhir-appointment"],
)
def test_a_time_booked_through_any_channel_leaves_both_feeds_at_the_next_request(
    site: Clinic, book: Callable[[Clinic, datetime.datetime], Appointment]
) -> None:
    overlapping = slots_at(site, OVERLAPPING)
    neighbours = slots_at(site, NEIGHBOURS)
    free_before = fhir_free(site)
    offered_before = portal_offered(site)
    assert overlapping | neighbours <= free_before
    assert overlapping | neighbours <= offered_before

    booked = book(site, local(tomorrow(), BOOKED_AT))

    assert booked.starts_at == local(tomorrow(), BOOKED_AT) and booked.doctor == site.doctor
    assert free_before - fhir_free(site) == overlapping
    assert offered_before - portal_offered(site) == overlapping
    assert overlapping.isdisjoint(fhir_slots(site))


def test_a_time_held_by_another_browser_is_not_offered_as_free_and_is_refused(
    site: Clinic,
) -> None:
    starts_at = local(tomorrow(), BOOKED_AT)
    slot = slot_at(site, starts_at)
    overlapping = slots_at(site, OVERLAPPING)
    offered_before = portal_offered(site)
    holder = Client()
    assert holder.post("/portal/book/hold/", {"slot": slot}).status_code == 302
    assert held_for_others(site, starts_at)

    statuses = fhir_slots(site)
    assert {slot: statuses[slot] for slot in overlapping} == dict.fromkeys(
        overlapping, "busy-tentative"
    )
    assert {statuses[slot] for slot in slots_at(site, NEIGHBOURS)} == {"free"}
    assert offered_before - portal_offered(site) == overlapping
    own_search = holder.get("/portal/book/", {"service": str(site.service.public_id)})
    assert f'data-slot="{slot}"' in own_search.content.decode()

    refused = Client().post("/portal/book/hold/", {"slot": slot})
    assert refused.status_code == 409
    assert 'data-error="slot_held"' in refused.content.decode()
    fhir_refused = Client().post(
        "/fhir/Appointment", fhir_appointment(site, starts_at), content_type=FHIR
    )
    assert fhir_refused.status_code == 409
    assert fhir_refused.json()["issue"][0]["code"] == "conflict"
    assert not Appointment.objects.exists()

    assert holder.post("/portal/book/cancel/").status_code == 302
    assert not held_for_others(site, starts_at)
    assert overlapping <= fhir_free(site)
    assert portal_offered(site) == offered_before


def test_a_cancelled_appointment_time_is_offered_again_at_the_next_request(
    site: Clinic,
) -> None:
    overlapping = slots_at(site, OVERLAPPING)
    free_before = fhir_free(site)
    offered_before = portal_offered(site)
    booked = book_by_the_call_centre(site, local(tomorrow(), BOOKED_AT))
    assert overlapping.isdisjoint(portal_offered(site))

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=site.account).key}")
    reason = CancelReason.objects.filter(is_active=True).order_by("pk").first()
    assert reason is not None
    cancelled = api.post(
        f"/api/v1/scheduling/appointments/{booked.public_id}/cancel/",
        {"reason": reason.code},
        format="json",
    )
    assert cancelled.status_code == 200, cancelled.content

    assert fhir_free(site) == free_before
    assert portal_offered(site) == offered_before


def test_a_portal_booking_reaches_the_branch_desk_stream_with_the_portal_channel(
    client: Client, site: Clinic, django_capture_on_commit_callbacks: Any
) -> None:
    starts_at = local(tomorrow(), BOOKED_AT)
    slot = slot_at(site, starts_at)
    assert slot in portal_offered(site)
    desk = Client()
    desk.force_login(site.account)
    stream = desk.get(EVENTS, {"branch": str(site.branch.public_id)})
    assert stream.status_code == 200
    chunks = iter(stream.streaming_content)  # type: ignore[attr-defined]
    assert next(chunks) == b"retry: 1000\n\n"  # subscribed to the branch's channel by now
    version = json.loads(next(chunks).decode().split("data: ", 1)[1])["version"]

    assert client.post("/portal/book/hold/", {"slot": slot}).status_code == 302
    assert client.post("/portal/book/details/", DETAILS).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        booked = client.post("/portal/book/code/", {"code": sent_code()})
    assert booked.status_code == 302 and booked["Location"] == "/portal/book/done/"
    appointment = Appointment.objects.get()
    events = []
    # Closing the stream ends the request, and with it this test's database connection: last.
    try:
        # The booking gives up the browser's hold and books: a release, then the booking.
        while not any(event["kind"] == "booked" for event in events) and len(events) < 3:
            name, _event_id, data = next(chunks).decode().rstrip("\n").split("\n")
            assert name == "event: schedule"
            events.append(json.loads(data.removeprefix("data: ")))
        assert events[-1] == {
            "kind": "booked",
            "branch": str(site.branch.public_id),
            "resources": [str(site.doctor.public_id)],
            "days": [tomorrow().isoformat()],
            "channel": BookingChannel.PORTAL.value,
            "appointment": str(appointment.public_id),
            "version": version + len(events),
        }
        assert slots_at(site, OVERLAPPING).isdisjoint(portal_offered(site))
        assert slots_at(site, OVERLAPPING).isdisjoint(fhir_free(site))
    finally:
        stream.close()
