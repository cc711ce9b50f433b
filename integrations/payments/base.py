"""What billing hands to an online payment gateway and what it gets back, independent of the
gateway's protocol.

Every request that creates something (a payment, a refund) carries an idempotency key made
before the first attempt. Drivers send it unchanged on every retry, so repeating a call after a
timeout or a crash cannot charge or refund the patient twice: the gateway recognises the key and
answers with the object it made the first time.

A gateway's notifications (webhooks) are hints, not evidence: ``notification_payment`` reads the
payment back from the gateway's API and returns that, never the state claimed in the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from django.utils.translation import gettext as _

__all__ = [
    "GatewayPayment",
    "GatewayRefund",
    "GatewayRejected",
    "GatewayState",
    "GatewayUnavailable",
    "PaymentGateway",
    "PaymentGatewayError",
    "PaymentRequest",
    "ReceiptLine",
    "gateway_for",
]


@dataclass(frozen=True)
class ReceiptLine:
    """One line of the receipt the gateway registers for 54-FZ: a service paid in full.

    ``amount`` is the price of one unit including VAT (the gateway multiplies it by
    ``quantity``); ``vat_code`` is the gateway's VAT code, 1 meaning "no VAT".
    """

    description: str
    quantity: Decimal
    amount: Decimal
    vat_code: int = 1


@dataclass(frozen=True)
class PaymentRequest:
    """A payment to create. ``idempotency_key`` is made once per intended payment and reused on
    every retry; ``metadata`` comes back unchanged in the payment and its notifications, so it
    is where the clinic's own ids go. A receipt is sent when ``receipt_lines`` is not empty and
    then needs ``customer_email`` or ``customer_phone``."""

    idempotency_key: str
    amount: Decimal
    currency: str
    description: str
    return_url: str
    metadata: dict[str, str]
    customer_email: str = ""
    customer_phone: str = ""
    receipt_lines: tuple[ReceiptLine, ...] = ()


class GatewayState(StrEnum):
    PENDING = "pending"
    WAITING_FOR_CAPTURE = "waiting_for_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


@dataclass(frozen=True)
class GatewayPayment:
    """A payment as the gateway knows it. ``confirmation_url`` is where the patient goes to pay
    (empty once the gateway no longer offers it); ``raw`` is the gateway's answer as received,
    amounts as strings, kept for reconciliation."""

    id: str
    state: GatewayState
    amount: Decimal
    currency: str
    confirmation_url: str
    metadata: dict[str, str]
    paid: bool
    cancellation_reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayRefund:
    """A refund as the gateway knows it; ``state`` is the gateway's own word (``pending``,
    ``succeeded``, ``canceled``)."""

    id: str
    payment_id: str
    state: str
    amount: Decimal
    raw: dict[str, Any]


class PaymentGatewayError(Exception):
    """Anything a gateway call ended with other than an answer."""


class GatewayUnavailable(PaymentGatewayError):
    """The gateway could not be reached or could not answer now (refused connection, timeout,
    5xx, 429, a request still being processed, an unreadable answer). The request may or may
    not have arrived: retry later with the same idempotency key. ``retry_after_seconds`` is the
    gateway's hint when it gave one."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class GatewayRejected(PaymentGatewayError):
    """The gateway (or the driver, before sending) refused the request for good: bad data,
    wrong credentials, an unknown object, a key reused for another request. Retrying the same
    request gives the same answer; a person or a code change has to act first."""

    def __init__(
        self, code: str, description: str, *, parameter: str = "", status_code: int = 400
    ) -> None:
        detail = f"[{code}] {description}"
        if parameter:
            detail = f"{detail} ({parameter})"
        super().__init__(detail)
        self.code = code
        self.description = description
        self.parameter = parameter
        self.status_code = status_code


class PaymentGateway(Protocol):
    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        """Create the payment, or, when the gateway already has the request's idempotency key
        with the same data, get the payment it made then."""
        ...

    def get_payment(self, payment_id: str) -> GatewayPayment:
        """The payment's current state."""
        ...

    def refund(
        self,
        *,
        idempotency_key: str,
        payment_id: str,
        amount: Decimal,
        currency: str,
        receipt_lines: tuple[ReceiptLine, ...] = (),
        customer_email: str = "",
        customer_phone: str = "",
        description: str = "",
    ) -> GatewayRefund:
        """Return ``amount`` of a succeeded payment to the payer, idempotently by key."""
        ...

    def get_refund(self, refund_id: str) -> GatewayRefund:
        """The refund's current state."""
        ...

    def notification_payment(self, body: bytes) -> GatewayPayment:
        """Parse a notification body and return the payment it concerns, re-read from the
        gateway's API (for a refund's notification, the refunded payment). A body that is not
        a notification raises ``GatewayRejected``."""
        ...

    def notification_refund(self, body: bytes) -> GatewayRefund:
        """Parse a refund's notification body and return the refund, re-read from the API."""
        ...


def gateway_for(config: Mapping[str, Any]) -> PaymentGateway:
    """The gateway a payment settings block describes, e.g. ``{"gateway": "yookassa",
    "shop_id": "...", "secret_key": "..."}``. Raises ``ValueError`` for an unknown gateway or
    missing settings."""
    name = config.get("gateway")
    if name == "yookassa":
        from .yookassa import YooKassaGateway

        return YooKassaGateway.from_config(config)
    raise ValueError(
        _("Unknown payment gateway %(name)r: use %(choices)s.")
        % {"name": name, "choices": "'yookassa'"}
    )
