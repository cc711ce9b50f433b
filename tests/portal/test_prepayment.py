"""Paying a booked visit online in advance: the doctor's prepayment, or the whole visit at the
online price, through the fake YooKassa; the invoice carries the online discount, the payment
is posted once, and nothing is offered again once paid."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from billing.models import CashRegister, FiscalDriverKind, Invoice, OnlinePayment, Payment
from billing.services import invoice_outstanding
from clinic.core.roles import Role
from integrations.payments.fake_yookassa import FakeYooKassa
from portal.models import DoctorOnlineSettings, PriceRounding
from tests.scheduling.factories import local, tomorrow

from .test_booking import DETAILS, sent_code, slot_at
from .test_booking import fresh_redis as fresh_redis
from .test_pages import Clinic, clinic_build
from .test_pages import urlpatterns as urlpatterns

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture
def site(settings: Any) -> Clinic:
    built = clinic_build(settings)
    built.account.groups.add(Group.objects.get(name=Role.CASHIER))
    CashRegister.objects.create(
        organization=built.branch.organization,
        branch=built.branch,
        name="Online",
        driver=FiscalDriverKind.ATOL_WEB,
        device_config={"url": "http://127.0.0.1:9/", "poll_seconds": 1, "poll_interval": 0.02},
    )
    return built


@pytest.fixture
def yookassa(settings: Any) -> Iterator[FakeYooKassa]:
    server = FakeYooKassa.start(port=0, shop_id="1", secret_key="k")
    settings.PAYMENT_GATEWAY = {
        "gateway": "yookassa",
        "shop_id": "1",
        "secret_key": "k",
        "url": server.url,
    }
    yield server
    server.stop()


def booked(client: Client, site: Clinic) -> tuple[str, str]:
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), "10:00"))})
    client.post("/portal/book/details/", DETAILS)
    client.post("/portal/book/code/", {"code": sent_code()})
    page = client.get("/portal/book/done/").content.decode()
    found = re.search(r'href="(/portal/a/([^"/]+)/)" data-cancel-link', page)
    assert found is not None
    return page, found.group(2)


def test_the_prepayment_is_paid_online_against_an_invoice_at_the_online_price(
    client: Client, site: Clinic, yookassa: FakeYooKassa
) -> None:
    DoctorOnlineSettings.objects.create(
        doctor=site.doctor,
        prepayment_amount=Decimal("500"),
        prepayment_discount_percent=Decimal("10"),
        price_rounding=PriceRounding.TO_100,
    )
    page, token = booked(client, site)
    assert "data-prepay-form" in page
    assert f'action="/portal/a/{token}/pay/"' in page

    response = Client().post(f"/portal/a/{token}/pay/")
    online = OnlinePayment.objects.get()
    assert response.status_code == 302 and response["Location"] == online.confirmation_url
    assert online.amount == Decimal("500.00")
    invoice = Invoice.objects.get()
    line = invoice.lines.get()
    assert (line.unit_price, line.amount, line.adjustment) == (
        Decimal("1500.00"),
        Decimal("1400.00"),  # 1350 rounded half up to 100
        Decimal("-100.00"),
    )

    yookassa.pay(online.gateway_payment_id)
    paid = Client().get(f"/portal/a/{token}/paid/").content.decode()
    assert 'data-payment-state="succeeded"' in paid
    assert Payment.objects.get().total == Decimal("500.00")
    assert invoice_outstanding(invoice) == Decimal("900.00")
    # Paid: the link no longer offers to pay, and pressing anyway makes nothing new.
    assert "data-prepay-form" not in Client().get(f"/portal/a/{token}/").content.decode()
    refused = Client().post(f"/portal/a/{token}/pay/")
    assert refused.status_code == 400
    assert OnlinePayment.objects.count() == 1 and Invoice.objects.count() == 1


def test_without_a_prepayment_or_discount_nothing_is_offered(
    client: Client, site: Clinic, yookassa: FakeYooKassa
) -> None:
    page, token = booked(client, site)
    assert "data-prepay-form" not in page
    assert Client().post(f"/portal/a/{token}/pay/").status_code == 400
    assert not Invoice.objects.exists()


def test_only_a_discount_offers_the_whole_visit_at_the_online_price(
    client: Client, site: Clinic, yookassa: FakeYooKassa
) -> None:
    DoctorOnlineSettings.objects.create(
        doctor=site.doctor, prepayment_discount_percent=Decimal("20")
    )
    page, token = booked(client, site)
    assert "data-prepay-form" in page
    Client().post(f"/portal/a/{token}/pay/")
    assert OnlinePayment.objects.get().amount == Decimal("1200.00")
