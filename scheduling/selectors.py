"""Reads of the schedule, scoped to the branches the actor works in."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.utils import timezone

from clinic.core.selectors import branch_list

from .models import Appointment, AppointmentService, AppointmentStatus, Occupancy


def _with_details(appointments: QuerySet[Appointment]) -> QuerySet[Appointment]:
    return appointments.select_related(
        "branch",
        "patient",
        "doctor",
        "room",
        "kind",
        "status",
        "cancel_reason",
        "follow_up_of",
        "copied_from",
    ).prefetch_related(
        Prefetch("lines", queryset=AppointmentService.objects.select_related("service")),
        Prefetch("occupancies", queryset=Occupancy.objects.select_related("resource")),
    )


def appointment_with_details(pk: int) -> Appointment:
    """One appointment with what its output shows; for code that has already authorised it."""
    return _with_details(Appointment.objects.filter(pk=pk)).get()


def appointments_with_details(appointments: Sequence[Appointment]) -> list[Appointment]:
    """The same appointments, in the same order, re-read with what their output shows (a fixed
    number of queries); for code that has already authorised them."""
    by_pk = {
        appointment.pk: appointment
        for appointment in _with_details(
            Appointment.objects.filter(pk__in=[a.pk for a in appointments])
        )
    }
    return [by_pk[appointment.pk] for appointment in appointments]


def appointment_list(
    *,
    actor: Any,
    branch_id: int | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    doctor_id: int | None = None,
    patient_id: int | None = None,
    status_code: str | None = None,
) -> QuerySet[Appointment]:
    """Appointments of the actor's branches, with what a list shows in a fixed number of queries.

    Dates are local dates of the server's time zone, inclusive.
    """
    appointments = _with_details(
        Appointment.objects.filter(branch__in=branch_list(actor=actor))
    ).order_by("starts_at", "pk")
    if branch_id is not None:
        appointments = appointments.filter(branch_id=branch_id)
    if date_from is not None:
        appointments = appointments.filter(starts_at__gte=_local_midnight(date_from))
    if date_to is not None:
        appointments = appointments.filter(
            starts_at__lt=_local_midnight(date_to + datetime.timedelta(days=1))
        )
    if doctor_id is not None:
        appointments = appointments.filter(doctor_id=doctor_id)
    if patient_id is not None:
        appointments = appointments.filter(patient_id=patient_id)
    if status_code is not None:
        appointments = appointments.filter(status__code=status_code)
    return appointments


def _local_midnight(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time()))


def appointment_get_for_actor(*, actor: Any, public_id: Any) -> Appointment:
    """One appointment of the actor's branches, or 404 (another branch's looks like none)."""
    appointment = appointment_list(actor=actor).filter(public_id=public_id).first()
    if appointment is None:
        raise Http404
    return appointment


def trash_list(*, actor: Any, branch_id: int | None = None) -> QuerySet[Appointment]:
    """Cancelled appointments whose time has not passed: the ones that can still be restored."""
    return (
        appointment_list(actor=actor, branch_id=branch_id, status_code=AppointmentStatus.CANCELLED)
        .filter(starts_at__gte=timezone.now())
        .order_by("-cancelled_at", "pk")
    )
