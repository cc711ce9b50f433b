"""The portal's prices: the price list's self-pay price for the doctor's branch, the price for
paying online (discounted, rounded half up, never above the full price nor below zero), the
prepayment, prices hidden by the doctor's settings, and the bulk read's fixed query count."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from portal.models import DoctorOnlineSettings, PriceRounding
from portal.pricing import PortalPrice, portal_price, portal_prices, price_key, price_terms
from portal.selectors import bookable_doctors
from scheduling.models import PayerKind
from tests.billing.factories import PriceFactory, PriceListFactory
from tests.core.factories import BranchFactory
from tests.scheduling.factories import doctor, service_for, works

from .test_pages import Clinic, clinic_build


def terms(
    full: str, *, discount: str = "0", rounding: str = PriceRounding.NONE, prepayment: str = "0"
) -> PortalPrice:
    settings = DoctorOnlineSettings(
        prepayment_discount_percent=Decimal(discount),
        price_rounding=rounding,
        prepayment_amount=Decimal(prepayment),
    )
    return price_terms(Decimal(full), settings)


@pytest.mark.parametrize(
    ("full", "discount", "rounding", "online"),
    [
        # To 10 roubles: 945.00 is half way and goes up, 944.00 goes down.
        ("1000.00", "5.5", PriceRounding.TO_10, "950.00"),
        ("1000.00", "5.6", PriceRounding.TO_10, "940.00"),
        # To 50 roubles: 925 up to 950, 924 down to 900.
        ("1000.00", "7.5", PriceRounding.TO_50, "950.00"),
        ("1000.00", "7.6", PriceRounding.TO_50, "900.00"),
        # To 100 roubles: 850 up to 900, 849.90 down to 800.
        ("1000.00", "15", PriceRounding.TO_100, "900.00"),
        ("1000.00", "15.01", PriceRounding.TO_100, "800.00"),
        # No rounding: kopecks, half up.
        ("999.99", "10", PriceRounding.NONE, "899.99"),
        ("0.05", "50", PriceRounding.NONE, "0.03"),
        # Rounding up never makes paying online dearer than the full price.
        ("1000.00", "2.5", PriceRounding.TO_50, "1000.00"),
        ("1480.00", "1", PriceRounding.TO_100, "1480.00"),
        # Rounding down never goes below zero.
        ("40.00", "60", PriceRounding.TO_100, "0.00"),
    ],
)
def test_the_online_price_is_discounted_and_rounded_half_up(
    full: str, discount: str, rounding: str, online: str
) -> None:
    price = terms(full, discount=discount, rounding=rounding)
    assert price.full == Decimal(full)
    assert price.online == Decimal(online)
    assert isinstance(price.online, Decimal)


def test_no_discount_leaves_the_full_price_unrounded() -> None:
    price = terms("1480.00", discount="0", rounding=PriceRounding.TO_100, prepayment="300")
    assert price == PortalPrice(
        full=Decimal("1480.00"), online=Decimal("1480.00"), prepayment=Decimal("300.00")
    )
    assert not price.online_is_cheaper and price.prepayment_required


def test_a_full_discount_makes_the_online_price_and_the_prepayment_zero() -> None:
    price = terms("1500.00", discount="100", rounding=PriceRounding.TO_10, prepayment="500")
    assert price == PortalPrice(
        full=Decimal("1500.00"), online=Decimal("0.00"), prepayment=Decimal("0.00")
    )
    assert price.online_is_cheaper and not price.prepayment_required


def test_the_prepayment_is_capped_at_the_online_price() -> None:
    assert terms("1500.00", discount="10", prepayment="500").prepayment == Decimal("500.00")
    capped = terms("1500.00", discount="10", rounding=PriceRounding.TO_100, prepayment="5000")
    assert capped.online == Decimal("1400.00") and capped.prepayment == Decimal("1400.00")
    assert terms("1500.00", prepayment="0").prepayment == Decimal("0.00")


def test_without_settings_the_full_price_is_the_online_price() -> None:
    assert price_terms(Decimal("1500"), None) == PortalPrice(
        full=Decimal("1500.00"), online=Decimal("1500.00"), prepayment=Decimal("0.00")
    )


@pytest.fixture
def site(settings: Any) -> Clinic:
    return clinic_build(settings)


@pytest.mark.django_db
def test_the_price_comes_from_the_self_pay_list_of_the_doctors_branch(site: Clinic) -> None:
    today = timezone.localdate()
    assert portal_price(site.doctor, site.service, on=today) == PortalPrice(
        full=Decimal("1500.00"), online=Decimal("1500.00"), prepayment=Decimal("0.00")
    )
    organization = site.branch.organization
    PriceFactory(
        price_list=PriceListFactory(organization=organization, branch=site.branch),
        service=site.service,
        amount=Decimal("1700.00"),
    )
    other_branch = BranchFactory(organization=organization, name="North")
    PriceFactory(
        price_list=PriceListFactory(organization=organization, branch=other_branch),
        service=site.service,
        amount=Decimal("1900.00"),
    )
    PriceFactory(
        price_list=PriceListFactory(organization=organization, payer_kind=PayerKind.DMS),
        service=site.service,
        amount=Decimal("999.00"),
    )
    at_home = portal_price(site.doctor, site.service, on=today)
    assert at_home is not None and at_home.full == Decimal("1700.00")
    elsewhere = portal_price(site.doctor, site.service, on=today, branch=other_branch)
    assert elsewhere is not None and elsewhere.full == Decimal("1900.00")


@pytest.mark.django_db
def test_settings_discount_round_and_ask_for_a_prepayment(site: Clinic) -> None:
    DoctorOnlineSettings.objects.create(
        doctor=site.doctor,
        prepayment_discount_percent=Decimal("10"),
        price_rounding=PriceRounding.TO_100,
        prepayment_amount=Decimal("500"),
    )
    assert portal_price(site.doctor, site.service, on=timezone.localdate()) == PortalPrice(
        full=Decimal("1500.00"), online=Decimal("1400.00"), prepayment=Decimal("500.00")
    )


@pytest.mark.django_db
def test_no_price_in_the_list_is_none(site: Clinic) -> None:
    unpriced = service_for(site.specialty, organization=site.branch.organization, name="Free")
    assert portal_price(site.doctor, unpriced, on=timezone.localdate()) is None
    # A list that starts later does not apply yet.
    PriceFactory(
        price_list=PriceListFactory(
            organization=site.branch.organization,
            valid_from=timezone.localdate() + datetime.timedelta(days=30),
        ),
        service=unpriced,
        amount=Decimal("100.00"),
    )
    assert portal_price(site.doctor, unpriced, on=timezone.localdate()) is None
    later = timezone.localdate() + datetime.timedelta(days=30)
    assert portal_price(site.doctor, unpriced, on=later) is not None


@pytest.mark.django_db
def test_a_hidden_price_is_none_unless_asked_for_payment(site: Clinic) -> None:
    DoctorOnlineSettings.objects.create(
        doctor=site.doctor, show_price=False, prepayment_amount=Decimal("300")
    )
    today = timezone.localdate()
    assert portal_price(site.doctor, site.service, on=today) is None
    assert portal_prices([(site.doctor, site.service, None)], on=today) == {}
    for_payment = portal_price(site.doctor, site.service, on=today, shown_only=False)
    assert for_payment is not None and for_payment.prepayment == Decimal("300.00")


@pytest.mark.django_db
def test_the_bulk_read_agrees_with_the_single_one_in_three_queries(
    site: Clinic, django_assert_max_num_queries: Any
) -> None:
    organization = site.branch.organization
    north = BranchFactory(organization=organization, name="North")
    prices = PriceListFactory(organization=organization)
    north_prices = PriceListFactory(organization=organization, branch=north)
    services = [site.service]
    for number in range(3):
        extra = service_for(site.specialty, organization=organization, name=f"Extra {number}")
        PriceFactory(price_list=prices, service=extra, amount=Decimal(1000 + number * 111))
        PriceFactory(price_list=north_prices, service=extra, amount=Decimal(2000 + number))
        services.append(extra)
    doctors = [site.doctor]
    for number in range(4):
        extra_doctor = doctor(
            north if number % 2 else site.branch, specialty=site.specialty, name=f"D{number}"
        )
        works(extra_doctor, start="09:00", end="12:00", break_from=None, break_to=None)
        doctors.append(extra_doctor)
        DoctorOnlineSettings.objects.create(
            doctor=extra_doctor,
            prepayment_discount_percent=Decimal(5 * number),
            price_rounding=PriceRounding.TO_50,
            show_price=number != 3,
        )
    today = timezone.localdate()
    offers = [(d, s, None) for d in doctors for s in services]
    with django_assert_max_num_queries(3):
        bulk = portal_prices(offers, on=today)
    for d, s, _branch in offers:
        assert bulk.get(price_key(d, s)) == portal_price(d, s, on=today), (d.name, s.name)
    assert len(bulk) == 4 * len(services)  # the fifth doctor hides his prices

    # Doctors read with their settings and branches given: one query for the prices alone.
    loaded = bookable_doctors()
    with django_assert_max_num_queries(1):
        portal_prices([(d, s, site.branch) for d in loaded for s in services], on=today)
