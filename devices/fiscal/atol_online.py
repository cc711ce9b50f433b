"""ATOL Online, protocol v5 (``/possystem/v5``): a register in ATOL's data centre.

``POST getToken {login, pass}`` gives a token sent in the ``Token`` header (answer 401 when it
has expired: the driver fetches a new one once and repeats the call). ``POST {group}/sell`` or
``{group}/sell_refund`` with ``external_id`` = our task uuid registers a receipt and answers the
cloud's own document ``uuid``; a second POST with the same external_id is refused with error 33
and carries the uuid of the existing document, so a retried task is looked up, never printed
twice. ``GET {group}/report/{uuid}`` answers ``wait``, ``done`` (with the fiscal data in
``payload``) or ``fail``.

The report is keyed by the cloud's uuid, not ours. Every result therefore carries it in
``report["cloud_uuid"]``, and ``status(uuid, cloud_uuid=...)`` takes it back; the driver also
remembers the pairs it has seen. Without it the safe way to learn the outcome is ``submit()``
with the same task again (error 33 returns the cloud uuid without a second receipt).

The cloud register opens and closes its shifts itself, so shift tasks succeed without a call,
and it has no cash drawer, so cash in/out is refused.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import requests
from django.utils import timezone
from django.utils.translation import gettext as _

from .base import (
    CASH_OPERATIONS,
    SHIFT_OPERATIONS,
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

__all__ = ["AtolOnlineDriver"]

API_PATH = "/possystem/v5"
DUPLICATE_EXTERNAL_ID = 33
UNKNOWN_UUID = 30
PAYMENT_TYPES = {"cash": 0, "electronically": 1, "prepaid": 2}
SERVICE_PAYMENT_OBJECT = 4
PIECE_MEASURE = 0
TAXATION_SYSTEMS = {
    "osn": "osn",
    "usnIncome": "usn_income",
    "usnIncomeOutcome": "usn_income_outcome",
    "esn": "esn",
    "patent": "patent",
}


class AtolOnlineDriver:
    """Talks to one ATOL Online group (``group_code``) on behalf of one company.

    The token is kept on the instance; keep one driver per register in a worker to reuse it.
    """

    def __init__(
        self,
        *,
        url: str,
        login: str,
        password: str,
        group_code: str,
        company_inn: str = "",
        payment_address: str = "",
        company_email: str = "",
        timeout: float = 10,
        poll_seconds: float = 15,
        poll_interval: float = 1.0,
    ) -> None:
        self.api_url = url.rstrip("/") + API_PATH
        self.login = login
        self.password = password
        self.group_code = group_code
        self.company_inn = company_inn
        self.payment_address = payment_address
        self.company_email = company_email
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.poll_interval = poll_interval
        self._session = requests.Session()
        self._token = ""
        self._cloud_uuids: dict[str, str] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AtolOnlineDriver:
        driver = "atol_online"
        return cls(
            url=str(config.get("url") or "https://online.atol.ru"),
            login=str(required_setting(config, "login", driver)),
            password=str(required_setting(config, "password", driver)),
            group_code=str(required_setting(config, "group_code", driver)),
            company_inn=str(config.get("company_inn", "")),
            payment_address=str(config.get("payment_address", "")),
            company_email=str(config.get("company_email", "")),
            timeout=number_setting(config, "timeout", 10),
            poll_seconds=number_setting(config, "poll_seconds", 15),
            poll_interval=number_setting(config, "poll_interval", 1.0),
        )

    def submit(self, task: FiscalTask) -> FiscalResult:
        if task.operation in SHIFT_OPERATIONS:
            return FiscalResult(
                state=FiscalState.DONE,
                uuid=task.uuid,
                report={"note": _("The cloud register manages its own shifts.")},
            )
        if task.operation in CASH_OPERATIONS:
            raise FiscalRejected(
                "unsupported_operation",
                _("A cloud register has no cash drawer: cash in and out are not registered."),
            )
        body = self.receipt_body(task)
        operation = "sell" if task.operation is FiscalOperation.SELL else "sell_refund"
        answer = self._authorised("POST", f"{self.api_url}/{self.group_code}/{operation}", body)
        cloud_uuid = answer.body.get("uuid") if isinstance(answer.body, dict) else None
        code = _error_code(answer)
        already_registered = code == DUPLICATE_EXTERNAL_ID and bool(cloud_uuid)
        if not already_registered and (answer.status != 200 or code is not None):
            raise _refusal(answer, self.api_url)
        if not cloud_uuid:
            raise DeviceUnavailable(_("ATOL Online accepted the receipt without naming it."))
        self._cloud_uuids[task.uuid] = cloud_uuid
        deadline = time.monotonic() + self.poll_seconds
        while True:
            found = self._report(cloud_uuid)
            if found is None:
                raise DeviceUnavailable(
                    _("ATOL Online does not know its own document %(uuid)s.") % {"uuid": cloud_uuid}
                )
            result = result_from_report(task.uuid, cloud_uuid, found)
            if result.state is FiscalState.FAILED:
                raise FiscalRejected(result.error_code, result.error_text)
            if result.state is FiscalState.DONE or time.monotonic() >= deadline:
                return result
            time.sleep(self.poll_interval)

    def status(self, uuid: str, *, cloud_uuid: str = "") -> FiscalResult:
        """One look at the document; ``cloud_uuid`` is ``report["cloud_uuid"]`` of an earlier
        result (not needed for documents this instance sent). FAILED, not an exception, when the
        cloud refused it."""
        known = cloud_uuid or self._cloud_uuids.get(uuid, "")
        if not known:
            raise TaskUnknown(
                _(
                    "No ATOL Online document is known for task %(uuid)s: pass the cloud uuid "
                    "from an earlier result, or submit the same task again."
                )
                % {"uuid": uuid}
            )
        found = self._report(known)
        if found is None:
            raise TaskUnknown(_("ATOL Online has no document %(uuid)s.") % {"uuid": known})
        self._cloud_uuids[uuid] = known
        return result_from_report(uuid, known, found)

    def receipt_body(self, task: FiscalTask) -> dict[str, Any]:
        """The v5 ``sell``/``sell_refund`` request for a receipt task."""
        check_receipt(task)
        client = {
            key: value
            for key, value in (("email", task.client_email), ("phone", task.client_phone))
            if value
        }
        if not client:
            raise FiscalRejected(
                "invalid_task",
                _("A cloud receipt is sent to the client: it needs an e-mail or a phone."),
            )
        inn = task.company_inn or self.company_inn
        payment_address = task.payment_address or self.payment_address
        if not inn or not payment_address:
            raise FiscalRejected(
                "invalid_task",
                _("A cloud receipt needs the company's INN and the payment address."),
            )
        sno = TAXATION_SYSTEMS.get(task.taxation_type, task.taxation_type)
        if sno not in TAXATION_SYSTEMS.values():
            raise FiscalRejected(
                "invalid_task",
                _("Unknown taxation system %(value)r.") % {"value": task.taxation_type},
            )
        company = {"inn": inn, "sno": sno, "payment_address": payment_address}
        email = task.company_email or self.company_email
        if email:
            company["email"] = email
        receipt: dict[str, Any] = {
            "client": client,
            "company": company,
            "items": [
                {
                    "name": item.name,
                    "price": item.price,
                    "quantity": item.quantity,
                    "sum": item.amount,
                    "measure": PIECE_MEASURE,
                    "payment_method": "full_payment",
                    "payment_object": SERVICE_PAYMENT_OBJECT,
                    "vat": {"type": normalised_tax(item.tax)},
                }
                for item in task.items
            ],
            "payments": [
                {"type": PAYMENT_TYPES[payment.kind], "sum": payment.amount}
                for payment in task.payments
            ],
            "total": task.total,
        }
        if task.operator_name:
            receipt["cashier"] = task.operator_name
        if task.operator_inn:
            receipt["cashier_inn"] = task.operator_inn
        return {
            "external_id": task.uuid,
            "receipt": receipt,
            "timestamp": timezone.localtime().strftime("%d.%m.%Y %H:%M:%S"),
        }

    def _report(self, cloud_uuid: str) -> Any:
        """The cloud's answer about its document, or ``None`` when it does not know it."""
        answer = self._authorised(
            "GET", f"{self.api_url}/{self.group_code}/report/{cloud_uuid}", None
        )
        if answer.status == 404 or _error_code(answer) == UNKNOWN_UUID:
            return None
        if answer.status != 200:
            raise DeviceUnavailable(
                _("ATOL Online answered HTTP %(status)s to a report request.")
                % {"status": answer.status}
            )
        return answer.body

    def _authorised(self, method: str, url: str, body: Any) -> Answer:
        """Call with the cached token; on 401 fetch a fresh token and call once more."""
        for _attempt in range(2):
            if not self._token:
                self._token = self._fetch_token()
            answer = exchange(
                self._session,
                method,
                url,
                timeout=self.timeout,
                body=body,
                headers={"Token": self._token},
            )
            if answer.status != 401:
                return answer
            self._token = ""
        raise DeviceUnavailable(_("ATOL Online refuses every token it issues."))

    def _fetch_token(self) -> str:
        answer = exchange(
            self._session,
            "POST",
            f"{self.api_url}/getToken",
            timeout=self.timeout,
            body={"login": self.login, "pass": self.password},
        )
        token = answer.body.get("token") if isinstance(answer.body, dict) else None
        if answer.status != 200 or not token:
            raise DeviceUnavailable(
                _("ATOL Online gave no token: %(reason)s") % {"reason": _error_text(answer)}
            )
        return str(token)


def result_from_report(uuid: str, cloud_uuid: str, answer: Any) -> FiscalResult:
    """Read ``GET report/{uuid}``: ``done`` → DONE with the fiscal data, ``fail`` → FAILED,
    anything else (``wait``) → PENDING."""
    body = answer if isinstance(answer, dict) else {}
    report = jsonable({**body, "cloud_uuid": cloud_uuid})
    status = body.get("status")
    if status == "fail":
        error = body.get("error") or {}
        return FiscalResult(
            state=FiscalState.FAILED,
            uuid=uuid,
            report=report,
            error_code=str(error.get("code", "fail")),
            error_text=str(error.get("text", "")),
        )
    if status != "done":
        return FiscalResult(state=FiscalState.PENDING, uuid=uuid, report=report)
    payload = body.get("payload") or {}
    total = payload.get("total")
    return FiscalResult(
        state=FiscalState.DONE,
        uuid=uuid,
        fn_number=_text(payload.get("fn_number")),
        fiscal_document_number=_text(payload.get("fiscal_document_number")),
        fiscal_document_sign=_text(payload.get("fiscal_document_attribute")),
        receipt_number=_text(payload.get("fiscal_receipt_number")),
        shift_number=_text(payload.get("shift_number")),
        receipt_datetime=_text(payload.get("receipt_datetime")),
        total=None if total is None else Decimal(total),
        report=report,
    )


def _error_code(answer: Answer) -> int | None:
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    if not isinstance(error, dict) or error.get("code") is None:
        return None
    try:
        return int(error["code"])
    except (TypeError, ValueError):
        return None


def _error_text(answer: Answer) -> str:
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    if isinstance(error, dict) and error.get("text"):
        return str(error["text"])
    return f"HTTP {answer.status}"


def _refusal(answer: Answer, url: str) -> Exception:
    """An error in a 200 or 400 answer is the cloud refusing the receipt; anything else (a wrong
    address) means the service is not usable now."""
    code = _error_code(answer)
    if answer.status in (200, 400) and code is not None:
        return FiscalRejected(str(code), _error_text(answer))
    return DeviceUnavailable(
        _("%(url)s answered: %(reason)s") % {"url": url, "reason": _error_text(answer)}
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)
