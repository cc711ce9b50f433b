"""The portal's booking: free slots, a hold for the browser, the booking and its cancellation.

The portal books through the same services as every channel: ``free_slots`` and
``appointment_book`` with ``BookingChannel.PORTAL``, acting as the website's booking account and
matching a returning patient exactly as the FHIR booking does (``integrations.website.booking``).
A slot is named by the FHIR Slot id (doctor, service, start), so a deep link from the feeds and
a click in the wizard arrive at the same step.
"""

from __future__ import annotations

import datetime
import zoneinfo
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clinic.core.models import Branch
from integrations.website.booking import (
    ContainedPatient,
    booking_branch,
    returning_patient,
    website_actor,
)
from integrations.website.fhir import SlotKey, slot_decode
from scheduling import holds
from scheduling.availability import FREE, free_slots
from scheduling.errors import SchedulingError, SlotConflict
from scheduling.models import Appointment, BookingChannel, CancelReason, Resource, Service
from scheduling.services import (
    BookingRequest,
    PrimaryPatient,
    appointment_book,
    appointment_cancel,
)

from .errors import PortalError
from .selectors import bookable_schedules

SEARCH_DAYS = 14
PORTAL_CANCEL_REASON = "patient_request"
PARTS_OF_DAY = {
    "morning": (gettext_lazy("Morning"), 0, 12),
    "afternoon": (gettext_lazy("Afternoon"), 12, 17),
    "evening": (gettext_lazy("Evening"), 17, 24),
}


class SlotTaken(PortalError):
    """The time was taken or is held by someone else: the patient picks another (HTTP 409)."""

    status_code = 409


class BookingUnavailable(PortalError):
    """The clinic has not set up online booking (no website account): HTTP 503."""

    status_code = 503


@dataclass
class OfferedSlot:
    slot_id: str
    doctor: Resource
    branch: Branch
    starts_at: datetime.datetime  # in the branch's time zone


@dataclass
class ChosenSlot:
    slot_id: str
    doctor: Resource
    service: Service
    branch: Branch
    starts_at: datetime.datetime  # in the branch's time zone

    @property
    def ends_at(self) -> datetime.datetime:
        return self.starts_at + self.service.duration


def _unknown_slot() -> SlotTaken:
    return SlotTaken(
        "unknown_slot",
        _("This time can no longer be booked. Please pick another time."),
        field="slot",
    )


def _notice_allows(doctor: Resource, starts_at: datetime.datetime) -> bool:
    """The doctor's own horizon and minimum notice, when his settings set them."""
    settings = getattr(doctor, "online_settings", None)
    if settings is None:
        return True
    now = timezone.now()
    if settings.min_notice_minutes is not None and starts_at < now + datetime.timedelta(
        minutes=settings.min_notice_minutes
    ):
        return False
    return not (
        settings.horizon_days is not None
        and starts_at > now + datetime.timedelta(days=settings.horizon_days)
    )


def slots_offered(
    *,
    service: Service,
    doctor_public_id: str = "",
    branch_public_id: str = "",
    date_from: datetime.date | None = None,
    part_of_day: str = "",
    hold_token: str | None = None,
) -> list[OfferedSlot]:
    """Free portal slots of the service for up to ``SEARCH_DAYS`` days, by time."""
    first_day = max(date_from or timezone.localdate(), timezone.localdate())
    last_day = first_day + datetime.timedelta(days=SEARCH_DAYS - 1)
    by_branch: dict[int, tuple[Branch, list[Resource]]] = {}
    for entry in bookable_schedules():
        if service not in entry.services:
            continue
        if doctor_public_id and str(entry.doctor.public_id) != doctor_public_id:
            continue
        if branch_public_id and str(entry.branch.public_id) != branch_public_id:
            continue
        by_branch.setdefault(entry.branch.pk, (entry.branch, []))[1].append(entry.doctor)
    low, high = 0, 24
    if part_of_day in PARTS_OF_DAY:
        _label, low, high = PARTS_OF_DAY[part_of_day]
    offered = []
    for branch, doctors in by_branch.values():
        zone = zoneinfo.ZoneInfo(branch.time_zone)
        by_id = {doctor.pk: doctor for doctor in doctors}
        for found in free_slots(
            organization_id=branch.organization_id,
            services=[service],
            branch=branch,
            date_from=first_day,
            date_to=last_day,
            channel=BookingChannel.PORTAL,
            doctors=doctors,
            hold_token=hold_token,
        ):
            starts_at = found.starts_at.astimezone(zone)
            doctor = by_id[found.doctor_id]
            if found.state != FREE or not low <= starts_at.hour < high:
                continue
            if not _notice_allows(doctor, found.starts_at):
                continue
            key = SlotKey(found.doctor_public_id, service.public_id, found.start)
            offered.append(
                OfferedSlot(slot_id=key.encode(), doctor=doctor, branch=branch, starts_at=starts_at)
            )
    offered.sort(key=lambda slot: (slot.starts_at, slot.doctor.name))
    return offered


def slot_chosen(slot_id: str) -> ChosenSlot:
    """The bookable doctor, service and branch a slot id stands for, or ``SlotTaken``."""
    try:
        key = slot_decode(slot_id)
    except ValueError:
        raise _unknown_slot() from None
    for entry in bookable_schedules():
        if str(entry.doctor.public_id) != str(key.doctor_public_id):
            continue
        service = next(
            (s for s in entry.services if str(s.public_id) == str(key.service_public_id)), None
        )
        if service is None:
            continue
        branch = booking_branch(entry.doctor, key.starts_at)
        if branch is None or branch.pk != entry.branch.pk:
            continue
        if key.starts_at <= timezone.now() or not _notice_allows(entry.doctor, key.starts_at):
            raise _unknown_slot()
        return ChosenSlot(
            slot_id=slot_id,
            doctor=entry.doctor,
            service=service,
            branch=branch,
            starts_at=key.starts_at.astimezone(zoneinfo.ZoneInfo(branch.time_zone)),
        )
    raise _unknown_slot()


def slot_take(chosen: ChosenSlot, *, token: str) -> None:
    """Hold the chosen time for this browser so every other screen shows it held."""
    if holds.held_by_other(
        resource_ids=[chosen.doctor.pk],
        starts_at=chosen.starts_at,
        ends_at=chosen.ends_at,
        token=token,
    ):
        raise _held()
    try:
        holds.slot_hold(
            token=token,
            resource_ids=[chosen.doctor.pk],
            starts_at=chosen.starts_at,
            ends_at=chosen.ends_at,
        )
    except holds.SlotHeld:
        raise _held() from None
    except holds.HoldsUnavailable:
        # Holds are a courtesy: the booking itself is still decided by the database.
        return


def _held() -> SlotTaken:
    return SlotTaken(
        "slot_held",
        _("Someone is booking this time right now. Please pick another time."),
        field="slot",
    )


def slot_give_up(chosen: ChosenSlot, *, token: str) -> None:
    holds.slot_release(
        token=token,
        resource_ids=[chosen.doctor.pk],
        starts_at=chosen.starts_at,
        ends_at=chosen.ends_at,
    )


def portal_book(*, chosen: ChosenSlot, patient: ContainedPatient, token: str) -> Appointment:
    """Book the held slot as the website account for the matched or a primary patient."""
    actor = website_actor()
    if actor is None:
        raise _unavailable()
    person = returning_patient(organization=chosen.doctor.organization, patient=patient)
    request = BookingRequest(
        branch=chosen.branch,
        services=[chosen.service],
        starts_at=chosen.starts_at,
        channel=BookingChannel.PORTAL,
        doctor=chosen.doctor,
        patient=person,
        primary=None
        if person is not None
        else PrimaryPatient(
            last_name=patient.last_name,
            first_name=patient.first_name,
            patronymic=patient.patronymic,
            phone=patient.phone,
            birth_date=patient.birth_date,
        ),
        hold_token=token,
    )
    try:
        return appointment_book(actor=actor, request=request)
    except PermissionDenied:
        raise _unavailable() from None
    except SlotConflict as refusal:
        raise SlotTaken(
            refusal.code,
            _("This time has just been taken. Please pick another time."),
            field="slot",
        ) from None
    except SchedulingError as refusal:
        raise PortalError(refusal.code, refusal.message, field=refusal.field) from None


def _unavailable() -> BookingUnavailable:
    return BookingUnavailable(
        "booking_unavailable",
        _("Online booking is not available right now. Please call the clinic."),
    )


def portal_cancel(appointment: Appointment) -> Appointment:
    """Cancel as the website account, with the patient's-request reason when it exists."""
    actor = website_actor()
    if actor is None:
        raise _unavailable()
    reason = (
        CancelReason.objects.filter(code=PORTAL_CANCEL_REASON, is_active=True).first()
        or CancelReason.objects.filter(is_active=True).order_by("pk").first()
    )
    if reason is None:
        raise _unavailable()
    try:
        return appointment_cancel(
            actor=actor, appointment=appointment, reason=reason, note=_("Cancelled online.")
        )
    except PermissionDenied:
        raise _unavailable() from None
    except SchedulingError as refusal:
        raise PortalError(refusal.code, refusal.message, field=refusal.field) from None
