"""The money flow end to end: an appointment's services invoiced, paid in parts, refunded, the
shift closed, with each payment's one receipt printed by a fake register over HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import services, shifts
from billing.errors import BillingError
from billing.models import FiscalReceipt, PatientAccount, PaymentMethod, ReceiptState
from billing.services import PartInput
from clinic.outbox.services import outbox_relay
from devices.fake_atol import FakeAtol

from .conftest import Desk

pytestmark = pytest.mark.django_db(transaction=True)


def relay() -> None:
    while outbox_relay(channel="fiscal").claimed:
        pass


def balance(desk: Desk) -> tuple[Decimal, Decimal]:
    account = PatientAccount.objects.get(patient=desk.patient)
    return account.debt, account.advance


def test_invoice_pay_refund_close(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="1000")
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=desk.patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.consultation)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.ultrasound)
    invoice = services.invoice_post(actor=desk.cashier, invoice=invoice)
    assert invoice.total == Decimal("4950.00")
    assert balance(desk) == (Decimal("4950.00"), Decimal("0"))

    payment = services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=invoice,
        parts=[
            PartInput(PaymentMethod.CASH, Decimal("2000.00")),
            PartInput(PaymentMethod.CARD, Decimal("3000.00"), card_rrn="123456789012"),
        ],
    )
    assert balance(desk) == (Decimal("0.00"), Decimal("50.00"))
    relay()
    receipt = FiscalReceipt.objects.get(payment=payment)
    assert receipt.state == ReceiptState.PRINTED, receipt.error
    assert receipt.fiscal_document_number

    line = invoice.lines.get(service=desk.ultrasound)
    refund = services.refund_post(
        actor=desk.cashier,
        payment=payment,
        shift=shift,
        parts=[PartInput(PaymentMethod.CARD, Decimal("2750.00"))],
        lines=[(line, Decimal("2750.00"))],
        reason="Not performed",
    )
    with pytest.raises(BillingError) as refused:
        services.refund_post(
            actor=desk.cashier,
            payment=payment,
            shift=shift,
            parts=[PartInput(PaymentMethod.CARD, Decimal("1.00"))],
            lines=[(line, Decimal("1.00"))],
            reason="Again",
        )
    assert refused.value.code == "over_refund"
    relay()
    assert FiscalReceipt.objects.get(payment=refund).state == ReceiptState.PRINTED
    assert balance(desk) == (Decimal("0.00"), Decimal("50.00"))

    closed = shifts.shift_close(actor=desk.cashier, shift=shift)
    relay()
    closed.refresh_from_db()
    assert closed.reconciliation["matches"], closed.reconciliation
    assert len(atol.printed) == 4  # open, sell, return, close


def test_one_form_submitted_twice_at_once_posts_one_payment(desk: Desk, atol: FakeAtol) -> None:
    import threading

    from django.db import connection

    from billing.models import Payment

    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    results: list[object] = []
    barrier = threading.Barrier(4)

    def submit() -> None:
        try:
            barrier.wait()
            payment = services.payment_post(
                actor=desk.cashier,
                branch=desk.branch,
                shift=shift,
                patient=desk.patient,
                parts=[PartInput(PaymentMethod.CASH, Decimal("500.00"))],
                idempotency_key="form-7f3a",
            )
            results.append(payment.pk)
        except Exception as exc:  # collected, so the assertion shows it
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1, results
    assert Payment.objects.count() == 1
    assert balance(desk) == (Decimal("0"), Decimal("500.00"))
    assert FiscalReceipt.objects.count() == 2  # the shift's opening and the one sale
