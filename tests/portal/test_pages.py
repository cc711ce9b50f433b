"""The portal's public pages: branches, bookable doctors with filters, services with prices,
and the strict headers every portal page carries."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.forms import modelform_factory
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse
from django.utils import translation
from PIL import Image

from clinic.core.models import Branch, Specialty
from clinic.core.roles import Role
from portal.models import ConsultationMode, DoctorOnlineSettings, PriceRounding
from scheduling.models import Resource, Service
from tests.admin_site.conftest import login_verified
from tests.billing.factories import PriceFactory, PriceListFactory
from tests.core.factories import BranchFactory, SpecialtyFactory, UserFactory, staff_with_role
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


def png_bytes(
    size: tuple[int, int] = (8, 8), image_format: str = "PNG", noise: bool = False
) -> bytes:
    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, (200, 120, 40))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def test_doctor_cards_show_the_photo_with_alt_text_or_the_initials(
    client: Client, site: Clinic
) -> None:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    page = client.get(f"/portal/doctors/{site.doctor.public_id}/").content.decode()
    assert 'data-initials="PI"' in page and "data-photo" not in page
    DoctorOnlineSettings.objects.create(doctor=site.doctor, photo="portal/doctors/petrov.png")
    for url in ("/portal/doctors/", f"/portal/doctors/{site.doctor.public_id}/"):
        html = client.get(url).content.decode()
        assert 'src="/media/portal/doctors/petrov.png" alt="Photo of Petrov I. I."' in html
        assert "data-initials" not in html


def test_doctor_pages_show_the_consultation_and_each_services_prices(
    client: Client, site: Clinic
) -> None:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    html = client.get(f"/portal/doctors/{site.doctor.public_id}/").content.decode()
    assert 'data-mode="in_clinic"' in html and "In the clinic" in html
    assert 'data-price="1500.00"' in html and "data-online-price" not in html
    DoctorOnlineSettings.objects.create(
        doctor=site.doctor,
        consultation_mode=ConsultationMode.BOTH,
        prepayment_discount_percent=Decimal("7"),
        price_rounding=PriceRounding.TO_50,
        prepayment_amount=Decimal("1000"),
    )
    html = client.get("/portal/doctors/").content.decode()
    assert 'data-mode="both"' in html
    # 1500 less 7% is 1395, rounded half up to 50 roubles: 1400.
    assert 'data-price="1500.00" data-online-price="1400.00"' in html
    assert 'data-prepayment="1000.00"' in html and "Prepayment of 1" in html
    services = client.get("/portal/services/").content.decode()
    assert 'data-price="1500.00"' in services and 'data-online-price="1400.00"' in services


def test_the_doctors_page_costs_the_same_queries_for_more_doctors(
    client: Client, site: Clinic
) -> None:
    client.get("/portal/doctors/")
    with CaptureQueriesContext(connection) as one:
        client.get("/portal/doctors/")
    for number in range(3):
        extra = doctor(site.branch, specialty=site.specialty, name=f"Extra {number}")
        works(extra, start="09:00", end="12:00", break_from=None, break_to=None)
        DoctorOnlineSettings.objects.create(doctor=extra, photo=f"portal/doctors/{number}.png")
    with CaptureQueriesContext(connection) as four:
        page = client.get("/portal/doctors/")
    assert page.content.decode().count("data-doctor=") == 4
    assert len(four.captured_queries) == len(one.captured_queries)


def photo_form(upload: SimpleUploadedFile) -> Any:
    form_class = modelform_factory(DoctorOnlineSettings, fields=["photo"])
    form = form_class(data={}, files={"photo": upload})
    with translation.override("en"):
        form.full_clean()
    return form


@pytest.mark.django_db
@translation.override("en")  # the messages are compared in English
def test_a_photo_must_be_a_small_jpeg_png_or_webp() -> None:
    assert photo_form(SimpleUploadedFile("ok.png", png_bytes())).is_valid()
    assert photo_form(SimpleUploadedFile("ok.webp", png_bytes(image_format="WEBP"))).is_valid()

    gif = photo_form(SimpleUploadedFile("moving.gif", png_bytes(image_format="GIF")))
    assert not gif.is_valid()
    assert gif.errors["photo"] == ["The photo must be a JPEG, PNG or WebP image."]

    big = png_bytes((1100, 1100), noise=True)
    assert len(big) > 2 * 1024 * 1024
    too_big = photo_form(SimpleUploadedFile("big.png", big))
    assert not too_big.is_valid()
    assert too_big.errors["photo"] == [
        f"The photo must be at most 2 MB; this file is {len(big) / 1048576:.1f} MB."
    ]

    not_an_image = photo_form(SimpleUploadedFile("fake.png", b"%PDF-1.4 not a picture"))
    assert not not_an_image.is_valid() and "photo" in not_an_image.errors


@pytest.mark.django_db
def test_the_admin_uploads_and_shows_the_photo(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    row = DoctorOnlineSettings.objects.create(
        doctor=doctor(BranchFactory(), name="Dr Photo"), for_adults=True
    )
    superuser = UserFactory.create(username="root", is_superuser=True, is_staff=True)
    admin = login_verified(Client(HTTP_ACCEPT_LANGUAGE="en"), superuser)
    url = reverse("admin:portal_doctoronlinesettings_change", args=[row.pk])
    form = {
        "doctor": row.doctor.pk,
        "is_bookable_online": "on",
        "consultation_mode": ConsultationMode.IN_CLINIC,
        "show_price": "on",
        "prepayment_amount": "0",
        "prepayment_discount_percent": "0",
        "price_rounding": PriceRounding.NONE,
        "horizon_days": "",
        "min_notice_minutes": "",
        "bio": "",
        "for_adults": "on",
    }
    refused = admin.post(
        url, {**form, "photo": SimpleUploadedFile("a.gif", png_bytes(image_format="GIF"))}
    )
    assert refused.status_code == 200
    assert "The photo must be a JPEG, PNG or WebP image." in refused.content.decode()
    row.refresh_from_db()
    assert not row.photo

    saved = admin.post(url, {**form, "photo": SimpleUploadedFile("face.png", png_bytes())})
    assert saved.status_code == 302
    row.refresh_from_db()
    assert row.photo.name.startswith("portal/doctors/face")
    assert (tmp_path / row.photo.name).exists()
    page = admin.get(url).content.decode()
    assert f'src="/media/{row.photo.name}"' in page
