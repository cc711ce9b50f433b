"""A payment's non-fiscal slip reaches the register's ESC/POS printer through the outbox."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import services, shifts
from billing.models import PaymentMethod
from billing.services import PartInput
from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.services import outbox_relay
from devices.fake_atol import FakeAtol
from tests.devices.escpos_capture import EscposCapture

from .conftest import Desk

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_payment_prints_its_slip_in_cyrillic(
    desk: Desk,
    atol: FakeAtol,
    printer: EscposCapture,
) -> None:
    desk.register.slip_printer = {"host": "127.0.0.1", "port": printer.server_address[1]}
    desk.register.save()
    desk.patient.last_name = "Петрова"
    desk.patient.save()
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=desk.patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.consultation)
    invoice = services.invoice_post(actor=desk.cashier, invoice=invoice)
    payment = services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=invoice,
        parts=[PartInput(PaymentMethod.CASH, Decimal("2200.00"))],
    )
    message = OutboxMessage.objects.get(channel="slip")
    assert message.idempotency_key == f"slip:{payment.public_id}"
    assert outbox_relay(channel="slip").delivered == 1
    assert printer.connection_closed.wait(5)
    sent = printer.received[0]
    assert "Петрова".encode("cp866") in sent
    assert b"2200.00" in sent
    message.refresh_from_db()
    assert message.state == OutboxState.DELIVERED


def test_no_slip_without_a_slip_printer(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        patient=desk.patient,
        parts=[PartInput(PaymentMethod.CASH, Decimal("100.00"))],
    )
    assert not OutboxMessage.objects.filter(channel="slip").exists()
