"""FHIR R4 building blocks shared by the read API, the booking endpoint and the bulk files.

Ids: rows with a ``public_id`` use it as their FHIR id. A Schedule (one doctor in one branch) and
a Slot (one doctor, one service, one start) have no row of their own, so their ids pack the
public UUIDs they stand for, each as 26 characters of lower-case base32, which keeps them inside
FHIR's 64-character id limit and lets a later request (a booking, the portal's deep link) decode
them without a lookup table.

JSON: money must reach the client exactly as stored, so ``fhir_json`` writes ``Decimal`` values
as JSON numbers from their own digits instead of going through ``float``.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rest_framework.renderers import BaseRenderer

FHIR_JSON = "application/fhir+json"
FHIR_NDJSON = "application/fhir+ndjson"

SERVICE_SYSTEM = "urn:clinic-erp:service"
SPECIALTY_SYSTEM = "urn:clinic-erp:specialty"
DURATION_EXTENSION = "urn:clinic-erp:fhir:extension:service-duration-minutes"
PRICE_EXTENSION = "urn:clinic-erp:fhir:extension:self-pay-price"
BOOKING_DEEP_LINK = "http://fhir-registry.smarthealthit.org/StructureDefinition/booking-deep-link"
BOOKING_PHONE = "http://fhir-registry.smarthealthit.org/StructureDefinition/booking-phone"

_DECIMAL_MARK = "\u0000decimal:"


@functools.lru_cache(maxsize=4096)
def _b32(value: uuid.UUID) -> str:
    """Ids of doctors, branches and services repeat in every Slot of a search: encode once."""
    return base64.b32encode(value.bytes).decode().rstrip("=").lower()


def _uuid(text: str) -> uuid.UUID:
    if len(text) != 26:
        raise ValueError(text)
    return uuid.UUID(bytes=base64.b32decode(text.upper() + "======"))


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


def schedule_id(doctor_public_id: uuid.UUID, branch_public_id: uuid.UUID) -> str:
    return f"{_b32(doctor_public_id)}-{_b32(branch_public_id)}"


def schedule_decode(value: str) -> tuple[uuid.UUID, uuid.UUID]:
    """(doctor public id, branch public id); ``ValueError`` for anything else."""
    doctor, _sep, branch = value.partition("-")
    return _uuid(doctor), _uuid(branch)


@dataclass(frozen=True)
class SlotKey:
    """What a Slot id stands for. The branch is not part of it: a doctor is in one place at a
    time, and the booking finds the branch from his working intervals."""

    doctor_public_id: uuid.UUID
    service_public_id: uuid.UUID
    start: int  # epoch seconds

    @property
    def starts_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.start, datetime.UTC)

    def encode(self) -> str:
        return f"{_b32(self.doctor_public_id)}-{_b32(self.service_public_id)}-{_base36(self.start)}"


def slot_decode(value: str) -> SlotKey:
    """The key of a Slot id (the portal's ``/portal/book/?slot=`` reads it with this too);
    ``ValueError`` for anything that is not one."""
    parts = value.split("-")
    if len(parts) != 3 or not parts[2].isalnum():
        raise ValueError(value)
    return SlotKey(_uuid(parts[0]), _uuid(parts[1]), int(parts[2], 36))


def instant(moment: datetime.datetime) -> str:
    """A FHIR instant in UTC with seconds (``2026-12-01T06:00:00Z``)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instant_of(epoch_seconds: int) -> str:
    """``instant`` of an epoch time, without building a datetime (a search makes thousands)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"value": amount, "currency": currency}


def _mark_decimal(value: Any) -> str:
    """The encoder's hook for what JSON lacks: a Decimal becomes a marked string, unquoted by
    ``fhir_json`` afterwards, so its digits are written exactly."""
    if isinstance(value, Decimal):
        return f"{_DECIMAL_MARK}{value}"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def fhir_json(resource: Any) -> str:
    """One FHIR JSON document on one line, decimals written with their own digits."""
    text = json.dumps(resource, ensure_ascii=False, separators=(",", ":"), default=_mark_decimal)
    marker = json.dumps(_DECIMAL_MARK)[1:-1]  # as the encoder escapes it
    if marker not in text:
        return text
    pieces = text.split(f'"{marker}')
    out = [pieces[0]]
    for piece in pieces[1:]:
        number, _quote, rest = piece.partition('"')
        out.append(number + rest)
    return "".join(out)


class FhirJsonRenderer(BaseRenderer):
    media_type = FHIR_JSON
    format = "fhir"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        return fhir_json(data).encode()


class FhirError(Exception):
    """A refusal answered with an OperationOutcome: ``code`` is FHIR's issue type."""

    def __init__(
        self, status: int, code: str, diagnostics: str, expression: str | None = None
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression


def operation_outcome(
    code: str, diagnostics: str, expression: str | None = None, severity: str = "error"
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def reference(resource_type: str, resource_id: str, display: str = "") -> dict[str, str]:
    ref = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        ref["display"] = display
    return ref


def service_concept(public_id: uuid.UUID, name: str) -> dict[str, Any]:
    return {"coding": [{"system": SERVICE_SYSTEM, "code": str(public_id), "display": name}]}


def searchset(
    entries: list[dict[str, Any]], *, total: int, self_url: str, base_url: str
) -> dict[str, Any]:
    """A searchset Bundle; ``base_url`` ends with the ``fhir/`` mount point."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": "self", "url": self_url}],
        "entry": [
            {
                "fullUrl": f"{base_url}{entry['resourceType']}/{entry['id']}",
                "resource": entry,
                "search": {"mode": "match"},
            }
            for entry in entries
        ],
    }
