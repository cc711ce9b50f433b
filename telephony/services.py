"""Writes of telephony: the PBX's events, the operator's classification, planned calls.

The PBX may send an event twice (it retries when the answer is slow) and out of order; a call
therefore only moves forward (ringing → answered → ended, or → missed) and an event that
changes nothing is recorded as a repeat. Every body is kept raw before it is read
(``raw_event_record``), and its outcome (processed, repeat, failed with the reason) is written
back to it after the call's transaction, so a refusal still leaves the body for review.
"""

from __future__ import annotations

import datetime
import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from clinic.core.models import Branch, Organization, Staff
from clinic.core.selectors import staff_for_user
from patients.models import PHONE_KINDS, Person
from patients.normalizers import normalize_phone
from scheduling import live
from scheduling.models import Appointment

from .errors import TelephonyError
from .models import (
    CALL_STATE_ORDER,
    Call,
    CallDirection,
    CallEventKind,
    CallOutcome,
    CallPurpose,
    CallState,
    OperatorExtension,
    PlannedCall,
    PlannedCallStatus,
    RawEventStatus,
    RawTelephonyEvent,
    TelephonyLine,
    TelephonySettings,
)
from .policies import can_handle_calls
from .selectors import token_hash

MAX_CALL_ID_LENGTH = 100
MAX_LINE_LENGTH = 32
MAX_RAW_BODY_CHARS = 100_000
TOKEN_BYTES = 32


# ---- settings -------------------------------------------------------------------------------


def telephony_token_set(
    *, organization: Organization, token: str | None = None, actor: Any = None
) -> str:
    """Set (or replace) the organization's webhook token and return it: the only time it is
    seen in clear. Without ``token`` a random one is made."""
    token = token if token is not None else secrets.token_urlsafe(TOKEN_BYTES)
    if len(token) < 24:
        raise TelephonyError(
            "token_too_short",
            _("The token must be at least 24 characters long."),
            field="token",
        )
    with transaction.atomic():
        row, _created = TelephonySettings.objects.select_for_update().get_or_create(
            organization=organization, defaults={"created_by": actor}
        )
        row.token_hash = token_hash(token)
        row.token_set_at = timezone.now()
        row.save(update_fields=["token_hash", "token_set_at", "updated_at"])
    return token


# ---- webhook events -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedEvent:
    """A webhook body read and checked (see ``telephony.api.WebhookView`` for the format)."""

    call_id: str
    event: str
    direction: str
    caller: str
    called: str
    operator_extension: str
    timestamp: datetime.datetime


def raw_event_record(*, organization: Organization, body: str) -> RawTelephonyEvent:
    """Keep a body as received, before anything reads it (committed on its own)."""
    return RawTelephonyEvent.objects.create(
        organization=organization, body=body[:MAX_RAW_BODY_CHARS]
    )


def raw_event_fail(*, raw_event: RawTelephonyEvent, error: TelephonyError) -> None:
    """Record why a kept body could not be used."""
    raw_event.status = RawEventStatus.FAILED
    raw_event.error_code = error.code
    raw_event.error = str(error.message)
    raw_event.save(update_fields=["status", "error_code", "error"])


def _text(payload: dict[str, Any], name: str, *, required: bool, max_length: int) -> str:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise TelephonyError(
                "missing_field",
                _("The field “%(field)s” is required.") % {"field": name},
                field=name,
            )
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise TelephonyError(
            "invalid_field",
            _("The field “%(field)s” must be a string, not “%(value)s”.")
            % {"field": name, "value": value},
            field=name,
        )
    text = str(value).strip()
    if len(text) > max_length:
        raise TelephonyError(
            "invalid_field",
            _("The field “%(field)s” is longer than %(limit)s characters: “%(value)s”.")
            % {"field": name, "limit": max_length, "value": text[:max_length] + "…"},
            field=name,
        )
    return text


def _phone(organization: Organization, payload: dict[str, Any], name: str) -> str:
    typed = _text(payload, name, required=True, max_length=MAX_LINE_LENGTH)
    try:
        return normalize_phone(typed, region=organization.phone_region or "RU")
    except ValidationError:
        raise TelephonyError(
            "invalid_phone",
            _("The field “%(field)s” is not a valid phone number: “%(value)s”.")
            % {"field": name, "value": typed},
            field=name,
        ) from None


def _line(organization: Organization, payload: dict[str, Any], name: str) -> str:
    """Our line as sent: E.164 when it reads as a phone, else as typed (a short number)."""
    typed = _text(payload, name, required=True, max_length=MAX_LINE_LENGTH)
    try:
        return normalize_phone(typed, region=organization.phone_region or "RU")
    except ValidationError:
        return typed


def _timestamp(organization: Organization, payload: dict[str, Any]) -> datetime.datetime:
    value = payload.get("timestamp")
    if value is None or value == "":
        return timezone.now()
    parsed = None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
    if parsed is None:
        raise TelephonyError(
            "invalid_timestamp",
            _("The field “%(field)s” is not an ISO-8601 date and time: “%(value)s”.")
            % {"field": "timestamp", "value": value},
            field="timestamp",
        )
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_default_timezone())
    return parsed


def call_event_parse(*, organization: Organization, payload: Any) -> ParsedEvent:
    """Read a webhook body; the first thing wrong is a ``TelephonyError`` naming the field."""
    if not isinstance(payload, dict):
        raise TelephonyError(
            "invalid_body",
            _("The body must be a JSON object, not “%(value)s”.")
            % {"value": type(payload).__name__},
        )
    call_id = _text(payload, "call_id", required=True, max_length=MAX_CALL_ID_LENGTH)
    event = _text(payload, "event", required=True, max_length=20)
    if event not in CallEventKind.values:
        raise TelephonyError(
            "invalid_event",
            _("Unknown event “%(value)s”: expected one of %(choices)s.")
            % {"value": event, "choices": ", ".join(CallEventKind.values)},
            field="event",
        )
    direction = _text(payload, "direction", required=False, max_length=10) or "inbound"
    if direction not in CallDirection.values:
        raise TelephonyError(
            "invalid_direction",
            _("Unknown direction “%(value)s”: expected one of %(choices)s.")
            % {"value": direction, "choices": ", ".join(CallDirection.values)},
            field="direction",
        )
    if direction == CallDirection.INBOUND:
        caller = _phone(organization, payload, "caller")
        called = _line(organization, payload, "called")
    else:
        caller = _line(organization, payload, "caller")
        called = _phone(organization, payload, "called")
    return ParsedEvent(
        call_id=call_id,
        event=event,
        direction=direction,
        caller=caller,
        called=called,
        operator_extension=_text(
            payload, "operator_extension", required=False, max_length=MAX_LINE_LENGTH
        ),
        timestamp=_timestamp(organization, payload),
    )


def _operator_for(organization: Organization, extension: str) -> Staff | None:
    if not extension:
        return None
    found = (
        OperatorExtension.objects.select_related("staff")
        .filter(organization=organization, extension=extension)
        .first()
    )
    return found.staff if found is not None else None


def _branch_id_for(organization: Organization, line: str) -> int | None:
    branch_id: int | None = (
        TelephonyLine.objects.filter(organization=organization, number=line, is_active=True)
        .values_list("branch_id", flat=True)
        .first()
    )
    return branch_id


def _apply(organization: Organization, event: ParsedEvent) -> tuple[Call, bool]:
    """Move the call by one event under a row lock; True when something changed."""
    call, created = Call.objects.get_or_create(
        organization=organization,
        call_id=event.call_id,
        defaults={
            "direction": event.direction,
            "caller_number": event.caller,
            "called_line": event.called,
            "state": CallState.RINGING,
            "started_at": event.timestamp,
            "branch_id": _branch_id_for(organization, event.called),
        },
    )
    call = Call.objects.select_for_update().get(pk=call.pk)
    changed: set[str] = set()
    if event.timestamp < call.started_at:
        call.started_at = event.timestamp
        changed.add("started_at")
    if event.operator_extension and not call.operator_extension:
        call.operator_extension = event.operator_extension
        changed.add("operator_extension")
        operator = _operator_for(organization, event.operator_extension)
        if operator is not None and call.operator_id is None:
            call.operator = operator
            changed.add("operator")
    target = event.event
    if target == CallEventKind.ANSWERED and call.answered_at is None:
        call.answered_at = event.timestamp
        changed.add("answered_at")
    if target in (CallEventKind.ENDED, CallEventKind.MISSED) and call.ended_at is None:
        call.ended_at = event.timestamp
        changed.add("ended_at")
    if target == CallEventKind.ENDED and call.answered_at is None:
        # Ended without being answered: that is a missed call, which the desk must call back.
        target = CallEventKind.MISSED
    if target == CallEventKind.MISSED and call.answered_at is not None:
        target = CallEventKind.ENDED
    if CALL_STATE_ORDER[CallState(target)] > CALL_STATE_ORDER[CallState(call.state)]:
        call.state = target
        changed.add("state")
    if changed:
        call.full_clean()
        call.save(update_fields=[*sorted(changed), "updated_at"])
    return call, created or bool(changed)


def call_event_receive(
    *,
    organization: Organization,
    payload: dict[str, Any],
    raw_event: RawTelephonyEvent | None = None,
) -> Call:
    """Apply one PBX event (ringing, answered, ended, missed) to its call, creating the call
    on the first event seen. Repeating an event changes nothing.

    The body is kept as ``raw_event`` (made here from ``payload`` if the caller did not keep
    the bytes already); a body that cannot be read raises ``TelephonyError`` after its reason
    is written to the raw event.
    """
    if raw_event is None:
        raw_event = raw_event_record(
            organization=organization, body=json.dumps(payload, ensure_ascii=False, default=str)
        )
    try:
        event = call_event_parse(organization=organization, payload=payload)
        with transaction.atomic():
            call, changed = _apply(organization, event)
    except TelephonyError as error:
        raw_event_fail(raw_event=raw_event, error=error)
        raise
    except ValidationError as error:
        refusal = TelephonyError(
            "invalid_event_data",
            _("The event cannot be applied: %(reason)s") % {"reason": "; ".join(error.messages)},
        )
        raw_event_fail(raw_event=raw_event, error=refusal)
        raise refusal from None
    raw_event.call = call
    raw_event.status = RawEventStatus.PROCESSED if changed else RawEventStatus.DUPLICATE
    raw_event.save(update_fields=["call", "status"])
    if changed and call.state == CallState.RINGING and call.direction == CallDirection.INBOUND:
        _announce_ringing(call)
    return call


def _announce_ringing(call: Call) -> None:
    """Tell the desks of the call's branch (of every branch, if the line is not a branch's) that
    a call rings, so the operator sees who is calling before answering."""
    branch_ids = (
        [call.branch_id]
        if call.branch_id is not None
        else list(
            Branch.objects.filter(organization_id=call.organization_id, is_active=True).values_list(
                "pk", flat=True
            )
        )
    )
    for branch_id in branch_ids:
        live.schedule_changed(
            branch_id=branch_id,
            resource_ids=[],
            days=[],
            kind=live.ChangeKind.CALL,
            extra={"call": str(call.public_id)},
        )


# ---- the operator's work --------------------------------------------------------------------


def _require_operator(actor: Any) -> None:
    if not can_handle_calls(actor):
        raise PermissionDenied(_("Only the desk and the call centre work with calls."))


def _choice(value: str, choices: Any, field: str, label: str) -> str:
    if value and value not in choices.values:
        raise TelephonyError(
            f"invalid_{field}",
            _("Unknown %(field)s “%(value)s”.") % {"field": label, "value": value},
            field=field,
        )
    return value


def call_classify(
    *,
    actor: Any,
    call: Call,
    purpose: str,
    outcome: str,
    note: str = "",
    appointment: Appointment | None = None,
) -> Call:
    """Record why the patient called and how it ended; the actor becomes the call's operator
    if the PBX did not name one. ``appointment`` links the visit booked or changed."""
    _require_operator(actor)
    _choice(purpose, CallPurpose, "purpose", _("purpose"))
    _choice(outcome, CallOutcome, "outcome", _("outcome"))
    if not purpose:
        raise TelephonyError(
            "missing_purpose", _("Choose the purpose of the call."), field="purpose"
        )
    if not outcome:
        raise TelephonyError(
            "missing_outcome", _("Choose the outcome of the call."), field="outcome"
        )
    if appointment is not None and appointment.organization_id != call.organization_id:
        raise TelephonyError(
            "invalid_appointment",
            _("The appointment “%(value)s” belongs to another organization.")
            % {"value": appointment.public_id},
            field="appointment",
        )
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call.pk)
        call.purpose = purpose
        call.outcome = outcome
        call.note = note.strip()
        call.classified_at = timezone.now()
        fields = ["purpose", "outcome", "note", "classified_at", "updated_at"]
        if appointment is not None:
            call.appointment = appointment
            fields.append("appointment")
        staff = staff_for_user(actor)
        if call.operator_id is None and staff is not None:
            call.operator = staff
            fields.append("operator")
        call.full_clean()
        call.save(update_fields=fields)
    return call


def planned_call_create(
    *,
    actor: Any,
    patient: Person,
    reason: str,
    due_at: datetime.datetime,
    phone: str = "",
    assigned_to: Staff | None = None,
) -> PlannedCall:
    """Plan an outgoing call to a patient; without ``phone`` the patient's first phone is used."""
    _require_operator(actor)
    organization = patient.organization
    if patient.merged_into_id is not None:
        raise TelephonyError(
            "merged_patient",
            _("“%(value)s” was merged into another record.") % {"value": patient.full_name},
            field="patient",
        )
    if not reason.strip():
        raise TelephonyError("missing_reason", _("Say why to call."), field="reason")
    if phone.strip():
        try:
            number = normalize_phone(phone, region=organization.phone_region or "RU")
        except ValidationError:
            raise TelephonyError(
                "invalid_phone",
                _("“%(value)s” is not a valid phone number.") % {"value": phone},
                field="phone",
            ) from None
    else:
        contact = patient.contacts.filter(kind__in=PHONE_KINDS).order_by("kind", "pk").first()
        if contact is None:
            raise TelephonyError(
                "missing_phone",
                _("%(name)s has no phone: give the number to call.") % {"name": patient.full_name},
                field="phone",
            )
        number = contact.value
    if assigned_to is not None and assigned_to.organization_id != organization.pk:
        raise TelephonyError(
            "invalid_assignee",
            _("%(value)s does not work for this organization.") % {"value": assigned_to},
            field="assigned_to",
        )
    with transaction.atomic():
        planned = PlannedCall(
            organization=organization,
            patient=patient,
            phone=number,
            reason=reason.strip(),
            due_at=due_at,
            assigned_to=assigned_to,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        planned.full_clean()
        planned.save()
    return planned


def _close(
    actor: Any, planned: PlannedCall, status: str, result_note: str, call: Call | None
) -> PlannedCall:
    _require_operator(actor)
    with transaction.atomic():
        planned = PlannedCall.objects.select_for_update().get(pk=planned.pk)
        if planned.status != PlannedCallStatus.PLANNED:
            raise TelephonyError(
                "planned_call_closed",
                _("This call is already %(status)s.") % {"status": planned.get_status_display()},
                field="status",
            )
        planned.status = status
        planned.result_note = result_note.strip()
        planned.closed_at = timezone.now()
        fields = ["status", "result_note", "closed_at", "updated_at"]
        if call is not None:
            planned.call = call
            fields.append("call")
        planned.full_clean()
        planned.save(update_fields=fields)
    return planned


def planned_call_complete(
    *, actor: Any, planned: PlannedCall, result_note: str, call: Call | None = None
) -> PlannedCall:
    """Mark a planned call made, with what came of it (required: the next person reads it)."""
    if not result_note.strip():
        raise TelephonyError(
            "missing_result", _("Write what came of the call."), field="result_note"
        )
    return _close(actor, planned, PlannedCallStatus.DONE, result_note, call)


def planned_call_cancel(*, actor: Any, planned: PlannedCall, result_note: str = "") -> PlannedCall:
    """Drop a planned call that is no longer needed."""
    return _close(actor, planned, PlannedCallStatus.CANCELLED, result_note, None)
