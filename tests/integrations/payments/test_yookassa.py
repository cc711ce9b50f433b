"""The YooKassa driver against the fake YooKassa over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from integrations.payments import (
    GatewayPayment,
    GatewayRejected,
    GatewayState,
    GatewayUnavailable,
    PaymentRequest,
    ReceiptLine,
    gateway_for,
)
from integrations.payments.fake_yookassa import FakeYooKassa
from integrations.payments.yookassa import YooKassaGateway, is_yookassa_address

SHOP_ID = "506751"
SECRET_KEY = "test_clinic_secret"
RETURN_URL = "https://clinic.example.org/portal/payments/return"
PROJECT_DIR = Path(__file__).resolve().parents[3]


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True
    bodies: list[bytes]
    arrived: threading.Event


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.bodies.append(self.rfile.read(length))
        self.server.arrived.set()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    """A small HTTP server standing in for the clinic's notification endpoint."""
    server = _Receiver(("127.0.0.1", 0), _ReceiverHandler)
    server.bodies = []
    server.arrived = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def receiver_url(server: _Receiver) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/webhooks/yookassa"


@pytest.fixture
def fake() -> Iterator[FakeYooKassa]:
    server = FakeYooKassa.start(port=0, shop_id=SHOP_ID, secret_key=SECRET_KEY)
    yield server
    server.stop()


def gateway(fake: FakeYooKassa, **overrides: Any) -> YooKassaGateway:
    config = {
        "gateway": "yookassa",
        "shop_id": SHOP_ID,
        "secret_key": SECRET_KEY,
        "url": fake.url,
        "timeout": 5,
        **overrides,
    }
    driver = gateway_for(config)
    assert isinstance(driver, YooKassaGateway)
    return driver


def payment_request(**fields: Any) -> PaymentRequest:
    values: dict[str, Any] = {
        "idempotency_key": str(uuid.uuid4()),
        "amount": Decimal("1500.00"),
        "currency": "RUB",
        "description": "Invoice 2024-0042",
        "return_url": RETURN_URL,
        "metadata": {"invoice": "0b4f7c1e", "branch": "central"},
        "customer_email": "patient@example.org",
        "receipt_lines": (
            ReceiptLine(
                description="Therapist consultation", quantity=Decimal("1"), amount=Decimal("1000")
            ),
            ReceiptLine(description="Blood test", quantity=Decimal("2"), amount=Decimal("250.00")),
        ),
    }
    values.update(fields)
    return PaymentRequest(**values)


def paid_payment(fake: FakeYooKassa) -> GatewayPayment:
    created = gateway(fake).create_payment(payment_request())
    fake.pay(created.id)
    return created


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_create_payment_sends_yookassa_request_with_receipt_auth_and_key(
    fake: FakeYooKassa,
) -> None:
    request = payment_request(customer_phone="+7 (900) 123-45-67")

    payment = gateway(fake).create_payment(request)

    [sent] = fake.sent
    headers = {name.lower(): value for name, value in sent["headers"].items()}
    credentials = base64.b64encode(f"{SHOP_ID}:{SECRET_KEY}".encode()).decode()
    assert (sent["method"], sent["path"], sent["status"]) == ("POST", "/v3/payments", 200)
    assert headers["authorization"] == f"Basic {credentials}"
    assert headers["idempotence-key"] == request.idempotency_key
    assert json.loads(sent["body"]) == {
        "amount": {"value": "1500.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": RETURN_URL},
        "description": "Invoice 2024-0042",
        "metadata": {"invoice": "0b4f7c1e", "branch": "central"},
        "receipt": {
            "customer": {"email": "patient@example.org", "phone": "79001234567"},
            "items": [
                {
                    "description": "Therapist consultation",
                    "quantity": "1",
                    "amount": {"value": "1000.00", "currency": "RUB"},
                    "vat_code": 1,
                    "payment_mode": "full_payment",
                    "payment_subject": "service",
                },
                {
                    "description": "Blood test",
                    "quantity": "2",
                    "amount": {"value": "250.00", "currency": "RUB"},
                    "vat_code": 1,
                    "payment_mode": "full_payment",
                    "payment_subject": "service",
                },
            ],
        },
    }
    assert payment == GatewayPayment(
        id=payment.id,
        state=GatewayState.PENDING,
        amount=Decimal("1500.00"),
        currency="RUB",
        confirmation_url=f"{fake.root_url}/__fake__/confirm/{payment.id}",
        metadata={"invoice": "0b4f7c1e", "branch": "central"},
        paid=False,
        raw=fake.payments[payment.id],
    )
    assert list(fake.payments) == [payment.id]


def test_a_payment_without_receipt_lines_sends_no_receipt(fake: FakeYooKassa) -> None:
    gateway(fake).create_payment(payment_request(receipt_lines=(), customer_email=""))

    assert "receipt" not in json.loads(fake.sent[0]["body"])


def test_a_retry_with_the_same_key_returns_the_same_payment(fake: FakeYooKassa) -> None:
    request = payment_request()
    driver = gateway(fake)

    first = driver.create_payment(request)
    second = driver.create_payment(request)

    assert second.id == first.id
    assert list(fake.payments) == [first.id]
    assert [entry["status"] for entry in fake.sent] == [200, 200]


def test_the_same_key_with_another_body_is_rejected(fake: FakeYooKassa) -> None:
    request = payment_request()
    driver = gateway(fake)
    driver.create_payment(request)

    with pytest.raises(GatewayRejected) as rejected:
        driver.create_payment(
            payment_request(idempotency_key=request.idempotency_key, description="Another invoice")
        )

    assert (rejected.value.code, rejected.value.parameter, rejected.value.status_code) == (
        "invalid_request",
        "Idempotence-Key",
        400,
    )
    assert len(fake.payments) == 1


@pytest.mark.parametrize("mode", ["down", "busy", "processing"])
def test_a_gateway_that_cannot_answer_now_is_unavailable_and_the_retry_makes_one_payment(
    fake: FakeYooKassa, mode: str
) -> None:
    request = payment_request()
    driver = gateway(fake)
    fake.set_mode(mode)

    with pytest.raises(GatewayUnavailable):
        driver.create_payment(request)
    fake.set_mode("ok")
    payment = driver.create_payment(request)

    assert list(fake.payments) == [payment.id]
    assert [entry["status"] for entry in fake.sent] == [
        {"down": 500, "busy": 429, "processing": 202}[mode],
        200,
    ]


def test_processing_answer_carries_the_retry_hint(fake: FakeYooKassa) -> None:
    fake.set_mode("processing")

    with pytest.raises(GatewayUnavailable) as unavailable:
        gateway(fake).create_payment(payment_request())

    assert unavailable.value.retry_after_seconds == 1.8


def test_a_timeout_after_the_gateway_made_the_payment_is_recovered_by_the_retry(
    fake: FakeYooKassa,
) -> None:
    request = payment_request()
    fake.set_mode("slow", slow_seconds=1.0)

    with pytest.raises(GatewayUnavailable):
        gateway(fake, timeout=0.2).create_payment(request)
    [made_while_slow] = fake.payments
    fake.set_mode("ok")
    payment = gateway(fake).create_payment(request)

    assert payment.id == made_while_slow
    assert len(fake.payments) == 1


def test_an_unreachable_gateway_is_unavailable() -> None:
    driver = gateway_for(
        {
            "gateway": "yookassa",
            "shop_id": SHOP_ID,
            "secret_key": SECRET_KEY,
            "url": f"http://127.0.0.1:{free_port()}/v3",
            "timeout": 2,
        }
    )

    with pytest.raises(GatewayUnavailable):
        driver.get_payment("2d6c5a3e-000f-5000-9000-1b3f5a8c6e21")


def test_wrong_credentials_are_rejected(fake: FakeYooKassa) -> None:
    with pytest.raises(GatewayRejected) as rejected:
        gateway(fake, secret_key="not-the-key").create_payment(payment_request())

    assert (rejected.value.code, rejected.value.status_code) == ("invalid_credentials", 401)
    assert fake.payments == {}


@pytest.mark.parametrize(
    ("fields", "parameter"),
    [
        ({"amount": Decimal("1500.005")}, "amount"),
        ({"amount": Decimal("0")}, "amount"),
        ({"amount": Decimal("1400.00")}, "receipt.items"),
        ({"customer_email": "", "customer_phone": ""}, "receipt.customer"),
    ],
)
def test_requests_the_gateway_would_refuse_are_refused_before_sending(
    fake: FakeYooKassa, fields: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(GatewayRejected) as rejected:
        gateway(fake).create_payment(payment_request(**fields))

    assert (rejected.value.code, rejected.value.parameter) == ("invalid_request", parameter)
    assert fake.sent == []


def test_the_fake_refuses_a_receipt_that_does_not_add_up(fake: FakeYooKassa) -> None:
    body = {
        "amount": {"value": "100.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": RETURN_URL},
        "receipt": {
            "customer": {"email": "patient@example.org"},
            "items": [
                {
                    "description": "Consultation",
                    "quantity": "1",
                    "amount": {"value": "90.00", "currency": "RUB"},
                    "vat_code": 1,
                    "payment_mode": "full_payment",
                    "payment_subject": "service",
                }
            ],
        },
    }

    answer = requests.post(
        f"{fake.url}/payments",
        json=body,
        auth=(SHOP_ID, SECRET_KEY),
        headers={"Idempotence-Key": "receipt-check-1"},
        timeout=5,
    )

    assert answer.status_code == 400
    assert answer.json()["type"] == "error"
    assert (answer.json()["code"], answer.json()["parameter"]) == ("invalid_request", "receipt")


def test_a_post_without_idempotence_key_is_refused_by_the_fake(fake: FakeYooKassa) -> None:
    answer = requests.post(f"{fake.url}/payments", json={}, auth=(SHOP_ID, SECRET_KEY), timeout=5)

    assert answer.status_code == 400
    assert answer.json()["parameter"] == "Idempotence-Key"


def test_get_after_the_customer_paid_shows_succeeded(fake: FakeYooKassa) -> None:
    created = paid_payment(fake)

    payment = gateway(fake).get_payment(created.id)

    assert (payment.state, payment.paid, payment.amount) == (
        GatewayState.SUCCEEDED,
        True,
        Decimal("1500.00"),
    )
    assert payment.confirmation_url == ""
    assert payment.metadata == {"invoice": "0b4f7c1e", "branch": "central"}


def test_get_a_canceled_payment_gives_the_reason(fake: FakeYooKassa) -> None:
    created = gateway(fake).create_payment(payment_request())
    fake.cancel(created.id)

    payment = gateway(fake).get_payment(created.id)

    assert (payment.state, payment.paid, payment.cancellation_reason) == (
        GatewayState.CANCELED,
        False,
        "expired_on_confirmation",
    )


def test_get_an_unknown_payment_is_rejected_as_not_found(fake: FakeYooKassa) -> None:
    with pytest.raises(GatewayRejected) as rejected:
        gateway(fake).get_payment("2d6c5a3e-000f-5000-9000-1b3f5a8c6e21")

    assert (rejected.value.code, rejected.value.status_code) == ("not_found", 404)


def test_an_id_that_would_change_the_url_path_is_refused(fake: FakeYooKassa) -> None:
    with pytest.raises(GatewayRejected):
        gateway(fake).get_payment("../refunds/x")

    assert fake.sent == []


def test_a_forged_notification_yields_the_state_read_from_the_api(fake: FakeYooKassa) -> None:
    created = gateway(fake).create_payment(payment_request())
    forged = json.dumps(
        {
            "type": "notification",
            "event": "payment.succeeded",
            "object": {
                "id": created.id,
                "status": "succeeded",
                "paid": True,
                "amount": {"value": "1500.00", "currency": "RUB"},
            },
        }
    ).encode()

    payment = gateway(fake).notification_payment(forged)

    assert (payment.id, payment.state, payment.paid) == (created.id, GatewayState.PENDING, False)
    assert [(entry["method"], entry["path"]) for entry in fake.sent][-1] == (
        "GET",
        f"/v3/payments/{created.id}",
    )


def test_the_notification_sent_after_payment_gives_succeeded(
    fake: FakeYooKassa, receiver: _Receiver
) -> None:
    fake.notify_url = receiver_url(receiver)
    created = paid_payment(fake)

    [body] = receiver.bodies
    payment = gateway(fake).notification_payment(body)

    assert json.loads(body)["event"] == "payment.succeeded"
    assert (payment.id, payment.state, payment.paid) == (created.id, GatewayState.SUCCEEDED, True)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"type": "payment", "event": "payment.succeeded", "object": {"id": "a1"}}',
        b'{"type": "notification", "event": "payment.succeeded"}',
        b'{"type": "notification", "event": "payment.succeeded", "object": {"id": ""}}',
        b'{"type": "notification", "event": "payout.succeeded", "object": {"id": "a1"}}',
    ],
)
def test_a_malformed_notification_is_rejected_without_asking_the_gateway(
    fake: FakeYooKassa, body: bytes
) -> None:
    with pytest.raises(GatewayRejected) as rejected:
        gateway(fake).notification_payment(body)

    assert rejected.value.code == "invalid_notification"
    assert fake.sent == []


def test_refund_sends_amount_and_receipt_and_is_idempotent(fake: FakeYooKassa) -> None:
    payment = paid_payment(fake)
    driver = gateway(fake)
    key = str(uuid.uuid4())
    arguments: dict[str, Any] = {
        "idempotency_key": key,
        "payment_id": payment.id,
        "amount": Decimal("250.00"),
        "currency": "RUB",
        "receipt_lines": (
            ReceiptLine(description="Blood test", quantity=Decimal("1"), amount=Decimal("250")),
        ),
        "customer_email": "patient@example.org",
    }

    refund = driver.refund(**arguments)
    repeated = driver.refund(**arguments)
    after = driver.get_payment(payment.id)

    refund_requests = [entry for entry in fake.sent if entry["path"] == "/v3/refunds"]
    assert json.loads(refund_requests[0]["body"]) == {
        "payment_id": payment.id,
        "amount": {"value": "250.00", "currency": "RUB"},
        "receipt": {
            "customer": {"email": "patient@example.org"},
            "items": [
                {
                    "description": "Blood test",
                    "quantity": "1",
                    "amount": {"value": "250.00", "currency": "RUB"},
                    "vat_code": 1,
                    "payment_mode": "full_payment",
                    "payment_subject": "service",
                }
            ],
        },
    }
    assert {entry["headers"]["Idempotence-Key"] for entry in refund_requests} == {key}
    assert (refund.payment_id, refund.state, refund.amount) == (
        payment.id,
        "succeeded",
        Decimal("250.00"),
    )
    assert repeated.id == refund.id
    assert list(fake.refunds) == [refund.id]
    assert after.raw["refunded_amount"] == {"value": "250.00", "currency": "RUB"}
    assert driver.get_refund(refund.id).amount == Decimal("250.00")


def test_refunding_more_than_is_left_is_rejected(fake: FakeYooKassa) -> None:
    payment = paid_payment(fake)
    driver = gateway(fake)
    driver.refund(
        idempotency_key=str(uuid.uuid4()),
        payment_id=payment.id,
        amount=Decimal("1000.00"),
        currency="RUB",
    )

    with pytest.raises(GatewayRejected) as rejected:
        driver.refund(
            idempotency_key=str(uuid.uuid4()),
            payment_id=payment.id,
            amount=Decimal("500.01"),
            currency="RUB",
        )

    assert (rejected.value.code, rejected.value.parameter) == ("invalid_request", "amount.value")
    assert len(fake.refunds) == 1


def test_refunding_a_pending_payment_is_rejected(fake: FakeYooKassa) -> None:
    payment = gateway(fake).create_payment(payment_request())

    with pytest.raises(GatewayRejected) as rejected:
        gateway(fake).refund(
            idempotency_key=str(uuid.uuid4()),
            payment_id=payment.id,
            amount=Decimal("100.00"),
            currency="RUB",
        )

    assert rejected.value.parameter == "payment_id"
    assert fake.refunds == {}


def test_a_refund_notification_is_re_read_as_refund_and_as_its_payment(
    fake: FakeYooKassa, receiver: _Receiver
) -> None:
    payment = paid_payment(fake)
    fake.notify_url = receiver_url(receiver)
    refund = gateway(fake).refund(
        idempotency_key=str(uuid.uuid4()),
        payment_id=payment.id,
        amount=Decimal("1500.00"),
        currency="RUB",
    )

    [body] = receiver.bodies
    notified_refund = gateway(fake).notification_refund(body)
    notified_payment = gateway(fake).notification_payment(body)

    assert json.loads(body)["event"] == "refund.succeeded"
    assert (notified_refund.id, notified_refund.state) == (refund.id, "succeeded")
    assert (notified_payment.id, notified_payment.raw["refundable"]) == (payment.id, False)


def test_a_payment_notification_is_not_taken_for_a_refund(fake: FakeYooKassa) -> None:
    body = b'{"type": "notification", "event": "payment.succeeded", "object": {"id": "a1"}}'

    with pytest.raises(GatewayRejected) as rejected:
        gateway(fake).notification_refund(body)

    assert rejected.value.parameter == "event"


def test_the_confirmation_page_takes_the_payment_notifies_and_returns_to_the_shop(
    fake: FakeYooKassa, receiver: _Receiver
) -> None:
    fake.notify_url = receiver_url(receiver)
    created = gateway(fake).create_payment(payment_request())

    page = requests.get(created.confirmation_url, timeout=5)
    submitted = requests.post(
        created.confirmation_url, data={"action": "pay"}, allow_redirects=False, timeout=5
    )

    assert page.status_code == 200
    assert f'action="/__fake__/confirm/{created.id}"' in page.text
    assert 'name="action" value="pay"' in page.text
    assert "1500.00 RUB" in page.text
    assert (submitted.status_code, submitted.headers["Location"]) == (303, RETURN_URL)
    [body] = receiver.bodies
    notification = json.loads(body)
    assert (notification["event"], notification["object"]["id"]) == (
        "payment.succeeded",
        created.id,
    )
    assert gateway(fake).notification_payment(body).state == GatewayState.SUCCEEDED
    assert fake.notifications[0]["status"] == 200


def test_cancel_on_the_confirmation_page_cancels_and_returns(fake: FakeYooKassa) -> None:
    created = gateway(fake).create_payment(payment_request())

    submitted = requests.post(
        created.confirmation_url, data={"action": "cancel"}, allow_redirects=False, timeout=5
    )

    assert (submitted.status_code, submitted.headers["Location"]) == (303, RETURN_URL)
    payment = gateway(fake).get_payment(created.id)
    assert (payment.state, payment.cancellation_reason) == (
        GatewayState.CANCELED,
        "canceled_by_merchant",
    )


def test_a_fake_in_its_own_process_is_steered_over_http() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integrations.payments.fake_yookassa",
            "--port",
            str(port),
            "--shop-id",
            SHOP_ID,
            "--secret-key",
            SECRET_KEY,
        ],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        root = f"http://127.0.0.1:{port}"
        assert process.stdout.readline().strip() == f"Fake YooKassa listening on {root}"
        driver = gateway_for(
            {
                "gateway": "yookassa",
                "shop_id": SHOP_ID,
                "secret_key": SECRET_KEY,
                "url": f"{root}/v3",
                "timeout": 5,
            }
        )
        switched = requests.post(f"{root}/__fake__/mode", json={"mode": "down"}, timeout=5)
        with pytest.raises(GatewayUnavailable):
            driver.create_payment(payment_request())
        requests.post(f"{root}/__fake__/mode", json={"mode": "ok"}, timeout=5)
        created = driver.create_payment(payment_request())
        paid = requests.post(f"{root}/__fake__/pay/{created.id}", timeout=5)
        state = requests.get(f"{root}/__fake__/state", timeout=5).json()
        payment = driver.get_payment(created.id)
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0

    assert switched.json() == {"mode": "down"}
    assert paid.json()["status"] == "succeeded"
    assert payment.state == GatewayState.SUCCEEDED
    assert state["mode"] == "ok"
    assert list(state["payments"]) == [created.id]
    assert [entry["status"] for entry in state["sent"]] == [500, 200]


def test_gateway_for_refuses_unknown_gateways_and_missing_settings() -> None:
    with pytest.raises(ValueError, match="stripe"):
        gateway_for({"gateway": "stripe"})
    with pytest.raises(ValueError, match="secret_key"):
        gateway_for({"gateway": "yookassa", "shop_id": SHOP_ID})
    with pytest.raises(ValueError, match="timeout"):
        gateway_for(
            {"gateway": "yookassa", "shop_id": SHOP_ID, "secret_key": SECRET_KEY, "timeout": "x"}
        )


def test_gateway_for_defaults_to_yookassa_production_url() -> None:
    driver = gateway_for({"gateway": "yookassa", "shop_id": SHOP_ID, "secret_key": SECRET_KEY})

    assert isinstance(driver, YooKassaGateway)
    assert (driver.url, driver.timeout) == ("https://api.yookassa.ru/v3", 15.0)


@pytest.mark.parametrize(
    ("address", "trusted"),
    [
        ("185.71.76.5", True),
        ("185.71.77.31", True),
        ("77.75.156.11", True),
        ("77.75.154.200", True),
        ("2a02:5180:0:1509::1", True),
        ("185.71.76.32", False),
        ("127.0.0.1", False),
        ("not an address", False),
    ],
)
def test_is_yookassa_address(address: str, trusted: bool) -> None:
    assert is_yookassa_address(address) is trusted
