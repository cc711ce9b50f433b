"""The booking's confirmation message and its signed link: the message carries the link; the
link cancels only within the clinic's notice; a deep link to a time booked meanwhile is refused
at once, before any hold or code."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from clinic.outbox.models import OutboxMessage
from portal.codes import CODE_CHANNEL
from portal.notices import BOOKING_CHANNEL
from scheduling.models import Appointment, AppointmentStatus, BookingChannel
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.scheduling.factories import local, tomorrow

from .test_booking import DETAILS, PHONE, held_for_others, sent_code, slot_at
from .test_booking import fresh_redis as fresh_redis
from .test_pages import Clinic, clinic_build
from .test_pages import urlpatterns as urlpatterns

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture
def site(settings: Any) -> Clinic:
    return clinic_build(settings)


def book_online(client: Client, site: Clinic, at: str) -> str:
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), at))})
    client.post("/portal/book/details/", DETAILS)
    assert client.post("/portal/book/code/", {"code": sent_code()}).status_code == 302
    page = client.get("/portal/book/done/").content.decode()
    found = re.search(r'href="(/portal/a/[^"/]+/)" data-cancel-link', page)
    assert found is not None
    return found.group(1)


def test_the_confirmation_message_carries_the_signed_link(client: Client, site: Clinic) -> None:
    link = book_online(client, site, "10:00")
    message = OutboxMessage.objects.get(channel=BOOKING_CHANNEL)
    assert message.payload["to"] == PHONE
    assert message.payload["text"].endswith(f"http://testserver{link}")
    assert str(Appointment.objects.get().public_id) == message.payload["appointment"]


def test_the_link_refuses_to_cancel_inside_the_notice(
    client: Client, site: Clinic, settings: Any
) -> None:
    link = book_online(client, site, "10:00")
    settings.PORTAL_CHANGE_NOTICE_MINUTES = 3 * 24 * 60
    shown = Client().get(link, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "data-too-late" in shown and "data-cancel" not in shown
    refused = Client().post(link, HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 400
    assert 'data-error="too_late_to_change"' in refused.content.decode()
    assert Appointment.objects.get().status.code != AppointmentStatus.CANCELLED


def test_a_deep_link_to_a_time_booked_meanwhile_is_refused_at_once(
    client: Client, site: Clinic
) -> None:
    starts_at = local(tomorrow(), "11:00")
    appointment_book(
        actor=site.account,
        request=BookingRequest(
            branch=site.branch,
            services=[site.service],
            starts_at=starts_at,
            channel=BookingChannel.DESK,
            doctor=site.doctor,
            primary=PrimaryPatient(last_name="Сидоров", phone="+79160000001"),
        ),
    )
    slot = slot_at(site, starts_at)
    deep = client.get("/portal/book/", {"slot": slot})
    assert deep.status_code == 409
    assert 'data-error="slot_taken"' in deep.content.decode()
    refused = client.post("/portal/book/hold/", {"slot": slot})
    assert refused.status_code == 409
    assert not held_for_others(site, starts_at)
    assert not OutboxMessage.objects.filter(channel=CODE_CHANNEL).exists()


def test_a_refused_pick_keeps_the_search_and_its_other_times(client: Client, site: Clinic) -> None:
    starts_at = local(tomorrow(), "10:00")
    holder = Client()
    holder.post("/portal/book/hold/", {"slot": slot_at(site, starts_at)})
    search = {"service": str(site.service.public_id)}
    page = client.get("/portal/book/", search).content.decode()
    action = re.search(r'<form method="post" action="([^"]+)" class="slot-list"', page)
    assert action is not None and "service=" in action.group(1)
    refused = client.post(action.group(1).replace("&amp;", "&"), {"slot": slot_at(site, starts_at)})
    assert refused.status_code == 409
    again = refused.content.decode()
    assert 'data-error="slot_held"' in again
    assert f'data-slot="{slot_at(site, local(tomorrow(), "11:00"))}"' in again


def test_the_signed_link_reschedules_without_logging_in(client: Client, site: Clinic) -> None:
    link = book_online(client, site, "10:00")
    stranger = Client()
    assert "data-reschedule" in stranger.get(link).content.decode()
    page = stranger.get(f"{link}reschedule/").content.decode()
    new_slot = slot_at(site, local(tomorrow(), "11:30"))
    assert f'data-slot="{new_slot}"' in page
    moved = stranger.post(f"{link}reschedule/", {"slot": new_slot})
    assert moved.status_code == 302 and moved["Location"] == link
    assert Appointment.objects.get().starts_at == local(tomorrow(), "11:30")


def test_the_signed_link_does_not_reschedule_inside_the_notice(
    client: Client, site: Clinic, settings: Any
) -> None:
    link = book_online(client, site, "10:00")
    settings.PORTAL_CHANGE_NOTICE_MINUTES = 3 * 24 * 60
    refused = Client().post(
        f"{link}reschedule/", {"slot": slot_at(site, local(tomorrow(), "11:30"))}
    )
    assert refused.status_code == 302 and refused["Location"] == link
    assert Appointment.objects.get().starts_at == local(tomorrow(), "10:00")
