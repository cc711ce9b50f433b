"""The cashier's POS page in headless Chromium (Debian's), against a live server, driven from the
keyboard as far as a cashier would: open the shift, find the patient (F2), invoice yesterday's
visit, pay it in cash and by card (F4) and watch the receipt become printed; refund a service
not rendered (F8, Esc closes the dialog); close the shift and see the reconciliation with the
register's Z report. The fiscal relay runs in the test process between steps; the register is
a fake ATOL web server over HTTP. Screenshots are kept under ``var/test-artifacts/pos/``.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.urls import include, path

import clinic.urls
from billing.models import (
    CashShift,
    FiscalReceipt,
    Invoice,
    Payment,
    PaymentKind,
    PaymentMethod,
    ReceiptState,
    ShiftState,
)
from clinic.outbox.services import outbox_relay
from devices.fake_atol import FakeAtol
from scheduling.models import Appointment, BookingChannel
from scheduling.services import BookingRequest, appointment_book
from tests.billing.conftest import Desk, atol, desk
from tests.billing.factories import PriceFactory
from tests.core.factories import SpecialtyFactory
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

from .test_login_flow import CHROMIUM, PASSWORD, browser, log_in, open_browser

__all__ = ["atol", "browser", "desk", "open_browser"]

# The page's URLs as clinic/urls.py mounts them (``pos/``), for as long as it may not yet.
urlpatterns = [
    *(
        []
        if any(getattr(p, "namespace", None) == "pos" for p in clinic.urls.urlpatterns)
        else [path("pos/", include("billing.pos_urls"))]
    ),
    *clinic.urls.urlpatterns,
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.urls(__name__),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed (/usr/bin/chromium); apt-get install chromium",
    ),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "pos"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # caret="initial": hiding the caret would inject a style sheet, which the page's CSP refuses.
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, caret="initial")


def relay() -> None:
    while outbox_relay(channel="fiscal").claimed:
        pass


@pytest.fixture
def visit(desk: Desk) -> Appointment:
    """Olga Kuznetsova's therapist visit, which took place yesterday and is not invoiced."""
    patient = PersonFactory(
        organization=desk.organization, last_name="Kuznetsova", first_name="Olga"
    )
    ContactFactory(person=patient, value="+79165550101")
    specialty = SpecialtyFactory(name="Therapy")
    therapist = doctor(desk.branch, specialty=specialty, name="Dr Lebedev", grid_step_minutes=30)
    works(therapist)
    service = service_for(specialty, organization=desk.organization, name="Therapist visit")
    PriceFactory(price_list=desk.price_list, service=service, amount=Decimal("1800.00"))
    appointment = appointment_book(
        actor=desk.registrar,
        request=BookingRequest(
            branch=desk.branch,
            services=[service],
            starts_at=local(tomorrow(), "10:00"),
            channel=BookingChannel.DESK,
            patient=patient,
            doctor=therapist,
        ),
    )
    Appointment.objects.filter(pk=appointment.pk).update(
        starts_at=appointment.starts_at - datetime.timedelta(days=2),
        ends_at=appointment.ends_at - datetime.timedelta(days=2),
    )
    return appointment


def open_pos(open_browser: Any, desk: Desk) -> Any:
    browser_page = open_browser()
    page = browser_page.page
    page.set_viewport_size({"width": 1400, "height": 1000})
    log_in(page, desk.cashier.username, PASSWORD)
    page.wait_for_url("**/pos/")
    page.locator("#pos-shift").wait_for()
    return browser_page


def open_shift_and_pay(page: Any, desk: Desk, visit: Appointment) -> Payment:
    """Open the shift, find the patient, invoice the visit and pay 1000 cash + 800 card."""
    page.locator("[data-opening-cash]").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("1000")
    page.keyboard.press("Enter")
    page.locator("[data-cash-in-drawer]").wait_for()
    relay()
    shot(page, "01-shift-open")

    page.keyboard.press("F2")
    assert page.evaluate("document.activeElement.hasAttribute('data-pos-search')")
    page.keyboard.type("+7 916 555-01-01")
    page.keyboard.press("Enter")
    found = page.locator(f"[data-pick-patient='{visit.patient.public_id}']")
    found.wait_for()
    found.focus()
    page.keyboard.press("Enter")
    page.locator("[data-patient-name]").wait_for()
    assert "Kuznetsova Olga" in page.locator("[data-patient-name]").inner_text()
    shot(page, "02-patient")

    page.locator("[data-invoice-button]").focus()
    page.keyboard.press("Enter")
    page.locator("[data-pay-form] [data-invoice]").wait_for()
    invoice = Invoice.objects.get(patient=visit.patient)
    assert invoice.total == Decimal("1800.00")

    page.keyboard.press("F4")
    assert page.evaluate("document.activeElement.getAttribute('data-pay-amount')") == "cash"
    page.keyboard.type("1000")
    page.keyboard.press("Tab")
    page.keyboard.type("800")
    page.keyboard.press("Tab")
    page.keyboard.type("123456789012")
    page.locator("[data-cash-given]").focus()
    page.keyboard.type("2000")
    assert page.locator("[data-due-total]").inner_text() == "1800.00"
    assert page.locator("[data-entered-total]").inner_text() == "1800.00"
    assert page.locator("[data-change]").inner_text() == "1000.00"
    shot(page, "03-pay-form")
    page.keyboard.press("Enter")
    page.locator("[data-receipt-payment]").first.wait_for()

    payment = Payment.objects.get(invoice=invoice, kind=PaymentKind.PAYMENT)
    assert sorted(payment.parts.values_list("method", "amount")) == [
        (PaymentMethod.CARD, Decimal("800.00")),
        (PaymentMethod.CASH, Decimal("1000.00")),
    ]
    receipt_row = page.locator(f"[data-receipt-payment='{payment.public_id}']")
    assert receipt_row.get_attribute("data-receipt-state") == ReceiptState.QUEUED
    relay()
    # The page polls the receipts while one is on its way; no reload.
    page.locator(
        f"[data-receipt-payment='{payment.public_id}'][data-receipt-state='printed']"
    ).wait_for()
    shot(page, "04-receipt-printed")
    return payment


def test_a_visit_is_invoiced_and_paid_in_cash_and_by_card(
    open_browser: Any, desk: Desk, atol: FakeAtol, visit: Appointment
) -> None:
    browser_page = open_pos(open_browser, desk)
    page = browser_page.page
    payment = open_shift_and_pay(page, desk, visit)
    assert FiscalReceipt.objects.get(payment=payment).state == ReceiptState.PRINTED
    assert [document["type"] for document in atol.printed][-1] == "sell"
    assert browser_page.problems == []


def test_a_service_not_rendered_is_refunded(
    open_browser: Any, desk: Desk, atol: FakeAtol, visit: Appointment
) -> None:
    browser_page = open_pos(open_browser, desk)
    page = browser_page.page
    payment = open_shift_and_pay(page, desk, visit)

    dialog = page.locator(f"#refund-{payment.public_id}")
    page.keyboard.press("F8")
    dialog.wait_for(state="visible")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    page.keyboard.press("F8")
    dialog.wait_for(state="visible")
    # The focus starts on the first line's checkbox: tick it, keep its full amount.
    assert page.evaluate("document.activeElement.hasAttribute('data-refund-line')")
    page.keyboard.press("Space")
    dialog.locator("[data-refund-amount=card]").focus()
    page.keyboard.type("800")
    dialog.locator("[data-refund-amount=cash]").focus()
    page.keyboard.type("1000")
    dialog.locator("[data-refund-reason]").focus()
    page.keyboard.type("The patient left before the visit")
    shot(page, "05-refund-dialog")
    page.keyboard.press("Enter")
    page.locator(".message--success").first.wait_for()

    refund = Payment.objects.get(kind=PaymentKind.REFUND)
    assert refund.corrects == payment
    assert refund.total == Decimal("1800.00")
    assert refund.reason == "The patient left before the visit"
    relay()
    page.locator(
        f"[data-receipt-payment='{refund.public_id}'][data-receipt-state='printed']"
    ).wait_for()
    shot(page, "06-refund-printed")
    assert [document["type"] for document in atol.printed][-1] == "sellReturn"
    assert browser_page.problems == []


def test_the_shift_is_closed_and_reconciled_with_the_z_report(
    open_browser: Any, desk: Desk, atol: FakeAtol, visit: Appointment
) -> None:
    browser_page = open_pos(open_browser, desk)
    page = browser_page.page
    open_shift_and_pay(page, desk, visit)

    page.locator("[data-close-shift]").focus()
    page.keyboard.press("Enter")
    page.locator("[data-reconciliation]").wait_for()
    shift = CashShift.objects.get(register=desk.register)
    assert shift.state == ShiftState.CLOSED
    relay()  # the register prints the Z report; the totals are compared
    page.reload()
    assert page.locator("[data-reconciliation]").get_attribute("data-reconciliation") == "matches"
    assert page.locator("[data-open-shift]").count() == 1
    assert "Sales in cash" in page.locator("[data-last-closed]").inner_text()
    shot(page, "07-shift-closed")
    assert browser_page.problems == []
