"""The portal's booking: free slots, a hold for the browser, the booking and its cancellation.

The portal books through the same services as every channel: ``free_slots`` and
``appointment_book`` with ``BookingChannel.PORTAL``, acting as the website's booking account and
matching a returning patient exactly as the FHIR booking does (``integrations.website.booking``).
A slot is named by the FHIR Slot id (doctor, service, start), so a deep link from the feeds and
a click in the wizard arrive at the same step.

A parent may book for a child as the child's legal representative: the code goes to the parent's
phone, the child is matched only through a legal-representative link to that phone (or the
child's own phone), and the parent's details are written on the appointment for the desk.
Bookings are rate-limited per phone and per address with the FHIR booking's limits, so the two
doors to the schedule share one budget.
"""

from __future__ import annotations

import datetime
import logging
import zoneinfo
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clinic.core.models import Branch
from integrations.website.booking import (
    ContainedPatient,
    booking_branch,
    booking_limit_reached,
    returning_patient,
    website_actor,
)
from integrations.website.fhir import SlotKey, slot_decode
from integrations.website.selectors import notice_allows
from patients.dedup import PersonFacts, duplicate_candidates
from patients.models import ADULT_AGE_YEARS, PHONE_KINDS, Person, PersonRelation, Relation
from patients.services import relation_add
from portal.ratelimit import RateLimitUnavailable, seconds_left
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

from .errors import PortalError, TooManyRequests
from .models import ConsultationMode
from .pricing import PortalPrice, portal_price, portal_prices, price_key, settings_of
from .selectors import bookable_schedules, consultation_mode

logger = logging.getLogger(__name__)

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
    price: PortalPrice | None = field(default=None)


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

    @cached_property
    def price(self) -> PortalPrice | None:
        """The portal's price in force on the visit's day in the slot's branch (None: none
        shown)."""
        return portal_price(self.doctor, self.service, on=self.starts_at.date(), branch=self.branch)

    @property
    def mode(self) -> ConsultationMode:
        return consultation_mode(self.doctor)


@dataclass
class Representative:
    """The parent booking for a child as the child's legal representative."""

    last_name: str
    first_name: str
    patronymic: str
    birth_date: datetime.date
    phone: str
    relation: str = Relation.GUARDIAN

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.last_name, self.first_name, self.patronymic) if part)


def _unknown_slot() -> SlotTaken:
    return SlotTaken(
        "unknown_slot",
        _("This time can no longer be booked. Please pick another time."),
        field="slot",
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
            if not notice_allows(doctor, found.starts_at):
                continue
            key = SlotKey(found.doctor_public_id, service.public_id, found.start)
            offered.append(
                OfferedSlot(slot_id=key.encode(), doctor=doctor, branch=branch, starts_at=starts_at)
            )
    offered.sort(key=lambda slot: (slot.starts_at, slot.doctor.name))
    # One batch for every (doctor, branch) of the list, at the prices of its first day.
    prices = portal_prices(
        {(s.doctor.pk, s.branch.pk): (s.doctor, service, s.branch) for s in offered}.values(),
        on=first_day,
    )
    for slot in offered:
        slot.price = prices.get(price_key(slot.doctor, service, slot.branch))
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
        if key.starts_at <= timezone.now() or not notice_allows(entry.doctor, key.starts_at):
            raise _unknown_slot()
        return ChosenSlot(
            slot_id=slot_id,
            doctor=entry.doctor,
            service=service,
            branch=branch,
            starts_at=key.starts_at.astimezone(zoneinfo.ZoneInfo(branch.time_zone)),
        )
    raise _unknown_slot()


def slot_free_check(chosen: ChosenSlot, *, token: str) -> None:
    """Refuse a time that is no longer free (booked meanwhile, or its day closed): a stale deep
    link or an old search page must not walk the patient through the wizard to a refusal."""
    day = chosen.starts_at.date()
    found = free_slots(
        organization_id=chosen.branch.organization_id,
        services=[chosen.service],
        branch=chosen.branch,
        date_from=day,
        date_to=day,
        channel=BookingChannel.PORTAL,
        doctors=[chosen.doctor],
        hold_token=token,
    )
    start = int(chosen.starts_at.timestamp())
    if not any(slot.start == start and slot.state == FREE for slot in found):
        raise SlotTaken(
            "slot_taken",
            _("This time has just been taken. Please pick another time."),
            field="slot",
        )


def slot_take(chosen: ChosenSlot, *, token: str) -> None:
    """Hold the chosen time for this browser so every other screen shows it held; a time no
    longer free is refused first."""
    if holds.held_by_other(
        resource_ids=[chosen.doctor.pk],
        starts_at=chosen.starts_at,
        ends_at=chosen.ends_at,
        token=token,
    ):
        raise _held()
    slot_free_check(chosen, token=token)
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


def patient_refusal(chosen: ChosenSlot, birth_date: datetime.date) -> PortalError | None:
    """Why the patient born on ``birth_date`` cannot be booked into the slot, or None.

    The doctor's online settings say whether he sees children and adults; the service's and the
    doctor's age limits are the engine's, checked here first so that nobody is sent a code for
    a visit that will be refused (the engine checks them again when booking).
    """
    age = age_on(birth_date, chosen.starts_at.date())
    settings = settings_of(chosen.doctor)
    doctor = chosen.doctor
    message = None
    if settings is not None and age < ADULT_AGE_YEARS and not settings.for_children:
        message = _("%(doctor)s does not see children. Please choose another doctor.") % {
            "doctor": doctor.name
        }
    elif settings is not None and age >= ADULT_AGE_YEARS and not settings.for_adults:
        message = _("%(doctor)s sees only children. Please choose another doctor.") % {
            "doctor": doctor.name
        }
    elif not _within(age, chosen.service.min_age, chosen.service.max_age):
        message = _("“%(service)s” cannot be booked for a patient aged %(age)s.") % {
            "service": chosen.service.name,
            "age": age,
        }
    elif not _within(age, doctor.min_patient_age, doctor.max_patient_age):
        message = _("%(doctor)s does not see patients aged %(age)s.") % {
            "doctor": doctor.name,
            "age": age,
        }
    if message is None:
        return None
    return PortalError("age_not_allowed", message, field="birth_date")


def age_on(born: datetime.date, day: datetime.date) -> int:
    """Full years on ``day`` of someone born on ``born``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _within(age: int, low: int | None, high: int | None) -> bool:
    return (low is None or age >= low) and (high is None or age <= high)


def booking_limits_checked(*, phone: str, ip: str | None) -> None:
    """Count a booking try for the phone and the address; refuse it over a limit (HTTP 429),
    and refuse every try while the limits cannot be checked."""
    try:
        limit = booking_limit_reached(phone=phone, ip=ip)
    except RateLimitUnavailable as exc:
        raise TooManyRequests(
            "bookings_unavailable",
            _("Online booking is paused for a minute. Please try again shortly."),
        ) from exc
    if limit is not None:
        raise TooManyRequests(
            "too_many_bookings",
            _("Too many bookings were tried. Try again in %(value)s s.")
            % {"value": seconds_left(limit)},
        )


def returning_child(*, organization: Any, child: ContainedPatient) -> Person | None:
    """The one living person with the child's similar name and birth date who either has the
    phone (``child.phone``, the representative's) or has a legal representative who has it.

    Found by the duplicate search every create path uses, like ``returning_patient``; a name and
    birth date alone never attach a booking to somebody's child.
    """
    candidates = duplicate_candidates(
        organization=organization,
        facts=PersonFacts(
            last_name=child.last_name,
            first_name=child.first_name,
            patronymic=child.patronymic,
            birth_date=child.birth_date,
            phones=(child.phone,),
        ),
    )
    named = [c for c in candidates if "name_birth_date" in c.reasons]
    if not named:
        return None
    today = timezone.localdate()
    represented = set(
        PersonRelation.objects.filter(
            Q(valid_until__isnull=True) | Q(valid_until__gte=today),
            person__in=[c.person.pk for c in named],
            is_legal_representative=True,
            relative__merged_into__isnull=True,
            relative__contacts__kind__in=PHONE_KINDS,
            relative__contacts__value=child.phone,
        ).values_list("person_id", flat=True)
    )
    sure = [c for c in named if "phone" in c.reasons or c.person.pk in represented]
    return sure[0].person if len(sure) == 1 else None


def _representative_note(representative: Representative) -> str:
    return _(
        "Booked online by the legal representative (%(relation)s): %(name)s, born "
        "%(birth_date)s, phone %(phone)s."
    ) % {
        "relation": Relation(representative.relation).label,
        "name": representative.full_name,
        "birth_date": date_format(representative.birth_date, "SHORT_DATE_FORMAT"),
        "phone": representative.phone,
    }


def _representation_record(
    *, actor: Any, organization: Any, child: Person, representative: Representative
) -> None:
    """Link the matched child to the matched representative when they are not linked yet.

    An existing link of any kind is left as the desk made it. The link notes that it was stated
    online so that the desk checks the document at the visit; a failure leaves the booking as it
    is and is logged.
    """
    adult = returning_patient(
        organization=organization,
        patient=ContainedPatient(
            last_name=representative.last_name,
            first_name=representative.first_name,
            patronymic=representative.patronymic,
            phone=representative.phone,
            birth_date=representative.birth_date,
        ),
    )
    if adult is None or adult.pk == child.pk:
        return
    if PersonRelation.objects.filter(person=child, relative=adult).exists():
        return
    try:
        with transaction.atomic():
            relation_add(
                actor=actor,
                person=child,
                relative=adult,
                relation=representative.relation,
                is_legal_representative=True,
                authorising_document=_("Stated online when booking; check the document."),
            )
    except (PermissionDenied, ValidationError, IntegrityError):
        logger.warning(
            "The representative link of person %s to person %s was not recorded.",
            child.pk,
            adult.pk,
            exc_info=True,
        )


def portal_book(
    *,
    chosen: ChosenSlot,
    patient: ContainedPatient,
    token: str,
    representative: Representative | None = None,
) -> Appointment:
    """Book the held slot as the website account for the matched or a primary patient.

    With a ``representative`` the patient is a child whose ``phone`` is the representative's.
    """
    actor = website_actor()
    if actor is None:
        raise _unavailable()
    age_refusal = patient_refusal(chosen, patient.birth_date)
    if age_refusal is not None:
        raise age_refusal
    organization = chosen.doctor.organization
    if representative is None:
        person = returning_patient(organization=organization, patient=patient)
    else:
        person = returning_child(organization=organization, child=patient)
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
        note=_representative_note(representative) if representative is not None else "",
        hold_token=token,
    )
    try:
        booked = appointment_book(actor=actor, request=request)
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
    if representative is not None and person is not None:
        _representation_record(
            actor=actor, organization=organization, child=person, representative=representative
        )
    return booked


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
