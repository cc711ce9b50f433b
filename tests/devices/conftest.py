"""A fake ATOL register over real HTTP on 127.0.0.1, drivers pointed at it, and task builders."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from devices.fake_atol import FakeAtol
from devices.fiscal import FiscalOperation, FiscalTask, ReceiptItem, ReceiptPayment, driver_for
from devices.fiscal.atol_online import AtolOnlineDriver
from devices.fiscal.atol_web import AtolWebDriver

from .escpos_capture import printer  # noqa: F401  (the fixture, for every test here)

ONLINE_LOGIN = "clinic-login"
ONLINE_PASSWORD = "clinic-password"
GROUP_CODE = "clinic-group"
COMPANY_INN = "7701234567"
PAYMENT_ADDRESS = "https://clinic.example.org"


@pytest.fixture
def fake() -> Iterator[FakeAtol]:
    server = FakeAtol.start(port=0, online_login=ONLINE_LOGIN, online_password=ONLINE_PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def web(fake: FakeAtol) -> AtolWebDriver:
    driver = driver_for(
        {
            "driver": "atol_web",
            "url": fake.url,
            "timeout": 5,
            "poll_seconds": 5,
            "poll_interval": 0.01,
        }
    )
    assert isinstance(driver, AtolWebDriver)
    return driver


@pytest.fixture
def online(fake: FakeAtol) -> AtolOnlineDriver:
    return online_driver(fake)


def online_driver(fake: FakeAtol, **overrides: Any) -> AtolOnlineDriver:
    config = {
        "driver": "atol_online",
        "url": fake.url,
        "login": ONLINE_LOGIN,
        "password": ONLINE_PASSWORD,
        "group_code": GROUP_CODE,
        "company_inn": COMPANY_INN,
        "payment_address": PAYMENT_ADDRESS,
        "company_email": "cashdesk@clinic.example.org",
        "timeout": 5,
        "poll_seconds": 5,
        "poll_interval": 0.01,
        **overrides,
    }
    driver = driver_for(config)
    assert isinstance(driver, AtolOnlineDriver)
    return driver


def receipt(
    operation: FiscalOperation = FiscalOperation.SELL,
    *,
    payments: tuple[tuple[str, str], ...] = (("cash", "1500.00"),),
    lines: tuple[tuple[str, str, str], ...] = (("Приём терапевта", "1500.00", "1"),),
    **fields: Any,
) -> FiscalTask:
    """A receipt task with a fresh uuid; lines are (name, price, quantity)."""
    fields.setdefault("client_email", "patient@example.org")
    items = tuple(
        ReceiptItem(
            name=name,
            price=Decimal(price),
            quantity=Decimal(quantity),
            amount=Decimal(price) * Decimal(quantity),
            tax="none",
        )
        for name, price, quantity in lines
    )
    return FiscalTask(
        uuid=str(uuid.uuid4()),
        operation=operation,
        operator_name="Иванова А. А.",
        operator_inn="500100732259",
        items=items,
        payments=tuple(
            ReceiptPayment(kind=kind, amount=Decimal(amount)) for kind, amount in payments
        ),
        total=sum((item.amount for item in items), Decimal("0")),
        **fields,
    )


def service_task(operation: FiscalOperation, cash_amount: str = "0") -> FiscalTask:
    return FiscalTask(
        uuid=str(uuid.uuid4()),
        operation=operation,
        operator_name="Иванова А. А.",
        cash_amount=Decimal(cash_amount),
    )


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
