"""A doctor's absence (sick leave, vacation, day off) and what to do with his booked patients.

Registering the absence only records it and lists the appointments it hits; the desk then moves
them (to another doctor or another day) or cancels them in bulk. Each appointment is changed
through the ordinary services in its own savepoint, so one refusal (the other doctor is busy)
never leaves another appointment half-moved, and the patient's notice is written to the outbox in
the same transaction as the change it announces.
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.translation import gettext as _

from clinic.outbox.services import outbox_enqueue

from . import policies
from .errors import SchedulingError
from .models import (
    Appointment,
    CancelReason,
    ExceptionKind,
    Resource,
    ResourceKind,
    ScheduleException,
)

NOTICE_CHANNEL = "scheduling.patient_notice"

MOVED = "moved"
CANCELLED = "cancelled"
REFUSED = "refused"


@dataclass(frozen=True)
class BulkResult:
    """What happened to one appointment of a bulk change."""

    appointment: Appointment
    outcome: str  # MOVED, CANCELLED or REFUSED
    code: str = ""
    message: str = ""


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


def absence_affected(
    doctor: Resource, date_from: datetime.date, date_to: datetime.date
) -> list[Appointment]:
    """The doctor's appointments still to happen (booked to in progress) on those local dates.

    Local dates are those of each appointment's branch, so a doctor working in two time zones is
    judged by the clock of the branch he works in that day.
    """
    low = datetime.datetime.combine(date_from, datetime.time.min, tzinfo=datetime.UTC)
    high = datetime.datetime.combine(date_to, datetime.time.max, tzinfo=datetime.UTC)
    candidates = (
        Appointment.objects.filter(
            doctor=doctor,
            status__occupies=True,
            status__is_final=False,
            starts_at__gte=low - datetime.timedelta(days=1),
            starts_at__lte=high + datetime.timedelta(days=1),
        )
        .select_related("branch", "patient", "doctor", "room", "status", "kind")
        .prefetch_related("lines__service", "occupancies__resource")
        .order_by("starts_at", "id")
    )
    return [
        appointment
        for appointment in candidates
        if date_from
        <= appointment.starts_at.astimezone(zoneinfo.ZoneInfo(appointment.branch.time_zone)).date()
        <= date_to
    ]


def absence_register(
    *,
    actor: Any,
    doctor: Resource,
    kind: str,
    date_from: datetime.date,
    date_to: datetime.date,
    note: str = "",
) -> tuple[ScheduleException, list[Appointment]]:
    """Record that a doctor does not work on those dates; return the appointments it hits.

    The appointments are left as they are: deciding whether to move or cancel them is the desk's
    call, made with ``appointments_bulk_move`` / ``appointments_bulk_cancel``.
    """
    if not policies.can_manage_schedules(actor, doctor.branch_id):
        raise PermissionDenied
    if doctor.kind != ResourceKind.DOCTOR:
        raise SchedulingError(
            "not_a_doctor",
            _("“%(value)s” is not a doctor.") % {"value": doctor.name},
            field="doctor",
        )
    if kind not in ExceptionKind.values:
        raise SchedulingError(
            "invalid_kind",
            _("Unknown kind of absence “%(value)s”.") % {"value": kind},
            field="kind",
        )
    if date_to < date_from:
        raise SchedulingError(
            "invalid_window",
            _("The end date %(to)s is before the start date %(from)s.")
            % {"to": date_to.isoformat(), "from": date_from.isoformat()},
            field="date_to",
        )
    with transaction.atomic():
        exception = ScheduleException(
            resource=doctor,
            kind=kind,
            date_from=date_from,
            date_to=date_to,
            note=note.strip(),
            created_by=_user(actor),
        )
        exception.full_clean()
        exception.save()
    return exception, absence_affected(doctor, date_from, date_to)


def _notice(
    appointment: Appointment,
    event: str,
    *,
    previous_starts_at: datetime.datetime | None = None,
    previous_doctor: str = "",
) -> None:
    """Queue the patient's notice of a change; call inside the change's transaction."""
    doctor_name = appointment.doctor.name if appointment.doctor else ""
    # Local times with their offset: what the patient's message shows.
    zone = zoneinfo.ZoneInfo(appointment.branch.time_zone)
    outbox_enqueue(
        channel=NOTICE_CHANNEL,
        payload={
            "appointment": str(appointment.public_id),
            "patient": str(appointment.patient.public_id) if appointment.patient else None,
            "phone": appointment.primary_phone,
            "event": event,
            "starts_at": appointment.starts_at.astimezone(zone).isoformat(),
            "doctor": doctor_name,
            "previous_starts_at": (
                previous_starts_at.astimezone(zone).isoformat() if previous_starts_at else None
            ),
            "previous_doctor": previous_doctor,
            "reason": appointment.cancel_reason.code if appointment.cancel_reason else "",
        },
        # One notice per change: the updated time stamps the change.
        idempotency_key=f"patient-notice:{appointment.public_id}:{appointment.updated_at.isoformat()}",
        subject=f"appointment {event} {appointment.public_id}",
    )


def _ensure_may_change_all(actor: Any, appointments: Sequence[Appointment]) -> None:
    """Refuse the whole request before any change if one appointment is out of the actor's reach."""
    for appointment in appointments:
        if not policies.can_change_appointment(actor, appointment):
            raise PermissionDenied


def _refused(appointment: Appointment, code: str, message: Any) -> BulkResult:
    return BulkResult(appointment=appointment, outcome=REFUSED, code=code, message=str(message))


def appointments_bulk_move(
    *,
    actor: Any,
    appointments: Sequence[Appointment],
    to_doctor: Resource | None = None,
    shift_days: int | None = None,
    new_times: Mapping[uuid.UUID, datetime.datetime] | None = None,
    reason: str = "",
) -> list[BulkResult]:
    """Move each appointment to another doctor and/or another time, one savepoint each.

    ``shift_days`` keeps the local clock time and moves the date; ``new_times`` gives a start per
    appointment public id (it wins over ``shift_days``). A refusal (busy, outside working time,
    closed) is reported for that appointment only; the others still move.
    """
    if to_doctor is None and shift_days is None and not new_times:
        raise SchedulingError(
            "nothing_to_change",
            _("Choose another doctor, a shift in days or new times."),
            field="to_doctor",
        )
    if shift_days is not None and shift_days == 0 and to_doctor is None and not new_times:
        raise SchedulingError(
            "nothing_to_change",
            _("A shift of %(days)s days changes nothing.") % {"days": shift_days},
            field="shift_days",
        )
    _ensure_may_change_all(actor, appointments)
    from .services import appointment_move

    results: list[BulkResult] = []
    for appointment in appointments:
        starts_at: datetime.datetime | None = None
        if new_times and appointment.public_id in new_times:
            starts_at = new_times[appointment.public_id]
        elif shift_days:
            zone = zoneinfo.ZoneInfo(appointment.branch.time_zone)
            local = appointment.starts_at.astimezone(zone)
            starts_at = datetime.datetime.combine(
                local.date() + datetime.timedelta(days=shift_days), local.time(), tzinfo=zone
            )
        if starts_at is None and to_doctor is None:
            results.append(
                _refused(
                    appointment,
                    "nothing_to_change",
                    _("No new time was given for this appointment."),
                )
            )
            continue
        previous_start = appointment.starts_at
        previous_doctor = appointment.doctor.name if appointment.doctor else ""
        try:
            with transaction.atomic():
                moved = appointment_move(
                    actor=actor,
                    appointment=appointment,
                    starts_at=starts_at,
                    doctor=to_doctor,
                    reason=reason,
                )
                _notice(
                    moved,
                    MOVED,
                    previous_starts_at=previous_start,
                    previous_doctor=previous_doctor,
                )
        except SchedulingError as exc:
            results.append(_refused(appointment, exc.code, exc.message))
        else:
            results.append(BulkResult(appointment=moved, outcome=MOVED))
    return results


def appointments_bulk_cancel(
    *,
    actor: Any,
    appointments: Sequence[Appointment],
    reason: CancelReason,
    note: str = "",
) -> list[BulkResult]:
    """Cancel each appointment (one savepoint each) and queue each patient's notice with it."""
    _ensure_may_change_all(actor, appointments)
    from .services import appointment_cancel

    results: list[BulkResult] = []
    for appointment in appointments:
        try:
            with transaction.atomic():
                cancelled = appointment_cancel(
                    actor=actor, appointment=appointment, reason=reason, note=note
                )
                _notice(cancelled, CANCELLED)
        except SchedulingError as exc:
            results.append(_refused(appointment, exc.code, exc.message))
        else:
            results.append(BulkResult(appointment=cancelled, outcome=CANCELLED))
    return results


def appointments_for_bulk(*, actor: Any, public_ids: Sequence[Any]) -> list[Appointment]:
    """The appointments named by public id, in the order given, each in the actor's branches.

    An id that is unknown (or outside the actor's branches) is a field error naming it.
    """
    from clinic.core.selectors import branch_list

    parsed: list[uuid.UUID] = []
    for value in public_ids:
        try:
            parsed.append(uuid.UUID(str(value)))
        except ValueError:
            raise SchedulingError(
                "invalid_id",
                _("“%(value)s” is not a valid identifier.") % {"value": value},
                field="appointments",
            ) from None
    found = {
        appointment.public_id: appointment
        for appointment in Appointment.objects.filter(
            public_id__in=parsed, branch__in=branch_list(actor=actor)
        ).select_related("branch", "doctor", "patient", "status")
    }
    missing = [str(value) for value in parsed if value not in found]
    if missing:
        raise SchedulingError(
            "unknown_appointment",
            _("Unknown appointment “%(value)s”.") % {"value": missing[0]},
            field="appointments",
        )
    return [found[value] for value in dict.fromkeys(parsed)]
