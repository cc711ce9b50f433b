"""What the billing app hands to a fiscal register and what it gets back, independent of the
register's protocol.

Every task carries a ``uuid`` made before the first attempt. Drivers send it to the peer as the
idempotency key and never invent another, so repeating ``submit()`` after a crash or a timeout
cannot print a second receipt: the peer recognises the uuid and the driver only looks up the
outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from django.utils.translation import gettext as _

__all__ = [
    "DeviceUnavailable",
    "FiscalDeviceError",
    "FiscalDriver",
    "FiscalOperation",
    "FiscalRejected",
    "FiscalResult",
    "FiscalState",
    "FiscalTask",
    "ReceiptItem",
    "ReceiptPayment",
    "TaskUnknown",
    "driver_for",
]


class FiscalOperation(StrEnum):
    SELL = "sell"
    SELL_RETURN = "sell_return"
    OPEN_SHIFT = "open_shift"
    CLOSE_SHIFT = "close_shift"
    REPORT_X = "report_x"
    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"


RECEIPT_OPERATIONS = frozenset({FiscalOperation.SELL, FiscalOperation.SELL_RETURN})
SHIFT_OPERATIONS = frozenset(
    {FiscalOperation.OPEN_SHIFT, FiscalOperation.CLOSE_SHIFT, FiscalOperation.REPORT_X}
)
CASH_OPERATIONS = frozenset({FiscalOperation.CASH_IN, FiscalOperation.CASH_OUT})

TAX_TYPES = frozenset({"none", "vat0", "vat10", "vat20", "vat22"})
PAYMENT_KINDS = frozenset({"cash", "electronically", "prepaid"})


@dataclass(frozen=True)
class ReceiptItem:
    """One line of a receipt. Every line is a service paid in full (payment object "service",
    payment method "fullPayment"), which is what a clinic sells.

    ``tax`` is one of ``TAX_TYPES``; billing's ``no_vat`` is accepted as ``none``.
    """

    name: str
    price: Decimal
    quantity: Decimal
    amount: Decimal
    tax: str


@dataclass(frozen=True)
class ReceiptPayment:
    """How much of the receipt was paid one way: ``cash``, ``electronically`` (card, transfer) or
    ``prepaid`` (an advance taken earlier)."""

    kind: str
    amount: Decimal


@dataclass(frozen=True)
class FiscalTask:
    """One thing for the register to do.

    ``uuid`` is the idempotency key: made before the first attempt and sent unchanged on every
    retry. ``taxation_type`` may be spelt the ATOL web server's way (``usnIncome``) or the ATOL
    Online way (``usn_income``); each driver converts it. ``company_*`` and ``payment_address``
    are needed by the cloud register only and fall back to the driver's configuration.
    """

    uuid: str
    operation: FiscalOperation
    operator_name: str = ""
    operator_inn: str = ""
    items: tuple[ReceiptItem, ...] = ()
    payments: tuple[ReceiptPayment, ...] = ()
    total: Decimal = Decimal("0")
    cash_amount: Decimal = Decimal("0")
    client_email: str = ""
    client_phone: str = ""
    taxation_type: str = "osn"
    company_inn: str = ""
    company_email: str = ""
    payment_address: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe form for storing the task with the receipt row (amounts as strings, so
        they survive the round trip exactly)."""
        return {
            "uuid": self.uuid,
            "operation": str(self.operation),
            "operator_name": self.operator_name,
            "operator_inn": self.operator_inn,
            "items": [
                {
                    "name": item.name,
                    "price": str(item.price),
                    "quantity": str(item.quantity),
                    "amount": str(item.amount),
                    "tax": item.tax,
                }
                for item in self.items
            ],
            "payments": [
                {"kind": payment.kind, "amount": str(payment.amount)} for payment in self.payments
            ],
            "total": str(self.total),
            "cash_amount": str(self.cash_amount),
            "client_email": self.client_email,
            "client_phone": self.client_phone,
            "taxation_type": self.taxation_type,
            "company_inn": self.company_inn,
            "company_email": self.company_email,
            "payment_address": self.payment_address,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FiscalTask:
        """The inverse of ``as_dict``."""
        return cls(
            uuid=str(data["uuid"]),
            operation=FiscalOperation(data["operation"]),
            operator_name=data.get("operator_name", ""),
            operator_inn=data.get("operator_inn", ""),
            items=tuple(
                ReceiptItem(
                    name=item["name"],
                    price=Decimal(item["price"]),
                    quantity=Decimal(item["quantity"]),
                    amount=Decimal(item["amount"]),
                    tax=item["tax"],
                )
                for item in data.get("items", ())
            ),
            payments=tuple(
                ReceiptPayment(kind=payment["kind"], amount=Decimal(payment["amount"]))
                for payment in data.get("payments", ())
            ),
            total=Decimal(data.get("total", "0")),
            cash_amount=Decimal(data.get("cash_amount", "0")),
            client_email=data.get("client_email", ""),
            client_phone=data.get("client_phone", ""),
            taxation_type=data.get("taxation_type", "osn"),
            company_inn=data.get("company_inn", ""),
            company_email=data.get("company_email", ""),
            payment_address=data.get("payment_address", ""),
        )


class FiscalState(StrEnum):
    DONE = "done"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class FiscalResult:
    """The outcome of a task as far as the peer knows it.

    ``report`` is the peer's raw answer, JSON-safe (fractional numbers as decimal strings), kept
    for reconciliation: X/Z reports put the shift counters under ``report["shiftTotals"]``; the
    cloud driver puts the cloud's own document id under ``report["cloud_uuid"]``, which
    ``status()`` needs later.
    """

    state: FiscalState
    uuid: str
    fn_number: str = ""
    fiscal_document_number: str = ""
    fiscal_document_sign: str = ""
    receipt_number: str = ""
    shift_number: str = ""
    receipt_datetime: str = ""
    total: Decimal | None = None
    report: dict[str, Any] = field(default_factory=dict)
    error_code: str = ""
    error_text: str = ""


class FiscalDeviceError(Exception):
    """Anything a register or its server reported as a failure."""


class DeviceUnavailable(FiscalDeviceError):
    """The peer could not be reached or could not answer now (refused connection, timeout, a 5xx
    answer, no token). Retry later with the same task: nothing is printed twice."""


class FiscalRejected(FiscalDeviceError):
    """The peer refused the task for good (bad data, closed shift, printer fault). Retrying the
    same task gives the same answer; a person has to act first."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"[{code}] {text}")
        self.code = code
        self.text = text


class TaskUnknown(LookupError):
    """The peer has no task with this uuid: it was never accepted, so sending it is safe."""


class FiscalDriver(Protocol):
    def submit(self, task: FiscalTask) -> FiscalResult:
        """Send the task (or, when the peer already has its uuid, only look it up) and wait up to
        the driver's poll budget. Returns DONE or PENDING; raises ``DeviceUnavailable`` or
        ``FiscalRejected``."""
        ...

    def status(self, uuid: str, *, cloud_uuid: str = "") -> FiscalResult:
        """The current state of a task sent earlier, without waiting: DONE, PENDING, or FAILED
        with ``error_code``/``error_text`` when the peer refused it. Raises ``TaskUnknown`` when
        the peer does not know the uuid, ``DeviceUnavailable`` when it cannot be asked.
        ``cloud_uuid`` is for peers that name documents their own way (ATOL Online): pass
        ``report["cloud_uuid"]`` of an earlier result; the web server driver ignores it."""
        ...


def driver_for(config: Mapping[str, Any]) -> FiscalDriver:
    """The driver a cash register's settings describe, e.g. ``{"driver": "atol_web", "url":
    "http://127.0.0.1:16732"}``. Raises ``ValueError`` for an unknown driver or missing settings."""
    name = config.get("driver")
    if name == "atol_web":
        from .atol_web import AtolWebDriver

        return AtolWebDriver.from_config(config)
    if name == "atol_online":
        from .atol_online import AtolOnlineDriver

        return AtolOnlineDriver.from_config(config)
    raise ValueError(
        _("Unknown fiscal driver %(name)r: use %(choices)s.")
        % {"name": name, "choices": "'atol_web', 'atol_online'"}
    )


def required_setting(config: Mapping[str, Any], key: str, driver: str) -> Any:
    """A setting without which the driver cannot work; a clear ValueError otherwise."""
    value = config.get(key)
    if value in (None, ""):
        raise ValueError(
            _("The %(driver)s fiscal driver needs the %(key)r setting.")
            % {"driver": driver, "key": key}
        )
    return value


def number_setting(config: Mapping[str, Any], key: str, default: float) -> float:
    """A positive duration setting (seconds); a clear ValueError when it is not a number."""
    value = config.get(key, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds < 0:
        raise ValueError(
            _("The fiscal driver setting %(key)r must be a non-negative number of seconds.")
            % {"key": key}
        )
    return seconds


def normalised_tax(tax: str) -> str:
    """Billing's ``no_vat`` is the registers' ``none``; anything outside ``TAX_TYPES`` is refused
    before it reaches the register."""
    value = "none" if tax == "no_vat" else tax
    if value not in TAX_TYPES:
        raise FiscalRejected(
            "invalid_task", _("Unknown VAT type %(tax)r on a receipt line.") % {"tax": tax}
        )
    return value


def check_receipt(task: FiscalTask) -> None:
    """Refuse a receipt the register would refuse anyway, before anything is sent: no lines, no
    payments, an unknown payment kind, or payments that do not cover the total."""
    if not task.items:
        raise FiscalRejected("invalid_task", _("A receipt needs at least one line."))
    if not task.payments:
        raise FiscalRejected("invalid_task", _("A receipt needs at least one payment."))
    for payment in task.payments:
        if payment.kind not in PAYMENT_KINDS:
            raise FiscalRejected(
                "invalid_task",
                _("Unknown payment kind %(kind)r on a receipt.") % {"kind": payment.kind},
            )
    if sum((payment.amount for payment in task.payments), Decimal("0")) < task.total:
        raise FiscalRejected("invalid_task", _("The payments do not cover the receipt total."))
