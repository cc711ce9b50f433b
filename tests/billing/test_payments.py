"""Payments and refunds: what they settle, what goes to or comes from the advance, what is
refused (and then leaves no trace), and the patient's balance under concurrent postings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import ProgrammingError, connection, transaction
from django.utils import timezone

from billing import services
from billing.errors import BillingError
from billing.models import (
    CashRegister,
    CashShift,
    FiscalDriverKind,
    FiscalReceipt,
    Invoice,
    PatientAccount,
    Payment,
    PaymentAllocation,
    PaymentKind,
    PaymentMethod,
    PaymentPart,
    ShiftState,
)
from billing.services import PartInput
from billing.shifts import shift_open
from clinic.outbox.models import OutboxMessage
from patients.models import Person

from .conftest import Desk

CASH = PaymentMethod.CASH
CARD = PaymentMethod.CARD
ONLINE = PaymentMethod.ONLINE
ADVANCE = PaymentMethod.ADVANCE


def part(method: str, amount: Any) -> PartInput:
    return PartInput(method, amount if isinstance(amount, Decimal) else Decimal(amount))


def balance(desk: Desk, patient: Person | None = None) -> tuple[Decimal, Decimal]:
    account = PatientAccount.objects.filter(
        organization=desk.organization, patient=patient or desk.patient
    ).first()
    if account is None:
        return Decimal("0"), Decimal("0")
    return account.debt, account.advance


def written() -> dict[str, int]:
    """How many money rows and queued receipts exist (a refused posting adds none)."""
    return {
        "payments": Payment.objects.count(),
        "parts": PaymentPart.objects.count(),
        "allocations": PaymentAllocation.objects.count(),
        "receipts": FiscalReceipt.objects.count(),
        "outbox": OutboxMessage.objects.count(),
    }


def invoice_for(desk: Desk, patient: Person | None) -> Invoice:
    """A posted invoice of the consultation (2200) and the ultrasound (2750)."""
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.consultation)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.ultrasound)
    return services.invoice_post(actor=desk.cashier, invoice=invoice)


def by_line(payment: Payment) -> dict[str, Decimal]:
    return dict(payment.allocations.values_list("line__service_code", "amount"))


class Posting:
    """The cash desk of one test: an open shift and shortcuts to post through it."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.shift = shift_open(actor=desk.cashier, register=desk.register)

    def pay(self, *parts: PartInput, **fields: Any) -> Payment:
        values: dict[str, Any] = {
            "actor": self.desk.cashier,
            "branch": self.desk.branch,
            "shift": self.shift,
            "parts": list(parts),
            **fields,
        }
        if "invoice" not in values and "patient" not in values:
            values["patient"] = self.desk.patient
        return services.payment_post(**values)

    def refund(self, payment: Payment, *parts: PartInput, **fields: Any) -> Payment:
        values: dict[str, Any] = {
            "actor": self.desk.cashier,
            "payment": payment,
            "shift": self.shift,
            "parts": list(parts),
            "reason": "Not performed",
            **fields,
        }
        return services.refund_post(**values)


@pytest.fixture
def pos(desk: Desk) -> Posting:
    return Posting(desk)


def refused(action: Callable[[], Any]) -> BillingError:
    """Run a posting that must be refused; the refusal, after checking it wrote nothing."""
    before = written()
    with pytest.raises(BillingError) as caught:
        action()
    assert written() == before
    return caught.value


# --- paying invoices and the advance ------------------------------------------------------


@pytest.mark.django_db
def test_a_partial_payment_settles_the_lines_in_order(desk: Desk, pos: Posting) -> None:
    invoice = invoice_for(desk, desk.patient)

    first = pos.pay(part(CASH, "2000.00"), invoice=invoice)
    second = pos.pay(part(CARD, "1000.00"), invoice=invoice)

    assert by_line(first) == {"B01.047.001": Decimal("2000.00")}
    assert by_line(second) == {"B01.047.001": Decimal("200.00"), "A04.16.001": Decimal("800.00")}
    assert services.invoice_outstanding(invoice) == Decimal("1950.00")
    assert balance(desk) == (Decimal("1950.00"), Decimal("0.00"))


@pytest.mark.django_db
def test_an_overpayment_goes_to_the_advance(desk: Desk, pos: Posting) -> None:
    invoice = invoice_for(desk, desk.patient)

    payment = pos.pay(part(CASH, "3000.00"), part(CARD, "2000.00"), invoice=invoice)

    assert payment.total == Decimal("5000.00")
    assert sum(by_line(payment).values()) == Decimal("4950.00")
    assert balance(desk) == (Decimal("0.00"), Decimal("50.00"))
    assert services.invoice_outstanding(invoice) == Decimal("0.00")
    error = refused(lambda: pos.pay(part(CASH, "1.00"), invoice=invoice))
    assert error.code == "invoice_settled"


@pytest.mark.django_db
def test_an_invoice_is_paid_from_the_advance(desk: Desk, pos: Posting) -> None:
    pos.pay(part(CASH, "3000.00"))
    assert balance(desk) == (Decimal("0.00"), Decimal("3000.00"))
    invoice = invoice_for(desk, desk.patient)

    payment = pos.pay(part(ADVANCE, "3000.00"), part(CARD, "2000.00"), invoice=invoice)

    assert sum(by_line(payment).values()) == Decimal("4950.00")
    assert balance(desk) == (Decimal("0.00"), Decimal("50.00"))  # 3000 spent, 50 over
    receipt = FiscalReceipt.objects.get(payment=payment)
    assert {p["kind"]: p["amount"] for p in receipt.task["payments"]} == {
        "prepaid": "3000.00",
        "electronically": "2000.00",
    }


@pytest.mark.django_db
def test_the_advance_does_not_pay_into_the_advance(desk: Desk, pos: Posting) -> None:
    pos.pay(part(CASH, "1000.00"))

    error = refused(lambda: pos.pay(part(ADVANCE, "100.00")))

    assert error.code == "advance_for_advance"
    assert balance(desk) == (Decimal("0.00"), Decimal("1000.00"))


@pytest.mark.django_db
def test_paying_more_from_the_advance_than_it_holds_is_refused(desk: Desk, pos: Posting) -> None:
    pos.pay(part(CASH, "1000.00"))
    invoice = invoice_for(desk, desk.patient)

    error = refused(lambda: pos.pay(part(ADVANCE, "1000.01"), invoice=invoice))

    assert error.code == "advance_insufficient"
    assert balance(desk) == (Decimal("4950.00"), Decimal("1000.00"))


@pytest.mark.django_db
def test_an_anonymous_order_takes_no_overpayment(desk: Desk, pos: Posting) -> None:
    order = invoice_for(desk, None)

    error = refused(lambda: pos.pay(part(CASH, "5000.00"), invoice=order))
    exact = pos.pay(part(CASH, "4950.00"), invoice=order)

    assert error.code == "overpayment"
    assert exact.patient_id is None
    assert not PatientAccount.objects.exists()


# --- what a payment's input must be -------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("-10.00", "amount_not_positive"),
        ("0", "amount_not_positive"),
        ("0.00", "amount_not_positive"),
        ("10.005", "invalid_amount"),
        ("ten", "invalid_amount"),
        ("NaN", "invalid_amount"),
        ("Infinity", "invalid_amount"),
    ],
)
def test_a_bad_amount_is_refused_naming_the_field(
    desk: Desk, pos: Posting, amount: str, code: str
) -> None:
    error = refused(
        lambda: services.payment_post(
            actor=desk.cashier,
            branch=desk.branch,
            shift=pos.shift,
            patient=desk.patient,
            parts=[part(CASH, "10.00"), PartInput(CARD, amount)],  # type: ignore[arg-type]
        )
    )

    assert error.code == code
    assert error.field == "parts[1].amount"
    assert balance(desk) == (Decimal("0"), Decimal("0"))


@pytest.mark.django_db
def test_an_unknown_method_is_refused_naming_the_field(desk: Desk, pos: Posting) -> None:
    error = refused(lambda: pos.pay(part("bitcoin", "10.00")))

    assert error.code == "invalid_method"
    assert error.field == "parts[0].method"


@pytest.mark.django_db
def test_a_payment_without_parts_is_refused(desk: Desk, pos: Posting) -> None:
    assert refused(lambda: pos.pay()).code == "no_payment_parts"


# --- shifts and registers -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_closed_shift_takes_no_payment_and_nothing_is_written(desk: Desk, pos: Posting) -> None:
    invoice = invoice_for(desk, desk.patient)
    CashShift.objects.filter(pk=pos.shift.pk).update(
        state=ShiftState.CLOSED, closed_at=timezone.now()
    )

    error = refused(lambda: pos.pay(part(CASH, "100.00"), invoice=invoice))

    assert error.code == "shift_closed"
    assert error.field == "shift"
    assert balance(desk) == (Decimal("4950.00"), Decimal("0.00"))


@pytest.mark.django_db
def test_cash_or_card_without_a_shift_is_refused(desk: Desk) -> None:
    for method in (CASH, CARD):
        error = refused(
            lambda method=method: services.payment_post(  # type: ignore[misc]
                actor=desk.cashier,
                branch=desk.branch,
                shift=None,
                patient=desk.patient,
                parts=[part(method, "100.00")],
            )
        )
        assert error.code == "shift_required"


@pytest.mark.django_db
def test_an_online_payment_without_a_shift_is_printed_by_the_branchs_register(
    desk: Desk,
) -> None:
    def pay_online() -> FiscalReceipt:
        payment = services.payment_post(
            actor=desk.cashier,
            branch=desk.branch,
            shift=None,
            patient=desk.patient,
            parts=[part(ONLINE, "500.00")],
        )
        return FiscalReceipt.objects.get(payment=payment)

    on_desk = pay_online()
    cloud = CashRegister.objects.create(
        organization=desk.organization,
        branch=desk.branch,
        name="Cloud",
        driver=FiscalDriverKind.ATOL_ONLINE,
        device_config={"url": "http://127.0.0.1:9", "group_code": "g1"},
    )
    on_cloud = pay_online()

    assert (on_desk.register_id, on_desk.shift_id) == (desk.register.pk, None)
    assert (on_cloud.register_id, on_cloud.shift_id) == (cloud.pk, None)
    assert balance(desk) == (Decimal("0"), Decimal("1000.00"))


@pytest.mark.django_db
def test_the_same_idempotency_key_posts_one_payment(desk: Desk, pos: Posting) -> None:
    first = pos.pay(part(CASH, "700.00"), idempotency_key="form-42")
    before = written()

    again = pos.pay(part(CASH, "700.00"), idempotency_key="form-42")

    assert again.pk == first.pk
    assert written() == before
    assert balance(desk) == (Decimal("0"), Decimal("700.00"))


@pytest.mark.django_db
def test_a_registrar_cannot_post_a_payment(desk: Desk, pos: Posting) -> None:
    before = written()

    with pytest.raises(PermissionDenied):
        services.payment_post(
            actor=desk.registrar,
            branch=desk.branch,
            shift=pos.shift,
            patient=desk.patient,
            parts=[part(CASH, "100.00")],
        )

    assert written() == before


# --- refunds ------------------------------------------------------------------------------


@pytest.fixture
def paid(desk: Desk, pos: Posting) -> Payment:
    """The invoice paid with 2000 cash and 3000 by card (50 left on the advance)."""
    return pos.pay(
        part(CASH, "2000.00"), part(CARD, "3000.00"), invoice=invoice_for(desk, desk.patient)
    )


def line_of(payment: Payment, code: str) -> Any:
    assert payment.invoice is not None
    return payment.invoice.lines.get(service_code=code)


@pytest.mark.django_db
def test_a_line_is_refunded_at_most_what_was_paid_on_it(
    desk: Desk, pos: Posting, paid: Payment
) -> None:
    ultrasound = line_of(paid, "A04.16.001")
    refund = pos.refund(paid, part(CARD, "2750.00"), lines=[(ultrasound, Decimal("2750.00"))])

    error = refused(
        lambda: pos.refund(paid, part(CASH, "0.01"), lines=[(ultrasound, Decimal("0.01"))])
    )

    assert refund.kind == PaymentKind.REFUND
    assert refund.corrects_id == paid.pk
    assert by_line(refund) == {"A04.16.001": Decimal("2750.00")}
    assert error.code == "over_refund"
    assert error.field == "lines[0].amount"
    assert balance(desk) == (Decimal("0.00"), Decimal("50.00"))


@pytest.mark.django_db
def test_a_refund_by_card_is_at_most_what_was_paid_by_card(pos: Posting, paid: Payment) -> None:
    consultation = line_of(paid, "B01.047.001")
    ultrasound = line_of(paid, "A04.16.001")

    too_much = refused(
        lambda: pos.refund(
            paid,
            part(CARD, "3000.01"),
            lines=[(consultation, Decimal("2200.00")), (ultrasound, Decimal("800.01"))],
        )
    )
    pos.refund(paid, part(CARD, "2750.00"), lines=[(ultrasound, Decimal("2750.00"))])
    after_card = refused(
        lambda: pos.refund(paid, part(CARD, "250.01"), lines=[(consultation, Decimal("250.01"))])
    )

    assert (too_much.code, too_much.field) == ("over_refund", "parts[0].amount")
    assert (after_card.code, after_card.field) == ("over_refund", "parts[0].amount")
    assert services.refundable_by_method(paid) == {
        CASH: Decimal("2000.00"),
        CARD: Decimal("250.00"),
    }


@pytest.mark.django_db
def test_a_refund_from_the_advance_is_at_most_the_advance(
    desk: Desk, pos: Posting, paid: Payment
) -> None:
    error = refused(lambda: pos.refund(paid, part(CASH, "50.01")))
    refund = pos.refund(paid, part(CASH, "50.00"))

    assert error.code == "over_refund"
    assert refund.total == Decimal("50.00")
    assert balance(desk) == (Decimal("0.00"), Decimal("0.00"))


@pytest.mark.django_db
def test_a_refund_kept_on_the_advance_adds_to_it(desk: Desk, pos: Posting, paid: Payment) -> None:
    ultrasound = line_of(paid, "A04.16.001")

    pos.refund(paid, part(ADVANCE, "2750.00"), lines=[(ultrasound, Decimal("2750.00"))])

    assert balance(desk) == (Decimal("0.00"), Decimal("2800.00"))


@pytest.mark.django_db
def test_a_refund_is_not_refunded(pos: Posting, paid: Payment) -> None:
    refund = pos.refund(paid, part(CASH, "50.00"))

    assert refused(lambda: pos.refund(refund, part(CASH, "1.00"))).code == "refund_of_refund"


@pytest.mark.django_db
def test_a_refund_needs_a_reason(pos: Posting, paid: Payment) -> None:
    error = refused(lambda: pos.refund(paid, part(CASH, "10.00"), reason="   "))

    assert (error.code, error.field) == ("reason_required", "reason")


@pytest.mark.django_db
def test_a_registrar_cannot_refund(desk: Desk, pos: Posting, paid: Payment) -> None:
    before = written()

    with pytest.raises(PermissionDenied):
        services.refund_post(
            actor=desk.registrar,
            payment=paid,
            shift=pos.shift,
            parts=[part(CASH, "10.00")],
            reason="Mistake",
        )

    assert written() == before


# --- corrections --------------------------------------------------------------------------


def snapshot(payment: Payment) -> tuple[Any, ...]:
    fresh = Payment.objects.get(pk=payment.pk)
    return (
        fresh.total,
        fresh.kind,
        sorted(fresh.parts.values_list("method", "amount")),
        sorted(fresh.allocations.values_list("line_id", "amount")),
        FiscalReceipt.objects.get(payment=fresh).task_uuid,
    )


@pytest.mark.django_db
def test_a_correction_of_an_advance_payment_is_a_refund_and_a_new_payment(
    desk: Desk, pos: Posting
) -> None:
    original = pos.pay(part(CASH, "1000.00"))
    before = snapshot(original)

    refund, replacement = services.payment_correct(
        actor=desk.cashier,
        payment=original,
        shift=pos.shift,
        parts=[part(CARD, "1000.00")],
        reason="Paid by card, entered as cash",
    )

    assert snapshot(original) == before
    assert (refund.kind, refund.corrects_id, refund.total) == (
        PaymentKind.REFUND,
        original.pk,
        Decimal("1000.00"),
    )
    assert list(refund.parts.values_list("method", "amount")) == [(CASH, Decimal("1000.00"))]
    assert list(replacement.parts.values_list("method", "amount")) == [(CARD, Decimal("1000.00"))]
    uuids = {
        FiscalReceipt.objects.get(payment=document).task_uuid
        for document in (original, refund, replacement)
    }
    assert len(uuids) == 3
    assert FiscalReceipt.objects.get(payment=refund).operation == "sell_return"
    assert balance(desk) == (Decimal("0.00"), Decimal("1000.00"))


@pytest.mark.django_db
def test_a_correction_of_an_invoice_payment_keeps_the_invoice_paid(
    desk: Desk, pos: Posting
) -> None:
    """Correcting the methods of a payment for services that were rendered: the refund gives
    the money back and the new payment settles the same lines again."""
    invoice = invoice_for(desk, desk.patient)
    original = pos.pay(part(CASH, "4950.00"), invoice=invoice)
    before = snapshot(original)

    refund, replacement = services.payment_correct(
        actor=desk.cashier,
        payment=original,
        shift=pos.shift,
        parts=[part(CARD, "4950.00")],
        reason="Paid by card, entered as cash",
    )

    assert snapshot(original) == before
    assert by_line(refund) == by_line(original) == by_line(replacement)
    assert list(replacement.parts.values_list("method", "amount")) == [(CARD, Decimal("4950.00"))]
    assert services.invoice_outstanding(invoice) == Decimal("0.00")
    assert balance(desk) == (Decimal("0.00"), Decimal("0.00"))


# --- the database keeps money documents as they were --------------------------------------


def delete_row(table: str, pk: int) -> None:
    """A plain SQL delete, past the ORM's own protection of referenced rows."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])  # noqa: S608 - fixed names


@pytest.mark.django_db
def test_the_database_refuses_to_change_or_delete_a_payment(pos: Posting, paid: Payment) -> None:
    attempts: list[Callable[[], Any]] = [
        lambda: Payment.objects.filter(pk=paid.pk).update(total=Decimal("1.00")),
        lambda: delete_row("billing_payment", paid.pk),
        lambda: PaymentPart.objects.filter(payment=paid).update(amount=Decimal("1.00")),
        lambda: PaymentAllocation.objects.filter(payment=paid).update(amount=Decimal("1.00")),
        lambda: delete_row("billing_paymentpart", paid.parts.values_list("pk", flat=True)[0]),
    ]
    for attempt in attempts:
        with pytest.raises(ProgrammingError, match="pgtrigger: Cannot"), transaction.atomic():
            attempt()

    fresh = Payment.objects.get(pk=paid.pk)
    assert fresh.total == Decimal("5000.00")
    assert sorted(fresh.parts.values_list("amount", flat=True)) == [
        Decimal("2000.00"),
        Decimal("3000.00"),
    ]


# --- concurrency --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_payments_into_one_advance_add_up_exactly(desk: Desk) -> None:
    shift = shift_open(actor=desk.cashier, register=desk.register)
    payers = 10
    start = threading.Barrier(payers)
    failures: list[BaseException] = []

    def pay(index: int) -> None:
        try:
            start.wait(timeout=30)
            services.payment_post(
                actor=desk.cashier,
                branch=desk.branch,
                shift=shift,
                patient=desk.patient,
                parts=[part(CASH, f"{100 + index}.01")],
            )
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=(index,)) for index in range(payers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    expected = sum((Decimal(f"{100 + index}.01") for index in range(payers)), Decimal("0"))
    assert expected == Decimal("1045.10")
    assert balance(desk) == (Decimal("0.00"), expected)
    assert Payment.objects.filter(patient=desk.patient).count() == payers
    assert PatientAccount.objects.filter(patient=desk.patient).count() == 1


def lock_waiters() -> int:
    """How many sessions of the test database wait for a row lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


@pytest.mark.django_db(transaction=True)
def test_a_double_submit_racing_for_the_patients_lock_posts_one_payment(desk: Desk) -> None:
    shift = shift_open(actor=desk.cashier, register=desk.register)
    PatientAccount.objects.create(organization=desk.organization, patient=desk.patient)
    held, release = threading.Event(), threading.Event()
    posted: list[int] = []
    failures: list[BaseException] = []

    def hold_the_account() -> None:
        try:
            with transaction.atomic():
                PatientAccount.objects.select_for_update().get(patient=desk.patient)
                held.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    def submit() -> None:
        try:
            payment = services.payment_post(
                actor=desk.cashier,
                branch=desk.branch,
                shift=shift,
                patient=desk.patient,
                parts=[part(CASH, "700.00")],
                idempotency_key="form-7",
            )
            posted.append(payment.pk)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_account)
    holder.start()
    assert held.wait(timeout=30)
    submitters = [threading.Thread(target=submit) for _ in range(2)]
    for thread in submitters:
        thread.start()
    try:
        waited = 0
        while lock_waiters() < 2 and waited < 600:
            threading.Event().wait(0.05)
            waited += 1
        assert lock_waiters() == 2  # both submits passed the key check and wait for the lock
    finally:
        release.set()
        for thread in [holder, *submitters]:
            thread.join(timeout=60)

    assert failures == []
    assert len(posted) == 2
    assert len(set(posted)) == 1
    assert Payment.objects.count() == 1
    assert balance(desk) == (Decimal("0.00"), Decimal("700.00"))
