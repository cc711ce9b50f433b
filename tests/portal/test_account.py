"""The patient's account: login by phone and one-time code; the visits of the phone's cards and
of the children they represent, with cancel and reschedule inside the clinic's rules; invoices
paid online through a fake YooKassa over real HTTP, settled from the gateway's API once; the
documents and receipts to download; and no way into another patient's data."""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from billing.models import (
    CashRegister,
    FiscalDriverKind,
    FiscalReceipt,
    Invoice,
    OnlinePayment,
    OnlinePaymentState,
    Payment,
    PaymentMethod,
    ReceiptState,
)
from billing.services import (
    invoice_cancel,
    invoice_create,
    invoice_line_add,
    invoice_outstanding,
    invoice_post,
)
from clinic.core.roles import Role
from integrations.payments.fake_yookassa import FakeYooKassa
from patients.models import ContactKind, Person, PersonRelation, Relation
from portal import account as accounts
from portal.models import CodePurpose, PhoneCode
from scheduling.models import Appointment, AppointmentStatus, BookingChannel
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.core.factories import staff_with_role
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import local, tomorrow

from .test_booking import fresh_redis as fresh_redis
from .test_booking import sent_code, slot_at, wrong
from .test_pages import Clinic, clinic_build
from .test_pages import urlpatterns as urlpatterns

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PHONE = "+79165550001"
OTHER_PHONE = "+79165550002"
SHOP_ID = "506751"
SECRET_KEY = "test_account_secret"


@dataclass
class Family:
    site: Clinic
    mother: Person
    child: Person
    stranger: Person
    staff: Any


@pytest.fixture
def family(settings: Any) -> Family:
    """A mother with the account's phone, her son she legally represents, and a stranger with
    another phone; the website account may book, take online payments and print."""
    site = clinic_build(settings)
    site.account.groups.add(Group.objects.get(name=Role.CASHIER))
    organization = site.branch.organization
    mother = PersonFactory(
        organization=organization, last_name="Смирнова", birth_date=datetime.date(1985, 3, 1)
    )
    ContactFactory(person=mother, kind=ContactKind.MOBILE, value=PHONE)
    child = PersonFactory(
        organization=organization, last_name="Смирнов", birth_date=datetime.date(2016, 5, 9)
    )
    PersonRelation.objects.create(
        person=child, relative=mother, relation=Relation.MOTHER, is_legal_representative=True
    )
    stranger = PersonFactory(organization=organization, last_name="Чужой")
    ContactFactory(person=stranger, kind=ContactKind.MOBILE, value=OTHER_PHONE)
    staff = staff_with_role(Role.CASHIER, organization=organization, branches=[site.branch]).user
    staff.groups.add(Group.objects.get(name=Role.REGISTRAR))
    CashRegister.objects.create(
        organization=organization,
        branch=site.branch,
        name="Online",
        driver=FiscalDriverKind.ATOL_WEB,
        device_config={"url": "http://127.0.0.1:9/", "poll_seconds": 1, "poll_interval": 0.02},
    )
    return Family(site=site, mother=mother, child=child, stranger=stranger, staff=staff)


def book(family: Family, person: Person | None, at: str, *, day: int = 0) -> Appointment:
    starts_at = local(tomorrow() + datetime.timedelta(days=day), at)
    return appointment_book(
        actor=family.staff,
        request=BookingRequest(
            branch=family.site.branch,
            services=[family.site.service],
            starts_at=starts_at,
            channel=BookingChannel.DESK,
            doctor=family.site.doctor,
            patient=person,
            primary=None
            if person is not None
            else PrimaryPatient(
                last_name="Смирнова",
                first_name="Анна",
                patronymic="",
                phone=PHONE,
                birth_date=datetime.date(1985, 3, 1),
            ),
        ),
    )


def log_in(client: Client, phone: str = PHONE) -> None:
    response = client.post("/portal/account/login/", {"phone": phone})
    assert response.status_code == 302, response.content.decode()
    response = client.post("/portal/account/login/code/", {"code": sent_code()})
    assert response.status_code == 302
    assert response["Location"] == "/portal/account/"


# -- login -------------------------------------------------------------------------------


def test_login_takes_the_phone_and_the_code_and_shows_the_family_visits(
    client: Client, family: Family
) -> None:
    own = book(family, family.mother, "09:00")
    sons = book(family, family.child, "09:30")
    primary = book(family, None, "10:00")
    strangers = book(family, family.stranger, "10:30")
    assert client.get("/portal/account/")["Location"].startswith("/portal/account/login/")

    client.post("/portal/account/login/", {"phone": "8 (916) 555-00-01"})
    assert PhoneCode.objects.filter(phone=PHONE, purpose=CodePurpose.LOGIN).count() == 1
    wrong_code = client.post(
        "/portal/account/login/code/", {"code": wrong(sent_code())}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert wrong_code.status_code == 400
    assert "The code is wrong or has expired" in wrong_code.content.decode()
    assert client.get("/portal/account/").status_code == 302

    # A wrong try leaves the code usable (up to the limit of tries).
    client.post("/portal/account/login/code/", {"code": sent_code()})
    page = client.get("/portal/account/")
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    html = page.content.decode()
    for visible in (own, sons, primary):
        assert f'data-upcoming="{visible.public_id}"' in html
    assert str(strangers.public_id) not in html
    assert "Чужой" not in html
    assert "Смирнов" in html


def test_a_phone_nobody_has_gets_the_same_answers_and_an_empty_account(
    client: Client, family: Family
) -> None:
    known = client.post("/portal/account/login/", {"phone": PHONE})
    unknown = Client().post("/portal/account/login/", {"phone": "+79160000000"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    log_in(client, "+79160000003")
    html = client.get("/portal/account/").content.decode()
    assert "data-upcoming" not in html and "data-invoice" not in html


def test_a_bad_phone_is_refused_naming_the_value(client: Client, family: Family) -> None:
    response = client.post("/portal/account/login/", {"phone": "12ab"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert "12ab" in response.content.decode()
    assert not PhoneCode.objects.exists()


def test_the_session_ends_after_the_idle_minutes(
    client: Client, family: Family, settings: Any
) -> None:
    log_in(client)
    session = client.session
    state = session[accounts.ACCOUNT_KEY]
    state["seen"] = int(time.time()) - settings.PORTAL_ACCOUNT_IDLE_MINUTES * 60 - 5
    session[accounts.ACCOUNT_KEY] = state
    session.save()
    assert client.get("/portal/account/")["Location"].startswith("/portal/account/login/")


def test_logging_in_changes_the_session_id_and_logging_out_ends_the_account(
    client: Client, family: Family
) -> None:
    client.get("/portal/account/login/")
    client.session.save()
    before = client.session.session_key
    log_in(client)
    assert client.session.session_key != before
    client.post("/portal/account/logout/")
    assert client.get("/portal/account/").status_code == 302


def test_an_expired_representation_hides_the_child(client: Client, family: Family) -> None:
    sons = book(family, family.child, "09:30")
    PersonRelation.objects.filter(person=family.child).update(
        valid_until=timezone.localdate() - datetime.timedelta(days=1)
    )
    log_in(client)
    assert str(sons.public_id) not in client.get("/portal/account/").content.decode()


# -- cancel and reschedule ---------------------------------------------------------------------


def test_the_patient_cancels_a_visit_and_it_moves_to_the_past(
    client: Client, family: Family
) -> None:
    own = book(family, family.mother, "09:00")
    log_in(client)
    response = client.post(f"/portal/account/appointments/{own.public_id}/cancel/")
    assert response.status_code == 302
    own.refresh_from_db()
    assert own.status.code == AppointmentStatus.CANCELLED
    html = client.get("/portal/account/").content.decode()
    assert f'data-past="{own.public_id}"' in html


def test_a_visit_too_close_cannot_be_changed_online(
    client: Client, family: Family, settings: Any
) -> None:
    own = book(family, family.mother, "09:00")
    settings.PORTAL_CHANGE_NOTICE_MINUTES = 3 * 24 * 60
    log_in(client)
    response = client.post(
        f"/portal/account/appointments/{own.public_id}/cancel/", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 302
    own.refresh_from_db()
    assert own.status.code != AppointmentStatus.CANCELLED
    html = client.get("/portal/account/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "can no longer be changed online" in html
    reschedule = client.get(f"/portal/account/appointments/{own.public_id}/reschedule/")
    assert reschedule.status_code == 302


def test_the_patient_reschedules_to_a_free_time(client: Client, family: Family) -> None:
    own = book(family, family.mother, "09:00")
    log_in(client)
    page = client.get(f"/portal/account/appointments/{own.public_id}/reschedule/")
    new_time = local(tomorrow(), "11:00")
    slot = slot_at(family.site, new_time)
    assert f'data-slot="{slot}"' in page.content.decode()
    assert slot_at(family.site, own.starts_at) not in page.content.decode()
    response = client.post(
        f"/portal/account/appointments/{own.public_id}/reschedule/", {"slot": slot}
    )
    assert response.status_code == 302
    own.refresh_from_db()
    assert own.starts_at == new_time


def test_a_time_taken_meanwhile_is_refused_and_the_visit_stays(
    client: Client, family: Family
) -> None:
    own = book(family, family.mother, "09:00")
    taken = book(family, family.stranger, "11:00")
    log_in(client)
    response = client.post(
        f"/portal/account/appointments/{own.public_id}/reschedule/",
        {"slot": slot_at(family.site, taken.starts_at)},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 409
    assert "data-error" in response.content.decode()
    own.refresh_from_db()
    assert own.starts_at == local(tomorrow(), "09:00")


# -- invoices and online payment ---------------------------------------------------------------


@pytest.fixture
def yookassa(settings: Any) -> Iterator[FakeYooKassa]:
    server = FakeYooKassa.start(port=0, shop_id=SHOP_ID, secret_key=SECRET_KEY)
    settings.PAYMENT_GATEWAY = {
        "gateway": "yookassa",
        "shop_id": SHOP_ID,
        "secret_key": SECRET_KEY,
        "url": server.url,
        "timeout": 5,
    }
    settings.PAYMENT_NOTIFY_ADDRESSES = ["127.0.0.1"]
    yield server
    server.stop()


def issued_invoice(family: Family, person: Person) -> Invoice:
    invoice = invoice_create(actor=family.staff, branch=family.site.branch, patient=person)
    invoice_line_add(actor=family.staff, invoice=invoice, service=family.site.service)
    return invoice_post(actor=family.staff, invoice=invoice)


def notify(client: Client, payment_id: str, *, address: str = "127.0.0.1") -> Any:
    body = {"type": "notification", "event": "payment.succeeded", "object": {"id": payment_id}}
    return client.post(
        "/portal/payments/notify/",
        data=json.dumps(body),
        content_type="application/json",
        REMOTE_ADDR=address,
    )


def test_an_invoice_is_paid_online_and_posted_once(
    client: Client, family: Family, yookassa: FakeYooKassa
) -> None:
    invoice = issued_invoice(family, family.child)
    log_in(client)
    html = client.get("/portal/account/").content.decode()
    assert f'data-invoice="{invoice.public_id}"' in html
    assert 'data-due="1500.00"' in html

    response = client.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    online = OnlinePayment.objects.get(invoice=invoice)
    assert response.status_code == 302
    assert response["Location"] == online.confirmation_url
    assert online.amount == Decimal("1500.00")
    # Pressing "Pay" again goes back to the same payment page: no second payment is made.
    again = client.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    assert again["Location"] == online.confirmation_url
    assert OnlinePayment.objects.filter(invoice=invoice).count() == 1
    assert len(yookassa.payments) == 1

    yookassa.pay(online.gateway_payment_id)
    assert notify(Client(), online.gateway_payment_id).status_code == 200
    assert notify(Client(), online.gateway_payment_id).status_code == 200  # delivered twice

    online.refresh_from_db()
    assert online.state == OnlinePaymentState.SUCCEEDED
    payments = Payment.objects.filter(invoice=invoice)
    assert payments.count() == 1
    payment = payments.get()
    assert payment.total == Decimal("1500.00")
    assert [part.method for part in payment.parts.all()] == [PaymentMethod.ONLINE]
    assert FiscalReceipt.objects.filter(payment=payment).exists()
    assert invoice_outstanding(invoice) == Decimal("0")
    back = client.get(f"/portal/account/invoices/{invoice.public_id}/paid/")
    assert 'data-payment-state="succeeded"' in back.content.decode()
    assert "data-paid" in client.get("/portal/account/").content.decode()


def test_the_return_page_settles_a_payment_whose_notification_is_late(
    client: Client, family: Family, yookassa: FakeYooKassa
) -> None:
    invoice = issued_invoice(family, family.mother)
    log_in(client)
    client.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    online = OnlinePayment.objects.get(invoice=invoice)
    assert (
        'data-payment-state="pending"'
        in client.get(f"/portal/account/invoices/{invoice.public_id}/paid/").content.decode()
    )
    yookassa.pay(online.gateway_payment_id)
    page = client.get(f"/portal/account/invoices/{invoice.public_id}/paid/")
    assert 'data-payment-state="succeeded"' in page.content.decode()
    assert Payment.objects.filter(invoice=invoice).count() == 1


def test_a_cancelled_gateway_payment_posts_nothing(
    client: Client, family: Family, yookassa: FakeYooKassa
) -> None:
    invoice = issued_invoice(family, family.mother)
    log_in(client)
    client.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    online = OnlinePayment.objects.get(invoice=invoice)
    yookassa.cancel(online.gateway_payment_id)
    page = client.get(f"/portal/account/invoices/{invoice.public_id}/paid/")
    assert 'data-payment-state="canceled"' in page.content.decode()
    assert not Payment.objects.filter(invoice=invoice).exists()


def test_money_that_cannot_be_posted_is_kept_for_the_cashier(
    client: Client, family: Family, yookassa: FakeYooKassa
) -> None:
    invoice = issued_invoice(family, family.mother)
    log_in(client)
    client.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    online = OnlinePayment.objects.get(invoice=invoice)
    invoice_cancel(actor=family.staff, invoice=invoice)  # at the desk, meanwhile
    yookassa.pay(online.gateway_payment_id)
    assert notify(Client(), online.gateway_payment_id).status_code == 200
    online.refresh_from_db()
    assert online.state == OnlinePaymentState.NEEDS_REVIEW
    assert online.problem
    assert online.gateway_answer["status"] == "succeeded"
    assert not Payment.objects.filter(invoice=invoice).exists()


def test_a_gateway_that_is_down_charges_nothing_and_the_retry_reuses_the_key(
    client: Client, family: Family, yookassa: FakeYooKassa
) -> None:
    invoice = issued_invoice(family, family.mother)
    log_in(client)
    yookassa.set_mode("down")
    response = client.post(
        f"/portal/account/invoices/{invoice.public_id}/pay/", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response["Location"] == "/portal/account/"
    html = client.get("/portal/account/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Online payment is not available right now" in html
    first = OnlinePayment.objects.get(invoice=invoice)
    assert first.gateway_payment_id == ""
    yookassa.set_mode("ok")
    client.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    first.refresh_from_db()
    assert OnlinePayment.objects.filter(invoice=invoice).count() == 1
    assert first.confirmation_url
    assert [sent["headers"].get("Idempotence-Key") for sent in yookassa.sent][-1] == (
        first.idempotency_key
    )


def test_notifications_from_elsewhere_or_unreadable_are_refused(
    family: Family, yookassa: FakeYooKassa
) -> None:
    assert (
        notify(Client(), "2f1c0000-000f-5000-9000-1b68e7b15f3f", address="10.1.2.3").status_code
        == 403
    )
    garbage = Client().post(
        "/portal/payments/notify/",
        data=b"{",
        content_type="application/json",
        REMOTE_ADDR="127.0.0.1",
    )
    assert garbage.status_code == 400


def test_online_payment_is_offered_only_with_a_gateway(client: Client, family: Family) -> None:
    invoice = issued_invoice(family, family.mother)
    log_in(client)
    html = client.get("/portal/account/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "data-pay" not in html
    assert "please pay at the clinic" in html
    client.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    assert not OnlinePayment.objects.exists()


# -- documents -------------------------------------------------------------------------------


def test_invoice_documents_and_printed_receipts_download_as_pdf(
    client: Client, family: Family, yookassa: FakeYooKassa
) -> None:
    invoice = issued_invoice(family, family.mother)
    log_in(client)
    for kind in ("invoice", "act", "contract"):
        response = client.get(f"/portal/account/invoices/{invoice.public_id}/{kind}.pdf")
        assert response.status_code == 200, kind
        assert response["Content-Type"] == "application/pdf"
        assert response.content.startswith(b"%PDF")
    assert client.get(f"/portal/account/invoices/{invoice.public_id}/other.pdf").status_code == 404

    client.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    online = OnlinePayment.objects.get(invoice=invoice)
    yookassa.pay(online.gateway_payment_id)
    notify(Client(), online.gateway_payment_id)
    payment = Payment.objects.get(invoice=invoice)
    assert (
        client.get(f"/portal/account/payments/{payment.public_id}/receipt.pdf").status_code == 404
    )
    FiscalReceipt.objects.filter(payment=payment).update(
        state=ReceiptState.PRINTED,
        printed_at=timezone.now(),
        fn_number="9999078900001234",
        fiscal_document_number=17,
        fiscal_document_sign="123456789",
    )
    receipt = client.get(f"/portal/account/payments/{payment.public_id}/receipt.pdf")
    assert receipt.status_code == 200
    assert receipt.content.startswith(b"%PDF")
    assert f'data-payment="{payment.public_id}"' in client.get("/portal/account/").content.decode()


# -- another patient's data -------------------------------------------------------------------


def test_every_account_url_with_another_patients_ids_is_not_found(
    client: Client, family: Family, yookassa: FakeYooKassa
) -> None:
    theirs = book(family, family.stranger, "09:00")
    invoice = issued_invoice(family, family.stranger)
    stranger = Client()
    log_in(stranger, OTHER_PHONE)
    stranger.post(f"/portal/account/invoices/{invoice.public_id}/pay/")
    online = OnlinePayment.objects.get(invoice=invoice)
    yookassa.pay(online.gateway_payment_id)
    notify(Client(), online.gateway_payment_id)
    payment = Payment.objects.get(invoice=invoice)

    log_in(client)
    urls = {
        "get": [
            f"/portal/account/appointments/{theirs.public_id}/reschedule/",
            f"/portal/account/invoices/{invoice.public_id}/paid/",
            f"/portal/account/invoices/{invoice.public_id}/invoice.pdf",
            f"/portal/account/invoices/{invoice.public_id}/act.pdf",
            f"/portal/account/invoices/{invoice.public_id}/contract.pdf",
            f"/portal/account/payments/{payment.public_id}/receipt.pdf",
        ],
        "post": [
            f"/portal/account/appointments/{theirs.public_id}/cancel/",
            f"/portal/account/appointments/{theirs.public_id}/reschedule/",
            f"/portal/account/invoices/{invoice.public_id}/pay/",
        ],
    }
    for url in urls["get"]:
        assert client.get(url).status_code == 404, url
    for url in urls["post"]:
        assert client.post(url, {"slot": "x"}).status_code == 404, url
    # And an id that does not exist at all answers the same.
    assert client.get(f"/portal/account/invoices/{uuid.uuid4()}/paid/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status.code != AppointmentStatus.CANCELLED
    assert OnlinePayment.objects.filter(invoice=invoice).count() == 1
