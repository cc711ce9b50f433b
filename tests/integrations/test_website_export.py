"""The website CMS's XML export: it parses, and names the organization, the branch, the doctor
with his specialty, his services with their self-pay prices and his working days."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from integrations.website.export import EXPORT_DAYS
from tests.core.factories import DepartmentFactory
from tests.scheduling.factories import works

from .conftest import Website, another_doctor

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.integrations.urls")]


def export(client: Client) -> ET.Element:
    response = client.get("/website/export.xml")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    return ET.fromstring(b"".join(response.streaming_content))  # noqa: S314 (our own output)


def test_export_names_the_doctor_his_services_prices_and_working_days(
    client: Client, website: Website
) -> None:
    DepartmentFactory(branch=website.branch, name="Therapy")
    works(website.doctor, weekdays=[1, 2, 3, 4, 5], start="15:00", end="18:00")
    root = export(client)
    today = timezone.localdate()
    assert root.tag == "clinic-export"
    assert root.get("date-from") == today.isoformat()
    assert root.get("date-to") == (today + datetime.timedelta(days=EXPORT_DAYS - 1)).isoformat()
    (organization,) = root.findall("organization")
    assert organization.get("id") == str(website.branch.organization.public_id)
    (branch,) = organization.findall("branch")
    assert branch.get("id") == str(website.branch.public_id)
    assert branch.findtext("address") == "Moscow, Tverskaya 1"
    assert branch.findtext("phone") == "+74951234567"
    assert [d.text for d in branch.findall("department")] == ["Therapy"]
    assert [(s.get("code"), s.text) for s in organization.findall("specialty")] == [
        ("therapist", "Therapist")
    ]
    (doctor,) = organization.findall("doctor")
    assert doctor.get("id") == str(website.doctor.public_id)
    assert doctor.get("specialty-code") == "therapist"
    assert doctor.findtext("name") == website.doctor.staff.full_name
    (service,) = doctor.findall("service")
    assert service.get("id") == str(website.service.public_id)
    assert service.findtext("name") == "Therapist visit"
    assert service.get("duration-minutes") == "30"
    (price,) = service.findall("price")
    assert (price.text, price.get("currency"), price.get("branch-id")) == (
        "1500.00",
        "RUB",
        str(website.branch.public_id),
    )
    days = doctor.findall("work-day")
    # The later schedule (weekday afternoons) replaces the daily morning one over its dates.
    weekdays = [
        today + datetime.timedelta(days=n)
        for n in range(EXPORT_DAYS)
        if (today + datetime.timedelta(days=n)).isoweekday() <= 5
    ]
    assert [d.get("date") for d in days] == [day.isoformat() for day in weekdays]
    for day in days:
        assert day.get("branch-id") == str(website.branch.public_id)
        assert [(i.get("start", "")[11:], i.get("end", "")[11:]) for i in day] == [
            ("15:00+03:00", "18:00+03:00")
        ]


def test_desk_only_services_and_closed_branches_stay_out(client: Client, website: Website) -> None:
    root = export(client)
    assert "Sick note" not in ET.tostring(root, encoding="unicode")
    assert "Closed" not in [b.findtext("name") for b in root.iter("branch")]


def test_export_costs_the_same_queries_whatever_the_number_of_doctors(
    client: Client,
    website: Website,
    django_assert_num_queries: Any,
    django_assert_max_num_queries: Any,
) -> None:
    with django_assert_max_num_queries(50) as one:
        export(client)
    for number in range(3):
        another_doctor(website, f"Doctor {number}")
    with django_assert_num_queries(len(one.captured_queries)):
        root = export(client)
    assert len(root.findall("organization/doctor")) == 4
