"""The portal's public pages: branches, bookable doctors with filters, services with prices,
and the strict headers every portal page carries."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import include, path

from clinic.core.models import Branch, Specialty
from clinic.core.roles import Role
from portal.models import DoctorOnlineSettings
from scheduling.models import Resource, Service
from tests.billing.factories import PriceFactory, PriceListFactory
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.scheduling.factories import doctor, service_for, works

urlpatterns = [path("portal/", include("portal.urls")), path("", include("clinic.urls"))]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@dataclass
class Clinic:
    branch: Branch
    specialty: Specialty
    doctor: Resource
    service: Service
    account: Any


def clinic_build(settings: Any) -> Clinic:
    """A public branch with a therapist working 09:00–12:00 every day, a 30-minute visit
    bookable online for 1500.00 self-pay, and the website's booking account."""
    branch = BranchFactory(name="Central", phone="+74951234567", address="Moscow, Tverskaya 1")
    specialty = SpecialtyFactory(code="therapist", name="Therapist")
    therapist = doctor(branch, specialty=specialty, name="Petrov I. I.")
    works(therapist, start="09:00", end="12:00", break_from=None, break_to=None)
    service = service_for(
        specialty, organization=branch.organization, duration_minutes=30, name="Therapist visit"
    )
    prices = PriceListFactory(organization=branch.organization)
    PriceFactory(price_list=prices, service=service, amount=Decimal("1500.00"))
    account = staff_with_role(
        Role.REGISTRAR, organization=branch.organization, branches=[branch]
    ).user
    settings.WEBSITE_BOOKING_USERNAME = account.username
    return Clinic(
        branch=branch, specialty=specialty, doctor=therapist, service=service, account=account
    )


@pytest.fixture
def site(settings: Any) -> Clinic:
    return clinic_build(settings)


def test_the_front_page_lists_public_branches_with_hours(client: Client, site: Clinic) -> None:
    BranchFactory(organization=site.branch.organization, name="Closed", is_active=False)
    page = client.get("/portal/").content.decode()
    assert "Central" in page
    assert "Moscow, Tverskaya 1" in page
    assert "tel:+74951234567" in page
    assert "09:00" in page and "12:00" in page
    assert "Closed" not in page


def test_doctors_are_listed_with_bio_and_services_and_filtered(
    client: Client, site: Clinic
) -> None:
    settings_row = DoctorOnlineSettings.objects.create(
        doctor=site.doctor, bio="Twenty years of practice.", for_children=True, for_adults=False
    )
    hidden = doctor(site.branch, specialty=site.specialty, name="Hidden H. H.")
    works(hidden, start="09:00", end="12:00", break_from=None, break_to=None)
    DoctorOnlineSettings.objects.create(doctor=hidden, is_bookable_online=False)
    inactive = doctor(site.branch, specialty=site.specialty, name="Gone G. G.", is_active=False)
    works(inactive, start="09:00", end="12:00", break_from=None, break_to=None)
    without_row = doctor(site.branch, specialty=site.specialty, name="Sidorov S. S.")
    works(without_row, start="09:00", end="12:00", break_from=None, break_to=None)

    page = client.get("/portal/doctors/").content.decode()
    assert "Petrov I. I." in page and "Twenty years of practice." in page
    assert "Therapist visit" in page
    assert "Sidorov S. S." in page
    assert "Hidden H. H." not in page and "Gone G. G." not in page

    children = client.get("/portal/doctors/", {"audience": "children"}).content.decode()
    assert "Petrov I. I." in children and "Sidorov S. S." not in children
    adults = client.get("/portal/doctors/", {"audience": "adults"}).content.decode()
    assert "Petrov I. I." not in adults and "Sidorov S. S." in adults
    other = client.get("/portal/doctors/", {"specialty": "surgeon"}).content.decode()
    assert "Petrov I. I." not in other
    elsewhere = BranchFactory(organization=site.branch.organization, name="North")
    by_branch = client.get("/portal/doctors/", {"branch": str(elsewhere.public_id)})
    assert "Petrov I. I." not in by_branch.content.decode()

    detail = client.get(f"/portal/doctors/{site.doctor.public_id}/")
    assert detail.status_code == 200 and "Twenty years of practice." in detail.content.decode()
    assert client.get(f"/portal/doctors/{hidden.public_id}/").status_code == 404

    settings_row.services.add(
        service_for(site.specialty, organization=site.branch.organization, name="Other visit")
    )
    narrowed = client.get(f"/portal/doctors/{site.doctor.public_id}/").content.decode()
    assert "Other visit" in narrowed and "Therapist visit" not in narrowed


def test_services_show_the_duration_and_the_price_only_when_allowed(
    client: Client, site: Clinic
) -> None:
    page = client.get("/portal/services/").content.decode()
    assert "Therapist visit" in page and 'data-minutes="30"' in page
    assert 'data-price="1500.00"' in page

    DoctorOnlineSettings.objects.create(doctor=site.doctor, show_price=False)
    hidden_price = client.get("/portal/services/").content.decode()
    assert "Therapist visit" in hidden_price and "data-price=" not in hidden_price


def test_portal_pages_carry_strict_headers(client: Client, site: Clinic) -> None:
    for url in ("/portal/", "/portal/doctors/", "/portal/services/", "/portal/book/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"
        assert "camera=()" in response["Permissions-Policy"]
    assert client.get("/portal/book/")["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/portal/services/").get("Cache-Control", "")
