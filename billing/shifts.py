"""Cash shifts: opening and closing with the register, cash in and out, the shift's totals and
their reconciliation with the register's own counters (the Z report).

A shift is opened and closed in the database at once; the register's own shift follows through
the fiscal queue (``billing.fiscal`` keeps the order). A shift is closed only when every receipt
of it is printed, so the Z report and the shift's totals count the same documents.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from devices.fiscal import FiscalOperation
from devices.fiscal.wire import jsonable

from . import policies
from .errors import BillingError
from .fiscal import receipt_for_movement, receipt_for_shift
from .models import (
    CashMovement,
    CashMovementKind,
    CashRegister,
    CashShift,
    FiscalReceipt,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentPart,
    ReceiptState,
    ShiftState,
)
from .services import money

ZERO = Decimal("0")


def _allowed(actor: Any, register: CashRegister) -> None:
    if not policies.can_manage_shift(actor, register):
        raise PermissionDenied


def shift_current(*, register: CashRegister) -> CashShift | None:
    return CashShift.objects.filter(register=register, state=ShiftState.OPEN).first()


@transaction.atomic
def shift_open(
    *, actor: Any, register: CashRegister, opening_cash: Decimal | str = ZERO
) -> CashShift:
    """Open a shift at the register (one open shift per register) and queue the register's own
    shift opening."""
    _allowed(actor, register)
    if not register.is_active:
        raise BillingError(
            "register_inactive",
            _("The cash register %(value)s is switched off in the settings.")
            % {"value": register.name},
            field="register",
        )
    cash = Decimal(str(opening_cash or "0"))
    if cash < 0:
        raise BillingError(
            "amount_not_positive",
            _("The cash at opening cannot be negative: %(value)s.") % {"value": cash},
            field="opening_cash",
        )
    try:
        with transaction.atomic():
            shift = CashShift.objects.create(
                register=register,
                cashier=actor,
                opened_at=timezone.now(),
                opening_cash=cash,
                created_by=actor,
            )
    except IntegrityError as exc:
        raise BillingError(
            "shift_already_open",
            _("A shift is already open at the cash register %(value)s.") % {"value": register.name},
            field="register",
        ) from exc
    receipt_for_shift(shift, FiscalOperation.OPEN_SHIFT)
    return shift


def _open_locked(shift: CashShift) -> CashShift:
    locked = CashShift.objects.select_for_update().select_related("register").get(pk=shift.pk)
    if not locked.is_open:
        raise BillingError(
            "shift_closed",
            _("The cash shift of %(value)s is closed.")
            % {
                "value": timezone.localtime(locked.opened_at, locked.register.branch.zone).strftime(
                    "%d.%m.%Y %H:%M"
                )
            },
            field="shift",
        )
    return locked


@transaction.atomic
def cash_move(
    *, actor: Any, shift: CashShift, kind: str, amount: Decimal | str, reason: str = ""
) -> CashMovement:
    """Put cash into the drawer or take it out (no more than the drawer holds)."""
    _allowed(actor, shift.register)
    locked = _open_locked(shift)
    if kind not in CashMovementKind.values:
        raise BillingError(
            "invalid_kind",
            _("“%(value)s” is neither cash in nor cash out.") % {"value": kind},
            field="kind",
        )
    value = money(amount, field="amount")
    if kind == CashMovementKind.CASH_OUT:
        drawer = shift_totals(locked)["cash_in_drawer"]
        if value > drawer:
            raise BillingError(
                "not_enough_cash",
                _("The drawer holds %(drawer)s, less than %(value)s.")
                % {"drawer": drawer, "value": value},
                field="amount",
            )
    movement = CashMovement.objects.create(
        shift=locked,
        kind=kind,
        amount=value,
        reason=reason.strip(),
        posted_at=timezone.now(),
        posted_by=actor,
        created_by=actor,
    )
    receipt_for_movement(movement)
    return movement


@transaction.atomic
def shift_report_x(*, actor: Any, shift: CashShift) -> FiscalReceipt:
    """Ask the register for an X report (the shift's counters, without closing it)."""
    _allowed(actor, shift.register)
    locked = _open_locked(shift)
    return receipt_for_shift(locked, FiscalOperation.REPORT_X)


@transaction.atomic
def shift_close(*, actor: Any, shift: CashShift) -> CashShift:
    """Close the shift: its totals are fixed and the register prints the Z report.

    Refused while a receipt of the shift is not printed: the Z report would not count it.
    """
    _allowed(actor, shift.register)
    locked = _open_locked(shift)
    unprinted = FiscalReceipt.objects.filter(shift=locked).exclude(state=ReceiptState.PRINTED)
    count = unprinted.count()
    if count:
        raise BillingError(
            "receipts_unprinted",
            _(
                "%(value)s receipt(s) of the shift are not printed yet: wait for the register "
                "or retry them before closing."
            )
            % {"value": count},
            field="shift",
        )
    locked.totals = jsonable(shift_totals(locked))
    locked.state = ShiftState.CLOSED
    locked.closed_at = timezone.now()
    locked.closed_by = actor
    locked.save(update_fields=["totals", "state", "closed_at", "closed_by", "updated_at"])
    receipt_for_shift(locked, FiscalOperation.CLOSE_SHIFT)
    return locked


def shift_totals(shift: CashShift) -> dict[str, Any]:
    """The shift's money by direction and method, and the cash the drawer should hold."""
    by_method: dict[str, dict[str, Decimal]] = {
        PaymentKind.PAYMENT: {},
        PaymentKind.REFUND: {},
    }
    rows = (
        PaymentPart.objects.filter(payment__shift=shift)
        .values_list("payment__kind", "method")
        .annotate(amount=Sum("amount"))
    )
    for kind, method, amount in rows:
        by_method[kind][method] = amount
    movements = dict(
        CashMovement.objects.filter(shift=shift)
        .values_list("kind")
        .annotate(amount=Sum("amount"))
        .values_list("kind", "amount")
    )
    counts = dict(
        Payment.objects.filter(shift=shift)
        .values_list("kind")
        .annotate(count=Count("pk"))
        .values_list("kind", "count")
    )
    cash_in = movements.get(CashMovementKind.CASH_IN, ZERO)
    cash_out = movements.get(CashMovementKind.CASH_OUT, ZERO)
    sold_cash = by_method[PaymentKind.PAYMENT].get(PaymentMethod.CASH, ZERO)
    returned_cash = by_method[PaymentKind.REFUND].get(PaymentMethod.CASH, ZERO)
    return {
        "sell": by_method[PaymentKind.PAYMENT],
        "sell_return": by_method[PaymentKind.REFUND],
        "payments": counts.get(PaymentKind.PAYMENT, 0),
        "refunds": counts.get(PaymentKind.REFUND, 0),
        "cash_in": cash_in,
        "cash_out": cash_out,
        "opening_cash": shift.opening_cash,
        "cash_in_drawer": shift.opening_cash + sold_cash - returned_cash + cash_in - cash_out,
    }


def shift_reconcile(shift: CashShift, report: dict[str, Any]) -> dict[str, Any]:
    """Compare the shift's own totals with the register's Z report and keep the result.

    ``report`` is the register's answer to the closing, with its ``shiftTotals`` (ATOL's counters
    per receipt type and payment type, and cash in/out). The register counts money by its kind of
    payment: cash, electronic (card and online) and prepaid (the patient's advance).
    """
    totals = shift_totals(shift)
    device = report.get("shiftTotals") or {}
    receipts = device.get("receipts") or {}

    def ours(direction: str, methods: tuple[str, ...]) -> Decimal:
        return sum((totals[direction].get(method, ZERO) for method in methods), ZERO)

    def theirs(direction: str, kind: str) -> Decimal:
        payments = (receipts.get(direction) or {}).get("payments") or {}
        return Decimal(str(payments.get(kind, "0")))

    compared: dict[str, tuple[Decimal, Decimal]] = {}
    for direction, device_direction in (("sell", "sell"), ("sell_return", "sellReturn")):
        compared[f"{direction}.cash"] = (
            ours(direction, (PaymentMethod.CASH,)),
            theirs(device_direction, "cash"),
        )
        compared[f"{direction}.electronically"] = (
            ours(direction, (PaymentMethod.CARD, PaymentMethod.ONLINE)),
            theirs(device_direction, "electronically"),
        )
        compared[f"{direction}.prepaid"] = (
            ours(direction, (PaymentMethod.ADVANCE,)),
            theirs(device_direction, "prepaid"),
        )
    for kind, device_kind in (("cash_in", "income"), ("cash_out", "outcome")):
        compared[kind] = (
            totals[kind],
            Decimal(str((device.get(device_kind) or {}).get("sum", "0"))),
        )
    lines = {
        key: {"shift": str(mine), "register": str(theirs_), "difference": str(mine - theirs_)}
        for key, (mine, theirs_) in compared.items()
    }
    result = {
        "lines": lines,
        "matches": all(Decimal(line["difference"]) == 0 for line in lines.values()),
        "checked_at": timezone.now().isoformat(),
    }
    CashShift.objects.filter(pk=shift.pk).update(reconciliation=result, updated_at=timezone.now())
    return result


def cashier_actions(
    *, actor: Any, cashier: Any, day: datetime.date, zone: Any
) -> list[dict[str, Any]]:
    """Everything a cashier did on a local day, in time order: shifts, payments, refunds, cash
    in and out, and receipt retries (the POS's action history)."""
    if not (policies.can_view_financial_reports(actor) or actor.pk == cashier.pk):
        raise PermissionDenied
    start = datetime.datetime.combine(day, datetime.time.min, tzinfo=zone)
    end = start + datetime.timedelta(days=1)
    actions: list[dict[str, Any]] = []
    for shift in CashShift.objects.select_related("register").filter(
        Q(opened_at__gte=start, opened_at__lt=end, cashier=cashier)
        | Q(closed_at__gte=start, closed_at__lt=end, closed_by=cashier)
    ):
        if start <= shift.opened_at < end and shift.cashier_id == cashier.pk:
            actions.append(
                {
                    "at": shift.opened_at,
                    "action": _("Shift opened"),
                    "detail": shift.register.name,
                    "amount": shift.opening_cash,
                }
            )
        if shift.closed_at and start <= shift.closed_at < end and shift.closed_by_id == cashier.pk:
            actions.append(
                {
                    "at": shift.closed_at,
                    "action": _("Shift closed"),
                    "detail": shift.register.name,
                    "amount": None,
                }
            )
    for payment in Payment.objects.select_related("patient").filter(
        posted_by=cashier, posted_at__gte=start, posted_at__lt=end
    ):
        actions.append(
            {
                "at": payment.posted_at,
                "action": payment.get_kind_display(),
                "detail": " ".join(
                    part for part in (f"№ {payment.number}", _patient_name(payment)) if part
                ),
                "amount": payment.total,
            }
        )
    for movement in CashMovement.objects.filter(
        posted_by=cashier, posted_at__gte=start, posted_at__lt=end
    ):
        actions.append(
            {
                "at": movement.posted_at,
                "action": movement.get_kind_display(),
                "detail": movement.reason,
                "amount": movement.amount,
            }
        )
    actions.sort(key=lambda action: action["at"])
    return actions


def _patient_name(payment: Payment) -> str:
    return payment.patient.full_name if payment.patient is not None else ""
