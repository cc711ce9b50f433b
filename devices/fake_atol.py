"""A fake ATOL register for tests and the demo: one HTTP server that speaks both the local web
server's JSON-task protocol (``/api/v2/requests``) and ATOL Online v5 (``/possystem/v5``).

It keeps tasks in memory by uuid (external_id for the cloud), records every request it gets
(``sent``) and every document it prints (``printed``: at most one per uuid), and models a
register's shift: open/close, shift and document numbers, counters per payment type, the cash
drawer, and the refusal to sell in a closed shift. Failure modes, switched in process or over
HTTP (``POST /__fake__/mode {"mode": ..., "delay_polls": n}``):

- ``ok``: a task is done at once and shows ``wait`` for ``delay_polls`` polls, then ``ready``;
- ``offline``: every protocol call answers 503 and is not recorded;
- ``hang``: tasks are accepted and stay in progress until ``finish_hung()``
  (``POST /__fake__/finish_hung``);
- ``fail``: the printing task ends in error 44 "Нет бумаги" (the cloud: ``fail``), nothing
  printed.

A repeated uuid answers 409 (the cloud: error 33 with the existing uuid) and prints nothing.
``GET /__fake__/state`` returns mode, sent, printed and the shift as JSON. Nothing persists.

In process: ``fake = FakeAtol.start(port=0)``, ``fake.url``, ..., ``fake.stop()``.
As a process: ``python -m devices.fake_atol --port 16732``.
"""

from __future__ import annotations

import argparse
import copy
import re
import signal
import threading
import uuid as uuid_module
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from clinic.core.fake_peer import FakePeer, FakeServer
from devices.fiscal.wire import dumps, loads

__all__ = ["CLOUD_FN_NUMBER", "FN_NUMBER", "MODES", "FakeAtol", "fiscal_sign", "main"]

MODES = ("ok", "offline", "hang", "fail")

FN_NUMBER = "9999078902004216"
REGISTRATION_NUMBER = "0000000001002292"
FNS_URL = "www.nalog.gov.ru"
CLOUD_FN_NUMBER = "9999078902007788"

NO_PAPER = (44, "Нет бумаги")
NONCASH_TOO_MUCH = (52, "Сумма некаличных платежей превышает сумму чека")
NO_CASH = (80, "Недостаточно наличности в кассе")
CLOSED_SHIFT = (73, "Смена закрыта - операция невозможна")
OPENED_SHIFT = (83, "Смена открыта - операция невозможна")
INVALID_TOTAL = (227, "Неверная сумма чека")
UNSUPPORTED_TASK = (505, "Неподдерживаемый тип задания")

KOPECK = Decimal("0.01")
ZERO = Decimal("0.00")

PRINTING_TASKS = frozenset(
    {"sell", "sellReturn", "openShift", "closeShift", "reportX", "cashIn", "cashOut"}
)
PAYMENT_TYPES = ("cash", "electronically", "prepaid")
CLOUD_PAYMENT_TYPES = {0: "cash", 1: "electronically", 2: "prepaid"}
CLOUD_OPERATIONS = frozenset({"sell", "sell_refund"})

WEB_TASK_PATH = re.compile(r"^/api/v2/requests/([^/]+)$")
CLOUD_OPERATION_PATH = re.compile(r"^/possystem/v5/([^/]+)/([a-z_]+)$")
CLOUD_REPORT_PATH = re.compile(r"^/possystem/v5/([^/]+)/report/([^/]+)$")


class _DeviceError(Exception):
    def __init__(self, error: tuple[int, str]) -> None:
        super().__init__(error[1])
        self.code, self.description = error


def _money(value: Any) -> Decimal:
    """An amount in kopecks, as the register keeps it."""
    try:
        amount = Decimal(value) if isinstance(value, int | Decimal) else Decimal(str(value))
    except InvalidOperation as error:
        raise _DeviceError(INVALID_TOTAL) from error
    if not amount.is_finite():
        raise _DeviceError(INVALID_TOTAL)
    return amount.quantize(KOPECK)


def _receipt_totals() -> dict[str, Any]:
    return {
        "count": 0,
        "sum": ZERO,
        "payments": dict.fromkeys(PAYMENT_TYPES, ZERO),
    }


def _empty_totals(shift_number: int) -> dict[str, Any]:
    return {
        "shiftNumber": shift_number,
        "receipts": {"sell": _receipt_totals(), "sellReturn": _receipt_totals()},
        "income": {"count": 0, "sum": ZERO},
        "outcome": {"count": 0, "sum": ZERO},
    }


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def fiscal_sign(document_number: int) -> str:
    """A stable ten-digit fiscal sign per document number."""
    return f"{(document_number * 2654435761) % 4294967296:010d}"


@dataclass
class _WebTask:
    uuid: str
    requests: list[dict[str, Any]]
    behaviour: str
    polls_before_ready: int
    results: list[dict[str, Any]] | None = None


@dataclass
class _CloudDocument:
    cloud_uuid: str
    external_id: str
    operation: str
    receipt: dict[str, Any]
    behaviour: str
    polls_before_done: int
    timestamp: str
    payload: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass
class _Register:
    """The device's memory: shift, numbering, counters, cash drawer."""

    shift_open: bool = False
    shift_number: int = 0
    document_number: int = 0
    receipt_number: int = 0
    receipts_count: int = 0
    cash_drawer: Decimal = ZERO
    totals: dict[str, Any] = field(default_factory=lambda: _empty_totals(0))

    def shift_totals(self) -> dict[str, Any]:
        totals = copy.deepcopy(self.totals)
        totals["cashDrawer"] = {"sum": self.cash_drawer}
        return totals

    def next_document(self) -> int:
        self.document_number += 1
        return self.document_number

    def fiscal_params(self, document: int) -> dict[str, Any]:
        return {
            "fiscalDocumentDateTime": _now(),
            "fiscalDocumentNumber": document,
            "fiscalDocumentSign": fiscal_sign(document),
            "fnNumber": FN_NUMBER,
            "registrationNumber": REGISTRATION_NUMBER,
            "shiftNumber": self.shift_number,
            "fnsUrl": FNS_URL,
        }


class _Server(FakeServer):
    fake: FakeAtol


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake's record of requests is ``sent``."""

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        status, body = self.server.fake.handle(method, path, raw, dict(self.headers.items()))
        data = dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeAtol(FakePeer):
    """The fake register and its HTTP server; see the module docstring for the behaviour."""

    handler_class = _Handler
    server_class = _Server
    thread_name = "fake-atol"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        delay_polls: int = 1,
        online_login: str = "fake-login",
        online_password: str = "fake-password",  # noqa: S107 - the fake's own test login
    ) -> None:
        self._lock = threading.RLock()
        self._mode = "ok"
        self._delay_polls = delay_polls
        self._online_credentials = (online_login, online_password)
        self._tokens: set[str] = set()
        self._sent: list[dict[str, Any]] = []
        self._printed: list[dict[str, Any]] = []
        self._web_tasks: dict[str, _WebTask] = {}
        self._cloud_documents: dict[str, _CloudDocument] = {}
        self._cloud_by_external_id: dict[tuple[str, str], str] = {}
        self._cloud_document_number = 0
        self._register = _Register()
        self._listen(host, port)

    @property
    def url(self) -> str:
        return self.root_url

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every protocol request received, in order: method, path, body, headers, status."""
        with self._lock:
            return copy.deepcopy(self._sent)

    @property
    def printed(self) -> list[dict[str, Any]]:
        """Every document printed, in order; at most one per uuid."""
        with self._lock:
            return copy.deepcopy(self._printed)

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    def set_mode(self, mode: str, *, delay_polls: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
        with self._lock:
            self._mode = mode
            if delay_polls is not None:
                self._delay_polls = delay_polls

    def finish_hung(self) -> int:
        """Let every hung task finish as in ``ok`` mode; returns how many there were."""
        with self._lock:
            finished = 0
            for task in self._web_tasks.values():
                if task.results is None:
                    task.behaviour = "ok"
                    self._execute(task)
                    finished += 1
            for document in self._cloud_documents.values():
                if document.payload is None and document.error is None:
                    document.behaviour = "ok"
                    self._register_cloud_document(document)
                    finished += 1
            return finished

    def expire_tokens(self) -> None:
        """Invalidate every ATOL Online token issued so far."""
        with self._lock:
            self._tokens.clear()

    def shift_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "open": self._register.shift_open,
                "number": self._register.shift_number,
                "totals": self._register.shift_totals(),
            }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": self._mode,
                "delay_polls": self._delay_polls,
                "sent": self.sent,
                "printed": self.printed,
                "shift": self.shift_state(),
            }

    def handle(
        self, method: str, path: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, Any]:
        """One HTTP request: the answer's status and JSON body."""
        if path.startswith("/__fake__/"):
            return self._control(method, path, raw)
        with self._lock:
            if self._mode == "offline":
                return 503, {"error": {"code": 503, "description": "Устройство недоступно"}}
            try:
                body = loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
                status, answer = 400, {"error": {"code": 400, "description": "Неверный JSON"}}
            else:
                status, answer = self._route(method, path, body, headers)
            self._sent.append(
                {"method": method, "path": path, "body": body, "headers": headers, "status": status}
            )
            return status, answer

    def _control(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        try:
            body = loads(raw) if raw else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if not isinstance(body, dict):
            return 400, {"error": "body is not a JSON object"}
        if method == "GET" and path == "/__fake__/state":
            return 200, self.state()
        if method == "POST" and path == "/__fake__/mode":
            delay_polls = body.get("delay_polls")
            try:
                self.set_mode(
                    str(body.get("mode")),
                    delay_polls=None if delay_polls is None else int(delay_polls),
                )
            except (TypeError, ValueError) as error:
                return 400, {"error": str(error)}
            return 200, {"mode": self.mode}
        if method == "POST" and path == "/__fake__/finish_hung":
            return 200, {"finished": self.finish_hung()}
        if method == "POST" and path == "/__fake__/expire_tokens":
            self.expire_tokens()
            return 200, {}
        return 404, {"error": f"no control {method} {path}"}

    def _route(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        path = path.rstrip("/")
        if path == "/api/v2/requests" and method == "POST":
            return self._web_post(body)
        match = WEB_TASK_PATH.match(path)
        if match and method == "GET":
            return self._web_get(match.group(1))
        if path == "/possystem/v5/getToken" and method == "POST":
            return self._cloud_token(body)
        match = CLOUD_REPORT_PATH.match(path)
        if match and method == "GET":
            return self._cloud_report(match.group(1), match.group(2), headers)
        match = CLOUD_OPERATION_PATH.match(path)
        if match and method == "POST":
            return self._cloud_post(match.group(1), match.group(2), body, headers)
        return 404, {"error": {"code": 404, "description": f"Нет такого метода: {method} {path}"}}

    # The local web server (JSON tasks).

    def _web_post(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("uuid") or "request" not in body:
            return 400, {"error": {"code": 400, "description": "Нужны поля uuid и request"}}
        task_uuid = str(body["uuid"])
        if task_uuid in self._web_tasks:
            return 409, {
                "error": {"code": 409, "description": "Задание с таким uuid уже существует"}
            }
        requests = body["request"] if isinstance(body["request"], list) else [body["request"]]
        if not requests or not all(isinstance(request, dict) for request in requests):
            return 400, {"error": {"code": 400, "description": "Пустое задание"}}
        task = _WebTask(
            uuid=task_uuid,
            requests=requests,
            behaviour=self._mode,
            polls_before_ready=self._delay_polls,
        )
        self._web_tasks[task_uuid] = task
        if task.behaviour != "hang":
            self._execute(task)
        return 201, {"isBlocked": False, "blockedUUID": ""}

    def _web_get(self, task_uuid: str) -> tuple[int, Any]:
        task = self._web_tasks.get(task_uuid)
        if task is None:
            return 404, {"error": {"code": 404, "description": "Задание не найдено"}}
        waiting = task.polls_before_ready > 0
        if waiting:
            task.polls_before_ready -= 1
        if task.results is None:
            statuses = ["inProgress"] + ["wait"] * (len(task.requests) - 1)
            return 200, {"results": [{"status": status} for status in statuses]}
        if waiting:
            return 200, {"results": [{"status": "wait"} for _request in task.requests]}
        return 200, {"results": copy.deepcopy(task.results)}

    def _execute(self, task: _WebTask) -> None:
        """Run the task's JSON tasks in order; after an error the rest are interrupted."""
        results: list[dict[str, Any]] = []
        failed = False
        for request in task.requests:
            if failed:
                results.append(
                    {
                        "status": "interrupted",
                        "error": {"code": 0, "description": "Задание прервано"},
                        "result": None,
                    }
                )
                continue
            try:
                result = self._run(request, task)
            except _DeviceError as error:
                failed = True
                results.append(
                    {
                        "status": "error",
                        "error": {"code": error.code, "description": error.description},
                        "result": None,
                    }
                )
            else:
                results.append(
                    {
                        "status": "ready",
                        "error": {"code": 0, "description": "Ошибок нет"},
                        "result": result,
                    }
                )
        task.results = results

    def _run(self, request: dict[str, Any], task: _WebTask) -> Any:
        kind = request.get("type")
        if kind in PRINTING_TASKS and task.behaviour == "fail":
            raise _DeviceError(NO_PAPER)
        register = self._register
        if kind == "getShiftTotals":
            return {"shiftTotals": register.shift_totals()}
        if kind == "reportX":
            self._print(task.uuid, "reportX", None, None)
            return {"shiftTotals": register.shift_totals()}
        if kind == "openShift":
            if register.shift_open:
                raise _DeviceError(OPENED_SHIFT)
            register.shift_open = True
            register.shift_number += 1
            register.receipt_number = 0
            register.receipts_count = 0
            register.totals = _empty_totals(register.shift_number)
            document = register.next_document()
            self._print(task.uuid, "openShift", document, None)
            return {"fiscalParams": register.fiscal_params(document), "warnings": None}
        if not register.shift_open:
            raise _DeviceError(CLOSED_SHIFT)
        if kind == "closeShift":
            totals = register.shift_totals()
            document = register.next_document()
            params = {**register.fiscal_params(document), "receiptsCount": register.receipts_count}
            register.shift_open = False
            self._print(task.uuid, "closeShift", document, None)
            return {"fiscalParams": params, "shiftTotals": totals, "warnings": None}
        if kind in ("sell", "sellReturn"):
            return self._receipt(kind, request, task)
        if kind in ("cashIn", "cashOut"):
            amount = _money(request.get("cashSum"))
            if amount <= 0:
                raise _DeviceError(INVALID_TOTAL)
            counter = register.totals["income" if kind == "cashIn" else "outcome"]
            if kind == "cashOut":
                if amount > register.cash_drawer:
                    raise _DeviceError(NO_CASH)
                register.cash_drawer -= amount
            else:
                register.cash_drawer += amount
            counter["count"] += 1
            counter["sum"] += amount
            self._print(task.uuid, kind, None, amount)
            return {"counters": {"cashSum": register.cash_drawer}}
        raise _DeviceError(UNSUPPORTED_TASK)

    def _receipt(self, kind: str, request: dict[str, Any], task: _WebTask) -> Any:
        register = self._register
        items = request.get("items") or []
        payments = request.get("payments") or []
        if not items or not payments:
            raise _DeviceError(INVALID_TOTAL)
        total = _money(request.get("total"))
        if sum((_money(item.get("amount")) for item in items), ZERO) != total:
            raise _DeviceError(INVALID_TOTAL)
        paid = dict.fromkeys(PAYMENT_TYPES, ZERO)
        for payment in payments:
            if payment.get("type") not in paid:
                raise _DeviceError(INVALID_TOTAL)
            paid[payment["type"]] += _money(payment.get("sum"))
        change = sum(paid.values(), ZERO) - total
        if change < 0:
            raise _DeviceError(INVALID_TOTAL)
        if change > paid["cash"]:
            raise _DeviceError(NONCASH_TOO_MUCH)
        paid["cash"] -= change
        if kind == "sellReturn" and paid["cash"] > register.cash_drawer:
            raise _DeviceError(NO_CASH)
        counter = register.totals["receipts"][kind]
        counter["count"] += 1
        counter["sum"] += total
        for payment_kind, amount in paid.items():
            counter["payments"][payment_kind] += amount
        register.cash_drawer += paid["cash"] if kind == "sell" else -paid["cash"]
        register.receipt_number += 1
        register.receipts_count += 1
        document = register.next_document()
        self._print(task.uuid, kind, document, total)
        params = {
            **register.fiscal_params(document),
            "fiscalReceiptNumber": register.receipt_number,
            "total": total,
        }
        return {"fiscalParams": params, "warnings": None}

    def _print(
        self, task_uuid: str, kind: str, document: int | None, total: Decimal | None
    ) -> None:
        self._printed.append(
            {
                "protocol": "web",
                "uuid": task_uuid,
                "type": kind,
                "fiscal_document_number": document,
                "shift_number": self._register.shift_number,
                "total": total,
            }
        )

    # ATOL Online v5.

    def _cloud_error(
        self, http_status: int, code: int, text: str, extra: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        return http_status, {
            **(extra or {}),
            "error": {
                "error_id": str(uuid_module.uuid4()),
                "code": code,
                "text": text,
                "type": "system",
            },
            "timestamp": datetime.now().strftime("%d.%m.%Y %H:%M:%S"),
        }

    def _cloud_token(self, body: Any) -> tuple[int, Any]:
        credentials = (body or {}).get("login"), (body or {}).get("pass")
        if credentials != self._online_credentials:
            return self._cloud_error(401, 12, "Неверный логин или пароль", {"token": None})
        token = uuid_module.uuid4().hex
        self._tokens.add(token)
        return 200, {
            "error": None,
            "token": token,
            "timestamp": datetime.now().strftime("%d.%m.%Y %H:%M:%S"),
        }

    def _cloud_auth_error(self, headers: dict[str, str]) -> tuple[int, Any] | None:
        token = next((value for key, value in headers.items() if key.lower() == "token"), "")
        if not token:
            return self._cloud_error(401, 10, "Не передан токен авторизации")
        if token not in self._tokens:
            return self._cloud_error(401, 11, "Передан некорректный или просроченный токен")
        return None

    def _cloud_post(
        self, group: str, operation: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        refused = self._cloud_auth_error(headers)
        if refused:
            return refused
        if operation not in CLOUD_OPERATIONS:
            return self._cloud_error(400, 31, "Операция не поддерживается")
        if not isinstance(body, dict) or not body.get("external_id"):
            return self._cloud_error(400, 32, "Ошибка валидации входного чека: external_id")
        external_id = str(body["external_id"])
        existing = self._cloud_by_external_id.get((group, external_id))
        if existing:
            return self._cloud_error(
                400,
                33,
                f"В системе существует чек с external_id : {external_id} и group_code: {group}",
                {"uuid": existing, "status": "wait"},
            )
        receipt = body.get("receipt")
        invalid = self._cloud_invalid(receipt)
        if invalid or not isinstance(receipt, dict):
            return self._cloud_error(400, 32, f"Ошибка валидации входного чека: {invalid}")
        document = _CloudDocument(
            cloud_uuid=str(uuid_module.uuid4()),
            external_id=external_id,
            operation=operation,
            receipt=receipt,
            behaviour=self._mode,
            polls_before_done=self._delay_polls,
            timestamp=datetime.now().strftime("%d.%m.%Y %H:%M:%S"),
        )
        self._cloud_documents[document.cloud_uuid] = document
        self._cloud_by_external_id[(group, external_id)] = document.cloud_uuid
        if document.behaviour == "fail":
            document.error = {"code": 1, "text": "Ошибка ФН: нет связи", "type": "driver"}
        elif document.behaviour != "hang":
            self._register_cloud_document(document)
        return 200, {
            "uuid": document.cloud_uuid,
            "status": "wait",
            "error": None,
            "timestamp": document.timestamp,
        }

    @staticmethod
    def _cloud_invalid(receipt: Any) -> str:
        """Why the cloud would refuse the receipt at once ("" when it would accept it)."""
        if not isinstance(receipt, dict):
            return "receipt"
        client = receipt.get("client") or {}
        if not client.get("email") and not client.get("phone"):
            return "client"
        company = receipt.get("company") or {}
        if not company.get("inn") or not company.get("payment_address") or not company.get("sno"):
            return "company"
        items = receipt.get("items") or []
        payments = receipt.get("payments") or []
        if not items or not payments:
            return "items"
        try:
            total = _money(receipt.get("total"))
            items_sum = sum((_money(item.get("sum")) for item in items), ZERO)
            paid = sum((_money(payment.get("sum")) for payment in payments), ZERO)
        except _DeviceError:
            return "total"
        if items_sum != total or paid < total:
            return "total"
        if any(payment.get("type") not in CLOUD_PAYMENT_TYPES for payment in payments):
            return "payments"
        return ""

    def _register_cloud_document(self, document: _CloudDocument) -> None:
        self._cloud_document_number += 1
        number = self._cloud_document_number
        total = _money(document.receipt["total"])
        document.payload = {
            "fiscal_receipt_number": number,
            "shift_number": 1,
            "receipt_datetime": datetime.now().strftime("%d.%m.%Y %H:%M:%S"),
            "total": total,
            "fn_number": CLOUD_FN_NUMBER,
            "ecr_registration_number": REGISTRATION_NUMBER,
            "fiscal_document_number": number,
            "fiscal_document_attribute": int(fiscal_sign(number)),
            "fns_site": FNS_URL,
        }
        self._printed.append(
            {
                "protocol": "online",
                "uuid": document.external_id,
                "cloud_uuid": document.cloud_uuid,
                "type": document.operation,
                "fiscal_document_number": number,
                "shift_number": 1,
                "total": total,
            }
        )

    def _cloud_report(
        self, group: str, cloud_uuid: str, headers: dict[str, str]
    ) -> tuple[int, Any]:
        refused = self._cloud_auth_error(headers)
        if refused:
            return refused
        document = self._cloud_documents.get(cloud_uuid)
        if document is None:
            return self._cloud_error(400, 30, "Передан некорректный UUID", {"status": "fail"})
        answer: dict[str, Any] = {
            "uuid": document.cloud_uuid,
            "external_id": document.external_id,
            "group_code": group,
            "timestamp": document.timestamp,
            "callback_url": "",
            "daemon_code": "fake-daemon",
            "device_code": "FAKE-1",
        }
        waiting = document.polls_before_done > 0
        if waiting:
            document.polls_before_done -= 1
        if waiting or (document.payload is None and document.error is None):
            return 200, {**answer, "status": "wait", "error": None, "payload": None}
        if document.error is not None:
            return 200, {**answer, "status": "fail", "error": document.error, "payload": None}
        return 200, {**answer, "status": "done", "error": None, "payload": document.payload}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devices.fake_atol",
        description="A fake ATOL register: web server JSON tasks and ATOL Online v5.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=16732)
    parser.add_argument("--delay-polls", type=int, default=1)
    parser.add_argument("--online-login", default="fake-login")
    parser.add_argument("--online-password", default="fake-password")
    arguments = parser.parse_args(argv)
    fake = FakeAtol(
        arguments.host,
        arguments.port,
        delay_polls=arguments.delay_polls,
        online_login=arguments.online_login,
        online_password=arguments.online_password,
    )

    def stop(signal_number: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"Fake ATOL register listening on {fake.url}", flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
