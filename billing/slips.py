"""Non-fiscal payment slips on the cash desk's ESC/POS printer, sent through the outbox.

A register with a slip printer configured prints, next to the fiscal receipt, a slip the patient
takes to the doctor's room: what was paid, for which visits, and the payment's number. The slip
is queued in the posting transaction like every other exchange; the printer being off only
delays it.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.outbox.models import OutboxMessage
from clinic.outbox.registry import PermanentDeliveryError, channel_register
from clinic.outbox.services import outbox_enqueue
from devices.escpos_slip import print_slip

from .models import CashRegister, Payment, PaymentKind

SLIP_CHANNEL = "slip"


def slip_queue(payment: Payment, register: CashRegister) -> None:
    """Queue the payment's slip when the register has a slip printer (call when posting)."""
    if not register.slip_printer:
        return
    outbox_enqueue(
        channel=SLIP_CHANNEL,
        payload={"payment": str(payment.public_id), "register": str(register.public_id)},
        idempotency_key=f"slip:{payment.public_id}",
        subject=f"{payment.get_kind_display()} {payment.number}",
        key_is_new=True,  # the payment was written in this transaction
    )


def slip_lines(payment: Payment) -> tuple[str, list[tuple[str, str]], str]:
    """The slip's title, its label/value lines and its footer."""
    zone = payment.branch.zone
    title = (
        _("Refund № %(value)s") if payment.kind == PaymentKind.REFUND else _("Payment № %(value)s")
    ) % {"value": payment.number}
    lines: list[tuple[str, str]] = [
        (_("Date"), timezone.localtime(payment.posted_at, zone).strftime("%d.%m.%Y %H:%M")),
    ]
    if payment.patient is not None:
        lines.append((_("Patient"), payment.patient.full_name))
    for allocation in payment.allocations.select_related("line", "line__appointment"):
        line = allocation.line
        label = line.service_name
        if line.appointment is not None:
            label += " " + timezone.localtime(line.appointment.starts_at, zone).strftime("%H:%M")
        lines.append((label, f"{allocation.amount:.2f}"))
    for part in payment.parts.all():
        lines.append((part.get_method_display(), f"{part.amount:.2f}"))
    lines.append((_("Total"), f"{payment.total:.2f}"))
    return title, lines, str(payment.branch.name)


def slip_deliver(message: OutboxMessage) -> None:
    payment = (
        Payment.objects.select_related("branch", "patient")
        .filter(public_id=message.payload.get("payment"))
        .first()
    )
    register = CashRegister.objects.filter(public_id=message.payload.get("register")).first()
    if payment is None or register is None:
        raise PermanentDeliveryError(f"Nothing to print for {message.payload!r}.")
    if not register.slip_printer:
        return  # the printer was removed from the settings since: nothing to print on
    title, lines, footer = slip_lines(payment)
    try:
        print_slip(register.slip_printer, title, lines, footer)
    except ValueError as exc:
        raise PermanentDeliveryError(str(exc)) from exc


def slip_channel_register() -> None:
    channel_register(SLIP_CHANNEL, slip_deliver, backoff_max_seconds=60)
