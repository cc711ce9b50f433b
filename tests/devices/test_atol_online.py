"""The ATOL Online v5 driver against the fake cloud over HTTP: token, receipts, the duplicate
external_id rule, failures and report polling."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from devices.fake_atol import CLOUD_FN_NUMBER, FakeAtol, fiscal_sign
from devices.fiscal import (
    DeviceUnavailable,
    FiscalOperation,
    FiscalRejected,
    FiscalState,
    TaskUnknown,
)
from devices.fiscal.atol_online import AtolOnlineDriver

from .conftest import (
    COMPANY_INN,
    GROUP_CODE,
    ONLINE_LOGIN,
    ONLINE_PASSWORD,
    PAYMENT_ADDRESS,
    online_driver,
    receipt,
    service_task,
)

TOKEN_PATH = "/possystem/v5/getToken"
SELL_PATH = f"/possystem/v5/{GROUP_CODE}/sell"


def _paths(fake: FakeAtol) -> list[str]:
    return [entry["path"] for entry in fake.sent]


def test_a_sell_is_registered_with_the_fiscal_data(
    fake: FakeAtol, online: AtolOnlineDriver
) -> None:
    task = receipt(
        lines=(("Приём терапевта", "1500.00", "1"), ("Общий анализ крови", "350.00", "2")),
        payments=(("cash", "1000.00"), ("electronically", "1200.00")),
        client_phone="+79001234567",
        taxation_type="usnIncome",
    )

    result = online.submit(task)

    cloud_uuid = fake.printed[0]["cloud_uuid"]
    assert result.state is FiscalState.DONE
    assert result.uuid == task.uuid
    assert result.fn_number == CLOUD_FN_NUMBER
    assert result.fiscal_document_number == "1"
    assert result.fiscal_document_sign == str(int(fiscal_sign(1)))
    assert result.receipt_number == "1"
    assert result.shift_number == "1"
    assert result.total == Decimal("2200.00")
    assert result.report["cloud_uuid"] == cloud_uuid
    assert result.report["status"] == "done"
    assert _paths(fake) == [
        TOKEN_PATH,
        SELL_PATH,
        f"/possystem/v5/{GROUP_CODE}/report/{cloud_uuid}",
        f"/possystem/v5/{GROUP_CODE}/report/{cloud_uuid}",
    ]
    body = fake.sent[1]["body"]
    datetime.strptime(body.pop("timestamp"), "%d.%m.%Y %H:%M:%S")
    assert body == {
        "external_id": task.uuid,
        "receipt": {
            "client": {"email": "patient@example.org", "phone": "+79001234567"},
            "company": {
                "inn": COMPANY_INN,
                "sno": "usn_income",
                "payment_address": PAYMENT_ADDRESS,
                "email": "cashdesk@clinic.example.org",
            },
            "items": [
                {
                    "name": "Приём терапевта",
                    "price": Decimal("1500.00"),
                    "quantity": 1,
                    "sum": Decimal("1500.00"),
                    "measure": 0,
                    "payment_method": "full_payment",
                    "payment_object": 4,
                    "vat": {"type": "none"},
                },
                {
                    "name": "Общий анализ крови",
                    "price": Decimal("350.00"),
                    "quantity": 2,
                    "sum": Decimal("700.00"),
                    "measure": 0,
                    "payment_method": "full_payment",
                    "payment_object": 4,
                    "vat": {"type": "none"},
                },
            ],
            "payments": [
                {"type": 0, "sum": Decimal("1000.00")},
                {"type": 1, "sum": Decimal("1200.00")},
            ],
            "total": Decimal("2200.00"),
            "cashier": "Иванова А. А.",
            "cashier_inn": "500100732259",
        },
    }


def test_the_token_is_fetched_once_and_sent_with_every_call(
    fake: FakeAtol, online: AtolOnlineDriver
) -> None:
    online.submit(receipt())
    online.submit(receipt())

    token_requests = [entry for entry in fake.sent if entry["path"] == TOKEN_PATH]
    tokens = {entry["headers"].get("Token") for entry in fake.sent if entry["path"] != TOKEN_PATH}
    assert [entry["body"] for entry in token_requests] == [
        {"login": ONLINE_LOGIN, "pass": ONLINE_PASSWORD}
    ]
    assert len(tokens) == 1
    assert None not in tokens
    assert {entry["status"] for entry in fake.sent} == {200}


def test_an_expired_token_is_replaced_once(fake: FakeAtol, online: AtolOnlineDriver) -> None:
    online.submit(receipt())
    fake.expire_tokens()

    result = online.submit(receipt())

    assert result.state is FiscalState.DONE
    assert _paths(fake).count(TOKEN_PATH) == 2
    assert [entry["status"] for entry in fake.sent if entry["path"] == SELL_PATH] == [
        200,
        401,
        200,
    ]


def test_wrong_credentials_make_the_cloud_unavailable(fake: FakeAtol) -> None:
    driver = online_driver(fake, password="not-the-password")

    with pytest.raises(DeviceUnavailable):
        driver.submit(receipt())

    assert _paths(fake) == [TOKEN_PATH]
    assert fake.printed == []


def test_a_repeated_external_id_is_looked_up_not_printed_again(
    fake: FakeAtol, online: AtolOnlineDriver
) -> None:
    task = receipt()

    first = online.submit(task)
    second = online.submit(task)
    from_another_worker = online_driver(fake).submit(task)

    assert second.state is FiscalState.DONE
    assert second.fiscal_document_number == first.fiscal_document_number
    assert from_another_worker.report["cloud_uuid"] == first.report["cloud_uuid"]
    assert [entry["status"] for entry in fake.sent if entry["path"] == SELL_PATH] == [
        200,
        400,
        400,
    ]
    assert [document["uuid"] for document in fake.printed] == [task.uuid]


def test_a_failed_document_is_rejected(fake: FakeAtol, online: AtolOnlineDriver) -> None:
    fake.set_mode("fail")
    task = receipt()

    with pytest.raises(FiscalRejected) as rejected:
        online.submit(task)

    assert (rejected.value.code, rejected.value.text) == ("1", "Ошибка ФН: нет связи")
    failed = online.status(task.uuid)
    assert (failed.state, failed.error_code) == (FiscalState.FAILED, "1")
    assert fake.printed == []


def test_the_report_is_polled_until_done(fake: FakeAtol, online: AtolOnlineDriver) -> None:
    fake.set_mode("ok", delay_polls=3)

    result = online.submit(receipt())

    reports = [entry for entry in fake.sent if "/report/" in entry["path"]]
    assert result.state is FiscalState.DONE
    assert [entry["method"] for entry in reports] == ["GET"] * 4


def test_a_waiting_document_is_pending_and_found_later_by_its_cloud_uuid(
    fake: FakeAtol,
) -> None:
    impatient = online_driver(fake, poll_seconds=0.2)
    fake.set_mode("hang")
    task = receipt()

    pending = impatient.submit(task)
    cloud_uuid = pending.report["cloud_uuid"]
    another_worker = online_driver(fake)

    assert pending.state is FiscalState.PENDING
    assert pending.report["status"] == "wait"
    with pytest.raises(TaskUnknown):
        another_worker.status(task.uuid)
    assert another_worker.status(task.uuid, cloud_uuid=cloud_uuid).state is FiscalState.PENDING

    fake.finish_hung()

    done = another_worker.status(task.uuid, cloud_uuid=cloud_uuid)
    assert done.state is FiscalState.DONE
    assert done.fiscal_document_number == "1"
    assert impatient.status(task.uuid) == done
    assert [document["uuid"] for document in fake.printed] == [task.uuid]


def test_an_unknown_cloud_uuid_raises_task_unknown(online: AtolOnlineDriver) -> None:
    with pytest.raises(TaskUnknown):
        online.status(
            "5c0b3a1e-0000-4000-8000-000000000003",
            cloud_uuid="5c0b3a1e-0000-4000-8000-000000000004",
        )


def test_a_return_is_a_sell_refund(fake: FakeAtol, online: AtolOnlineDriver) -> None:
    result = online.submit(receipt(FiscalOperation.SELL_RETURN))

    assert result.state is FiscalState.DONE
    assert fake.sent[1]["path"] == f"/possystem/v5/{GROUP_CODE}/sell_refund"
    assert [document["type"] for document in fake.printed] == ["sell_refund"]


@pytest.mark.parametrize(
    "operation",
    [FiscalOperation.OPEN_SHIFT, FiscalOperation.REPORT_X, FiscalOperation.CLOSE_SHIFT],
)
def test_shift_tasks_are_done_without_a_call(
    fake: FakeAtol, online: AtolOnlineDriver, operation: FiscalOperation
) -> None:
    result = online.submit(service_task(operation))

    assert result.state is FiscalState.DONE
    assert list(result.report) == ["note"]
    assert fake.sent == []


@pytest.mark.parametrize("operation", [FiscalOperation.CASH_IN, FiscalOperation.CASH_OUT])
def test_cash_in_and_out_are_refused(
    fake: FakeAtol, online: AtolOnlineDriver, operation: FiscalOperation
) -> None:
    with pytest.raises(FiscalRejected) as rejected:
        online.submit(service_task(operation, "100.00"))

    assert rejected.value.code == "unsupported_operation"
    assert fake.sent == []


def test_a_receipt_without_a_client_contact_is_refused_before_sending(
    fake: FakeAtol, online: AtolOnlineDriver
) -> None:
    with pytest.raises(FiscalRejected) as rejected:
        online.submit(receipt(client_email=""))

    assert rejected.value.code == "invalid_task"
    assert fake.sent == []


def test_an_offline_cloud_is_unavailable(fake: FakeAtol, online: AtolOnlineDriver) -> None:
    fake.set_mode("offline")

    with pytest.raises(DeviceUnavailable):
        online.submit(receipt())

    assert fake.printed == []
