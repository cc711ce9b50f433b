"""What the cashier's POS page shows: registers and shifts, a patient's visits to invoice,
invoices with what they lack, payments that can be refunded, and today's receipts.

Reads only; every write goes through ``billing.services`` and ``billing.shifts``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from clinic.core.models import Branch
from patients.models import Person
from scheduling.models import Appointment, AppointmentStatus, PayerKind

from .models import (
    CashRegister,
    CashShift,
    DiscountRule,
    FiscalReceipt,
    Invoice,
    InvoiceLine,
    InvoiceState,
    PatientAccount,
    Payment,
    PaymentAllocation,
    PaymentKind,
    ReceiptState,
    ShiftState,
)
from .services import appointments_to_invoice, invoiced_services, line_outstanding
from .shifts import shift_totals

ZERO = Decimal("0")
VISITS_LOOKBACK_DAYS = 30
REFUNDABLE_PAYMENTS_LIMIT = 10
RECEIPTS_LIMIT = 50


def pos_today(branch: Branch) -> datetime.date:
    return timezone.localtime(timezone.now(), branch.zone).date()


RECONCILIATION_LABELS = {
    "sell.cash": _("Sales in cash"),
    "sell.electronically": _("Sales by card and online"),
    "sell.prepaid": _("Sales from advances"),
    "sell_return.cash": _("Returns in cash"),
    "sell_return.electronically": _("Returns to card and online"),
    "sell_return.prepaid": _("Returns to advances"),
    "cash_in": _("Cash in"),
    "cash_out": _("Cash out"),
}


@dataclass
class RegisterPanel:
    """A register with its open shift (if any), the shift's money and its last closed shift."""

    register: CashRegister
    shift: CashShift | None
    totals: dict[str, Any] | None
    last_closed: CashShift | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def drawer_left(self) -> str:
        """The cash the last shift left in the drawer: what the register still counts, so the
        next shift opens with it (new change money is a cash in)."""
        if self.last_closed is None:
            return "0.00"
        return str((self.last_closed.totals or {}).get("cash_in_drawer", "0.00"))

    @property
    def reconciliation_rows(self) -> list[tuple[Any, dict[str, str]]]:
        """The last closed shift's comparison with the Z report, counter by counter."""
        if self.last_closed is None:
            return []
        lines = (self.last_closed.reconciliation or {}).get("lines") or {}
        return [
            (RECONCILIATION_LABELS.get(key, key), lines[key])
            for key in [*RECONCILIATION_LABELS, *sorted(set(lines) - set(RECONCILIATION_LABELS))]
            if key in lines
        ]


def pos_registers(*, branch: Branch) -> list[RegisterPanel]:
    """The branch's active registers, each with its open shift and the last closed one."""
    registers = list(CashRegister.objects.filter(branch=branch, is_active=True).order_by("name"))
    open_shifts = {
        shift.register_id: shift
        for shift in CashShift.objects.select_related("register", "cashier").filter(
            register__in=registers, state=ShiftState.OPEN
        )
    }
    panels = []
    for register in registers:
        shift = open_shifts.get(register.pk)
        last_closed = (
            CashShift.objects.filter(register=register, state=ShiftState.CLOSED)
            .order_by("-closed_at")
            .first()
        )
        panels.append(
            RegisterPanel(
                register=register,
                shift=shift,
                totals=shift_totals(shift) if shift is not None else None,
                last_closed=last_closed,
            )
        )
    return panels


def pos_shift_of(*, branch: Branch, cashier: Any) -> CashShift | None:
    """The cashier's open shift in the branch: the one payments at this desk are taken in."""
    return (
        CashShift.objects.select_related("register")
        .filter(register__branch=branch, state=ShiftState.OPEN, cashier=cashier)
        .order_by("opened_at")
        .first()
    )


def pos_shift_get(*, branch: Branch, public_id: Any) -> CashShift | None:
    """A shift (open or closed) of a register of the branch, by public id."""
    try:
        return (
            CashShift.objects.select_related("register", "register__branch")
            .filter(register__branch=branch, public_id=public_id)
            .first()
        )
    except (ValueError, TypeError):
        return None


def pos_register_get(*, branch: Branch, public_id: Any) -> CashRegister | None:
    try:
        return CashRegister.objects.filter(branch=branch, public_id=public_id).first()
    except (ValueError, TypeError):
        return None


@dataclass
class VisitToInvoice:
    appointment: Appointment
    services: list[Any]


def pos_visits_to_invoice(
    *, patient: Person, branch: Branch, days: int = VISITS_LOOKBACK_DAYS
) -> list[VisitToInvoice]:
    """The patient's visits of the last ``days`` days (today included) with services not yet on
    an invoice; cancelled and no-show visits are left out, as the invoice would skip them."""
    today = pos_today(branch)
    visits = [
        appointment
        for appointment in appointments_to_invoice(
            patient=patient,
            branch=branch,
            start=today - datetime.timedelta(days=days),
            end=today,
        )
        if appointment.status.code not in (AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW)
    ]
    if not visits:
        return []
    done = invoiced_services(visits)
    lines_of: dict[int, list[Any]] = {}
    for appointment in Appointment.objects.filter(
        pk__in=[visit.pk for visit in visits]
    ).prefetch_related("lines__service"):
        lines_of[appointment.pk] = [
            line
            for line in appointment.lines.all()
            if (appointment.pk, line.service_id) not in done
        ]
    return [
        VisitToInvoice(appointment=visit, services=lines_of.get(visit.pk, []))
        for visit in visits
        if lines_of.get(visit.pk)
    ]


@dataclass
class InvoiceRow:
    invoice: Invoice
    lines: list[tuple[InvoiceLine, Decimal]]
    outstanding: Decimal

    @property
    def is_draft(self) -> bool:
        return self.invoice.state == InvoiceState.DRAFT


def pos_invoices_to_pay(*, patient: Person, branch: Branch) -> list[InvoiceRow]:
    """The patient's self-pay drafts of the branch and posted invoices that still lack money."""
    invoices = list(
        Invoice.objects.filter(
            organization_id=branch.organization_id,
            patient=patient,
            payer_kind=PayerKind.SELF_PAY,
            state__in=[InvoiceState.DRAFT, InvoiceState.POSTED],
        )
        .prefetch_related(Prefetch("lines", queryset=InvoiceLine.objects.order_by("position")))
        .order_by("created_at")
    )
    all_lines = [line for invoice in invoices for line in invoice.lines.all()]
    outstanding = line_outstanding(all_lines) if all_lines else {}
    rows = []
    for invoice in invoices:
        lines = [(line, outstanding[line.pk]) for line in invoice.lines.all()]
        lacks = sum((amount for _line, amount in lines), ZERO)
        if invoice.state == InvoiceState.DRAFT:
            if invoice.branch_id == branch.pk and lines:
                rows.append(InvoiceRow(invoice=invoice, lines=lines, outstanding=lacks))
        elif lacks > 0:
            rows.append(InvoiceRow(invoice=invoice, lines=lines, outstanding=lacks))
    return rows


def pos_invoice_get(*, patient: Person, branch: Branch, public_id: Any) -> Invoice | None:
    try:
        return Invoice.objects.filter(
            organization_id=branch.organization_id, patient=patient, public_id=public_id
        ).first()
    except (ValueError, TypeError):
        return None


def pos_account(*, patient: Person, branch: Branch) -> tuple[Decimal, Decimal]:
    """The patient's (debt, advance) with the branch's organization."""
    account = PatientAccount.objects.filter(
        organization_id=branch.organization_id, patient=patient
    ).first()
    if account is None:
        return ZERO, ZERO
    return account.debt, account.advance


@dataclass
class RefundableLine:
    line: InvoiceLine
    left: Decimal


@dataclass
class RefundablePayment:
    payment: Payment
    methods: dict[str, Decimal]
    lines: list[RefundableLine] = field(default_factory=list)

    @property
    def total_left(self) -> Decimal:
        return sum(self.methods.values(), ZERO)


def pos_refundable_payments(
    *, patient: Person, branch: Branch, limit: int = REFUNDABLE_PAYMENTS_LIMIT
) -> list[RefundablePayment]:
    """The patient's recent payments that can still give money back, with what each method and
    each line can still return (what the payment took, less earlier refunds of it)."""
    from .services import refundable_by_method_many

    payments = list(
        Payment.objects.filter(
            organization_id=branch.organization_id, patient=patient, kind=PaymentKind.PAYMENT
        )
        .select_related("invoice")
        .order_by("-posted_at")[:limit]
    )
    if not payments:
        return []
    allocations: dict[int, list[PaymentAllocation]] = {}
    for allocation in PaymentAllocation.objects.filter(payment__in=payments).select_related("line"):
        allocations.setdefault(allocation.payment_id, []).append(allocation)
    refunded: dict[tuple[int | None, int], Decimal] = {
        (corrects_id, line_id): amount
        for corrects_id, line_id, amount in PaymentAllocation.objects.filter(
            payment__corrects__in=payments, payment__kind=PaymentKind.REFUND
        )
        .values_list("payment__corrects_id", "line_id")
        .annotate(amount=Sum("amount"))
        .values_list("payment__corrects_id", "line_id", "amount")
    }
    refundable = refundable_by_method_many(payments)
    rows = []
    for payment in payments:
        methods = {
            method: amount for method, amount in refundable[payment.pk].items() if amount > 0
        }
        lines = [
            RefundableLine(
                line=allocation.line,
                left=allocation.amount - refunded.get((payment.pk, allocation.line_id), ZERO),
            )
            for allocation in sorted(
                allocations.get(payment.pk, []), key=lambda item: item.line.position
            )
        ]
        lines = [line for line in lines if line.left > 0]
        if methods or lines:
            rows.append(RefundablePayment(payment=payment, methods=methods, lines=lines))
    return rows


def pos_payment_get(*, branch: Branch, public_id: Any) -> Payment | None:
    try:
        return (
            Payment.objects.select_related("branch", "patient", "invoice")
            .filter(organization_id=branch.organization_id, public_id=public_id)
            .first()
        )
    except (ValueError, TypeError):
        return None


def pos_payment_by_key(idempotency_key: str) -> Payment | None:
    """The document a form with this key has already posted (a double submit)."""
    if not idempotency_key:
        return None
    return Payment.objects.filter(idempotency_key=idempotency_key).first()


def pos_receipts(*, branch: Branch, limit: int = RECEIPTS_LIMIT) -> list[FiscalReceipt]:
    """Today's tasks of the branch's registers, and any older one still not printed."""
    today = pos_today(branch)
    since = datetime.datetime.combine(today, datetime.time.min, tzinfo=branch.zone)
    return list(
        FiscalReceipt.objects.select_related("register", "payment", "cash_movement")
        .filter(register__branch=branch)
        .filter(Q(created_at__gte=since) | ~Q(state=ReceiptState.PRINTED))
        .order_by("-created_at")[:limit]
    )


def pos_receipt_get(*, branch: Branch, public_id: Any) -> FiscalReceipt | None:
    try:
        return (
            FiscalReceipt.objects.select_related("register")
            .filter(register__branch=branch, public_id=public_id)
            .first()
        )
    except (ValueError, TypeError):
        return None


def pos_manual_rules(*, branch: Branch) -> list[DiscountRule]:
    """The manual discount and markup rules staff may apply at the branch today."""
    day = pos_today(branch)
    return [
        rule
        for rule in DiscountRule.objects.filter(
            organization_id=branch.organization_id, is_automatic=False, is_active=True
        ).order_by("name")
        if rule.is_valid_on(day)
    ]
