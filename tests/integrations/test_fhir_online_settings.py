"""The FHIR feed and SMART files offer what the portal offers: a doctor whose online booking is
off, a service his settings leave out and times inside his minimum notice are neither listed
nor bookable."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.utils import timezone

from integrations.website import slot_cache
from portal.models import DoctorOnlineSettings
from scheduling.models import Appointment
from tests.scheduling.factories import ServiceFactory, local, tomorrow

from .conftest import Website
from .test_fhir import booking, get, post, slot_search

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.integrations.urls")]


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    slot_cache.forget_all()


def test_a_doctor_not_bookable_online_has_no_schedule_no_slots_and_no_booking(
    client: Client, website: Website
) -> None:
    assert slot_search(client, website, tomorrow())["total"] > 0
    DoctorOnlineSettings.objects.create(doctor=website.doctor, is_bookable_online=False)
    slot_cache.forget_all()
    assert get(client, "Schedule")[1]["total"] == 0
    assert slot_search(client, website, tomorrow())["total"] == 0
    status, outcome = post(client, booking(website, local(tomorrow(), "10:00")))
    assert status == 404 and outcome["issue"][0]["code"] == "not-found"
    assert not Appointment.objects.exists()


def test_a_service_the_settings_leave_out_is_not_offered(client: Client, website: Website) -> None:
    online = DoctorOnlineSettings.objects.create(doctor=website.doctor)
    online.services.add(ServiceFactory(organization=website.branch.organization))
    assert slot_search(client, website, tomorrow())["total"] == 0
    status, _outcome = post(client, booking(website, local(tomorrow(), "10:00")))
    assert status == 404


def test_times_inside_the_minimum_notice_are_neither_listed_nor_booked(
    client: Client, website: Website
) -> None:
    first = local(tomorrow(), "09:00")
    notice = int((first - timezone.now()).total_seconds() // 60) + 60
    DoctorOnlineSettings.objects.create(doctor=website.doctor, min_notice_minutes=notice)
    starts = [e["resource"]["start"] for e in slot_search(client, website, tomorrow())["entry"]]
    early = first.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert early not in starts and starts
    status, outcome = post(client, booking(website, first))
    assert status == 409 and outcome["issue"][0]["code"] == "conflict"
    assert not Appointment.objects.exists()
