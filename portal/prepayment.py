"""Paying for a booked visit online in advance: the prepayment a doctor's settings ask for, or
the whole visit at the portal's online price (the doctor's discount for paying in advance).

The invoice is made when the patient presses "Pay", as the website account: one line for the
visit's service, priced at the online price, posted, then paid through the payment gateway like
any invoice in the account (``billing.online``). Pressing again reuses that invoice and its
pending payment; a visit already paid is not offered again. When the payment fails (the patient
left the gateway's page and it expired), the discounted invoice is cancelled and the visit is
invoiced at the desk at its normal price; the link offers to pay online again meanwhile.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import Invoice, InvoiceState, OnlinePayment
from billing.online import line_online_price_set, online_payment_start
from billing.services import invoice_create, invoice_line_add, invoice_outstanding, invoice_post
from integrations.website.booking import website_actor
from scheduling.models import Appointment

from .errors import PortalError
from .pricing import PortalPrice, portal_price


def visit_price(appointment: Appointment) -> PortalPrice | None:
    """The portal's terms for the booked visit (one service), whatever the pages show."""
    services = list(appointment.services.all())
    if appointment.doctor is None or len(services) != 1:
        return None
    day = timezone.localtime(appointment.starts_at, appointment.branch.zone).date()
    return portal_price(
        appointment.doctor, services[0], on=day, branch=appointment.branch, shown_only=False
    )


def prepayment_offered(appointment: Appointment, price: PortalPrice | None) -> bool:
    """Whether the visit can be paid online now: a price that asks for a prepayment or is
    cheaper online, a visit still ahead, and nothing paid for it yet (the rest is paid at the
    clinic or from the account's invoices)."""
    if price is None or appointment.status.is_final or appointment.starts_at <= timezone.now():
        return False
    if not (price.prepayment_required or price.online_is_cheaper):
        return False
    invoice = _visit_invoice(appointment)
    return invoice is None or invoice_outstanding(invoice) == invoice.total


def _visit_invoice(appointment: Appointment) -> Invoice | None:
    return (
        Invoice.objects.filter(lines__appointment=appointment, state=InvoiceState.POSTED)
        .order_by("-created_at")
        .first()
    )


def _not_offered() -> PortalError:
    return PortalError(
        "prepayment_not_offered",
        _("This visit cannot be paid online. Please pay at the clinic."),
        field="appointment",
    )


@transaction.atomic
def _invoice_made(appointment: Appointment, price: PortalPrice) -> Invoice:
    existing = _visit_invoice(appointment)
    if existing is not None:
        return existing
    actor = website_actor()
    if actor is None:
        raise _not_offered()
    service = appointment.services.get()
    invoice = invoice_create(actor=actor, branch=appointment.branch, patient=appointment.patient)
    line = invoice_line_add(actor=actor, invoice=invoice, service=service, appointment=appointment)
    if price.online < line.amount:
        line_online_price_set(line=line, amount=price.online)
        Invoice.objects.filter(pk=invoice.pk).update(online_priced=True)
    return invoice_post(actor=actor, invoice=invoice)


def prepayment_start(appointment: Appointment, *, return_url: str) -> OnlinePayment:
    """The online payment for the visit: the prepayment when one is asked, else the whole
    visit at the online price."""
    price = visit_price(appointment)
    if price is None or not prepayment_offered(appointment, price):
        raise _not_offered()
    invoice = _invoice_made(appointment, price)
    amount: Decimal | None = price.prepayment if price.prepayment_required else None
    phone = appointment.primary_phone
    return online_payment_start(
        invoice=invoice,
        return_url=return_url,
        phone=phone,
        amount=amount,
        description=_("Visit on %(date)s, %(clinic)s")
        % {
            "date": timezone.localtime(appointment.starts_at, appointment.branch.zone).strftime(
                "%d.%m.%Y %H:%M"
            ),
            "clinic": appointment.branch.name,
        },
    )


def latest_online_payment(appointment: Appointment) -> OnlinePayment | None:
    invoice = _visit_invoice(appointment)
    if invoice is None:
        return None
    return invoice.online_payments.order_by("-created_at").first()
