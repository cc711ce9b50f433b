"""Online payment gateways: the request/answer types billing uses and the drivers behind them.

``gateway_for(config)`` picks the driver from a payment settings block; see ``base`` for the
contract (idempotent creation keyed by the caller's key, notifications re-read from the API).
"""

from .base import (
    GatewayPayment,
    GatewayRefund,
    GatewayRejected,
    GatewayState,
    GatewayUnavailable,
    PaymentGateway,
    PaymentGatewayError,
    PaymentRequest,
    ReceiptLine,
    gateway_for,
)

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
