"""The driver-independent parts: choosing a driver, exact money on the wire, storing a task."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from devices.fiscal import FiscalOperation, FiscalTask, driver_for
from devices.fiscal.atol_online import AtolOnlineDriver
from devices.fiscal.atol_web import AtolWebDriver
from devices.fiscal.wire import dumps, jsonable, loads

from .conftest import receipt


def test_driver_for_builds_the_web_driver_from_the_register_settings() -> None:
    driver = driver_for(
        {
            "driver": "atol_web",
            "url": "http://127.0.0.1:16732/",
            "timeout": 3,
            "poll_seconds": 7,
            "poll_interval": 0.5,
        }
    )

    assert isinstance(driver, AtolWebDriver)
    assert (driver.url, driver.timeout, driver.poll_seconds, driver.poll_interval) == (
        "http://127.0.0.1:16732",
        3.0,
        7.0,
        0.5,
    )


def test_driver_for_builds_the_cloud_driver_with_atol_online_as_the_default_url() -> None:
    driver = driver_for({"driver": "atol_online", "login": "l", "password": "p", "group_code": "g"})

    assert isinstance(driver, AtolOnlineDriver)
    assert driver.api_url == "https://online.atol.ru/possystem/v5"
    assert driver.group_code == "g"


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"driver": "shtrih"},
        {"driver": "atol_web"},
        {"driver": "atol_web", "url": "http://127.0.0.1:16732", "poll_seconds": "soon"},
        {"driver": "atol_web", "url": "http://127.0.0.1:16732", "timeout": -1},
        {"driver": "atol_online", "login": "l", "password": "p"},
    ],
)
def test_driver_for_refuses_unusable_settings(config: dict) -> None:
    with pytest.raises(ValueError):
        driver_for(config)


def test_money_goes_on_the_wire_digit_for_digit() -> None:
    text = dumps({"sum": Decimal("0.10"), "total": Decimal("12345678901234.57"), "name": "Приём"})

    assert text == '{"sum":0.10,"total":12345678901234.57,"name":"Приём"}'
    assert loads(text) == {
        "sum": Decimal("0.10"),
        "total": Decimal("12345678901234.57"),
        "name": "Приём",
    }
    assert json.loads(json.dumps(jsonable(loads(text)))) == {
        "sum": "0.10",
        "total": "12345678901234.57",
        "name": "Приём",
    }


def test_a_task_survives_storage_as_json() -> None:
    task = receipt(
        lines=(("Приём терапевта", "1500.00", "1"), ("Анализ", "0.10", "3")),
        payments=(("cash", "1000.00"), ("prepaid", "500.30")),
        client_phone="+79001234567",
    )

    stored = json.loads(json.dumps(task.as_dict()))

    assert FiscalTask.from_dict(stored) == task


def test_a_cash_task_survives_storage_as_json() -> None:
    task = FiscalTask(
        uuid="5c0b3a1e-0000-4000-8000-000000000005",
        operation=FiscalOperation.CASH_OUT,
        cash_amount=Decimal("250.50"),
    )

    assert FiscalTask.from_dict(json.loads(json.dumps(task.as_dict()))) == task
