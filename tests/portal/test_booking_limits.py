"""Bookings are limited per phone and per address on the wizard's last step and on the FHIR
``POST Appointment`` alike (429 with a message, nothing booked, the code still usable); they are
refused while the limits cannot be checked; and no answer tells whether a phone or a name
belongs to a registered patient."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import pytest
from django.test import Client

from integrations.website import booking as website_booking
from integrations.website.fhir import SERVICE_SYSTEM, SlotKey
from patients.models import ContactKind
from portal import booking as portal_booking
from portal.ratelimit import Limit, RateLimitUnavailable
from scheduling.models import Appointment
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import local, tomorrow

from .test_booking import DETAILS, PHONE, redis_cleared, sent_code, slot_at
from .test_booking import fresh_redis as fresh_redis
from .test_pages import Clinic, clinic_build
from .test_pages import urlpatterns as urlpatterns

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

FHIR_JSON = "application/fhir+json"


@pytest.fixture
def site(settings: Any) -> Clinic:
    return clinic_build(settings)


def to_code_step(client: Client, site: Clinic, at: str, **details: str) -> str:
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), at))})
    sent = client.post("/portal/book/details/", {**DETAILS, **details})
    assert sent.status_code == 302, sent.content.decode()
    return sent_code()


def only(monkeypatch: pytest.MonkeyPatch, name: str, count: int) -> None:
    """Lower one booking limit of the shared module for the test."""
    limit: Limit = getattr(website_booking, name)
    monkeypatch.setattr(website_booking, name, Limit(limit.name, count, limit.seconds))


def test_a_phone_over_its_limit_is_refused_429_and_its_code_still_works(
    client: Client, site: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    only(monkeypatch, "BOOKINGS_PER_PHONE_HOUR", 0)
    code = to_code_step(client, site, "10:00")
    refused = Client(HTTP_ACCEPT_LANGUAGE="en")
    refused.cookies = client.cookies
    answer = refused.post("/portal/book/code/", {"code": code})
    assert answer.status_code == 429
    page = answer.content.decode()
    assert "data-form-errors" in page and "Too many bookings were tried" in page
    assert not Appointment.objects.exists()

    monkeypatch.undo()
    redis_cleared()
    # The refused try did not use the code up.
    assert client.post("/portal/book/code/", {"code": code}).status_code == 302
    assert Appointment.objects.count() == 1


def test_an_address_over_its_limit_is_refused_whatever_the_phone(
    site: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    only(monkeypatch, "BOOKINGS_PER_IP_HOUR", 1)
    first = Client(REMOTE_ADDR="10.1.1.1")
    assert first.post("/portal/book/code/", {"code": to_code_step(first, site, "10:00")})[
        "Location"
    ] == ("/portal/book/done/")
    second = Client(REMOTE_ADDR="10.1.1.1")
    code = to_code_step(second, site, "11:00", phone="+79160000002")
    assert second.post("/portal/book/code/", {"code": code}).status_code == 429
    elsewhere = Client(REMOTE_ADDR="10.1.1.2")
    code = to_code_step(elsewhere, site, "11:30", phone="+79160000003")
    assert elsewhere.post("/portal/book/code/", {"code": code}).status_code == 302
    assert Appointment.objects.count() == 2


def test_without_redis_the_wizard_refuses_to_book(
    client: Client, site: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = to_code_step(client, site, "10:00")

    def down(*_args: object) -> bool:
        raise RateLimitUnavailable("connection refused")

    monkeypatch.setattr(website_booking, "limit_reached", down)
    english = Client(HTTP_ACCEPT_LANGUAGE="en")
    english.cookies = client.cookies
    refused = english.post("/portal/book/code/", {"code": code})
    assert refused.status_code == 429
    assert "Online booking is paused for a minute" in refused.content.decode()
    assert not Appointment.objects.exists()


def fhir_booking(site: Clinic, at: str, phone: str = "8 (916) 555-12-34") -> dict[str, Any]:
    start = local(tomorrow(), at)
    key = SlotKey(site.doctor.public_id, site.service.public_id, int(start.timestamp()))
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "name": [{"family": "Сидоров", "given": ["Пётр", "Ильич"]}],
                "telecom": [{"system": "phone", "value": phone}],
                "birthDate": "1975-03-14",
            }
        ],
        "slot": [{"reference": f"Slot/{key.encode()}"}],
        "serviceType": [
            {"coding": [{"system": SERVICE_SYSTEM, "code": str(site.service.public_id)}]}
        ],
        "participant": [{"actor": {"reference": "#patient"}, "status": "needs-action"}],
    }


def fhir_post(client: Client, body: dict[str, Any]) -> Any:
    return client.post("/fhir/Appointment", json.dumps(body), content_type=FHIR_JSON)


def test_the_fhir_booking_shares_the_limits_and_answers_429_with_retry_after(
    site: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    only(monkeypatch, "BOOKINGS_PER_PHONE_HOUR", 1)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    assert fhir_post(client, fhir_booking(site, "10:00")).status_code == 201
    refused = fhir_post(client, fhir_booking(site, "10:30", phone="+7 916 555 12 34"))
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    outcome = json.loads(refused.content)
    assert outcome["issue"][0]["code"] == "throttled"
    assert "Too many bookings were tried" in outcome["issue"][0]["diagnostics"]
    assert Appointment.objects.count() == 1

    # The wizard counts against the same phone.
    code = to_code_step(client, site, "11:00", phone="+79165551234")
    assert client.post("/portal/book/code/", {"code": code}).status_code == 429

    only(monkeypatch, "BOOKINGS_PER_PHONE_HOUR", 10)
    only(monkeypatch, "BOOKINGS_PER_IP_HOUR", 1)
    redis_cleared()
    assert fhir_post(client, fhir_booking(site, "11:30", phone="+79160000004")).status_code == 201
    other_phone = fhir_booking(site, "09:00", phone="+79160000005")
    assert fhir_post(client, other_phone).status_code == 429
    assert fhir_post(Client(REMOTE_ADDR="10.9.9.9"), other_phone).status_code == 201


def test_without_redis_the_fhir_booking_is_refused_as_transient(
    site: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_args: object) -> bool:
        raise RateLimitUnavailable("connection refused")

    monkeypatch.setattr(website_booking, "limit_reached", down)
    refused = fhir_post(Client(), fhir_booking(site, "10:00"))
    assert refused.status_code == 503
    assert json.loads(refused.content)["issue"][0]["code"] == "transient"
    assert not Appointment.objects.exists()


def normalized(html: str) -> str:
    """The page without what differs on every request: tokens, signed links, public ids and
    the code typed."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
    html = re.sub(r'"X-CSRFToken": "[^"]+"', "", html)
    html = re.sub(r'name="code" value="\d+"', "", html)
    html = re.sub(r"/portal/a/[^\"/]+/", "/portal/a/LINK/", html)
    return re.sub(r'data-appointment="[^"]+"', "", html)


def walk_the_wizard(site: Clinic) -> list[tuple[int, str, str]]:
    """Every answer of one booking at 10:00, cancelled afterwards by its link."""
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    answers = []
    slot = slot_at(site, local(tomorrow(), "10:00"))
    held = client.post("/portal/book/hold/", {"slot": slot})
    answers.append((held.status_code, held.get("Location", ""), ""))
    details = client.get("/portal/book/details/")
    answers.append((details.status_code, "", normalized(details.content.decode())))
    sent = client.post("/portal/book/details/", DETAILS)
    answers.append((sent.status_code, sent.get("Location", ""), ""))
    code = sent_code()
    wrong = client.post("/portal/book/code/", {"code": f"{(int(code) + 1) % 1_000_000:06d}"})
    answers.append((wrong.status_code, "", normalized(wrong.content.decode())))
    booked = client.post("/portal/book/code/", {"code": code})
    answers.append((booked.status_code, booked.get("Location", ""), ""))
    done = client.get("/portal/book/done/")
    page = done.content.decode()
    answers.append((done.status_code, "", normalized(page)))
    link = re.search(r'href="(/portal/a/[^"/]+/)" data-cancel-link', page)
    assert link is not None
    client.post(link.group(1))
    redis_cleared()
    return answers


def test_a_new_and_a_returning_patient_get_the_same_answers(site: Clinic) -> None:
    as_new = walk_the_wizard(site)
    person = PersonFactory(
        organization=site.branch.organization,
        last_name=DETAILS["last_name"],
        first_name=DETAILS["first_name"],
        patronymic=DETAILS["patronymic"],
        birth_date=datetime.date.fromisoformat(DETAILS["birth_date"]),
    )
    ContactFactory(person=person, kind=ContactKind.MOBILE, value=PHONE)
    as_returning = walk_the_wizard(site)
    assert [a.patient for a in Appointment.objects.order_by("pk")] == [None, person]
    assert as_new == as_returning

    # The FHIR answer carries nothing of the patient either.
    known = PersonFactory(
        organization=site.branch.organization,
        last_name="Сидоров",
        first_name="Пётр",
        patronymic="Ильич",
        birth_date=datetime.date(1975, 3, 14),
    )
    ContactFactory(person=known, kind=ContactKind.MOBILE, value="+79160000088")
    fhir = Client()
    new = fhir_post(fhir, fhir_booking(site, "11:00", phone="+79160000077"))
    returning = fhir_post(fhir, fhir_booking(site, "11:30", phone="+79160000088"))
    assert new.status_code == returning.status_code == 201
    assert Appointment.objects.get(starts_at=local(tomorrow(), "11:30")).patient == known
    new_answer, returning_answer = json.loads(new.content), json.loads(returning.content)
    assert set(new_answer) == set(returning_answer)
    assert "Сидоров" not in returning.content.decode()


def test_the_wizard_uses_the_portals_refusal_for_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``booking_limits_checked`` turns the shared limit into the portal's 429."""
    only(monkeypatch, "BOOKINGS_PER_PHONE_DAY", 0)
    with pytest.raises(portal_booking.TooManyRequests) as refused:
        portal_booking.booking_limits_checked(phone=PHONE, ip=None)
    assert refused.value.code == "too_many_bookings" and refused.value.status_code == 429
