"""The ATOL web server driver against the fake register over HTTP: receipts, the exactly-once
rule, failures, and the shift's counters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from devices.fake_atol import FN_NUMBER, FakeAtol, fiscal_sign
from devices.fiscal import (
    DeviceUnavailable,
    FiscalOperation,
    FiscalRejected,
    FiscalState,
    TaskUnknown,
    driver_for,
)
from devices.fiscal.atol_web import AtolWebDriver

from .conftest import free_port, receipt, service_task

OPERATOR = {"name": "Иванова А. А."}


def _open_shift(web: AtolWebDriver) -> None:
    assert web.submit(service_task(FiscalOperation.OPEN_SHIFT)).state is FiscalState.DONE


def _posts(fake: FakeAtol) -> list[dict]:
    return [entry for entry in fake.sent if entry["method"] == "POST"]


def test_sell_is_done_with_the_fiscal_data(fake: FakeAtol, web: AtolWebDriver) -> None:
    _open_shift(web)
    task = receipt()

    result = web.submit(task)

    assert result.state is FiscalState.DONE
    assert result.uuid == task.uuid
    assert result.fn_number == FN_NUMBER
    assert result.fiscal_document_number == "2"
    assert result.fiscal_document_sign == fiscal_sign(2)
    assert result.receipt_number == "1"
    assert result.shift_number == "1"
    assert result.total == Decimal("1500.00")
    assert datetime.fromisoformat(result.receipt_datetime).tzinfo is not None
    assert result.report["fiscalParams"]["total"] == "1500.00"
    assert (result.error_code, result.error_text) == ("", "")
    assert [(document["type"], document["uuid"]) for document in fake.printed][1:] == [
        ("sell", task.uuid)
    ]


def test_sell_request_has_the_protocol_shape(fake: FakeAtol, web: AtolWebDriver) -> None:
    _open_shift(web)
    task = receipt(
        lines=(("Приём терапевта", "1500.00", "1"), ("Общий анализ крови", "350.00", "2")),
        payments=(("cash", "1000.00"), ("electronically", "1200.00")),
        taxation_type="usn_income",
    )

    web.submit(task)

    post = _posts(fake)[-1]
    assert post["path"] == "/api/v2/requests"
    assert post["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert post["body"] == {
        "uuid": task.uuid,
        "request": [
            {
                "type": "sell",
                "taxationType": "usnIncome",
                "operator": {"name": "Иванова А. А.", "vatin": "500100732259"},
                "clientInfo": {"emailOrPhone": "patient@example.org"},
                "items": [
                    {
                        "type": "position",
                        "name": "Приём терапевта",
                        "price": Decimal("1500.00"),
                        "quantity": 1,
                        "amount": Decimal("1500.00"),
                        "tax": {"type": "none"},
                        "paymentMethod": "fullPayment",
                        "paymentObject": "service",
                    },
                    {
                        "type": "position",
                        "name": "Общий анализ крови",
                        "price": Decimal("350.00"),
                        "quantity": 2,
                        "amount": Decimal("700.00"),
                        "tax": {"type": "none"},
                        "paymentMethod": "fullPayment",
                        "paymentObject": "service",
                    },
                ],
                "payments": [
                    {"type": "cash", "sum": Decimal("1000.00")},
                    {"type": "electronically", "sum": Decimal("1200.00")},
                ],
                "total": Decimal("2200.00"),
            }
        ],
    }


def test_the_same_uuid_twice_is_printed_once(fake: FakeAtol, web: AtolWebDriver) -> None:
    _open_shift(web)
    task = receipt()

    first = web.submit(task)
    second = web.submit(task)

    assert second == first
    assert [entry["status"] for entry in _posts(fake)] == [201, 201, 409]
    assert [document["uuid"] for document in fake.printed].count(task.uuid) == 1
    assert fake.shift_state()["totals"]["receipts"]["sell"]["count"] == 1


def test_an_offline_register_is_unavailable_and_prints_nothing(
    fake: FakeAtol, web: AtolWebDriver
) -> None:
    _open_shift(web)
    fake.set_mode("offline")

    with pytest.raises(DeviceUnavailable):
        web.submit(receipt())

    assert [document["type"] for document in fake.printed] == ["openShift"]


def test_a_refused_connection_is_unavailable() -> None:
    driver = driver_for({"driver": "atol_web", "url": f"http://127.0.0.1:{free_port()}"})

    with pytest.raises(DeviceUnavailable):
        driver.submit(receipt())
    with pytest.raises(DeviceUnavailable):
        driver.status("5c0b3a1e-0000-4000-8000-000000000001")


def test_a_hung_task_is_pending_and_later_done_without_a_second_print(
    fake: FakeAtol, web: AtolWebDriver
) -> None:
    _open_shift(web)
    impatient = AtolWebDriver(url=fake.url, poll_seconds=0.2, poll_interval=0.01)
    fake.set_mode("hang")
    task = receipt()

    pending = impatient.submit(task)

    assert pending.state is FiscalState.PENDING
    assert pending.uuid == task.uuid
    assert pending.report == {"results": [{"status": "inProgress"}]}
    assert impatient.status(task.uuid).state is FiscalState.PENDING
    assert [document["type"] for document in fake.printed] == ["openShift"]

    assert fake.finish_hung() == 1
    done = impatient.status(task.uuid)
    fake.set_mode("ok")
    again = web.submit(task)

    assert done.state is FiscalState.DONE
    assert done.fiscal_document_number == "2"
    assert again == done
    assert [document["uuid"] for document in fake.printed].count(task.uuid) == 1


def test_a_failing_register_rejects_the_task_and_prints_nothing(
    fake: FakeAtol, web: AtolWebDriver
) -> None:
    _open_shift(web)
    fake.set_mode("fail")
    task = receipt()

    with pytest.raises(FiscalRejected) as rejected:
        web.submit(task)

    assert (rejected.value.code, rejected.value.text) == ("44", "Нет бумаги")
    failed = web.status(task.uuid)
    assert (failed.state, failed.error_code, failed.error_text) == (
        FiscalState.FAILED,
        "44",
        "Нет бумаги",
    )
    assert [document["type"] for document in fake.printed] == ["openShift"]
    assert fake.shift_state()["totals"]["receipts"]["sell"]["count"] == 0


def test_selling_in_a_closed_shift_is_rejected(fake: FakeAtol, web: AtolWebDriver) -> None:
    with pytest.raises(FiscalRejected) as rejected:
        web.submit(receipt())

    assert (rejected.value.code, rejected.value.text) == (
        "73",
        "Смена закрыта - операция невозможна",
    )
    assert fake.printed == []


def test_shift_reports_count_the_sells_returns_and_cash_movements(
    fake: FakeAtol, web: AtolWebDriver
) -> None:
    _open_shift(web)
    web.submit(service_task(FiscalOperation.CASH_IN, "5000.00"))
    web.submit(receipt(payments=(("cash", "2000.00"),)))  # 500.00 change
    web.submit(
        receipt(
            lines=(("УЗИ брюшной полости", "700.00", "1"),),
            payments=(("electronically", "700.00"),),
        )
    )
    web.submit(
        receipt(
            lines=(("Анализ мочи", "500.00", "1"),),
            payments=(("cash", "300.00"), ("electronically", "200.00")),
        )
    )
    web.submit(
        receipt(
            FiscalOperation.SELL_RETURN,
            lines=(("УЗИ брюшной полости", "700.00", "1"),),
            payments=(("electronically", "700.00"),),
        )
    )
    web.submit(service_task(FiscalOperation.CASH_OUT, "1000.00"))
    counters = {
        "shiftNumber": 1,
        "receipts": {
            "sell": {
                "count": 3,
                "sum": "2700.00",
                "payments": {"cash": "1800.00", "electronically": "900.00", "prepaid": "0.00"},
            },
            "sellReturn": {
                "count": 1,
                "sum": "700.00",
                "payments": {"cash": "0.00", "electronically": "700.00", "prepaid": "0.00"},
            },
        },
        "income": {"count": 1, "sum": "5000.00"},
        "outcome": {"count": 1, "sum": "1000.00"},
        "cashDrawer": {"sum": "5800.00"},
    }

    report_x = web.submit(service_task(FiscalOperation.REPORT_X))
    report_z = web.submit(service_task(FiscalOperation.CLOSE_SHIFT))

    assert report_x.state is FiscalState.DONE
    assert report_x.report["shiftTotals"] == counters
    assert _posts(fake)[-2]["body"]["request"] == [
        {"type": "getShiftTotals"},
        {"type": "reportX", "operator": OPERATOR},
    ]
    assert report_z.state is FiscalState.DONE
    assert report_z.report["shiftTotals"] == counters
    assert report_z.report["fiscalParams"]["receiptsCount"] == 4
    assert (report_z.shift_number, report_z.fiscal_document_number) == ("1", "6")
    assert _posts(fake)[-1]["body"]["request"] == [
        {"type": "getShiftTotals"},
        {"type": "closeShift", "operator": OPERATOR},
    ]
    cash_in = next(
        entry for entry in _posts(fake) if entry["body"]["request"][0]["type"] == "cashIn"
    )
    assert cash_in["body"]["request"] == [
        {"type": "cashIn", "operator": OPERATOR, "cashSum": Decimal("5000.00")}
    ]

    with pytest.raises(FiscalRejected) as rejected:
        web.submit(receipt())
    assert rejected.value.code == "73"

    reopened = web.submit(service_task(FiscalOperation.OPEN_SHIFT))
    fresh = web.submit(service_task(FiscalOperation.REPORT_X))
    assert reopened.shift_number == "2"
    assert fresh.report["shiftTotals"]["receipts"]["sell"] == {
        "count": 0,
        "sum": "0.00",
        "payments": {"cash": "0.00", "electronically": "0.00", "prepaid": "0.00"},
    }
    assert fresh.report["shiftTotals"]["cashDrawer"] == {"sum": "5800.00"}


def test_status_of_an_unknown_uuid_raises_task_unknown(web: AtolWebDriver) -> None:
    with pytest.raises(TaskUnknown):
        web.status("5c0b3a1e-0000-4000-8000-000000000002")


def test_submit_polls_until_the_register_is_ready(fake: FakeAtol, web: AtolWebDriver) -> None:
    _open_shift(web)
    fake.set_mode("ok", delay_polls=3)
    task = receipt()

    result = web.submit(task)

    polls = [entry for entry in fake.sent if entry["path"] == f"/api/v2/requests/{task.uuid}"]
    assert result.state is FiscalState.DONE
    assert [entry["method"] for entry in polls] == ["GET"] * 4


@pytest.mark.parametrize(
    ("payments", "lines"),
    [
        ((), (("Приём терапевта", "1500.00", "1"),)),
        ((("cash", "1500.00"),), ()),
        ((("cash", "100.00"),), (("Приём терапевта", "1500.00", "1"),)),
        ((("barter", "1500.00"),), (("Приём терапевта", "1500.00", "1"),)),
    ],
)
def test_an_impossible_receipt_is_rejected_before_sending(
    fake: FakeAtol, web: AtolWebDriver, payments: tuple, lines: tuple
) -> None:
    with pytest.raises(FiscalRejected) as rejected:
        web.submit(receipt(payments=payments, lines=lines))

    assert rejected.value.code == "invalid_task"
    assert fake.sent == []
