"""The patient's route sheet: the day's visits in time order with doctor, room and address."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import translation
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.core.roles import Role
from scheduling.models import BookingChannel, CancelReason
from scheduling.route_sheet import route_sheet_html, route_sheet_pdf
from scheduling.services import BookingRequest, appointment_book, appointment_cancel
from tests.core.factories import BranchFactory, RoomFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic() -> dict[str, Any]:
    branch = BranchFactory(name="Central", address="Lenina St 5")
    organization = branch.organization
    doctors = {}
    services = {}
    for name, number in (("Dr Petrov", "101"), ("Dr Ivanova", "202"), ("Dr Sokolov", "303")):
        specialty = SpecialtyFactory()
        resource = doctor(branch, specialty=specialty, name=name)
        works(resource, room=RoomFactory(branch=branch, number=number))
        doctors[name] = resource
        services[name] = service_for(specialty, organization=organization, name=f"Visit to {name}")
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    return {
        "branch": branch,
        "doctors": doctors,
        "services": services,
        "actor": registrar.user,
        "patient": PersonFactory(organization=organization, last_name="Smirnova"),
    }


def book(c: dict[str, Any], name: str, hhmm: str, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "branch": c["branch"],
        "services": [c["services"][name]],
        "starts_at": local(tomorrow(), hhmm),
        "channel": BookingChannel.DESK,
        "patient": c["patient"],
        "doctor": c["doctors"][name],
    }
    values.update(changes)
    return appointment_book(actor=c["actor"], request=BookingRequest(**values))


@pytest.fixture
def day_of_visits(clinic: dict[str, Any]) -> dict[str, Any]:
    book(clinic, "Dr Sokolov", "14:00")
    book(clinic, "Dr Petrov", "09:30")
    book(clinic, "Dr Ivanova", "11:00")
    cancelled = book(clinic, "Dr Petrov", "12:00")
    appointment_cancel(
        actor=clinic["actor"],
        appointment=cancelled,
        reason=CancelReason.objects.get(code="patient_request"),
    )
    book(
        clinic,
        "Dr Petrov",
        "10:00",
        starts_at=local(tomorrow() + datetime.timedelta(days=1), "10:00"),
    )
    book(
        clinic,
        "Dr Ivanova",
        "15:00",
        patient=PersonFactory(organization=clinic["branch"].organization),
    )
    return clinic


def rows(html: str) -> list[list[str]]:
    """The cells of each visit row, tags stripped and whitespace collapsed."""
    found = []
    for row in re.findall(r'<tr class="visit">(.*?)</tr>', html, flags=re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        found.append([" ".join(re.sub(r"<[^>]+>", "", cell).split()) for cell in cells])
    return found


def test_the_sheet_lists_the_days_active_visits_in_time_order(
    day_of_visits: dict[str, Any],
) -> None:
    c = day_of_visits
    with translation.override("en"):
        html = route_sheet_html(actor=c["actor"], patient=c["patient"], day=tomorrow())
    assert "<h1>Route sheet</h1>" in html
    assert "Smirnova" in html
    assert rows(html) == [
        ["09:30–10:00", "Dr Petrov", "101", "Visit to Dr Petrov", "Central, Lenina St 5"],
        ["11:00–11:30", "Dr Ivanova", "202", "Visit to Dr Ivanova", "Central, Lenina St 5"],
        ["14:00–14:30", "Dr Sokolov", "303", "Visit to Dr Sokolov", "Central, Lenina St 5"],
    ]


def test_a_day_without_visits_says_so(clinic: dict[str, Any]) -> None:
    with translation.override("en"):
        html = route_sheet_html(actor=clinic["actor"], patient=clinic["patient"], day=tomorrow())
    assert rows(html) == []
    assert "No visits are booked for this day." in html


def test_the_pdf_is_a_real_pdf(day_of_visits: dict[str, Any]) -> None:
    c = day_of_visits
    pdf = route_sheet_pdf(actor=c["actor"], patient=c["patient"], day=tomorrow())
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) > 3000
    assert pdf.rstrip().endswith(b"%%EOF")


def test_a_lab_technician_may_not_print_a_route_sheet(clinic: dict[str, Any]) -> None:
    technician = staff_with_role(
        Role.LAB_TECHNICIAN,
        organization=clinic["branch"].organization,
        branches=[clinic["branch"]],
    )
    with pytest.raises(PermissionDenied):
        route_sheet_html(actor=technician.user, patient=clinic["patient"], day=tomorrow())


def api_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_api_answers_with_the_pdf(day_of_visits: dict[str, Any]) -> None:
    c = day_of_visits
    response = api_client(c["actor"]).get(
        "/api/v1/scheduling/route-sheet/",
        {"patient": str(c["patient"].public_id), "date": tomorrow().isoformat()},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert response["Content-Disposition"] == (
        f'inline; filename="route-sheet-{tomorrow().isoformat()}.pdf"'
    )


def test_api_bad_date_and_unknown_patient_name_the_field(clinic: dict[str, Any]) -> None:
    client = api_client(clinic["actor"])
    bad_date = client.get(
        "/api/v1/scheduling/route-sheet/",
        {"patient": str(clinic["patient"].public_id), "date": "31.12.2026"},
    )
    assert bad_date.status_code == 400
    assert bad_date.json()["error"]["code"] == "invalid_date"
    assert "date" in bad_date.json()["error"]["fields"]
    stranger = PersonFactory()  # another organization
    unknown = client.get(
        "/api/v1/scheduling/route-sheet/",
        {"patient": str(stranger.public_id), "date": tomorrow().isoformat()},
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "unknown_patient"


def test_api_lab_technician_gets_403(clinic: dict[str, Any]) -> None:
    technician = staff_with_role(
        Role.LAB_TECHNICIAN,
        organization=clinic["branch"].organization,
        branches=[clinic["branch"]],
    )
    response = api_client(technician.user).get(
        "/api/v1/scheduling/route-sheet/",
        {"patient": str(clinic["patient"].public_id), "date": tomorrow().isoformat()},
    )
    assert response.status_code == 403
