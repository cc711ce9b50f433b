"""The billing API: invoices, payments with the Idempotency-Key header, refunds, receipts,
balances and the reconciliation report, each refusal in the one error format."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from billing import services, shifts
from billing.models import FiscalReceipt, Invoice, Payment
from clinic.outbox.services import outbox_relay
from devices.fake_atol import FakeAtol

from .conftest import Desk

pytestmark = pytest.mark.django_db(transaction=True)


def api(user: object) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_authenticate(user)
    return client


def posted_invoice(desk: Desk) -> Invoice:
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=desk.patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.consultation)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.ultrasound)
    return services.invoice_post(actor=desk.cashier, invoice=invoice)


def test_pay_an_invoice_once_per_key_then_refund_a_line(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    invoice = posted_invoice(desk)
    client = api(desk.cashier)
    body = {
        "branch": str(desk.branch.public_id),
        "shift": str(shift.public_id),
        "invoice": str(invoice.public_id),
        "parts": [{"method": "cash", "amount": "4950.00"}],
    }
    first = client.post(
        reverse("billing-payments"), body, format="json", HTTP_IDEMPOTENCY_KEY="pay-1"
    )
    assert first.status_code == 201, first.json()
    again = client.post(
        reverse("billing-payments"), body, format="json", HTTP_IDEMPOTENCY_KEY="pay-1"
    )
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Payment.objects.count() == 1
    assert first.json()["receipt"]["state"] == "queued"

    while outbox_relay(channel="fiscal").claimed:
        pass
    payment_id = first.json()["id"]
    detail = client.get(reverse("billing-payment", args=[payment_id])).json()
    assert detail["receipt"]["state"] == "printed"
    assert detail["receipt"]["fiscal_document_number"]

    shown = client.get(reverse("billing-invoice", args=[invoice.public_id])).json()
    assert [line["outstanding"] for line in shown["lines"]] == ["0.00", "0.00"]

    over = client.post(
        reverse("billing-payment-refunds", args=[payment_id]),
        {
            "shift": str(shift.public_id),
            "parts": [{"method": "cash", "amount": "3000.00"}],
            "lines": [{"position": 2, "amount": "3000.00"}],
            "reason": "Not performed",
        },
        format="json",
    )
    assert over.status_code == 400
    assert over.json()["error"]["code"] == "over_refund"
    assert "lines[0].amount" in over.json()["error"]["fields"]
    refund = client.post(
        reverse("billing-payment-refunds", args=[payment_id]),
        {
            "shift": str(shift.public_id),
            "parts": [{"method": "cash", "amount": "2750.00"}],
            "lines": [{"position": 2, "amount": "2750.00"}],
            "reason": "Not performed",
        },
        format="json",
    )
    assert refund.status_code == 201, refund.json()
    assert refund.json()["kind"] == "refund"
    assert Payment.objects.count() == 2
    assert FiscalReceipt.objects.count() == 3  # the shift's opening, the sale, the return


def test_refusals_name_the_field_and_post_nothing(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    invoice = posted_invoice(desk)
    client = api(desk.cashier)
    body = {
        "branch": str(desk.branch.public_id),
        "shift": str(shift.public_id),
        "invoice": str(invoice.public_id),
        "parts": [{"method": "cash", "amount": "-5.00"}],
    }
    negative = client.post(reverse("billing-payments"), body, format="json")
    assert negative.status_code == 400
    assert negative.json()["error"]["code"] == "amount_not_positive"
    assert "parts[0].amount" in negative.json()["error"]["fields"]
    draft = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=desk.patient)
    body.update(invoice=str(draft.public_id), parts=[{"method": "cash", "amount": "10.00"}])
    unposted = client.post(reverse("billing-payments"), body, format="json")
    assert unposted.status_code == 400
    assert unposted.json()["error"]["code"] == "invoice_not_posted"
    assert Payment.objects.count() == 0
    registrar = api(desk.registrar).post(
        reverse("billing-payments"),
        {**body, "invoice": str(invoice.public_id)},
        format="json",
    )
    assert registrar.status_code == 403
    assert Payment.objects.count() == 0


def test_balance_and_reconciliation(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    invoice = posted_invoice(desk)
    services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=invoice,
        parts=[services.PartInput("card", Decimal("5000.00"))],
    )
    balance = api(desk.cashier).get(
        reverse("billing-patient-balance", args=[desk.patient.public_id])
    )
    assert balance.json() == {
        "patient": str(desk.patient.public_id),
        "debt": "0.00",
        "advance": "50.00",
    }
    today = datetime.date.today().isoformat()
    query = {"branch": str(desk.branch.public_id), "since": today, "until": today}
    assert api(desk.cashier).get(reverse("billing-reconciliation"), query).status_code == 403
    before = api(desk.accountant).get(reverse("billing-reconciliation"), query).json()
    assert before["payments"]["difference"] == "5000.00"
    assert len(before["unprinted"]) == 1
    while outbox_relay(channel="fiscal").claimed:
        pass
    after = api(desk.accountant).get(reverse("billing-reconciliation"), query).json()
    assert after["payments"] == {
        "documents": 1,
        "posted": "5000.00",
        "printed": "5000.00",
        "difference": "0.00",
    }
    assert after["unprinted"] == []
    bad = api(desk.accountant).get(reverse("billing-reconciliation"), {**query, "since": "31.12"})
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {
        "since": ["The parameter “since”: “31.12” is not a date (YYYY-MM-DD)."]
    }
