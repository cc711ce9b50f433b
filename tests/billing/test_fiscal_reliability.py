"""Every payment gets exactly one printed receipt, whatever happens between the database and the
register: a relay killed while the register works, a register that is off, that refuses, that
hangs, or whose answer is lost. The register is the fake ATOL over real HTTP; in the first test
both the relay and the register are separate processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.utils import timezone, translation

from billing import fiscal, services, shifts
from billing.errors import BillingError
from billing.models import (
    CashRegister,
    CashShift,
    FiscalOperationKind,
    FiscalReceipt,
    Payment,
    PaymentMethod,
    ReceiptState,
)
from billing.services import PartInput
from clinic.outbox.models import OutboxAttempt, OutboxMessage, OutboxState
from clinic.outbox.services import ABANDONED_ATTEMPT_ERROR, outbox_relay
from devices.fake_atol import FakeAtol
from devices.fiscal import DeviceUnavailable, atol_web
from devices.fiscal.transport import Answer

from .conftest import Desk

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 60.0


def relay() -> None:
    while outbox_relay(channel="fiscal").claimed:
        pass


def make_due() -> None:
    """What the backoff does within a minute for a register that is back: the retry is due."""
    OutboxMessage.objects.filter(channel="fiscal", state=OutboxState.PENDING).update(
        next_attempt_at=timezone.now()
    )


def ready_shift(desk: Desk) -> CashShift:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="1000")
    relay()
    opening = FiscalReceipt.objects.get(shift=shift, operation=FiscalOperationKind.OPEN_SHIFT)
    assert opening.state == ReceiptState.PRINTED, opening.error
    return shift


def pay(desk: Desk, shift: CashShift, amount: str) -> Payment:
    return services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        patient=desk.patient,
        parts=[PartInput(PaymentMethod.CASH, Decimal(amount))],
    )


def receipt_of(payment: Payment) -> FiscalReceipt:
    return FiscalReceipt.objects.get(payment=payment)


def sells(printed: list[dict[str, Any]]) -> list[str]:
    """The uuids of the sale receipts the register printed, in order."""
    return [document["uuid"] for document in printed if document["type"] == "sell"]


def posts_of(sent: list[dict[str, Any]], uuid: Any) -> list[int]:
    """The HTTP statuses the register answered to the task's submissions."""
    return [
        request["status"]
        for request in sent
        if request["method"] == "POST"
        and request["path"] == "/api/v2/requests"
        and request["body"]["uuid"] == str(uuid)
    ]


def reconciliation(desk: Desk) -> dict[str, Any]:
    now = timezone.now()
    return fiscal.fiscal_reconciliation(
        organization_id=desk.organization.pk,
        since=now - timedelta(hours=1),
        until=now + timedelta(hours=1),
    )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


# --- a relay killed while the register works ------------------------------------------------

RELAY_LOOP = """
import time

import django

django.setup()
from clinic.outbox.services import outbox_relay

while True:
    if not outbox_relay(channel="fiscal").claimed:
        time.sleep(0.05)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakeProcess:
    """``python -m devices.fake_atol`` in its own process, steered over HTTP."""

    def __init__(self, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devices.fake_atol", "--port", self.url.rsplit(":", 1)[1]],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._answers, "the fake register to listen")

    def _answers(self) -> bool:
        try:
            self.state()
        except OSError:
            return False
        return True

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the local fake's http url
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - local fake
            return json.loads(answer.read())

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self._call("GET", "/__fake__/state")
        return state

    def set_mode(self, mode: str) -> None:
        self._call("POST", "/__fake__/mode", {"mode": mode})

    def finish_hung(self) -> int:
        return int(self._call("POST", "/__fake__/finish_hung", {})["finished"])

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def relay_environment() -> dict[str, str]:
    """The test database and a short claim lease for a relay in another process."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic.settings.test",
        "DATABASE_URL": f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CLINIC_OUTBOX_CLAIM_SECONDS": "2",
        "CLINIC_OUTBOX_BACKOFF_SECONDS": "1",
    }


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Starts relays and the fake register as processes; stops whatever is left at the end."""
    started: list[subprocess.Popen[Any]] = []
    logs: list[Any] = []

    def start_relay() -> subprocess.Popen[Any]:
        log = (tmp_path / f"relay-{len(started)}.log").open("w")
        logs.append(log)
        process = subprocess.Popen(
            [sys.executable, "-c", RELAY_LOOP],
            cwd=ROOT,
            env=relay_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    fake = FakeProcess(tmp_path / "fake.log")
    try:
        yield {"fake": fake, "start_relay": start_relay, "logs": tmp_path}
    finally:
        for process in started:
            stop_process(process)
        for log in logs:
            log.close()
        fake.stop()


def logs_of(directory: Path) -> str:
    return "\n".join(
        f"{path.name}:\n{path.read_text()}" for path in sorted(directory.glob("*.log"))
    )


def test_a_relay_killed_at_the_register_prints_each_receipt_once(
    desk: Desk, processes: dict[str, Any]
) -> None:
    fake: FakeProcess = processes["fake"]
    CashRegister.objects.filter(pk=desk.register.pk).update(
        device_config={"url": fake.url, "poll_seconds": 30, "poll_interval": 0.05, "timeout": 5}
    )
    first_relay = processes["start_relay"]()
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    wait_for(
        lambda: not FiscalReceipt.objects.filter(shift=shift).exclude(state=ReceiptState.PRINTED),
        "the shift to open at the register: " + logs_of(processes["logs"]),
    )

    fake.set_mode("hang")
    payments = [pay(desk, shift, "1100.00"), pay(desk, shift, "2300.00")]
    uuids = {str(receipt_of(payment).task_uuid) for payment in payments}
    wait_for(
        lambda: any(
            request["method"] == "POST" and request["body"]["uuid"] in uuids
            for request in fake.state()["sent"]
        ),
        "the relay to hand a receipt to the register",
    )
    first_relay.kill()  # SIGKILL: no chance to record anything
    first_relay.wait(timeout=10)
    (hung,) = [
        request["body"]["uuid"]
        for request in fake.state()["sent"]
        if request["method"] == "POST" and request["body"]["uuid"] in uuids
    ]
    hung_receipt = FiscalReceipt.objects.get(task_uuid=hung)
    assert hung_receipt.state == ReceiptState.QUEUED
    assert OutboxMessage.objects.get(pk=hung_receipt.outbox_message_id).state == (
        OutboxState.IN_PROGRESS
    )
    assert sells(fake.state()["printed"]) == []

    assert fake.finish_hung() == 1  # the register finishes the task nobody waits for
    fake.set_mode("ok")
    wait_for(
        lambda: (
            not OutboxMessage.objects.filter(
                state=OutboxState.IN_PROGRESS, claimed_until__gte=timezone.now()
            ).exists()
        ),
        "the dead relay's lease to expire",
    )
    processes["start_relay"]()
    wait_for(
        lambda: not FiscalReceipt.objects.exclude(state=ReceiptState.PRINTED).exists(),
        "every receipt to be printed: " + logs_of(processes["logs"]),
    )

    state = fake.state()
    assert sorted(sells(state["printed"])) == sorted(uuids)
    assert posts_of(state["sent"], hung) == [201, 409]
    assert OutboxAttempt.objects.filter(
        message_id=hung_receipt.outbox_message_id, error=ABANDONED_ATTEMPT_ERROR
    ).exists()
    for payment in payments:
        receipt = receipt_of(payment)
        (document,) = [d for d in state["printed"] if d["uuid"] == str(receipt.task_uuid)]
        assert receipt.fiscal_document_number == str(document["fiscal_document_number"])
    summary = reconciliation(desk)
    assert summary["payments"]["documents"] == 2
    assert summary["payments"]["difference"] == Decimal("0")
    assert summary["unprinted"] == []


# --- a register that is off -------------------------------------------------------------------


def test_receipts_wait_for_a_register_that_is_off_and_print_once_when_it_is_back(
    desk: Desk, atol: FakeAtol
) -> None:
    shift = ready_shift(desk)
    atol.set_mode("offline")
    payments = [pay(desk, shift, f"{100 * (index + 1)}.00") for index in range(5)]

    relay()

    receipts = [receipt_of(payment) for payment in payments]
    with translation.override("en"):  # what the cashier reads next to each receipt
        shown = {(r.state, str(r.get_state_display())) for r in receipts}
    assert shown == {(ReceiptState.QUEUED, "Queued")}
    assert all("503" in receipt.error for receipt in receipts)
    assert sells(atol.printed) == []
    assert outbox_relay(channel="fiscal").claimed == 0  # each waits for its backoff
    offline = reconciliation(desk)
    assert offline["payments"]["difference"] == Decimal("1500.00")
    assert len(offline["unprinted"]) == 5

    atol.set_mode("ok")
    make_due()
    relay()

    assert {receipt_of(payment).state for payment in payments} == {ReceiptState.PRINTED}
    assert sorted(sells(atol.printed)) == sorted(str(r.task_uuid) for r in receipts)
    back = reconciliation(desk)
    assert back["payments"]["posted"] == back["payments"]["printed"] == Decimal("1500.00")
    assert back["payments"]["difference"] == Decimal("0")
    assert back["unprinted"] == []


# --- a register that refuses ------------------------------------------------------------------


def test_a_refused_receipt_is_retried_under_a_new_uuid_and_printed_once(
    desk: Desk, atol: FakeAtol
) -> None:
    shift = ready_shift(desk)
    atol.set_mode("fail")
    payment = pay(desk, shift, "800.00")

    relay()

    failed = receipt_of(payment)
    old_uuid = failed.task_uuid
    assert failed.state == ReceiptState.FAILED
    assert "Нет бумаги" in failed.error
    assert failed.report["rejected"] is True
    assert OutboxMessage.objects.get(pk=failed.outbox_message_id).state == OutboxState.DEAD

    atol.set_mode("ok")
    retried = fiscal.receipt_retry(actor=desk.cashier, receipt=failed)
    assert retried.task_uuid != old_uuid
    assert retried.state == ReceiptState.QUEUED
    assert retried.report["previous_uuids"] == [str(old_uuid)]
    relay()

    printed = receipt_of(payment)
    assert printed.state == ReceiptState.PRINTED
    assert printed.task_uuid == retried.task_uuid
    assert printed.report["previous_uuids"] == [str(old_uuid)]
    assert sells(atol.printed) == [str(retried.task_uuid)]
    with pytest.raises(BillingError) as again:
        fiscal.receipt_retry(actor=desk.cashier, receipt=printed)
    assert again.value.code == "receipt_not_failed"
    assert reconciliation(desk)["unprinted"] == []


# --- a register that hangs, then answers ------------------------------------------------------


def test_a_hung_receipt_is_asked_again_with_the_same_uuid_and_printed_once(
    desk: Desk, atol: FakeAtol
) -> None:
    shift = ready_shift(desk)
    atol.set_mode("hang")
    payment = pay(desk, shift, "1250.00")

    relay()

    sent = receipt_of(payment)
    assert sent.state == ReceiptState.SENT
    assert OutboxMessage.objects.get(pk=sent.outbox_message_id).state == OutboxState.PENDING
    assert sells(atol.printed) == []

    assert atol.finish_hung() == 1
    atol.set_mode("ok")
    make_due()
    relay()

    printed = receipt_of(payment)
    assert printed.state == ReceiptState.PRINTED
    assert printed.task_uuid == sent.task_uuid
    assert posts_of(atol.sent, sent.task_uuid) == [201, 409]
    assert sells(atol.printed) == [str(sent.task_uuid)]
    assert reconciliation(desk)["payments"]["difference"] == Decimal("0")


# --- an answer that is lost -------------------------------------------------------------------


def test_a_lost_answer_is_found_by_uuid_without_printing_again(
    desk: Desk, atol: FakeAtol, monkeypatch: pytest.MonkeyPatch
) -> None:
    shift = ready_shift(desk)
    payment = pay(desk, shift, "640.00")
    real_exchange = atol_web.exchange
    lost: list[str] = []

    def answer_lost_once(session: Any, method: str, url: str, **options: Any) -> Answer:
        answer = real_exchange(session, method, url, **options)
        if method == "POST" and not lost:
            lost.append(url)
            raise DeviceUnavailable("Connection reset by peer after the task was sent")
        return answer

    monkeypatch.setattr(atol_web, "exchange", answer_lost_once)

    relay()

    waiting = receipt_of(payment)
    assert waiting.state == ReceiptState.QUEUED
    assert "Connection reset" in waiting.error
    assert sells(atol.printed) == [str(waiting.task_uuid)]  # the register did print it

    make_due()
    relay()

    printed = receipt_of(payment)
    assert printed.state == ReceiptState.PRINTED
    assert posts_of(atol.sent, waiting.task_uuid) == [201, 409]
    assert sells(atol.printed) == [str(waiting.task_uuid)]
    (document,) = [d for d in atol.printed if d["uuid"] == str(waiting.task_uuid)]
    assert printed.fiscal_document_number == str(document["fiscal_document_number"])


def test_a_relay_that_fails_after_printing_records_the_receipt_on_the_next_try(
    desk: Desk, atol: FakeAtol, monkeypatch: pytest.MonkeyPatch
) -> None:
    shift = ready_shift(desk)
    payment = pay(desk, shift, "910.00")
    real_printed = fiscal._printed
    crashes: list[str] = []

    def crash_once(receipt: FiscalReceipt, result: Any) -> None:
        if not crashes:
            crashes.append(str(receipt.task_uuid))
            raise ConnectionError("the database went away before the receipt was recorded")
        real_printed(receipt, result)

    monkeypatch.setattr(fiscal, "_printed", crash_once)

    relay()

    waiting = receipt_of(payment)
    assert waiting.state != ReceiptState.PRINTED
    message = OutboxMessage.objects.get(pk=waiting.outbox_message_id)
    assert message.state == OutboxState.PENDING
    assert "went away" in message.last_error
    assert sells(atol.printed) == [str(waiting.task_uuid)]

    make_due()
    relay()

    assert receipt_of(payment).state == ReceiptState.PRINTED
    assert sells(atol.printed) == [str(waiting.task_uuid)]
    assert posts_of(atol.sent, waiting.task_uuid) == [201, 409]
    assert reconciliation(desk)["unprinted"] == []


def test_a_receipt_given_up_on_is_retried_under_its_own_uuid_and_not_printed_twice(
    desk: Desk, atol: FakeAtol, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The register printed it but the last attempt's answer was lost: the cashier's retry
    keeps the uuid (the register may have printed it), so the register only reports it."""
    shift = ready_shift(desk)
    payment = pay(desk, shift, "430.00")
    queued = receipt_of(payment)
    OutboxMessage.objects.filter(pk=queued.outbox_message_id).update(
        attempts=fiscal.FISCAL_MAX_ATTEMPTS - 1
    )
    real_exchange = atol_web.exchange
    lost: list[str] = []

    def answer_lost_once(session: Any, method: str, url: str, **options: Any) -> Answer:
        answer = real_exchange(session, method, url, **options)
        if method == "POST" and not lost:
            lost.append(url)
            raise DeviceUnavailable("Connection reset by peer after the task was sent")
        return answer

    monkeypatch.setattr(atol_web, "exchange", answer_lost_once)

    relay()

    given_up = receipt_of(payment)
    assert given_up.state == ReceiptState.FAILED
    assert not given_up.report.get("rejected")
    assert OutboxMessage.objects.get(pk=given_up.outbox_message_id).state == OutboxState.DEAD
    assert sells(atol.printed) == [str(given_up.task_uuid)]
    with pytest.raises(PermissionDenied):
        fiscal.receipt_retry(actor=desk.registrar, receipt=given_up)

    retried = fiscal.receipt_retry(actor=desk.cashier, receipt=given_up)
    assert (retried.task_uuid, retried.state) == (given_up.task_uuid, ReceiptState.QUEUED)
    relay()

    assert receipt_of(payment).state == ReceiptState.PRINTED
    assert sells(atol.printed) == [str(given_up.task_uuid)]
    assert posts_of(atol.sent, given_up.task_uuid) == [201, 409]
