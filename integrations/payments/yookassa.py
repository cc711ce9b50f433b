"""YooKassa REST API v3 (https://yookassa.ru/developers/api).

HTTP Basic authentication with the shop id and the secret key; every POST carries an
``Idempotence-Key`` header, and YooKassa answers a repeat of the same key and body with the
object it made the first time (the same key with another body is a 400). Amounts travel as
strings with two decimals. HTTP 202 means "still processing, repeat later with the same key";
4xx answers carry ``{"type": "error", "code", "description", "parameter"}``.

YooKassa does not sign notifications. The driver therefore treats a notification only as a hint
of which object changed and reads that object back from the API; ``is_yookassa_address`` checks
the sender against YooKassa's published networks for the view that receives them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from django.utils.translation import gettext as _

from .base import (
    GatewayPayment,
    GatewayRefund,
    GatewayRejected,
    GatewayState,
    GatewayUnavailable,
    PaymentRequest,
    ReceiptLine,
)

__all__ = [
    "DEFAULT_URL",
    "YOOKASSA_NETWORKS",
    "YooKassaGateway",
    "is_yookassa_address",
    "money_value",
]

DEFAULT_URL = "https://api.yookassa.ru/v3"
DEFAULT_TIMEOUT = 15.0
DESCRIPTION_LIMIT = 128
KOPECK = Decimal("0.01")

YOOKASSA_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "185.71.76.0/27",
        "185.71.77.0/27",
        "77.75.153.0/25",
        "77.75.156.11/32",
        "77.75.156.35/32",
        "77.75.154.128/25",
        "2a02:5180::/32",
    )
)

RETRYABLE_STATUSES = frozenset({429})


def is_yookassa_address(address: str) -> bool:
    """Whether a notification's sender address lies in YooKassa's published networks. A second
    line of defence only: the object is re-read from the API whatever the sender."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in YOOKASSA_NETWORKS)


def money_value(amount: Decimal) -> str:
    """An amount as YooKassa writes it: a string with exactly two decimals. An amount that is
    not finite, not positive or has a fraction of a kopeck is refused rather than rounded."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise GatewayRejected(
            "invalid_request", _("The amount must be a decimal number."), parameter="amount"
        )
    if amount <= 0:
        raise GatewayRejected(
            "invalid_request", _("The amount must be greater than zero."), parameter="amount"
        )
    if amount != amount.quantize(KOPECK):
        raise GatewayRejected(
            "invalid_request",
            _("The amount %(amount)s has more than two decimal places.") % {"amount": amount},
            parameter="amount",
        )
    return format(amount.quantize(KOPECK), "f")


def _amount(value: Decimal, currency: str) -> dict[str, str]:
    return {"value": money_value(value), "currency": currency.upper()}


def _phone_digits(phone: str) -> str:
    """YooKassa wants the phone in E.164 digits without the plus ("79001234567")."""
    return "".join(character for character in phone if character.isdigit())


def _receipt(
    lines: tuple[ReceiptLine, ...], currency: str, total: Decimal, email: str, phone: str
) -> dict[str, Any]:
    """The 54-FZ receipt block; refuses what YooKassa would refuse before anything is sent."""
    customer: dict[str, str] = {}
    if email:
        customer["email"] = email
    if phone:
        customer["phone"] = _phone_digits(phone)
    if not customer:
        raise GatewayRejected(
            "invalid_request",
            _("A receipt needs the customer's e-mail or phone."),
            parameter="receipt.customer",
        )
    items = []
    lines_total = Decimal("0")
    for line in lines:
        if not line.quantity.is_finite() or line.quantity <= 0:
            raise GatewayRejected(
                "invalid_request",
                _("A receipt line needs a positive quantity."),
                parameter="receipt.items.quantity",
            )
        items.append(
            {
                "description": line.description[:DESCRIPTION_LIMIT],
                "quantity": format(line.quantity, "f"),
                "amount": _amount(line.amount, currency),
                "vat_code": line.vat_code,
                "payment_mode": "full_payment",
                "payment_subject": "service",
            }
        )
        lines_total += line.amount * line.quantity
    if lines_total != total:
        raise GatewayRejected(
            "invalid_request",
            _("The receipt lines add up to %(lines)s, not to the amount %(total)s.")
            % {"lines": lines_total.quantize(KOPECK), "total": total},
            parameter="receipt.items",
        )
    return {"customer": customer, "items": items}


class YooKassaGateway:
    """One YooKassa shop. Cheap to create; holds one HTTP session."""

    def __init__(
        self,
        *,
        shop_id: str,
        secret_key: str,
        url: str = DEFAULT_URL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.shop_id = shop_id
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.auth = (shop_id, secret_key)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> YooKassaGateway:
        """Settings: ``shop_id`` and ``secret_key`` (required), ``url`` and ``timeout``
        (seconds for each HTTP exchange)."""
        missing = [key for key in ("shop_id", "secret_key") if not config.get(key)]
        if missing:
            raise ValueError(
                _("The YooKassa gateway needs the %(keys)s setting.")
                % {"keys": ", ".join(repr(key) for key in missing)}
            )
        try:
            timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
        except (TypeError, ValueError):
            timeout = -1.0
        if timeout <= 0:
            raise ValueError(_("The YooKassa setting 'timeout' must be a positive number."))
        return cls(
            shop_id=str(config["shop_id"]),
            secret_key=str(config["secret_key"]),
            url=str(config.get("url") or DEFAULT_URL),
            timeout=timeout,
        )

    # The API.

    def create_payment(self, request: PaymentRequest) -> GatewayPayment:
        body: dict[str, Any] = {
            "amount": _amount(request.amount, request.currency),
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": request.return_url},
            "description": request.description[:DESCRIPTION_LIMIT],
            "metadata": dict(request.metadata),
        }
        if request.receipt_lines:
            body["receipt"] = _receipt(
                request.receipt_lines,
                request.currency,
                request.amount,
                request.customer_email,
                request.customer_phone,
            )
        answer = self._call("POST", "/payments", body=body, idempotency_key=request.idempotency_key)
        return self._payment(answer)

    def get_payment(self, payment_id: str) -> GatewayPayment:
        return self._payment(self._call("GET", f"/payments/{self._object_id(payment_id)}"))

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
        body: dict[str, Any] = {
            "payment_id": self._object_id(payment_id),
            "amount": _amount(amount, currency),
        }
        if description:
            body["description"] = description[:DESCRIPTION_LIMIT]
        if receipt_lines:
            body["receipt"] = _receipt(
                receipt_lines, currency, amount, customer_email, customer_phone
            )
        answer = self._call("POST", "/refunds", body=body, idempotency_key=idempotency_key)
        return self._refund(answer)

    def get_refund(self, refund_id: str) -> GatewayRefund:
        return self._refund(self._call("GET", f"/refunds/{self._object_id(refund_id)}"))

    def notification_payment(self, body: bytes) -> GatewayPayment:
        event, notified = self._notification(body)
        if event.startswith("payment."):
            return self.get_payment(self._text(notified, "id", "object.id"))
        if event.startswith("refund."):
            return self.get_payment(self._text(notified, "payment_id", "object.payment_id"))
        raise GatewayRejected(
            "invalid_notification",
            _("The notification event %(event)r is not about a payment.") % {"event": event},
            parameter="event",
        )

    def notification_refund(self, body: bytes) -> GatewayRefund:
        event, notified = self._notification(body)
        if not event.startswith("refund."):
            raise GatewayRejected(
                "invalid_notification",
                _("The notification event %(event)r is not about a refund.") % {"event": event},
                parameter="event",
            )
        return self.get_refund(self._text(notified, "id", "object.id"))

    # Reading answers.

    @staticmethod
    def _object_id(object_id: str) -> str:
        """An id goes into a URL path: refuse anything that could change the path."""
        if not object_id or not all(
            character.isalnum() or character in "-_" for character in object_id
        ):
            raise GatewayRejected(
                "invalid_request",
                _("%(id)r is not a YooKassa object id.") % {"id": object_id},
                parameter="id",
            )
        return object_id

    @staticmethod
    def _notification(body: bytes) -> tuple[str, dict[str, Any]]:
        try:
            parsed = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as error:
            raise GatewayRejected(
                "invalid_notification", _("The notification body is not JSON.")
            ) from error
        if not isinstance(parsed, dict) or parsed.get("type") != "notification":
            raise GatewayRejected(
                "invalid_notification",
                _("The body is not a YooKassa notification."),
                parameter="type",
            )
        event = parsed.get("event")
        notified = parsed.get("object")
        if not isinstance(event, str) or not isinstance(notified, dict):
            raise GatewayRejected(
                "invalid_notification",
                _("The notification has no event or no object."),
                parameter="object",
            )
        return event, notified

    @staticmethod
    def _text(data: Mapping[str, Any], key: str, parameter: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise GatewayRejected(
                "invalid_notification",
                _("The notification has no %(parameter)s.") % {"parameter": parameter},
                parameter=parameter,
            )
        return value

    def _payment(self, data: dict[str, Any]) -> GatewayPayment:
        try:
            amount = data["amount"]
            confirmation = data.get("confirmation") or {}
            cancellation = data.get("cancellation_details") or {}
            metadata = data.get("metadata") or {}
            return GatewayPayment(
                id=str(data["id"]),
                state=GatewayState(data["status"]),
                amount=Decimal(str(amount["value"])),
                currency=str(amount["currency"]),
                confirmation_url=str(confirmation.get("confirmation_url") or ""),
                metadata={str(key): str(value) for key, value in metadata.items()},
                paid=bool(data.get("paid", False)),
                cancellation_reason=str(cancellation.get("reason") or ""),
                raw=data,
            )
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as error:
            raise GatewayUnavailable(
                _("YooKassa answered with a payment that cannot be read: %(error)r")
                % {"error": error}
            ) from error

    def _refund(self, data: dict[str, Any]) -> GatewayRefund:
        try:
            return GatewayRefund(
                id=str(data["id"]),
                payment_id=str(data["payment_id"]),
                state=str(data["status"]),
                amount=Decimal(str(data["amount"]["value"])),
                raw=data,
            )
        except (KeyError, TypeError, ValueError, InvalidOperation) as error:
            raise GatewayUnavailable(
                _("YooKassa answered with a refund that cannot be read: %(error)r")
                % {"error": error}
            ) from error

    # One exchange.

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        idempotency_key: str = "",
    ) -> dict[str, Any]:
        """Send one request and return the JSON object of a 200 answer. Anything that leaves
        the outcome unknown raises ``GatewayUnavailable``; a 4xx raises ``GatewayRejected``."""
        url = f"{self.url}{path}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            if not idempotency_key:
                raise GatewayRejected(
                    "invalid_request",
                    _("A request that creates something needs an idempotency key."),
                    parameter="Idempotence-Key",
                )
            headers["Idempotence-Key"] = idempotency_key
            headers["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(body, ensure_ascii=False).encode()
        try:
            response = self._session.request(
                method, url, data=data, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as error:
            raise GatewayUnavailable(
                _("No answer from YooKassa at %(url)s: %(error)s") % {"url": url, "error": error}
            ) from error
        parsed = self._parsed(response)
        status = response.status_code
        if status == 202:
            retry_after = parsed.get("retry_after") if isinstance(parsed, dict) else None
            raise GatewayUnavailable(
                _("YooKassa is still processing the request; repeat it with the same key."),
                retry_after_seconds=self._seconds(retry_after, scale=1000),
            )
        if status >= 500 or status in RETRYABLE_STATUSES:
            raise GatewayUnavailable(
                _("YooKassa answered HTTP %(status)s at %(url)s.") % {"status": status, "url": url},
                retry_after_seconds=self._retry_after(response),
            )
        if status >= 400:
            refusal = parsed if isinstance(parsed, dict) else {}
            raise GatewayRejected(
                str(refusal.get("code") or f"http_{status}"),
                str(refusal.get("description") or _("YooKassa refused the request.")),
                parameter=str(refusal.get("parameter") or ""),
                status_code=status,
            )
        if not isinstance(parsed, dict):
            raise GatewayUnavailable(
                _("YooKassa answered HTTP %(status)s without a JSON object at %(url)s.")
                % {"status": status, "url": url}
            )
        return parsed

    @staticmethod
    def _parsed(response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError:
            return None

    @classmethod
    def _retry_after(cls, response: requests.Response) -> float | None:
        return cls._seconds(response.headers.get("Retry-After"), scale=1)

    @staticmethod
    def _seconds(value: Any, *, scale: int) -> float | None:
        """A retry hint in seconds (the 202 body gives milliseconds, the header seconds)."""
        try:
            seconds = Decimal(str(value)) / scale
        except (InvalidOperation, TypeError):
            return None
        return float(seconds) if seconds.is_finite() and seconds >= 0 else None
