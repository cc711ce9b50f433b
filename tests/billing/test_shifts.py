"""Cash shifts: one open per register, the drawer, reports, closing only when every receipt is
printed, the reconciliation with the register's Z report, and the cashier's day."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone

from billing import services, shifts
from billing.errors import BillingError
from billing.models import (
    CashMovementKind,
    CashShift,
    FiscalOperationKind,
    FiscalReceipt,
    Invoice,
    Payment,
    PaymentMethod,
    ReceiptState,
    ShiftState,
)
from billing.services import PartInput
from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.services import outbox_relay
from devices.fake_atol import FakeAtol

from .conftest import Desk

CASH = PaymentMethod.CASH
CARD = PaymentMethod.CARD
ADVANCE = PaymentMethod.ADVANCE


def relay() -> None:
    while outbox_relay(channel="fiscal").claimed:
        pass


def printed_all(shift: CashShift) -> None:
    """Record every receipt of the shift as printed, as the register's answers would."""
    FiscalReceipt.objects.filter(shift=shift).update(
        state=ReceiptState.PRINTED, printed_at=timezone.now()
    )


def invoice_for(desk: Desk) -> Invoice:
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=desk.patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.consultation)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.ultrasound)
    return services.invoice_post(actor=desk.cashier, invoice=invoice)


@pytest.mark.django_db
def test_a_register_has_one_open_shift(desk: Desk) -> None:
    first = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="500")

    with pytest.raises(BillingError) as refused:
        shifts.shift_open(actor=desk.cashier, register=desk.register)

    assert refused.value.code == "shift_already_open"
    assert list(CashShift.objects.filter(register=desk.register)) == [first]
    assert FiscalReceipt.objects.filter(operation=FiscalOperationKind.OPEN_SHIFT).count() == 1
    printed_all(first)
    shifts.shift_close(actor=desk.cashier, shift=first)
    second = shifts.shift_open(actor=desk.cashier, register=desk.register)
    assert second.pk != first.pk
    assert shifts.shift_current(register=desk.register) == second


@pytest.mark.django_db
def test_a_registrar_cannot_open_a_shift(desk: Desk) -> None:
    with pytest.raises(PermissionDenied):
        shifts.shift_open(actor=desk.registrar, register=desk.register)

    assert not CashShift.objects.exists()


@pytest.mark.django_db
def test_no_more_cash_is_taken_out_than_the_drawer_holds(desk: Desk) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="1000.00")
    services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        patient=desk.patient,
        parts=[PartInput(CASH, Decimal("500.00")), PartInput(CARD, Decimal("700.00"))],
    )
    shifts.cash_move(actor=desk.cashier, shift=shift, kind=CashMovementKind.CASH_IN, amount="250")
    assert shifts.shift_totals(shift)["cash_in_drawer"] == Decimal("1750.00")

    with pytest.raises(BillingError) as refused:
        shifts.cash_move(
            actor=desk.cashier, shift=shift, kind=CashMovementKind.CASH_OUT, amount="1750.01"
        )
    assert (refused.value.code, refused.value.field) == ("not_enough_cash", "amount")
    shifts.cash_move(
        actor=desk.cashier, shift=shift, kind=CashMovementKind.CASH_OUT, amount="1750.00"
    )

    assert shifts.shift_totals(shift)["cash_in_drawer"] == Decimal("0.00")
    assert list(
        FiscalReceipt.objects.filter(cash_movement__isnull=False)
        .order_by("pk")
        .values_list("operation", "task__cash_amount")
    ) == [("cash_in", "250.00"), ("cash_out", "1750.00")]


@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "amount"), [("cash_out", "0"), ("cash_in", "-5"), ("x", "5")])
def test_a_bad_cash_movement_is_refused(desk: Desk, kind: str, amount: str) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="1000")

    with pytest.raises(BillingError):
        shifts.cash_move(actor=desk.cashier, shift=shift, kind=kind, amount=amount)

    assert not FiscalReceipt.objects.filter(cash_movement__isnull=False).exists()


@pytest.mark.django_db
def test_an_x_report_is_queued_for_the_register(desk: Desk) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)

    report = shifts.shift_report_x(actor=desk.cashier, shift=shift)

    assert (report.operation, report.state, report.shift_id) == (
        FiscalOperationKind.REPORT_X,
        ReceiptState.QUEUED,
        shift.pk,
    )
    message = OutboxMessage.objects.get(pk=report.outbox_message_id)
    assert (message.channel, message.state) == ("fiscal", OutboxState.PENDING)
    assert message.idempotency_key == f"fiscal:{report.task_uuid}"


@pytest.mark.django_db
def test_a_shift_is_not_closed_while_a_receipt_is_unprinted(desk: Desk) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    printed_all(shift)
    payment = services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        patient=desk.patient,
        parts=[PartInput(CASH, Decimal("100.00"))],
    )

    with pytest.raises(BillingError) as refused:
        shifts.shift_close(actor=desk.cashier, shift=shift)

    assert refused.value.code == "receipts_unprinted"
    assert "1" in refused.value.message
    shift.refresh_from_db()
    assert (shift.state, shift.closed_at) == (ShiftState.OPEN, None)
    assert not FiscalReceipt.objects.filter(operation=FiscalOperationKind.CLOSE_SHIFT).exists()
    FiscalReceipt.objects.filter(payment=payment).update(state=ReceiptState.PRINTED)
    assert shifts.shift_close(actor=desk.cashier, shift=shift).state == ShiftState.CLOSED


@pytest.mark.django_db
def test_a_closed_shift_takes_no_cash_movement_or_report(desk: Desk) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="100")
    printed_all(shift)
    shifts.shift_close(actor=desk.cashier, shift=shift)

    for action in (
        lambda: shifts.cash_move(
            actor=desk.cashier, shift=shift, kind=CashMovementKind.CASH_IN, amount="1"
        ),
        lambda: shifts.shift_report_x(actor=desk.cashier, shift=shift),
        lambda: shifts.shift_close(actor=desk.cashier, shift=shift),
    ):
        with pytest.raises(BillingError) as refused:
            action()
        assert refused.value.code == "shift_closed"


@pytest.mark.django_db(transaction=True)
def test_the_closed_shift_matches_the_registers_z_report(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="1000")
    services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        patient=desk.patient,
        parts=[PartInput(CASH, Decimal("1000.00"))],
    )
    invoice = invoice_for(desk)
    payment = services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=invoice,
        parts=[
            PartInput(CASH, Decimal("1500.00")),
            PartInput(CARD, Decimal("3450.00"), card_rrn="000000000001"),
        ],
    )
    services.refund_post(
        actor=desk.cashier,
        payment=payment,
        shift=shift,
        parts=[PartInput(CASH, Decimal("1200.00"))],
        lines=[(invoice.lines.get(service=desk.consultation), Decimal("1200.00"))],
        reason="Shorter visit",
    )
    shifts.cash_move(actor=desk.cashier, shift=shift, kind=CashMovementKind.CASH_IN, amount="300")
    shifts.cash_move(actor=desk.cashier, shift=shift, kind=CashMovementKind.CASH_OUT, amount="800")
    shifts.shift_report_x(actor=desk.cashier, shift=shift)
    relay()
    assert not FiscalReceipt.objects.filter(shift=shift).exclude(state=ReceiptState.PRINTED)

    closed = shifts.shift_close(actor=desk.cashier, shift=shift)
    relay()

    closed.refresh_from_db()
    assert closed.totals["cash_in_drawer"] == "1800.00"  # 1000 + 2500 - 1200 + 300 - 800
    lines = closed.reconciliation["lines"]
    assert {key: (line["shift"], line["register"]) for key, line in lines.items()} == {
        "sell.cash": ("2500.00", "2500.00"),
        "sell.electronically": ("3450.00", "3450.00"),
        "sell.prepaid": ("0", "0.00"),
        "sell_return.cash": ("1200.00", "1200.00"),
        "sell_return.electronically": ("0", "0.00"),
        "sell_return.prepaid": ("0", "0.00"),
        "cash_in": ("300.00", "300.00"),
        "cash_out": ("800.00", "800.00"),
    }
    assert closed.reconciliation["matches"] is True
    assert [document["type"] for document in atol.printed] == [
        "openShift",
        "sell",
        "sell",
        "sellReturn",
        "cashIn",
        "cashOut",
        "reportX",
        "closeShift",
    ]
    assert atol.shift_state()["open"] is False


@pytest.mark.django_db
def test_a_z_report_that_differs_is_shown_as_a_difference(desk: Desk) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        patient=desk.patient,
        parts=[PartInput(CASH, Decimal("100.00"))],
    )
    report = {
        "shiftTotals": {
            "receipts": {"sell": {"payments": {"cash": "90.00"}}},
            "income": {"sum": 0},
            "outcome": {"sum": 0},
        }
    }

    result = shifts.shift_reconcile(shift, report)

    assert result["matches"] is False
    assert result["lines"]["sell.cash"]["difference"] == "10.00"
    shift.refresh_from_db()
    assert shift.reconciliation["lines"]["sell.cash"]["register"] == "90.00"


@pytest.mark.django_db
def test_the_cashiers_day_lists_every_action_in_order(desk: Desk) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="1000")
    shifts.cash_move(
        actor=desk.cashier,
        shift=shift,
        kind=CashMovementKind.CASH_IN,
        amount="200",
        reason="Change fund",
    )
    payment = services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        patient=desk.patient,
        parts=[PartInput(CASH, Decimal("700.00"))],
    )
    services.refund_post(
        actor=desk.cashier,
        payment=payment,
        shift=shift,
        parts=[PartInput(CASH, Decimal("100.00"))],
        reason="Overpaid",
    )
    shifts.cash_move(
        actor=desk.cashier,
        shift=shift,
        kind=CashMovementKind.CASH_OUT,
        amount="500",
        reason="Collection",
    )
    printed_all(shift)
    shifts.shift_close(actor=desk.cashier, shift=shift)
    day = timezone.localtime(timezone.now(), desk.branch.zone).date()

    actions = shifts.cashier_actions(
        actor=desk.cashier, cashier=desk.cashier, day=day, zone=desk.branch.zone
    )

    assert [(str(a["action"]), a["amount"]) for a in actions] == [
        ("Shift opened", Decimal("1000.00")),
        ("Cash in", Decimal("200.00")),
        ("Payment", Decimal("700.00")),
        ("Refund", Decimal("100.00")),
        ("Cash out", Decimal("500.00")),
        ("Shift closed", None),
    ]
    assert actions[2]["detail"] == f"№ {payment.number} {desk.patient.full_name}"
    assert actions[1]["detail"] == "Change fund"
    assert (
        shifts.cashier_actions(
            actor=desk.accountant, cashier=desk.cashier, day=day, zone=desk.branch.zone
        )
        == actions
    )
    with pytest.raises(PermissionDenied):
        shifts.cashier_actions(
            actor=desk.registrar, cashier=desk.cashier, day=day, zone=desk.branch.zone
        )


@pytest.mark.django_db(transaction=True)
def test_a_shift_is_not_closed_under_a_payment_being_posted(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    printed_all(shift)
    checked, release = threading.Event(), threading.Event()
    real_account_locked = services.account_locked

    def slow_account_locked(organization_id: int, patient_id: int | None) -> Any:
        """The payment has checked its shift and is about to write: let the close try now."""
        checked.set()
        release.wait(timeout=30)
        return real_account_locked(organization_id, patient_id)

    monkeypatch.setattr(services, "account_locked", slow_account_locked)
    outcomes: dict[str, Any] = {}

    def run(name: str, work: Callable[[], Any]) -> None:
        try:
            outcomes[name] = work()
        except BaseException as exc:  # inspected by the main thread
            outcomes[name] = exc
        finally:
            connection.close()

    paying = threading.Thread(
        target=run,
        args=(
            "payment",
            lambda: services.payment_post(
                actor=desk.cashier,
                branch=desk.branch,
                shift=shift,
                patient=desk.patient,
                parts=[PartInput(CASH, Decimal("100.00"))],
            ),
        ),
    )
    paying.start()
    assert checked.wait(timeout=30)
    closing = threading.Thread(
        target=run, args=("close", lambda: shifts.shift_close(actor=desk.cashier, shift=shift))
    )
    closing.start()
    closing.join(timeout=3)  # a close that does not wait for the payment is done by now
    release.set()
    paying.join(timeout=60)
    closing.join(timeout=60)

    shift.refresh_from_db()
    assert isinstance(outcomes["payment"], Payment), outcomes["payment"]
    assert isinstance(outcomes["close"], BillingError), outcomes["close"]
    assert outcomes["close"].code == "receipts_unprinted"
    assert shift.state == ShiftState.OPEN
