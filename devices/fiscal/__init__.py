"""Fiscal registers: the task/result types the billing app uses and the drivers behind them.

``driver_for(config)`` picks the driver from a cash register's settings; see ``base`` for the
contract (idempotent ``submit()`` keyed by the task's uuid, ``status()`` without waiting).
"""

from .base import (
    DeviceUnavailable,
    FiscalDeviceError,
    FiscalDriver,
    FiscalOperation,
    FiscalRejected,
    FiscalResult,
    FiscalState,
    FiscalTask,
    ReceiptItem,
    ReceiptPayment,
    TaskUnknown,
    driver_for,
)

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
