"""Waitlist: patients waiting for a doctor or a service, and offers of freed time to them.

When an appointment is cancelled, moved away or ends in a no-show, ``scheduling.services`` calls
``waitlist_offer_freed_slot`` after the change commits. Every open entry the freed time fits gets
an offer and an outbox message in one transaction; the first patient to accept books the slot
through ``appointment_book``, so the exclusion constraint still decides who gets it and the other
offers of that slot become "taken".
"""

from __future__ import annotations

import datetime
import math
import uuid
import zoneinfo
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.models import Branch
from clinic.core.selectors import branch_list
from clinic.outbox.services import outbox_enqueue
from patients.models import Person

from . import policies
from .errors import SchedulingError, SlotConflict, unknown_resource
from .models import (
    Appointment,
    BookingChannel,
    Occupancy,
    OfferState,
    Resource,
    ResourceKind,
    Service,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistState,
)
from .schedules import working_intervals

OFFER_CHANNEL = "scheduling.waitlist_offer"
# How long a patient has to answer an offer (never beyond the slot's start).
OFFER_TTL = datetime.timedelta(hours=2)

OPEN_STATES = (WaitlistState.WAITING, WaitlistState.OFFERED)


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


def _ensure_can_book(actor: Any, branch_id: int) -> None:
    if not policies.can_book(actor, branch_id=branch_id, channel=BookingChannel.DESK):
        raise PermissionDenied


def _local_day(moment: datetime.datetime, zone_name: str) -> datetime.date:
    return moment.astimezone(zoneinfo.ZoneInfo(zone_name)).date()


# --- entries -------------------------------------------------------------------------------------


def waitlist_list(*, actor: Any) -> QuerySet[WaitlistEntry]:
    """Open and closed entries of the branches the actor works in, oldest first."""
    return (
        WaitlistEntry.objects.filter(branch__in=branch_list(actor=actor))
        .select_related("branch", "patient", "service", "doctor", "appointment")
        .order_by("created_at", "id")
    )


def waitlist_add(
    *,
    actor: Any,
    branch: Branch,
    patient: Person,
    service: Service,
    doctor: Resource | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    time_from: datetime.time | None = None,
    time_to: datetime.time | None = None,
    note: str = "",
) -> WaitlistEntry:
    """Put a patient on the waitlist for a service (and a doctor, a date and a time window).

    Everything a later booking would refuse outright (another organization's service, a doctor
    who does not perform the service, an empty window) is refused now, so that an offer is never
    made that could not be booked for those reasons.
    """
    _ensure_can_book(actor, branch.pk)
    organization_id = branch.organization_id
    if patient.organization_id != organization_id:
        raise SchedulingError(
            "unknown_patient",
            _("Unknown patient “%(value)s”.") % {"value": patient.public_id},
            field="patient",
        )
    if service.organization_id != organization_id or not service.is_active:
        raise SchedulingError(
            "unknown_service",
            _("Unknown or inactive service “%(value)s”.") % {"value": service.code},
            field="service",
        )
    if doctor is not None:
        from .services import doctor_performs

        if (
            doctor.organization_id != organization_id
            or doctor.kind != ResourceKind.DOCTOR
            or not doctor.is_active
        ):
            raise unknown_resource(doctor.public_id, "doctor")
        if not doctor_performs(doctor, service):
            raise SchedulingError(
                "service_not_performed",
                _("%(doctor)s does not perform “%(service)s”.")
                % {"doctor": doctor.name, "service": service.name},
                field="doctor",
            )
    if date_from is not None and date_to is not None and date_to < date_from:
        raise SchedulingError(
            "invalid_window",
            _("The end date %(to)s is before the start date %(from)s.")
            % {"to": date_to.isoformat(), "from": date_from.isoformat()},
            field="date_to",
        )
    if date_to is not None and date_to < timezone.localdate():
        raise SchedulingError(
            "invalid_window",
            _("The end date %(to)s has already passed.") % {"to": date_to.isoformat()},
            field="date_to",
        )
    if time_from is not None and time_to is not None and time_to <= time_from:
        raise SchedulingError(
            "invalid_window",
            _("The time window must end after it starts: %(from)s–%(to)s.")
            % {"from": time_from.strftime("%H:%M"), "to": time_to.strftime("%H:%M")},
            field="time_to",
        )
    with transaction.atomic():
        entry = WaitlistEntry(
            organization_id=organization_id,
            branch=branch,
            patient=patient,
            service=service,
            doctor=doctor,
            date_from=date_from,
            date_to=date_to,
            time_from=time_from,
            time_to=time_to,
            note=note.strip(),
            created_by=_user(actor),
        )
        entry.full_clean(exclude=["appointment"])
        entry.save()
    return entry


def _reopen_entries(entry_ids: set[int]) -> None:
    """Entries whose last open offer closed wait again (call inside the transaction)."""
    if not entry_ids:
        return
    still_offered = WaitlistOffer.objects.filter(
        entry_id__in=entry_ids, state=OfferState.OFFERED
    ).values_list("entry_id", flat=True)
    WaitlistEntry.objects.filter(pk__in=entry_ids, state=WaitlistState.OFFERED).exclude(
        pk__in=list(still_offered)
    ).update(state=WaitlistState.WAITING, updated_at=timezone.now())


def waitlist_cancel(*, actor: Any, entry: WaitlistEntry) -> WaitlistEntry:
    """Take a patient off the waitlist; offers still open are withdrawn (declined)."""
    _ensure_can_book(actor, entry.branch_id)
    with transaction.atomic():
        current = WaitlistEntry.objects.select_for_update().get(pk=entry.pk)
        if current.state not in OPEN_STATES:
            raise SchedulingError(
                "waitlist_closed",
                _("The waitlist entry is already “%(state)s”.")
                % {"state": current.get_state_display()},
                field="state",
            )
        current.offers.filter(state=OfferState.OFFERED).update(
            state=OfferState.DECLINED, updated_at=timezone.now()
        )
        current.state = WaitlistState.CANCELLED
        current.save(update_fields=["state", "updated_at"])
    return current


# --- offers --------------------------------------------------------------------------------------


def _next_grid_time(
    moment: datetime.datetime, step_minutes: int, zone_name: str
) -> datetime.datetime:
    """The first grid time (counted from local midnight) not before ``moment``."""
    local = moment.astimezone(zoneinfo.ZoneInfo(zone_name))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    steps = math.ceil((local - midnight).total_seconds() / (step_minutes * 60))
    return (midnight + datetime.timedelta(minutes=steps * step_minutes)).astimezone(datetime.UTC)


def _entry_fits(
    entry: WaitlistEntry,
    doctor: Resource,
    start: datetime.datetime,
    usable_end: datetime.datetime,
    busy: list[tuple[datetime.datetime, datetime.datetime]],
    zone_name: str,
) -> bool:
    """Whether the entry's service, window and doctor wish fit the time from ``start``."""
    from .services import doctor_performs

    service = entry.service
    if not service.is_active or BookingChannel.DESK not in service.channels:
        return False
    if entry.doctor_id is not None and entry.doctor_id != doctor.pk:
        return False
    if entry.doctor_id is None and not doctor_performs(doctor, service):
        return False
    end = start + service.duration
    occupied_until = end + service.buffer_after
    if end > usable_end:
        return False
    if any(low < occupied_until and start < high for low, high in busy):
        return False
    zone = zoneinfo.ZoneInfo(zone_name)
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    if entry.date_from is not None and local_start.date() < entry.date_from:
        return False
    if entry.date_to is not None and local_start.date() > entry.date_to:
        return False
    if entry.time_from is not None and local_start.time() < entry.time_from:
        return False
    return entry.time_to is None or (
        local_end.date() == local_start.date() and local_end.time() <= entry.time_to
    )


def waitlist_offer_freed_slot(
    *,
    doctor_id: int,
    starts_at: datetime.datetime,
    ends_at: datetime.datetime,
    freed_at: datetime.datetime,
) -> list[int]:
    """Offer [starts_at, ends_at) of the doctor to matching waitlist entries, in order.

    Runs after the freeing change commits (``transaction.on_commit``), with no actor: it only
    offers, and the booking on acceptance checks every rule again. Only the part of the freed time
    that is still working time counts (a slot freed by an absence is not offered), and time
    already booked again is skipped. Matching entries are locked with SKIP LOCKED, so two freed
    slots processed at once never offer the same entry twice. Returns the new offers' ids.
    """
    doctor = (
        Resource.objects.select_related("staff", "branch")
        .filter(pk=doctor_id, kind=ResourceKind.DOCTOR, is_active=True)
        .first()
    )
    if doctor is None:
        return []
    now = timezone.now()
    zone_name = doctor.branch.time_zone
    start = max(starts_at, now)
    if start > starts_at:
        start = _next_grid_time(start, doctor.grid_step_minutes, zone_name)
    if start >= ends_at:
        return []
    first_day = _local_day(start, zone_name)
    intervals = working_intervals([doctor], first_day - datetime.timedelta(days=1), first_day)
    working = next(
        (i for i in intervals.get(doctor.pk, []) if i.starts_at <= start < i.ends_at), None
    )
    if working is None:
        return []
    usable_end = min(ends_at, working.ends_at)
    branch = Branch.objects.get(pk=working.branch_id)
    zone_name = branch.time_zone
    busy = [
        (o.during.lower, o.during.upper)
        for o in Occupancy.objects.filter(
            resource=doctor,
            is_active=True,
            during__overlap=DateTimeTZRange(start, usable_end, "[)"),
        )
    ]
    day = _local_day(start, zone_name)
    zone = zoneinfo.ZoneInfo(zone_name)
    offer_ids: list[int] = []
    with transaction.atomic():
        candidates = (
            WaitlistEntry.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(
                organization_id=doctor.organization_id,
                branch_id=branch.pk,
                state=WaitlistState.WAITING,
            )
            .filter(Q(doctor__isnull=True) | Q(doctor_id=doctor.pk))
            .filter(Q(date_from__isnull=True) | Q(date_from__lte=day))
            .filter(Q(date_to__isnull=True) | Q(date_to__gte=day))
            .select_related("service__kind", "patient")
            .prefetch_related("service__requirements")
            .order_by("created_at", "id")
        )
        expires_at = min(now + OFFER_TTL, start)
        for entry in candidates:
            if not _entry_fits(entry, doctor, start, usable_end, busy, zone_name):
                continue
            # The offer's id is chosen first so that its message is written before it and the
            # offer is inserted once, already pointing at the message.
            public_id = uuid.uuid4()
            message = outbox_enqueue(
                channel=OFFER_CHANNEL,
                payload={
                    "offer": str(public_id),
                    "patient": str(entry.patient.public_id),
                    "doctor": doctor.name,
                    "service": entry.service.name,
                    "branch": str(branch.public_id),
                    # Local time with its offset: what the patient's message shows.
                    "starts_at": start.astimezone(zone).isoformat(),
                    "expires_at": expires_at.astimezone(zone).isoformat(),
                },
                idempotency_key=f"waitlist-offer:{public_id}",
                subject=f"waitlist offer {public_id}",
            )
            offer = WaitlistOffer.objects.create(
                public_id=public_id,
                entry=entry,
                doctor=doctor,
                starts_at=start,
                ends_at=start + entry.service.duration,
                state=OfferState.OFFERED,
                expires_at=expires_at,
                freed_at=freed_at,
                outbox_message=message,
            )
            offer_ids.append(offer.pk)
        if offer_ids:
            WaitlistEntry.objects.filter(offers__pk__in=offer_ids).update(
                state=WaitlistState.OFFERED, updated_at=now
            )
    return offer_ids


def _locked_offer(offer: WaitlistOffer) -> WaitlistOffer:
    return (
        WaitlistOffer.objects.select_for_update(of=("self",))
        .select_related("entry__branch", "entry__patient", "entry__service", "doctor__staff")
        .get(pk=offer.pk)
    )


def _ensure_open(offer: WaitlistOffer) -> None:
    if offer.state == OfferState.TAKEN:
        raise SlotConflict("slot_taken", _("This time has just been taken. Choose another time."))
    if offer.state != OfferState.OFFERED:
        raise SchedulingError(
            "offer_closed",
            _("The offer is already “%(state)s”.") % {"state": offer.get_state_display()},
            field="state",
        )
    if offer.expires_at <= timezone.now():
        raise SchedulingError(
            "offer_expired",
            _("The offer expired at %(time)s.")
            % {"time": timezone.localtime(offer.expires_at).strftime("%d.%m.%Y %H:%M")},
            field="state",
        )


def waitlist_offer_accept(*, actor: Any, offer: WaitlistOffer) -> Appointment:
    """Book the offered time for the waiting patient; the first to accept gets it.

    The booking goes through ``appointment_book`` with a key derived from the offer, so a
    repeated accept returns the same appointment. If the time is gone (``SlotConflict``) the offer
    is marked taken, that mark is committed, and the conflict is raised (HTTP 409).
    """
    from .services import BookingRequest, appointment_book

    _ensure_can_book(actor, offer.entry.branch_id)
    conflict: SlotConflict | None = None
    with transaction.atomic():
        current = _locked_offer(offer)
        entry = current.entry
        if current.state == OfferState.ACCEPTED and entry.appointment_id is not None:
            return Appointment.objects.get(pk=entry.appointment_id)
        _ensure_open(current)
        request = BookingRequest(
            branch=entry.branch,
            services=[entry.service],
            starts_at=current.starts_at,
            channel=BookingChannel.DESK,
            patient=entry.patient,
            doctor=current.doctor,
            note=entry.note,
            idempotency_key=f"waitlist-offer:{current.public_id}",
        )
        now = timezone.now()
        try:
            with transaction.atomic():
                appointment = appointment_book(actor=actor, request=request)
        except SlotConflict as exc:
            conflict = exc
            current.state = OfferState.TAKEN
            current.save(update_fields=["state", "updated_at"])
            _reopen_entries({entry.pk})
        else:
            current.state = OfferState.ACCEPTED
            current.save(update_fields=["state", "updated_at"])
            entry.state = WaitlistState.BOOKED
            entry.appointment = appointment
            entry.save(update_fields=["state", "appointment", "updated_at"])
            rivals = WaitlistOffer.objects.filter(
                doctor_id=current.doctor_id,
                state=OfferState.OFFERED,
                starts_at__lt=appointment.ends_at,
                ends_at__gt=appointment.starts_at,
            ).exclude(pk=current.pk)
            rival_entries = set(rivals.values_list("entry_id", flat=True))
            rivals.update(state=OfferState.TAKEN, updated_at=now)
            # The patient who got this slot needs no other offer.
            entry.offers.filter(state=OfferState.OFFERED).update(
                state=OfferState.DECLINED, updated_at=now
            )
            _reopen_entries(rival_entries)
    if conflict is not None:
        raise conflict
    return appointment


def waitlist_offer_decline(*, actor: Any, offer: WaitlistOffer) -> WaitlistOffer:
    """The patient does not want this time; the entry waits for the next one."""
    _ensure_can_book(actor, offer.entry.branch_id)
    with transaction.atomic():
        current = _locked_offer(offer)
        if current.state != OfferState.OFFERED:
            raise SchedulingError(
                "offer_closed",
                _("The offer is already “%(state)s”.") % {"state": current.get_state_display()},
                field="state",
            )
        current.state = OfferState.DECLINED
        current.save(update_fields=["state", "updated_at"])
        _reopen_entries({current.entry_id})
    return current


def waitlist_expire_offers(*, now: datetime.datetime | None = None) -> int:
    """Close offers nobody answered in time and put their entries back in the queue.

    Meant for a periodic (Celery beat) task; safe to run concurrently (rows are locked with
    SKIP LOCKED). Returns how many offers expired.
    """
    moment = now or timezone.now()
    with transaction.atomic():
        expired = list(
            WaitlistOffer.objects.select_for_update(skip_locked=True)
            .filter(state=OfferState.OFFERED, expires_at__lte=moment)
            .values_list("pk", "entry_id")
        )
        if not expired:
            return 0
        WaitlistOffer.objects.filter(pk__in=[pk for pk, _entry in expired]).update(
            state=OfferState.EXPIRED, updated_at=moment
        )
        _reopen_entries({entry_id for _pk, entry_id in expired})
    return len(expired)


def waitlist_offer_get_for_actor(*, actor: Any, public_id: Any) -> WaitlistOffer:
    """An offer of a branch the actor works in (404 otherwise)."""
    from django.shortcuts import get_object_or_404

    return get_object_or_404(
        WaitlistOffer.objects.select_related("entry__branch", "doctor").filter(
            entry__branch__in=branch_list(actor=actor)
        ),
        public_id=public_id,
    )


def waitlist_entry_get_for_actor(*, actor: Any, public_id: Any) -> WaitlistEntry:
    """An entry of a branch the actor works in (404 otherwise)."""
    from django.shortcuts import get_object_or_404

    return get_object_or_404(waitlist_list(actor=actor), public_id=public_id)


def waitlist_entry_book(*, actor: Any, entry: WaitlistEntry, request: Any) -> Appointment:
    """Book a waiting patient at a time the desk chose (an entry dropped on the grid): the
    booking and the entry's closing are one transaction, so an entry is never left waiting
    for a visit that was booked, nor marked booked for one that was refused."""
    from .services import appointment_book

    _ensure_can_book(actor, entry.branch_id)
    with transaction.atomic():
        current = WaitlistEntry.objects.select_for_update().get(pk=entry.pk)
        if current.state not in (WaitlistState.WAITING, WaitlistState.OFFERED):
            raise SchedulingError(
                "waitlist_closed",
                _("This waitlist entry is already “%(state)s”.")
                % {"state": WaitlistState(current.state).label},
                field="waitlist",
            )
        appointment = appointment_book(actor=actor, request=request)
        current.state = WaitlistState.BOOKED
        current.appointment = appointment
        current.save(update_fields=["state", "appointment", "updated_at"])
        current.offers.filter(state=OfferState.OFFERED).update(
            state=OfferState.DECLINED, updated_at=timezone.now()
        )
    return appointment
