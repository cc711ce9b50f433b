"""ATOL's local web server ("Web-сервер ДТО", "Web Requests"): JSON tasks over HTTP.

A task is queued with ``POST /api/v2/requests`` ``{"uuid": ..., "request": [...]}`` (201; 409
when that uuid is queued already) and its outcome read with ``GET /api/v2/requests/{uuid}``:
``results[i].status`` goes ``wait`` → ``inProgress`` → ``ready`` or ``error`` (later tasks of
the same request then end ``interrupted``). The uuid is the idempotency key: after a crash or a
timeout the same task is posted again, the 409 says the register has it, and the driver only
reads its outcome.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import requests
from django.utils.translation import gettext as _

from .base import (
    CASH_OPERATIONS,
    RECEIPT_OPERATIONS,
    DeviceUnavailable,
    FiscalOperation,
    FiscalRejected,
    FiscalResult,
    FiscalState,
    FiscalTask,
    TaskUnknown,
    check_receipt,
    normalised_tax,
    number_setting,
    required_setting,
)
from .transport import Answer, exchange
from .wire import jsonable

__all__ = ["AtolWebDriver", "build_request"]

REQUESTS_PATH = "/api/v2/requests"

TAXATION_TYPES = {
    "osn": "osn",
    "usn_income": "usnIncome",
    "usn_income_outcome": "usnIncomeOutcome",
    "esn": "esn",
    "patent": "patent",
}
PENDING_STATUSES = frozenset({"wait", "inProgress", "blocked"})
FAILED_STATUSES = frozenset({"error", "interrupted", "canceled"})


class AtolWebDriver:
    """Talks to one ATOL web server; cheap to create per task.

    ``poll_seconds`` is how long ``submit()`` waits for the register to finish before answering
    PENDING; ``timeout`` bounds each HTTP exchange.
    """

    def __init__(
        self,
        *,
        url: str,
        timeout: float = 10,
        poll_seconds: float = 15,
        poll_interval: float = 0.2,
        login: str = "",
        password: str = "",
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.poll_interval = poll_interval
        self._session = requests.Session()
        if login:
            self._session.auth = (login, password)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AtolWebDriver:
        return cls(
            url=str(required_setting(config, "url", "atol_web")),
            timeout=number_setting(config, "timeout", 10),
            poll_seconds=number_setting(config, "poll_seconds", 15),
            poll_interval=number_setting(config, "poll_interval", 0.2),
            login=str(config.get("login", "")),
            password=str(config.get("password", "")),
        )

    def submit(self, task: FiscalTask) -> FiscalResult:
        body = {"uuid": task.uuid, "request": build_request(task)}
        answer = exchange(
            self._session, "POST", self.url + REQUESTS_PATH, timeout=self.timeout, body=body
        )
        if answer.status not in (200, 201, 409):
            raise _refusal(answer, self.url)
        deadline = time.monotonic() + self.poll_seconds
        while True:
            found = self._fetch(task.uuid)
            if found is None:
                raise DeviceUnavailable(
                    _("The register accepted task %(uuid)s but no longer knows it.")
                    % {"uuid": task.uuid}
                )
            result = result_from_answer(task.uuid, found)
            if result.state is FiscalState.FAILED:
                raise FiscalRejected(result.error_code, result.error_text)
            if result.state is FiscalState.DONE or time.monotonic() >= deadline:
                return result
            time.sleep(self.poll_interval)

    def status(self, uuid: str, *, cloud_uuid: str = "") -> FiscalResult:
        """One look at the task; FAILED (not an exception) when the register refused it."""
        found = self._fetch(uuid)
        if found is None:
            raise TaskUnknown(_("The register has no task %(uuid)s.") % {"uuid": uuid})
        return result_from_answer(uuid, found)

    def _fetch(self, uuid: str) -> Any:
        """The register's answer about ``uuid``, or ``None`` when it does not know it."""
        answer = exchange(
            self._session, "GET", f"{self.url}{REQUESTS_PATH}/{uuid}", timeout=self.timeout
        )
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise DeviceUnavailable(
                _("%(url)s answered HTTP %(status)s to a status request.")
                % {"url": self.url, "status": answer.status}
            )
        return answer.body


def build_request(task: FiscalTask) -> list[dict[str, Any]]:
    """The JSON tasks for one ``FiscalTask``.

    X and Z reports are preceded by ``getShiftTotals`` in the same request, so the shift's
    counters come back with the report whatever the register prints.
    """
    operator = _operator(task)
    operation = task.operation
    if operation in RECEIPT_OPERATIONS:
        return [_receipt(task, operator)]
    if operation is FiscalOperation.OPEN_SHIFT:
        return [{"type": "openShift", **operator}]
    if operation is FiscalOperation.CLOSE_SHIFT:
        return [{"type": "getShiftTotals"}, {"type": "closeShift", **operator}]
    if operation is FiscalOperation.REPORT_X:
        return [{"type": "getShiftTotals"}, {"type": "reportX", **operator}]
    if operation in CASH_OPERATIONS:
        if task.cash_amount <= 0:
            raise FiscalRejected("invalid_task", _("A cash in or out needs a positive amount."))
        kind = "cashIn" if operation is FiscalOperation.CASH_IN else "cashOut"
        return [{"type": kind, **operator, "cashSum": task.cash_amount}]
    raise FiscalRejected(
        "unsupported_operation",
        _("The register cannot do %(operation)s.") % {"operation": operation},
    )


def result_from_answer(uuid: str, answer: Any) -> FiscalResult:
    """Read ``GET /api/v2/requests/{uuid}``: DONE when every task is ``ready``, FAILED at the
    first ``error`` (or ``interrupted``/``canceled``), PENDING otherwise."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not results:
        return FiscalResult(state=FiscalState.PENDING, uuid=uuid, report=jsonable(answer or {}))
    statuses = [entry.get("status") for entry in results]
    failed = [entry for entry in results if entry.get("status") in FAILED_STATUSES]
    if failed:
        first = next((entry for entry in failed if entry.get("status") == "error"), failed[0])
        error = first.get("error") or {}
        return FiscalResult(
            state=FiscalState.FAILED,
            uuid=uuid,
            report=jsonable(answer),
            error_code=str(error.get("code", first.get("status"))),
            error_text=str(error.get("description", "")),
        )
    if any(status != "ready" for status in statuses):
        return FiscalResult(state=FiscalState.PENDING, uuid=uuid, report=jsonable(answer))
    report: dict[str, Any] = {}
    fiscal: dict[str, Any] = {}
    for entry in results:
        payload = entry.get("result") or {}
        report.update(payload)
        fiscal = payload.get("fiscalParams") or fiscal
    total = fiscal.get("total")
    return FiscalResult(
        state=FiscalState.DONE,
        uuid=uuid,
        fn_number=_text(fiscal.get("fnNumber")),
        fiscal_document_number=_text(fiscal.get("fiscalDocumentNumber")),
        fiscal_document_sign=_text(fiscal.get("fiscalDocumentSign")),
        receipt_number=_text(fiscal.get("fiscalReceiptNumber")),
        shift_number=_text(fiscal.get("shiftNumber")),
        receipt_datetime=_text(fiscal.get("fiscalDocumentDateTime")),
        total=None if total is None else Decimal(total),
        report=jsonable(report),
    )


def _receipt(task: FiscalTask, operator: dict[str, Any]) -> dict[str, Any]:
    check_receipt(task)
    taxation = TAXATION_TYPES.get(task.taxation_type, task.taxation_type)
    if taxation not in TAXATION_TYPES.values():
        raise FiscalRejected(
            "invalid_task",
            _("Unknown taxation system %(value)r.") % {"value": task.taxation_type},
        )
    request: dict[str, Any] = {
        "type": "sell" if task.operation is FiscalOperation.SELL else "sellReturn",
        "taxationType": taxation,
        **operator,
        "items": [
            {
                "type": "position",
                "name": item.name,
                "price": item.price,
                "quantity": item.quantity,
                "amount": item.amount,
                "tax": {"type": normalised_tax(item.tax)},
                "paymentMethod": "fullPayment",
                "paymentObject": "service",
            }
            for item in task.items
        ],
        "payments": [{"type": payment.kind, "sum": payment.amount} for payment in task.payments],
        "total": task.total,
    }
    contact = task.client_email or task.client_phone
    if contact:
        request["clientInfo"] = {"emailOrPhone": contact}
    return request


def _operator(task: FiscalTask) -> dict[str, Any]:
    """``{"operator": {...}}`` when the cashier is known; the register's default otherwise."""
    if not task.operator_name:
        return {}
    operator = {"name": task.operator_name}
    if task.operator_inn:
        operator["vatin"] = task.operator_inn
    return {"operator": operator}


def _refusal(answer: Answer, url: str) -> Exception:
    """A 400 is the register refusing the task; any other answer means the server is not usable
    now (wrong address, authorisation), which a retry may cure."""
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    error = error if isinstance(error, dict) else {}
    if answer.status in (400, 422):
        return FiscalRejected(
            str(error.get("code", f"http_{answer.status}")), str(error.get("description", ""))
        )
    return DeviceUnavailable(
        _("%(url)s answered HTTP %(status)s: %(description)s")
        % {"url": url, "status": answer.status, "description": error.get("description", "")}
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)
