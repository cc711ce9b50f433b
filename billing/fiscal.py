"""Fiscal receipts: queued with the document, printed through the outbox, exactly once.

``receipt_prepare`` gives the posting service a payment's ``FiscalReceipt`` (with the task's
uuid and the exact task to print) and the outbox message keyed by that uuid, which it writes in
the statement that writes the payment; ``receipt_for_movement`` and ``receipt_for_shift`` write
theirs in the transaction of the cash movement or the shift. Nothing reaches the register unless
the document commits.

``fiscal_deliver`` is the outbox handler of the ``fiscal`` channel. It sends the task with its
uuid; the register (web server or cloud) keeps tasks by uuid, so a retry after a crash, a lost
answer or an expired lease finds the task already there and only waits for its result. The
receipt then records the fiscal data, or ``sent`` while the register is still working (the outbox
asks again), or ``failed`` with the register's refusal. A refused task is the only one that may be
sent again under a new uuid (``receipt_retry``): the register did not print it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.registry import PermanentDeliveryError, channel_max_attempts
from clinic.outbox.services import outbox_enqueue
from devices.fiscal import (
    DeviceUnavailable,
    FiscalOperation,
    FiscalRejected,
    FiscalResult,
    FiscalState,
    FiscalTask,
    ReceiptItem,
    ReceiptPayment,
    driver_for,
)
from devices.fiscal.wire import jsonable

from .errors import BillingError
from .models import (
    CashMovement,
    CashRegister,
    CashShift,
    FiscalDriverKind,
    FiscalOperationKind,
    FiscalReceipt,
    Payment,
    PaymentAllocation,
    PaymentKind,
    PaymentMethod,
    PaymentPart,
    ReceiptState,
)

logger = logging.getLogger(__name__)

FISCAL_CHANNEL = "fiscal"
# A register that is off for a while prints its queue within a minute of coming back, and the
# outbox keeps asking for a day before it gives up (the cashier can still retry after that).
FISCAL_BACKOFF_MAX_SECONDS = 60
FISCAL_MAX_ATTEMPTS = 24 * 60

_PAYMENT_KINDS = {
    PaymentMethod.CASH: "cash",
    PaymentMethod.CARD: "electronically",
    PaymentMethod.ONLINE: "electronically",
    PaymentMethod.ADVANCE: "prepaid",
}


class FiscalStillPending(Exception):
    """The register has the task and has not finished it: ask again later (same uuid)."""


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def register_for(payment: Payment) -> CashRegister:
    """The register that prints a payment's receipt: its shift's, else the branch's cloud
    register (online payments), else the branch's first active register."""
    if payment.shift is not None:
        return payment.shift.register  # loaded with the shift by the posting service
    registers = CashRegister.objects.filter(branch_id=payment.branch_id, is_active=True)
    register = (
        registers.filter(driver=FiscalDriverKind.ATOL_ONLINE).order_by("pk").first()
        or registers.order_by("pk").first()
    )
    if register is None:
        raise BillingError(
            "no_cash_register",
            _("The branch has no active cash register to print the receipt."),
            field="shift",
        )
    return register


def _payment_task(
    payment: Payment,
    parts: Sequence[PaymentPart] | None = None,
    allocations: Sequence[PaymentAllocation] | None = None,
) -> dict[str, Any]:
    """The receipt's content: the services paid (or given back) and how the money moved.

    Money not tied to an invoice line (an advance paid in or given back) is one "advance" item.
    The posting service passes the parts and allocations it has just written; otherwise they are
    read back.
    """
    if allocations is None:
        allocations = list(payment.allocations.select_related("line"))
    if parts is None:
        parts = list(payment.parts.all())
    items = [
        _item(allocation)
        for allocation in sorted(allocations, key=lambda allocation: allocation.line.position)
    ]
    allocated = sum((allocation.amount for allocation in allocations), Decimal("0"))
    unallocated = payment.total - allocated
    if unallocated > 0:
        items.append(
            {
                "name": str(_("Advance payment for medical services")),
                "price": _money(unallocated),
                "quantity": "1",
                "amount": _money(unallocated),
                "tax": "none",
            }
        )
    payments: dict[str, Decimal] = {}
    for part in parts:
        kind = _PAYMENT_KINDS[PaymentMethod(part.method)]
        payments[kind] = payments.get(kind, Decimal("0")) + part.amount
    contact = _client_contact(payment)
    operator = payment.posted_by
    return {
        "operation": FiscalOperation.SELL_RETURN.value
        if payment.kind == PaymentKind.REFUND
        else FiscalOperation.SELL.value,
        "items": items,
        "payments": [{"kind": kind, "amount": _money(amount)} for kind, amount in payments.items()],
        "total": _money(payment.total),
        "operator_name": (operator.get_full_name() or operator.get_username()) if operator else "",
        **contact,
    }


def _item(allocation: PaymentAllocation) -> dict[str, str]:
    """A receipt line: the whole line at its unit price, or a part of it as one unit."""
    line = allocation.line
    whole = allocation.amount == line.amount
    return {
        "name": line.service_name[:128],
        "price": _money(allocation.amount / line.quantity if whole else allocation.amount),
        "quantity": str(line.quantity if whole else 1),
        "amount": _money(allocation.amount),
        "tax": _tax(line.tax_mode),
    }


def _tax(mode: str) -> str:
    return "none" if mode == "no_vat" else mode


def _client_contact(payment: Payment) -> dict[str, str]:
    """The patient's e-mail (preferred) or mobile phone, for the electronic receipt copy."""
    if payment.patient_id is None:
        return {"client_email": "", "client_phone": ""}
    from patients.models import ContactKind

    contacts = (
        dict(
            payment.patient.contacts.filter(kind__in=[ContactKind.EMAIL, ContactKind.MOBILE])
            .order_by("kind", "pk")
            .values_list("kind", "value")
        )
        if payment.patient is not None
        else {}
    )
    return {
        "client_email": contacts.get(ContactKind.EMAIL, ""),
        "client_phone": ""
        if ContactKind.EMAIL in contacts
        else contacts.get(ContactKind.MOBILE, ""),
    }


def _queue(
    *,
    register: CashRegister,
    shift: CashShift | None,
    operation: str,
    task: dict[str, Any],
    payment: Payment | None = None,
    cash_movement: CashMovement | None = None,
) -> FiscalReceipt:
    """Write the receipt and its outbox message (the message first: the receipt points at it)."""
    receipt = FiscalReceipt(
        register=register,
        shift=shift,
        operation=operation,
        payment=payment,
        cash_movement=cash_movement,
        task=task,
    )
    receipt.outbox_message = _message_for(receipt)
    receipt.save(force_insert=True)
    return receipt


def _message_for(receipt: FiscalReceipt) -> OutboxMessage:
    """The outbox message that prints the receipt under its current task uuid (a new key)."""
    return outbox_enqueue(
        channel=FISCAL_CHANNEL,
        payload={"receipt": str(receipt.public_id)},
        idempotency_key=f"fiscal:{receipt.task_uuid}",
        subject=f"{receipt.get_operation_display()} {receipt.public_id}",
        key_is_new=True,
    )


def _enqueue(receipt: FiscalReceipt) -> None:
    receipt.outbox_message = _message_for(receipt)
    receipt.save(update_fields=["outbox_message", "updated_at"])


def receipt_prepare(
    payment: Payment,
    parts: Sequence[PaymentPart],
    allocations: Sequence[PaymentAllocation],
) -> tuple[FiscalReceipt, OutboxMessage]:
    """The one receipt of a payment or refund and the outbox message that prints it, not yet
    saved: the posting service writes them in the statement that writes the payment (their
    task uuid and public id exist from here on, before any attempt)."""
    receipt = FiscalReceipt(
        register=register_for(payment),
        shift=payment.shift,
        operation=FiscalOperationKind.SELL_RETURN
        if payment.kind == PaymentKind.REFUND
        else FiscalOperationKind.SELL,
        payment=payment,
        task=_payment_task(payment, parts, allocations),
    )
    message = OutboxMessage(
        channel=FISCAL_CHANNEL,
        payload={"receipt": str(receipt.public_id)},
        idempotency_key=f"fiscal:{receipt.task_uuid}",
        subject=f"{receipt.get_operation_display()} {receipt.public_id}",
    )
    return receipt, message


def receipt_for_movement(movement: CashMovement) -> FiscalReceipt:
    operation = FiscalOperation.CASH_IN if movement.kind == "cash_in" else FiscalOperation.CASH_OUT
    return _queue(
        register=movement.shift.register,
        shift=movement.shift,
        operation=operation.value,
        task={"operation": operation.value, "cash_amount": _money(movement.amount)},
        cash_movement=movement,
    )


def receipt_for_shift(shift: CashShift, operation: FiscalOperation) -> FiscalReceipt:
    """Queue a shift task of the register: opening, X report or closing (Z report)."""
    cashier = shift.cashier
    return _queue(
        register=shift.register,
        shift=shift,
        operation=operation.value,
        task={
            "operation": operation.value,
            "operator_name": cashier.get_full_name() or cashier.get_username(),
        },
    )


def _fiscal_task(receipt: FiscalReceipt) -> FiscalTask:
    task = receipt.task
    register = receipt.register
    return FiscalTask(
        uuid=str(receipt.task_uuid),
        operation=FiscalOperation(task["operation"]),
        operator_name=task.get("operator_name", ""),
        operator_inn=register.operator_inn,
        items=tuple(
            ReceiptItem(
                name=item["name"],
                price=Decimal(item["price"]),
                quantity=Decimal(item["quantity"]),
                amount=Decimal(item["amount"]),
                tax=item["tax"],
            )
            for item in task.get("items", [])
        ),
        payments=tuple(
            ReceiptPayment(kind=part["kind"], amount=Decimal(part["amount"]))
            for part in task.get("payments", [])
        ),
        total=Decimal(task.get("total", "0")),
        cash_amount=Decimal(task.get("cash_amount", "0")),
        client_email=task.get("client_email", ""),
        client_phone=task.get("client_phone", ""),
        taxation_type=register.taxation_type,
    )


def fiscal_deliver(message: OutboxMessage) -> None:
    """Outbox handler: print one receipt, or find out what became of it."""
    receipt = (
        FiscalReceipt.objects.select_related("register", "shift")
        .filter(public_id=message.payload.get("receipt"))
        .first()
    )
    if receipt is None:
        raise PermanentDeliveryError(f"No fiscal receipt {message.payload.get('receipt')!r}.")
    if receipt.state == ReceiptState.PRINTED:
        return
    if str(message.idempotency_key) != f"fiscal:{receipt.task_uuid}":
        return  # superseded by a retry under a new uuid; that message prints it
    last_attempt = message.attempts >= channel_max_attempts(message.channel)
    _order_check(receipt)
    try:
        driver = driver_for(receipt.register.driver_config())
        result = driver.submit(_fiscal_task(receipt))
    except DeviceUnavailable as exc:
        _mark(receipt, ReceiptState.FAILED if last_attempt else ReceiptState.QUEUED, str(exc))
        raise
    except FiscalRejected as exc:
        _mark(receipt, ReceiptState.FAILED, str(exc), rejected=True)
        raise PermanentDeliveryError(str(exc)) from exc
    except ValueError as exc:  # the register's settings are wrong
        _mark(receipt, ReceiptState.FAILED, str(exc))
        raise PermanentDeliveryError(str(exc)) from exc
    if result.state == FiscalState.DONE:
        _printed(receipt, result)
        return
    if result.state == FiscalState.FAILED:
        text = result.error_text or result.error_code
        _mark(receipt, ReceiptState.FAILED, text, rejected=True)
        raise PermanentDeliveryError(text)
    _mark(receipt, ReceiptState.FAILED if last_attempt else ReceiptState.SENT, "")
    raise FiscalStillPending(_("The register has not finished the task yet."))


def _order_check(receipt: FiscalReceipt) -> None:
    """Keep the register's order within a shift: nothing before the shift is open there, and
    the closing (Z report) only after every other task of the shift is printed."""
    if receipt.shift_id is None:
        return
    others = FiscalReceipt.objects.filter(shift_id=receipt.shift_id).exclude(pk=receipt.pk)
    if receipt.operation == FiscalOperationKind.CLOSE_SHIFT:
        waiting = others.exclude(state=ReceiptState.PRINTED).exists()
    elif receipt.operation == FiscalOperationKind.OPEN_SHIFT:
        waiting = False
    else:
        waiting = (
            others.filter(operation=FiscalOperationKind.OPEN_SHIFT)
            .exclude(state=ReceiptState.PRINTED)
            .exists()
        )
    if waiting:
        raise FiscalStillPending(_("The receipt waits for the register's shift to be ready."))


def _mark(receipt: FiscalReceipt, state: str, error: str, *, rejected: bool = False) -> None:
    report = dict(receipt.report)
    if rejected:
        report["rejected"] = True
    FiscalReceipt.objects.filter(pk=receipt.pk).exclude(state=ReceiptState.PRINTED).update(
        state=state, error=error[:2000], report=report, updated_at=timezone.now()
    )


@transaction.atomic
def _printed(receipt: FiscalReceipt, result: FiscalResult) -> None:
    locked = FiscalReceipt.objects.select_for_update().get(pk=receipt.pk)
    if locked.state == ReceiptState.PRINTED:
        return
    locked.state = ReceiptState.PRINTED
    locked.fn_number = result.fn_number
    locked.fiscal_document_number = result.fiscal_document_number
    locked.fiscal_document_sign = result.fiscal_document_sign
    locked.receipt_number = result.receipt_number
    locked.device_shift_number = result.shift_number
    locked.printed_at = timezone.now()
    locked.report = {**locked.report, **jsonable(result.report), "rejected": False}
    locked.error = ""
    locked.save()
    if locked.operation == FiscalOperationKind.CLOSE_SHIFT and locked.shift_id is not None:
        from .shifts import shift_reconcile

        shift_reconcile(CashShift.objects.get(pk=locked.shift_id), locked.report)


class ReceiptRetryRefused(BillingError):
    pass


@transaction.atomic
def receipt_retry(*, actor: Any, receipt: FiscalReceipt) -> FiscalReceipt:
    """Send a failed receipt again now.

    A task the register refused gets a new uuid (it was not printed, and the register would
    answer the old uuid with the same refusal); one that could not be delivered keeps its uuid,
    since the register may have printed it before the connection broke.
    """
    from . import policies

    locked = FiscalReceipt.objects.select_for_update().select_related("register").get(pk=receipt.pk)
    if not policies.can_take_payment(actor, locked.register.branch):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied
    if locked.state not in (ReceiptState.FAILED, ReceiptState.QUEUED):
        raise ReceiptRetryRefused(
            "receipt_not_failed",
            _("The receipt is %(value)s: there is nothing to retry.")
            % {"value": locked.get_state_display()},
            field="receipt",
        )
    if locked.report.get("rejected"):
        previous = [*locked.report.get("previous_uuids", []), str(locked.task_uuid)]
        locked.task_uuid = uuid.uuid4()
        locked.report = {**locked.report, "previous_uuids": previous, "rejected": False}
        locked.state = ReceiptState.QUEUED
        locked.error = ""
        locked.save()
        _enqueue(locked)
        return locked
    message = (
        OutboxMessage.objects.select_for_update()
        .filter(idempotency_key=f"fiscal:{locked.task_uuid}")
        .first()
    )
    if message is None:
        _enqueue(locked)
    elif message.state in (OutboxState.DEAD, OutboxState.PENDING):
        message.state = OutboxState.PENDING
        message.attempts = 0
        message.next_attempt_at = timezone.now()
        message.save(update_fields=["state", "attempts", "next_attempt_at", "updated_at"])
        from clinic.outbox.services import relay_routing
        from clinic.outbox.tasks import outbox_relay_channel

        transaction.on_commit(
            lambda: outbox_relay_channel.apply_async(
                args=(FISCAL_CHANNEL,), retry=False, **relay_routing(FISCAL_CHANNEL)
            )
        )
    locked.state = ReceiptState.QUEUED
    locked.save(update_fields=["state", "updated_at"])
    return locked


def fiscal_reconciliation(*, organization_id: int, since: Any, until: Any) -> dict[str, Any]:
    """Posted payments and refunds against their receipts for a period: what was taken, what
    was printed, and every document whose receipt is missing, unprinted or not matching."""
    documents = Payment.objects.filter(
        organization_id=organization_id, posted_at__gte=since, posted_at__lt=until
    )
    posted = documents.values("kind").annotate(total=Sum("total"), count=Count("pk"))
    printed = (
        FiscalReceipt.objects.filter(payment__in=documents, state=ReceiptState.PRINTED)
        .values("operation")
        .annotate(count=Count("pk"))
    )
    sums = {row["kind"]: row for row in posted}
    printed_totals = dict(
        FiscalReceipt.objects.filter(payment__in=documents, state=ReceiptState.PRINTED)
        .values_list("payment__kind")
        .annotate(total=Sum("payment__total"))
        .values_list("payment__kind", "total")
    )
    missing = list(
        documents.filter(Q(receipt__isnull=True) | ~Q(receipt__state=ReceiptState.PRINTED))
        .order_by("posted_at")
        .values_list("public_id", flat=True)[:500]
    )
    zero = Decimal("0")

    def row(kind: str) -> dict[str, Any]:
        taken = sums.get(kind, {}).get("total") or zero
        fiscalised = printed_totals.get(kind) or zero
        return {
            "documents": sums.get(kind, {}).get("count", 0),
            "posted": taken,
            "printed": fiscalised,
            "difference": taken - fiscalised,
        }

    return {
        "payments": row(PaymentKind.PAYMENT),
        "refunds": row(PaymentKind.REFUND),
        "printed_receipts": {item["operation"]: item["count"] for item in printed},
        "unprinted": [str(public_id) for public_id in missing],
    }


def fiscal_channel_register() -> None:
    from clinic.outbox.registry import channel_register

    channel_register(
        FISCAL_CHANNEL,
        fiscal_deliver,
        max_attempts=FISCAL_MAX_ATTEMPTS,
        backoff_max_seconds=getattr(
            settings, "FISCAL_BACKOFF_MAX_SECONDS", FISCAL_BACKOFF_MAX_SECONDS
        ),
    )
