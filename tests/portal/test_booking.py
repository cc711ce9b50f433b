"""The booking wizard end to end: a real free slot is held for the browser, the details send a
code, the code books through the scheduling engine as the website account; and the signed
link shows and cancels the visit."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinic.outbox.models import OutboxMessage
from integrations.website.fhir import SlotKey
from patients.models import ContactKind
from portal import ratelimit
from portal.codes import CODE_CHANNEL
from portal.models import ConsultationMode, DoctorOnlineSettings, PriceRounding
from scheduling import holds
from scheduling.models import Appointment, AppointmentStatus, BookingChannel
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

from .test_pages import Clinic, clinic_build
from .test_pages import urlpatterns as urlpatterns

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PHONE = "+79165551234"
DETAILS = {
    "last_name": "Иванова",
    "first_name": "Мария",
    "patronymic": "Петровна",
    "phone": PHONE,
    "birth_date": "1980-12-31",
}


def redis_cleared() -> None:
    """Forget every rate-limit window and hold."""
    for client, pattern in (
        (ratelimit._client(), "clinic:ratelimit:*"),
        (holds._client(), "clinic:hold:*"),
    ):
        for key in client.scan_iter(pattern):
            client.delete(key)


@pytest.fixture(autouse=True)
def fresh_redis() -> None:
    """No rate-limit window or hold of an earlier test leaks into this one."""
    redis_cleared()


@pytest.fixture
def site(settings: Any) -> Clinic:
    return clinic_build(settings)


def slot_at(site: Clinic, starts_at: datetime.datetime) -> str:
    return SlotKey(
        site.doctor.public_id, site.service.public_id, int(starts_at.timestamp())
    ).encode()


def sent_code() -> str:
    message = OutboxMessage.objects.filter(channel=CODE_CHANNEL).order_by("-pk").first()
    assert message is not None
    found = re.search(r"\b(\d{6})\b", message.payload["text"])
    assert found is not None
    return found.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def held_for_others(site: Clinic, starts_at: datetime.datetime) -> bool:
    return holds.held_by_other(
        resource_ids=[site.doctor.pk],
        starts_at=starts_at,
        ends_at=starts_at + datetime.timedelta(minutes=30),
        token="another-screen",
    )


def test_the_wizard_holds_sends_a_code_and_books_on_the_portal_channel(
    client: Client, site: Clinic
) -> None:
    starts_at = local(tomorrow(), "10:00")
    slot = slot_at(site, starts_at)
    search = client.get("/portal/book/", {"service": str(site.service.public_id)})
    assert search.status_code == 200
    assert f'data-slot="{slot}"' in search.content.decode()

    held = client.post("/portal/book/hold/", {"slot": slot})
    assert held.status_code == 302 and held["Location"] == "/portal/book/details/"
    assert held_for_others(site, starts_at)
    other = Client()
    refused = other.post("/portal/book/hold/", {"slot": slot})
    assert refused.status_code == 409
    assert 'data-error="slot_held"' in refused.content.decode()
    assert (
        f'data-slot="{slot}"'
        not in other.get("/portal/book/", {"service": str(site.service.public_id)}).content.decode()
    )

    sent = client.post("/portal/book/details/", DETAILS)
    assert sent.status_code == 302 and sent["Location"] == "/portal/book/code/"
    code = sent_code()

    refused_code = client.post("/portal/book/code/", {"code": wrong(code)})
    assert refused_code.status_code == 400
    assert 'data-field-errors="code"' in refused_code.content.decode()
    assert not Appointment.objects.exists()
    assert held_for_others(site, starts_at)

    booked = client.post("/portal/book/code/", {"code": code})
    assert booked.status_code == 302 and booked["Location"] == "/portal/book/done/"
    appointment = Appointment.objects.get()
    assert appointment.channel == BookingChannel.PORTAL
    assert appointment.starts_at == starts_at and appointment.doctor == site.doctor
    assert appointment.patient is None and appointment.primary_last_name == "Иванова"
    assert appointment.primary_phone == PHONE
    assert not held_for_others(site, starts_at)

    done = client.get("/portal/book/done/")
    page = done.content.decode()
    assert done.status_code == 200 and done["Cache-Control"] == "no-store"
    assert "Petrov I. I." in page and "Moscow, Tverskaya 1" in page and "10:00" in page
    assert re.search(r'href="/portal/a/[^"/]+/" data-cancel-link', page)


def test_a_returning_patient_is_linked(client: Client, site: Clinic) -> None:
    person = PersonFactory(
        organization=site.branch.organization,
        last_name="Иванова",
        first_name="Мария",
        patronymic="Петровна",
        birth_date=datetime.date(1980, 12, 31),
    )
    ContactFactory(person=person, kind=ContactKind.MOBILE, value=PHONE)
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), "11:00"))})
    client.post("/portal/book/details/", DETAILS)
    assert client.post("/portal/book/code/", {"code": sent_code()}).status_code == 302
    assert Appointment.objects.get().patient == person


def test_the_deep_link_opens_the_hold_step(client: Client, site: Clinic) -> None:
    slot = slot_at(site, local(tomorrow(), "09:30"))
    page = client.get("/portal/book/", {"slot": slot})
    assert page.status_code == 200
    assert f'data-chosen-slot="{slot}"' in page.content.decode()
    assert not held_for_others(site, local(tomorrow(), "09:30"))
    assert client.get("/portal/book/", {"slot": "not-a-slot"}).status_code == 409


def test_too_many_codes_is_429_and_the_wizard_cancel_releases_the_hold(
    client: Client, site: Clinic
) -> None:
    starts_at = local(tomorrow(), "09:00")
    client.post("/portal/book/hold/", {"slot": slot_at(site, starts_at)})
    assert client.post("/portal/book/details/", DETAILS).status_code == 302
    again = client.post("/portal/book/details/", DETAILS)
    assert again.status_code == 429
    assert 'data-field-errors="phone"' in again.content.decode()

    assert held_for_others(site, starts_at)
    assert client.post("/portal/book/cancel/").status_code == 302
    assert not held_for_others(site, starts_at)
    assert client.get("/portal/book/details/")["Location"] == "/portal/book/"
    assert not Appointment.objects.exists()


def test_the_signed_link_shows_and_cancels_and_a_tampered_one_is_404(
    client: Client, site: Clinic
) -> None:
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), "10:30"))})
    client.post("/portal/book/details/", DETAILS)
    client.post("/portal/book/code/", {"code": sent_code()})
    page = client.get("/portal/book/done/").content.decode()
    found = re.search(r'href="(/portal/a/[^"/]+/)" data-cancel-link', page)
    assert found is not None
    link = found.group(1)

    stranger = Client()
    shown = stranger.get(link)
    assert shown.status_code == 200 and "Petrov I. I." in shown.content.decode()
    assert shown["Cache-Control"] == "no-store"
    cancelled = stranger.post(link)
    assert cancelled.status_code == 200 and "data-cancelled" in cancelled.content.decode()
    appointment = Appointment.objects.get()
    assert appointment.status.code == AppointmentStatus.CANCELLED
    assert appointment.cancel_reason is not None
    assert appointment.cancel_reason.code == "patient_request"

    tampered = stranger.get(link[:-3] + "xx/")
    assert tampered.status_code == 404 and "data-link-invalid" in tampered.content.decode()

    visit_passed = timezone.now() - datetime.timedelta(hours=1)
    Appointment.objects.filter(pk=appointment.pk).update(
        starts_at=visit_passed, ends_at=visit_passed + datetime.timedelta(minutes=30)
    )
    assert stranger.get(link).status_code == 404


def test_a_time_taken_meanwhile_is_409_and_nothing_more_is_booked(
    client: Client, site: Clinic
) -> None:
    starts_at = local(tomorrow(), "11:30")
    client.post("/portal/book/hold/", {"slot": slot_at(site, starts_at)})
    client.post("/portal/book/details/", DETAILS)
    code = sent_code()
    # The hold lapses and the desk books the time before the patient types the code.
    holds.slot_release(
        token=client.session["portal_hold_token"],
        resource_ids=[site.doctor.pk],
        starts_at=starts_at,
        ends_at=starts_at + datetime.timedelta(minutes=30),
    )
    desk_booking = appointment_book(
        actor=site.account,
        request=BookingRequest(
            branch=site.branch,
            services=[site.service],
            starts_at=starts_at,
            channel=BookingChannel.DESK,
            doctor=site.doctor,
            primary=PrimaryPatient(last_name="Сидоров", first_name="Олег", phone="+79160000001"),
        ),
    )

    refused = client.post("/portal/book/code/", {"code": code})
    assert refused.status_code == 409
    assert "data-form-errors" in refused.content.decode()
    assert list(Appointment.objects.all()) == [desk_booking]


def test_the_doctors_horizon_and_minimum_notice_narrow_the_offered_times(
    client: Client, site: Clinic
) -> None:
    slot = slot_at(site, local(tomorrow(), "10:00"))
    search = {"service": str(site.service.public_id)}
    assert f'data-slot="{slot}"' in client.get("/portal/book/", search).content.decode()

    settings_row = DoctorOnlineSettings.objects.create(doctor=site.doctor, horizon_days=0)
    page = client.get("/portal/book/", search).content.decode()
    assert "data-slot=" not in page and "data-no-slots" in page
    assert client.post("/portal/book/hold/", {"slot": slot}).status_code == 409

    settings_row.horizon_days = None
    settings_row.min_notice_minutes = 3 * 24 * 60
    settings_row.save()
    assert f'data-slot="{slot}"' not in client.get("/portal/book/", search).content.decode()
    assert client.get("/portal/book/", {"slot": slot}).status_code == 409

    settings_row.min_notice_minutes = 5
    settings_row.save()
    assert f'data-slot="{slot}"' in client.get("/portal/book/", search).content.decode()


def test_only_the_services_the_settings_allow_are_offered_and_booked(
    client: Client, site: Clinic
) -> None:
    other = service_for(site.specialty, organization=site.branch.organization, name="Other")
    settings_row = DoctorOnlineSettings.objects.create(doctor=site.doctor)
    settings_row.services.add(other)
    slot = slot_at(site, local(tomorrow(), "10:00"))
    page = client.get("/portal/book/", {"service": str(site.service.public_id)})
    assert f'data-slot="{slot}"' not in page.content.decode()
    assert client.post("/portal/book/hold/", {"slot": slot}).status_code == 409
    assert (
        "Other" in client.get("/portal/book/", {"service": str(other.public_id)}).content.decode()
    )


def test_settings_changed_after_the_hold_stop_the_booking(client: Client, site: Clinic) -> None:
    """The wizard reads the slot again at every step: a notice set meanwhile refuses it."""
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), "10:00"))})
    client.post("/portal/book/details/", DETAILS)
    DoctorOnlineSettings.objects.create(doctor=site.doctor, min_notice_minutes=3 * 24 * 60)
    refused = client.post("/portal/book/code/", {"code": sent_code()})
    assert refused.status_code == 302 and refused["Location"] == "/portal/book/"
    assert not Appointment.objects.exists()


def test_every_step_shows_the_price_the_online_price_the_prepayment_and_the_consultation(
    site: Clinic,
) -> None:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    DoctorOnlineSettings.objects.create(
        doctor=site.doctor,
        prepayment_discount_percent=Decimal("10"),
        price_rounding=PriceRounding.TO_100,
        prepayment_amount=Decimal("500"),
        consultation_mode=ConsultationMode.ONLINE,
    )
    slot = slot_at(site, local(tomorrow(), "10:00"))
    search = client.get("/portal/book/", {"service": str(site.service.public_id)})
    page = search.content.decode()
    assert 'data-price="1500.00" data-online-price="1400.00"' in page
    assert 'data-prepayment="500.00"' in page
    assert 'data-mode="online"' in page and "Online (video)" in page
    assert 'data-slot-price="1500.00"' in page
    assert "paying online in advance" in page and "Prepayment of 500" in page

    assert (
        'data-online-price="1400.00"'
        in client.get("/portal/book/", {"slot": slot}).content.decode()
    )
    client.post("/portal/book/hold/", {"slot": slot})
    details = client.get("/portal/book/details/").content.decode()
    assert 'data-online-price="1400.00"' in details and 'data-mode="online"' in details
    client.post("/portal/book/details/", DETAILS)
    code_page = client.get("/portal/book/code/").content.decode()
    assert 'data-prepayment="500.00"' in code_page
    client.post("/portal/book/code/", {"code": sent_code()})
    done = client.get("/portal/book/done/").content.decode()
    assert 'data-price="1500.00" data-online-price="1400.00"' in done
    assert 'data-prepayment="500.00"' in done and 'data-mode="online"' in done


def test_a_hidden_price_is_shown_on_no_step(client: Client, site: Clinic) -> None:
    DoctorOnlineSettings.objects.create(
        doctor=site.doctor, show_price=False, prepayment_amount=Decimal("500")
    )
    slot = slot_at(site, local(tomorrow(), "10:00"))
    search = client.get("/portal/book/", {"service": str(site.service.public_id)})
    assert f'data-slot="{slot}"' in search.content.decode()
    client.post("/portal/book/hold/", {"slot": slot})
    client.post("/portal/book/details/", DETAILS)
    client.post("/portal/book/code/", {"code": sent_code()})
    pages = [
        search,
        client.get("/portal/book/", {"slot": slot}),
        client.get("/portal/book/done/"),
    ]
    for page in pages:
        html = page.content.decode()
        assert "data-price=" not in html and "data-prepayment=" not in html
        assert "data-slot-price=" not in html


def test_the_search_page_costs_the_same_queries_for_more_doctors(
    client: Client, site: Clinic
) -> None:
    search = {"service": str(site.service.public_id)}
    client.get("/portal/book/", search)  # session and hold token

    with CaptureQueriesContext(connection) as one:
        client.get("/portal/book/", search)
    for number in range(3):
        extra = doctor(site.branch, specialty=site.specialty, name=f"Extra {number}")
        works(extra, start="09:00", end="12:00", break_from=None, break_to=None)
        DoctorOnlineSettings.objects.create(
            doctor=extra, prepayment_discount_percent=Decimal(number)
        )
    client.get("/portal/book/", search)  # the engine's plans of the new doctors are cached
    with CaptureQueriesContext(connection) as four:
        page = client.get("/portal/book/", search)
    assert page.content.decode().count("data-offer-doctor=") == 4
    assert len(four.captured_queries) == len(one.captured_queries)
