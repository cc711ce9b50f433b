"""Online payment of an invoice through the configured payment gateway.

``online_payment_start`` writes the ``OnlinePayment`` row (with its idempotency key) and only
then asks the gateway for a payment page; a retry after a timeout sends the same key, so the
gateway answers with the payment it already made. ``online_payment_settle`` posts the billing
payment once the gateway's API (never a notification's body) says the money arrived; it is safe
to call any number of times from the webhook, from the patient's return to the site and from
the periodic recheck (``online_payments_recheck``, for notifications that never came), because
the posting carries the gateway's payment id as its idempotency key.

An invoice made at the price for paying online in advance (``Invoice.online_priced``) holds that
price only while its payment may still succeed: when the payment fails it is cancelled, and the
desk invoices the visit at its normal price.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations.payments import (
    GatewayPayment,
    GatewayState,
    PaymentGateway,
    PaymentGatewayError,
    PaymentRequest,
    gateway_for,
)

from .errors import BillingError
from .models import (
    Invoice,
    InvoiceLine,
    InvoiceState,
    OnlinePayment,
    OnlinePaymentState,
    PaymentMethod,
)
from .services import (
    PartInput,
    _draft_locked,
    _totals_refresh,
    invoice_cancel,
    invoice_outstanding,
    payment_post,
)

logger = logging.getLogger(__name__)

CURRENCY = "RUB"


class OnlinePaymentUnavailable(BillingError):
    """No gateway is configured, or it cannot be reached now: the patient pays at the clinic or
    tries again later."""


def payment_gateway() -> PaymentGateway | None:
    """The gateway ``settings.PAYMENT_GATEWAY`` describes, or None when online payment is off."""
    config = getattr(settings, "PAYMENT_GATEWAY", None) or {}
    if not config.get("gateway"):
        return None
    return gateway_for(config)


def _gateway_name() -> str:
    return str((getattr(settings, "PAYMENT_GATEWAY", None) or {}).get("gateway", ""))


def _unavailable() -> OnlinePaymentUnavailable:
    return OnlinePaymentUnavailable(
        "online_payment_unavailable",
        _("Online payment is not available right now. Please try later or pay at the clinic."),
        field="invoice",
    )


def _payable_amount(invoice: Invoice) -> Decimal:
    if invoice.state != InvoiceState.POSTED:
        raise BillingError(
            "invoice_not_payable",
            _("Invoice %(value)s cannot be paid: it is not issued.") % {"value": invoice.number},
            field="invoice",
        )
    amount = invoice_outstanding(invoice)
    if amount <= 0:
        raise BillingError(
            "invoice_paid",
            _("Invoice %(value)s is already paid.") % {"value": invoice.number},
            field="invoice",
        )
    return amount


def _reusable(invoice: Invoice, amount: Decimal) -> OnlinePayment | None:
    """A payment of this amount already started for the invoice and not finished: the patient
    pressed "Pay" twice, or came back from the gateway's page without paying."""
    return (
        OnlinePayment.objects.filter(
            invoice=invoice, amount=amount, state=OnlinePaymentState.PENDING
        )
        .order_by("-created_at")
        .first()
    )


def online_payment_start(
    *,
    invoice: Invoice,
    return_url: str,
    phone: str,
    description: str,
    amount: Decimal | None = None,
) -> OnlinePayment:
    """The payment the patient is sent to the gateway's page for (its ``confirmation_url``):
    what the invoice still lacks, or ``amount`` of it (a prepayment).

    Raises ``BillingError`` when there is nothing to pay and ``OnlinePaymentUnavailable`` when
    the gateway is off or cannot answer now (the row stays, its key reused on the next try).
    """
    gateway = payment_gateway()
    if gateway is None:
        raise _unavailable()
    outstanding = _payable_amount(invoice)
    amount = outstanding if amount is None else min(amount, outstanding)
    online = _reusable(invoice, amount)
    if online is None:
        online = OnlinePayment.objects.create(
            invoice=invoice,
            amount=amount,
            gateway=_gateway_name(),
            idempotency_key=uuid.uuid4().hex,
            phone=phone,
        )
    elif online.confirmation_url:
        return online
    request = PaymentRequest(
        idempotency_key=online.idempotency_key,
        amount=amount,
        currency=CURRENCY,
        description=description,
        return_url=return_url,
        metadata={"online_payment": str(online.public_id), "invoice": str(invoice.public_id)},
    )
    try:
        answer = gateway.create_payment(request)
    except PaymentGatewayError as exc:
        logger.warning("Online payment %s not created: %s", online.public_id, exc)
        raise _unavailable() from exc
    online.gateway_payment_id = answer.id
    online.confirmation_url = answer.confirmation_url
    online.gateway_answer = answer.raw
    online.save(update_fields=["gateway_payment_id", "confirmation_url", "gateway_answer"])
    if answer.state != GatewayState.PENDING:
        return online_payment_settle_locked(online, answer)
    return online


@transaction.atomic
def line_online_price_set(*, line: InvoiceLine, amount: Decimal) -> InvoiceLine:
    """Price a draft line at the portal's price for paying online in advance (the doctor's
    online discount, rounded): the difference is the line's adjustment, with no rule."""
    locked = _draft_locked(line.invoice)
    line = InvoiceLine.objects.get(pk=line.pk, invoice=locked)
    full = line.unit_price * line.quantity
    if not Decimal("0") <= amount <= full:
        raise BillingError(
            "online_price_invalid",
            _("The online price %(value)s is not between 0 and %(full)s.")
            % {"value": amount, "full": full},
            field="amount",
        )
    line.adjustment_rule = None
    line.adjustment = amount - full
    line.amount = amount
    line.save(update_fields=["adjustment_rule", "adjustment", "amount"])
    _totals_refresh(locked)
    return line


def online_payment_for(answer: GatewayPayment) -> OnlinePayment | None:
    """The row a gateway payment belongs to, by its id or the id the clinic put in metadata."""
    found = OnlinePayment.objects.filter(
        gateway=_gateway_name(), gateway_payment_id=answer.id
    ).first()
    if found is None and answer.metadata.get("online_payment"):
        try:
            public_id = uuid.UUID(answer.metadata["online_payment"])
        except ValueError:
            return None
        found = OnlinePayment.objects.filter(public_id=public_id).first()
    return found


def online_payment_refresh(online: OnlinePayment) -> OnlinePayment:
    """Ask the gateway how the payment stands and settle it (the patient's return to the site)."""
    gateway = payment_gateway()
    if (
        gateway is None
        or not online.gateway_payment_id
        or online.state != OnlinePaymentState.PENDING
    ):
        return online
    try:
        answer = gateway.get_payment(online.gateway_payment_id)
    except PaymentGatewayError as exc:
        logger.warning("Online payment %s not read back: %s", online.public_id, exc)
        return online
    return online_payment_settle_locked(online, answer)


def online_payment_settle_locked(online: OnlinePayment, answer: GatewayPayment) -> OnlinePayment:
    """Bring the row to the gateway's state; a succeeded payment is posted to billing once."""
    from integrations.website.booking import website_actor

    with transaction.atomic():
        current = OnlinePayment.objects.select_for_update().get(pk=online.pk)
        if current.state != OnlinePaymentState.PENDING:
            return current
        current.gateway_answer = answer.raw
        if not current.gateway_payment_id:
            current.gateway_payment_id = answer.id
        if answer.state == GatewayState.CANCELED:
            current.state = OnlinePaymentState.CANCELED
        elif answer.state == GatewayState.SUCCEEDED and answer.paid:
            _post(current, answer, actor=website_actor())
        current.save(
            update_fields=["state", "payment", "problem", "gateway_answer", "gateway_payment_id"]
        )
        if current.state == OnlinePaymentState.CANCELED:
            _online_price_withdrawn(current.invoice, actor=website_actor())
        return current


def _online_price_withdrawn(invoice: Invoice, *, actor: Any) -> None:
    """Cancel an invoice priced for paying online once no payment of it can succeed any more
    (nothing paid on it, no other payment pending), so that the online discount is not left
    for the desk to charge."""
    if not invoice.online_priced or invoice.state != InvoiceState.POSTED:
        return
    if invoice.online_payments.exclude(state=OnlinePaymentState.CANCELED).exists():
        return
    try:
        if actor is None:
            raise PermissionDenied("the website account is not set up")
        with transaction.atomic():
            invoice_cancel(actor=actor, invoice=invoice)
    except (BillingError, PermissionDenied):
        logger.warning(
            "Invoice %s priced for paying online is unpaid but stays issued", invoice.number
        )


# Payments pending this long are asked about (YooKassa ends an unpaid one after about an hour),
# for this long; one the gateway never acknowledged cannot be paid after a day (its
# idempotency key has expired at the gateway too).
RECHECK_AFTER = datetime.timedelta(minutes=15)
RECHECK_FOR = datetime.timedelta(days=7)
UNACKNOWLEDGED_FOR = datetime.timedelta(days=1)


def online_payments_recheck(*, limit: int = 200) -> int:
    """Read back the payments still pending after ``RECHECK_AFTER`` (a notification lost, or a
    patient who never came back from the gateway's page) and settle them: paid ones are posted,
    expired ones end, and so does their online price. Returns how many payments ended."""
    now = timezone.now()
    pending = OnlinePayment.objects.filter(state=OnlinePaymentState.PENDING).select_related(
        "invoice"
    )
    ended = 0
    asked = pending.filter(
        created_at__lt=now - RECHECK_AFTER, created_at__gte=now - RECHECK_FOR
    ).exclude(gateway_payment_id="")
    for online in asked.order_by("created_at")[:limit]:
        if online_payment_refresh(online).state != OnlinePaymentState.PENDING:
            ended += 1
    lost = pending.filter(created_at__lt=now - UNACKNOWLEDGED_FOR, gateway_payment_id="")
    for online in lost.order_by("created_at")[:limit]:
        ended += _unacknowledged_end(online)
    return ended


def _unacknowledged_end(online: OnlinePayment) -> int:
    from integrations.website.booking import website_actor

    with transaction.atomic():
        current = OnlinePayment.objects.select_for_update().get(pk=online.pk)
        if current.state != OnlinePaymentState.PENDING or current.gateway_payment_id:
            return 0
        current.state = OnlinePaymentState.CANCELED
        current.save(update_fields=["state"])
        _online_price_withdrawn(current.invoice, actor=website_actor())
    return 1


def _post(online: OnlinePayment, answer: GatewayPayment, *, actor: Any) -> None:
    """Post the billing payment, or keep the money in ``needs_review`` with the reason: the
    patient has paid, so a refusal here must reach a person instead of being lost."""
    invoice = online.invoice
    try:
        if actor is None:
            raise BillingError(
                "online_account_missing",
                _("The website account that posts online payments is not set up."),
                field="actor",
            )
        with transaction.atomic():
            payment = payment_post(
                actor=actor,
                branch=invoice.branch,
                shift=None,
                parts=[PartInput(PaymentMethod.ONLINE, answer.amount)],
                invoice=invoice,
                idempotency_key=f"online:{online.gateway}:{answer.id}",
            )
    except (BillingError, PermissionDenied) as exc:
        logger.exception("Online payment %s is paid but not posted", online.public_id)
        online.state = OnlinePaymentState.NEEDS_REVIEW
        online.problem = str(getattr(exc, "message", exc))
        return
    online.payment = payment
    online.state = OnlinePaymentState.SUCCEEDED


def online_payment_notified(body: bytes) -> OnlinePayment | None:
    """A gateway notification: the payment is read back from the gateway's API and settled.
    None when the payment is not one of ours."""
    gateway = payment_gateway()
    if gateway is None:
        raise _unavailable()
    answer = gateway.notification_payment(body)
    online = online_payment_for(answer)
    if online is None:
        logger.warning("A payment notification for unknown payment %s", answer.id)
        return None
    return online_payment_settle_locked(online, answer)
