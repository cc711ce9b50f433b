"""A fake YooKassa for tests and the demo: one HTTP server speaking the REST API v3 paths under
``/v3/`` (create and read payments, create and read refunds) plus a confirmation page.

It checks HTTP Basic authentication (401 ``invalid_credentials``) and requires an
``Idempotence-Key`` on every POST: the same key with the same body answers the first answer
again without making anything new, the same key with another body is a 400 like YooKassa's.
Requests are validated roughly as YooKassa does (amounts as strings with at most two
decimals, a redirect confirmation, a 54-FZ receipt whose lines add up to the amount, refunds
no larger than what is left of a succeeded payment). Payments and refunds live in memory;
every API request is recorded in ``sent`` and every notification delivery in ``notifications``.

The confirmation URL points to ``/__fake__/confirm/{id}``: a small HTML page with "Pay" and
"Cancel" buttons. Posting "Pay" marks the payment succeeded (``waiting_for_capture`` when it
was created with ``capture: false``), posts a ``payment.succeeded`` notification to
``notify_url`` when one is set, and redirects the browser to the payment's ``return_url``.

Modes, switched in process (``set_mode``) or over HTTP (``POST /__fake__/mode {"mode": ...,
"slow_seconds": n}``):

- ``ok``: requests are answered at once;
- ``down``: every API request answers 500 ``internal_server_error`` and changes nothing;
- ``slow``: requests are carried out, then answered only after ``slow_seconds`` (so a client
  with a shorter timeout gives up although the payment exists: its retry must find it);
- ``busy``: every API request answers 429 ``too_many_requests`` and changes nothing;
- ``processing``: every API request answers 202 ``processing`` and changes nothing.

Controls: ``pay(id)``, ``cancel(id)``, ``set_mode()``, ``payments``, ``refunds``, ``sent``,
``notifications``, ``state()``; over HTTP ``POST /__fake__/pay/{id}``, ``POST
/__fake__/cancel/{id}``, ``POST /__fake__/mode``, ``POST /__fake__/notify_url {"url": ...}``
and ``GET /__fake__/state``. Standard library only.

In process: ``fake = FakeYooKassa.start(port=0)``; ``fake.url`` is the API base to configure
the gateway with (``http://127.0.0.1:PORT/v3``), ``fake.root_url`` the server itself;
``fake.stop()``. As a process: ``python -m integrations.payments.fake_yookassa --port 16740``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import html
import json
import re
import signal
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

from clinic.core.fake_peer import FakeHandler, FakeReply, ModalFakePeer, QuietFakeServer, json_reply

__all__ = ["MODES", "FakeYooKassa", "main"]

MODES = ("ok", "down", "slow", "busy", "processing")

MONEY_PATTERN = re.compile(r"^\d{1,10}(\.\d{1,2})?$")
QUANTITY_PATTERN = re.compile(r"^\d{1,10}(\.\d{1,3})?$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
PAYMENT_PATH = re.compile(r"^/v3/payments/([^/]+)$")
REFUND_PATH = re.compile(r"^/v3/refunds/([^/]+)$")
CONFIRM_PATH = re.compile(r"^/__fake__/confirm/([^/]+)$")
CONTROL_PAYMENT_PATH = re.compile(r"^/__fake__/(pay|cancel)/([^/]+)$")

ZERO = Decimal("0.00")
IDEMPOTENCE_KEY_LIMIT = 64
DESCRIPTION_LIMIT = 128
METADATA_KEYS_LIMIT = 16
METADATA_KEY_LIMIT = 32
METADATA_VALUE_LIMIT = 512
VAT_CODES = range(1, 13)
NOTIFICATION_TIMEOUT = 5.0


class _Invalid(Exception):
    """A request YooKassa would refuse: becomes a 4xx error body."""

    def __init__(
        self,
        description: str,
        parameter: str = "",
        code: str = "invalid_request",
        status: int = 400,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.parameter = parameter
        self.code = code
        self.status = status


def _error_body(code: str, description: str, parameter: str = "") -> dict[str, Any]:
    body = {"type": "error", "id": str(uuid.uuid4()), "code": code, "description": description}
    if parameter:
        body["parameter"] = parameter
    return body


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(value: Any, parameter: str) -> Decimal:
    """YooKassa's amount: a string (or number) with at most two decimals, above zero."""
    text = value if isinstance(value, str) else str(value)
    if not MONEY_PATTERN.match(text):
        raise _Invalid(f"Invalid amount value: {text!r}", parameter)
    amount = Decimal(text)
    if amount <= 0:
        raise _Invalid("The amount must be greater than zero", parameter)
    return amount.quantize(Decimal("0.01"))


def _amount(value: Any, parameter: str) -> tuple[Decimal, str]:
    if not isinstance(value, dict):
        raise _Invalid("Amount is missing", parameter)
    currency = value.get("currency")
    if not isinstance(currency, str) or not CURRENCY_PATTERN.match(currency):
        raise _Invalid("Invalid currency", f"{parameter}.currency")
    return _money(value.get("value"), f"{parameter}.value"), currency


def _amount_json(value: Decimal, currency: str) -> dict[str, str]:
    return {"value": format(value, "f"), "currency": currency}


def _receipt_total(receipt: Any, currency: str) -> Decimal:
    """Validate a 54-FZ receipt block and return the sum of its lines."""
    if not isinstance(receipt, dict):
        raise _Invalid("Receipt must be an object", "receipt")
    customer = receipt.get("customer") or {}
    if not isinstance(customer, dict) or not (customer.get("email") or customer.get("phone")):
        raise _Invalid("Receipt customer needs email or phone", "receipt.customer")
    phone = customer.get("phone")
    if phone and (not isinstance(phone, str) or not phone.isdigit()):
        raise _Invalid("Phone must be in ITU-T E.164 format", "receipt.customer.phone")
    items = receipt.get("items")
    if not isinstance(items, list) or not items:
        raise _Invalid("Receipt needs items", "receipt.items")
    total = ZERO
    for item in items:
        if not isinstance(item, dict):
            raise _Invalid("Receipt item must be an object", "receipt.items")
        description = item.get("description")
        if not isinstance(description, str) or not 0 < len(description) <= DESCRIPTION_LIMIT:
            raise _Invalid("Invalid item description", "receipt.items.description")
        quantity_text = str(item.get("quantity"))
        if not QUANTITY_PATTERN.match(quantity_text) or Decimal(quantity_text) <= 0:
            raise _Invalid("Invalid item quantity", "receipt.items.quantity")
        price, item_currency = _amount(item.get("amount"), "receipt.items.amount")
        if item_currency != currency:
            raise _Invalid("Item currency differs", "receipt.items.amount.currency")
        if item.get("vat_code") not in VAT_CODES:
            raise _Invalid("Invalid vat_code", "receipt.items.vat_code")
        if not item.get("payment_mode") or not item.get("payment_subject"):
            raise _Invalid("Item needs payment_mode and payment_subject", "receipt.items")
        total += price * Decimal(quantity_text)
    return total


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > METADATA_KEYS_LIMIT:
        raise _Invalid("Metadata must be an object of at most 16 keys", "metadata")
    for key, item in value.items():
        if len(key) > METADATA_KEY_LIMIT or not isinstance(item, str):
            raise _Invalid(f"Invalid metadata key {key!r}", "metadata")
        if len(item) > METADATA_VALUE_LIMIT:
            raise _Invalid(f"Metadata value of {key!r} is too long", "metadata")
    return dict(value)


class FakeYooKassa(ModalFakePeer):
    """The fake gateway and its HTTP server; see the module docstring for the behaviour."""

    handler_class = FakeHandler
    server_class = QuietFakeServer
    thread_name = "fake-yookassa"
    modes = MODES

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        shop_id: str = "100500",
        secret_key: str = "test_fake_secret_key",  # noqa: S107 - the fake's own test key
        notify_url: str = "",
        slow_seconds: float = 2.0,
        receipt_required: bool = False,
    ) -> None:
        self._modes_init(slow_seconds)
        self._shop_id = shop_id
        self._secret_key = secret_key
        self._notify_url = notify_url
        self._receipt_required = receipt_required
        self._sent: list[dict[str, Any]] = []
        self._notifications: list[dict[str, Any]] = []
        self._payments: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, dict[str, Any]] = {}
        self._undelivered: list[tuple[str, dict[str, Any]]] = []
        self._idempotent: dict[tuple[str, str], tuple[Any, int, dict[str, Any]]] = {}
        self._listen(host, port)

    @property
    def url(self) -> str:
        """The API base, as the gateway's ``url`` setting expects it."""
        return f"{self.root_url}/v3"

    @property
    def shop_id(self) -> str:
        return self._shop_id

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def notify_url(self) -> str:
        with self._lock:
            return self._notify_url

    @notify_url.setter
    def notify_url(self, url: str) -> None:
        with self._lock:
            self._notify_url = url

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every API request received, in order: method, path, headers, body, status."""
        with self._lock:
            return copy.deepcopy(self._sent)

    @property
    def notifications(self) -> list[dict[str, Any]]:
        """Every notification delivery tried: url, body, and status or error."""
        with self._lock:
            return copy.deepcopy(self._notifications)

    @property
    def payments(self) -> dict[str, dict[str, Any]]:
        """The payments by id, as the API would show them."""
        with self._lock:
            return {key: self._shown(payment) for key, payment in self._payments.items()}

    @property
    def refunds(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {key: self._shown(refund) for key, refund in self._refunds.items()}

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": self._mode,
                "slow_seconds": self._slow_seconds,
                "notify_url": self._notify_url,
                "payments": self.payments,
                "refunds": self.refunds,
                "sent": self.sent,
                "notifications": self.notifications,
            }

    # Controls.

    def pay(self, payment_id: str) -> dict[str, Any]:
        """The customer paid on the confirmation page: the payment succeeds (or waits for
        capture) and a notification goes to ``notify_url``. Returns the payment."""
        with self._lock:
            payment = self._pending_payment(payment_id)
            captured = bool(payment["_capture"])
            payment.update(
                status="succeeded" if captured else "waiting_for_capture",
                paid=True,
                refundable=captured,
                payment_method={
                    "type": "bank_card",
                    "id": payment["id"],
                    "saved": False,
                    "title": "Bank card *4444",
                    "card": {"first6": "555555", "last4": "4444", "card_type": "MasterCard"},
                },
            )
            payment.pop("confirmation", None)
            if captured:
                payment["captured_at"] = _now()
                payment["income_amount"] = payment["amount"]
            if "receipt_registration" in payment:
                payment["receipt_registration"] = "succeeded"
            event = "payment.succeeded" if captured else "payment.waiting_for_capture"
            shown = self._shown(payment)
        self._notify(event, shown)
        return shown

    def cancel(
        self, payment_id: str, *, reason: str = "expired_on_confirmation", party: str = "yoo_money"
    ) -> dict[str, Any]:
        """The payment is canceled (by default: the customer never confirmed it) and a
        ``payment.canceled`` notification goes out. Returns the payment."""
        with self._lock:
            payment = self._pending_payment(payment_id)
            payment.update(
                status="canceled",
                paid=False,
                cancellation_details={"party": party, "reason": reason},
            )
            payment.pop("confirmation", None)
            if "receipt_registration" in payment:
                payment["receipt_registration"] = "canceled"
            shown = self._shown(payment)
        self._notify("payment.canceled", shown)
        return shown

    def _pending_payment(self, payment_id: str) -> dict[str, Any]:
        payment = self._payments.get(payment_id)
        if payment is None:
            raise KeyError(f"no payment {payment_id}")
        if payment["status"] != "pending":
            raise ValueError(f"payment {payment_id} is {payment['status']}, not pending")
        return payment

    @staticmethod
    def _shown(record: dict[str, Any]) -> dict[str, Any]:
        """The object as the API shows it, without the fake's private fields."""
        return {key: copy.deepcopy(value) for key, value in record.items() if key[0] != "_"}

    def _notify(self, event: str, shown: dict[str, Any]) -> None:
        """POST a notification to ``notify_url``, outside the lock: the receiver may read the
        object back from this server before it answers."""
        url = self.notify_url
        if not url:
            return
        body = json.dumps(
            {"type": "notification", "event": event, "object": shown}, ensure_ascii=False
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - the test's own receiver URL
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        outcome: dict[str, Any] = {"url": url, "event": event, "body": body.decode()}
        try:
            with urllib.request.urlopen(request, timeout=NOTIFICATION_TIMEOUT) as answer:  # noqa: S310
                outcome["status"] = answer.status
        except urllib.error.HTTPError as error:
            outcome["status"] = error.code
        except (urllib.error.URLError, OSError) as error:
            outcome["error"] = str(error)
        with self._lock:
            self._notifications.append(outcome)

    # HTTP.

    def handle(self, method: str, path: str, raw: bytes, headers: dict[str, str]) -> FakeReply:
        """One HTTP request and its reply."""
        if path.startswith("/__fake__/"):
            return self._control(method, path, raw)
        with self._lock:
            mode = self._mode
            delay = self._slow_seconds if mode == "slow" else 0.0
            status, answer = self._api(mode, method, path, raw, headers)
            self._sent.append(
                {
                    "method": method,
                    "path": path,
                    "headers": headers,
                    "body": raw.decode(errors="replace"),
                    "status": status,
                }
            )
            undelivered, self._undelivered = self._undelivered, []
        for event, shown in undelivered:
            self._notify(event, shown)
        extra = {"Retry-After": "1"} if status == 429 else {}
        return json_reply(status, answer, headers=extra, delay_seconds=delay)

    def _api(
        self, mode: str, method: str, path: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, Any]:
        if mode == "down":
            return 500, _error_body("internal_server_error", "Internal server error")
        if mode == "busy":
            return 429, _error_body("too_many_requests", "Too many requests")
        if mode == "processing":
            return 202, {"type": "processing", "id": str(uuid.uuid4()), "retry_after": 1800}
        lowered = {name.lower(): value for name, value in headers.items()}
        if not self._authorised(lowered.get("authorization", "")):
            return 401, _error_body(
                "invalid_credentials",
                "Login and password or token are incorrect",
                "Authorization",
            )
        path = path.rstrip("/")
        try:
            if method == "POST" and path in ("/v3/payments", "/v3/refunds"):
                return self._idempotent_post(path, raw, lowered.get("idempotence-key", ""))
            match = PAYMENT_PATH.match(path)
            if method == "GET" and match:
                return 200, self._shown(self._found(self._payments, match.group(1)))
            match = REFUND_PATH.match(path)
            if method == "GET" and match:
                return 200, self._shown(self._found(self._refunds, match.group(1)))
        except _Invalid as invalid:
            return invalid.status, _error_body(invalid.code, invalid.description, invalid.parameter)
        return 404, _error_body("not_found", f"No such method: {method} {path}")

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self._shop_id}:{self._secret_key}"

    @staticmethod
    def _found(objects: dict[str, dict[str, Any]], object_id: str) -> dict[str, Any]:
        found = objects.get(object_id)
        if found is None:
            raise _Invalid("Object not found", code="not_found", status=404)
        return found

    def _idempotent_post(self, path: str, raw: bytes, key: str) -> tuple[int, Any]:
        if not key:
            raise _Invalid("Idempotence key is not specified", "Idempotence-Key")
        if len(key) > IDEMPOTENCE_KEY_LIMIT:
            raise _Invalid("Idempotence key is too long", "Idempotence-Key")
        try:
            body = json.loads(raw, parse_float=Decimal) if raw else None
        except ValueError as error:
            raise _Invalid("Request body is not valid JSON") from error
        earlier = self._idempotent.get((path, key))
        if earlier is not None:
            earlier_body, status, answer = earlier
            if earlier_body != body:
                raise _Invalid("Idempotence key duplicated", "Idempotence-Key")
            return status, copy.deepcopy(answer)
        if not isinstance(body, dict):
            raise _Invalid("Request body must be a JSON object")
        create = self._create_payment if path == "/v3/payments" else self._create_refund
        answer = create(body)
        self._idempotent[(path, key)] = (body, 200, copy.deepcopy(answer))
        return 200, answer

    def _create_payment(self, body: dict[str, Any]) -> dict[str, Any]:
        amount, currency = _amount(body.get("amount"), "amount")
        confirmation = body.get("confirmation")
        if not isinstance(confirmation, dict) or confirmation.get("type") != "redirect":
            raise _Invalid("Only redirect confirmation is supported here", "confirmation.type")
        return_url = confirmation.get("return_url")
        if not isinstance(return_url, str) or not return_url:
            raise _Invalid("Return URL is missing", "confirmation.return_url")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > DESCRIPTION_LIMIT:
            raise _Invalid("Description is longer than 128 characters", "description")
        metadata = _metadata(body.get("metadata"))
        receipt = body.get("receipt")
        if receipt is None and self._receipt_required:
            raise _Invalid("Receipt is missing or illegal", "receipt")
        if receipt is not None and _receipt_total(receipt, currency) != amount:
            raise _Invalid("Receipt items do not add up to the payment amount", "receipt")
        payment_id = str(uuid.uuid4())
        payment: dict[str, Any] = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": _amount_json(amount, currency),
            "confirmation": {
                "type": "redirect",
                "return_url": return_url,
                "confirmation_url": f"{self.root_url}/__fake__/confirm/{payment_id}",
            },
            "created_at": _now(),
            "description": description,
            "metadata": metadata,
            "recipient": {"account_id": self._shop_id, "gateway_id": "1000001"},
            "refundable": False,
            "test": True,
            "_capture": body.get("capture") is True,
            "_return_url": return_url,
            "_refunded": ZERO,
        }
        if receipt is not None:
            payment["receipt_registration"] = "pending"
        self._payments[payment_id] = payment
        return self._shown(payment)

    def _create_refund(self, body: dict[str, Any]) -> dict[str, Any]:
        payment_id = body.get("payment_id")
        if not isinstance(payment_id, str) or payment_id not in self._payments:
            raise _Invalid("Payment not found", "payment_id")
        payment = self._payments[payment_id]
        if payment["status"] != "succeeded":
            raise _Invalid("Only a succeeded payment can be refunded", "payment_id")
        amount, currency = _amount(body.get("amount"), "amount")
        if currency != payment["amount"]["currency"]:
            raise _Invalid("Refund currency differs from the payment's", "amount.currency")
        refunded = payment["_refunded"] + amount
        if refunded > Decimal(payment["amount"]["value"]):
            raise _Invalid("Refund amount exceeds what is left of the payment", "amount.value")
        receipt = body.get("receipt")
        if receipt is None and self._receipt_required:
            raise _Invalid("Receipt is missing or illegal", "receipt")
        if receipt is not None and _receipt_total(receipt, currency) != amount:
            raise _Invalid("Receipt items do not add up to the refund amount", "receipt")
        refund_id = str(uuid.uuid4())
        refund: dict[str, Any] = {
            "id": refund_id,
            "payment_id": payment_id,
            "status": "succeeded",
            "amount": _amount_json(amount, currency),
            "created_at": _now(),
        }
        if isinstance(body.get("description"), str):
            refund["description"] = body["description"]
        if receipt is not None:
            refund["receipt_registration"] = "succeeded"
        self._refunds[refund_id] = refund
        payment["_refunded"] = refunded
        payment["refunded_amount"] = _amount_json(refunded, currency)
        payment["refundable"] = refunded < Decimal(payment["amount"]["value"])
        shown = self._shown(refund)
        self._undelivered.append(("refund.succeeded", shown))
        return copy.deepcopy(shown)

    # The confirmation page and the controls over HTTP.

    def _control(self, method: str, path: str, raw: bytes) -> FakeReply:
        match = CONFIRM_PATH.match(path)
        if match:
            return self._confirm_page(method, match.group(1), raw)
        if method == "GET" and path == "/__fake__/state":
            return json_reply(200, self.state())
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return json_reply(400, {"error": "body is not JSON"})
        if not isinstance(body, dict):
            return json_reply(400, {"error": "body is not a JSON object"})
        match = CONTROL_PAYMENT_PATH.match(path)
        if method == "POST" and match:
            action, payment_id = match.groups()
            try:
                payment = self.pay(payment_id) if action == "pay" else self.cancel(payment_id)
            except KeyError as error:
                return json_reply(404, {"error": str(error)})
            except ValueError as error:
                return json_reply(409, {"error": str(error)})
            return json_reply(200, payment)
        if method == "POST" and path == "/__fake__/mode":
            slow_seconds = body.get("slow_seconds")
            try:
                self.set_mode(
                    str(body.get("mode")),
                    slow_seconds=None if slow_seconds is None else float(slow_seconds),
                )
            except (TypeError, ValueError) as error:
                return json_reply(400, {"error": str(error)})
            return json_reply(200, {"mode": self.mode})
        if method == "POST" and path == "/__fake__/notify_url":
            self.notify_url = str(body.get("url") or "")
            return json_reply(200, {"notify_url": self.notify_url})
        return json_reply(404, {"error": f"no control {method} {path}"})

    def _confirm_page(self, method: str, payment_id: str, raw: bytes) -> FakeReply:
        """GET shows the page; POST acts on a pending payment (a payment already decided is
        left as it is) and sends the browser back to the shop."""
        with self._lock:
            payment = self._payments.get(payment_id)
            shown = None if payment is None else self._shown(payment)
            return_url = "" if payment is None else str(payment["_return_url"])
        if shown is None:
            page = b"<!doctype html><title>Not found</title><p>No such payment.</p>"
            return FakeReply(404, page, "text/html; charset=utf-8")
        if method != "POST":
            return FakeReply(200, self._confirm_html(shown), "text/html; charset=utf-8")
        action = parse_qs(raw.decode(errors="replace")).get("action", [""])[0]
        try:
            if action == "pay":
                self.pay(payment_id)
            elif action == "cancel":
                self.cancel(payment_id, reason="canceled_by_merchant", party="merchant")
        except ValueError:
            pass
        return FakeReply(303, b"", "text/plain", headers={"Location": return_url})

    @staticmethod
    def _confirm_html(payment: dict[str, Any]) -> bytes:
        amount = payment["amount"]
        pending = payment["status"] == "pending"
        buttons = (
            '<button type="submit" name="action" value="pay">Pay</button> '
            '<button type="submit" name="action" value="cancel">Cancel</button>'
            if pending
            else f'<p id="status">Payment is {html.escape(payment["status"])}.</p>'
            '<button type="submit" name="action" value="return">Return to the shop</button>'
        )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>YooKassa (fake): payment</title></head>
<body>
<h1>Payment</h1>
<p id="description">{html.escape(payment.get("description", ""))}</p>
<p id="amount">{html.escape(amount["value"])} {html.escape(amount["currency"])}</p>
<form method="post" action="/__fake__/confirm/{html.escape(payment["id"])}">
{buttons}
</form>
</body></html>
"""
        return page.encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m integrations.payments.fake_yookassa",
        description="A fake YooKassa: REST API v3 payments and refunds, a confirmation page.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=16740)
    parser.add_argument("--shop-id", default="100500")
    parser.add_argument("--secret-key", default="test_fake_secret_key")
    parser.add_argument("--notify-url", default="")
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    parser.add_argument("--receipt-required", action="store_true")
    arguments = parser.parse_args(argv)
    fake = FakeYooKassa(
        arguments.host,
        arguments.port,
        shop_id=arguments.shop_id,
        secret_key=arguments.secret_key,
        notify_url=arguments.notify_url,
        slow_seconds=arguments.slow_seconds,
        receipt_required=arguments.receipt_required,
    )

    def stop(signal_number: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"Fake YooKassa listening on {fake.root_url}", flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
