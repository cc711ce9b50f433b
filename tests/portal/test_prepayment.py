"""Paying a booked visit online in advance: the doctor's prepayment, or the whole visit at the
online price, through the fake YooKassa; the invoice carries the online discount, the payment
is posted once, and nothing is offered again once paid. A payment that fails takes the online
price with it, and payments whose end was never notified are read back by the recheck."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from billing.models import (
    CashRegister,
    FiscalDriverKind,
    Invoice,
    InvoiceState,
    OnlinePayment,
    OnlinePaymentState,
    Payment,
)
from billing.services import invoice_outstanding, invoiced_services
from billing.tasks import recheck_online_payments
from clinic.celery import _beat_schedule
from clinic.celery import app as celery_app
from clinic.core.roles import Role
from integrations.payments.fake_yookassa import FakeYooKassa
from portal.models import DoctorOnlineSettings, PriceRounding
from scheduling.models import Appointment
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


def discounted_and_pressed(client: Client, site: Clinic) -> tuple[str, OnlinePayment]:
    DoctorOnlineSettings.objects.create(
        doctor=site.doctor, prepayment_discount_percent=Decimal("20")
    )
    _page, token = booked(client, site)
    Client().post(f"/portal/a/{token}/pay/")
    online = OnlinePayment.objects.get()
    assert online.invoice.online_priced and online.amount == Decimal("1200.00")
    return token, online


def test_an_unpaid_online_price_is_withdrawn_and_the_visit_is_invoiced_again(
    client: Client, site: Clinic, yookassa: FakeYooKassa
) -> None:
    token, online = discounted_and_pressed(client, site)
    yookassa.cancel(online.gateway_payment_id)  # the patient left the payment page; it expired
    page = Client().get(f"/portal/a/{token}/paid/").content.decode()
    assert 'data-payment-state="canceled"' in page
    online.refresh_from_db()
    online.invoice.refresh_from_db()
    assert online.state == OnlinePaymentState.CANCELED
    assert online.invoice.state == InvoiceState.CANCELLED

    # The visit is not invoiced any more: the desk invoices it at its normal price.
    assert invoiced_services([Appointment.objects.get()]) == set()

    # The link still offers to pay online, at the online price, on a new invoice.
    assert "data-prepay-form" in Client().get(f"/portal/a/{token}/").content.decode()


def test_a_paid_online_price_stays(client: Client, site: Clinic, yookassa: FakeYooKassa) -> None:
    token, online = discounted_and_pressed(client, site)
    yookassa.pay(online.gateway_payment_id)
    Client().get(f"/portal/a/{token}/paid/")
    online.invoice.refresh_from_db()
    assert online.invoice.state == InvoiceState.POSTED
    assert invoice_outstanding(online.invoice) == Decimal("0.00")


def backdated(online: OnlinePayment, **age: float) -> None:
    OnlinePayment.objects.filter(pk=online.pk).update(
        created_at=timezone.now() - datetime.timedelta(**age)
    )


def test_the_recheck_posts_a_payment_whose_notification_was_lost(
    client: Client, site: Clinic, yookassa: FakeYooKassa
) -> None:
    _token, online = discounted_and_pressed(client, site)
    yookassa.pay(online.gateway_payment_id)  # no notification address: nobody is told
    assert recheck_online_payments() == 0  # asked about only after a quarter of an hour
    backdated(online, minutes=20)
    assert recheck_online_payments() == 1
    online.refresh_from_db()
    assert online.state == OnlinePaymentState.SUCCEEDED
    assert Payment.objects.get().total == Decimal("1200.00")
    assert recheck_online_payments() == 0


def test_the_recheck_ends_an_expired_payment_and_its_online_price(
    client: Client, site: Clinic, yookassa: FakeYooKassa
) -> None:
    _token, online = discounted_and_pressed(client, site)
    backdated(online, minutes=20)
    assert recheck_online_payments() == 0  # still open at the gateway: nothing changes
    yookassa.cancel(online.gateway_payment_id)
    assert recheck_online_payments() == 1
    online.refresh_from_db()
    assert online.state == OnlinePaymentState.CANCELED
    assert online.invoice.state == InvoiceState.CANCELLED


def test_a_payment_the_gateway_never_acknowledged_ends_after_a_day(
    client: Client, site: Clinic, yookassa: FakeYooKassa
) -> None:
    _token, online = discounted_and_pressed(client, site)
    OnlinePayment.objects.filter(pk=online.pk).update(gateway_payment_id="", confirmation_url="")
    backdated(online, hours=23)
    assert recheck_online_payments() == 0
    backdated(online, hours=25)
    assert recheck_online_payments() == 1
    online.refresh_from_db()
    assert online.state == OnlinePaymentState.CANCELED
    assert online.invoice.state == InvoiceState.CANCELLED


def test_beat_rechecks_online_payments_every_ten_minutes() -> None:
    entry = _beat_schedule()["billing-online-payments-recheck"]
    assert entry == {"task": "billing.online_payments_recheck", "schedule": 600.0}
    assert celery_app.tasks[entry["task"]].name == recheck_online_payments.name
