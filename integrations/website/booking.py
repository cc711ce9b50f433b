"""Booking from a FHIR ``POST Appointment``: the same ``appointment_book`` every channel uses.

Who books: the scheduling policy lets only staff with the booking capability book, so a public
booking acts as the clinic's website account, a login named by ``WEBSITE_BOOKING_USERNAME`` that
holds the registrar role in the branches that take online bookings. Without it online booking is
refused (503) instead of bypassing the policy.

Which patient: a returning patient is linked only when exactly one living person of the
organization has the same phone *and* a similar name with the same birth date (the duplicate
search every create path uses). Anything weaker is booked as a primary patient, whom the desk
registers at the first visit, so that nobody can attach a booking to someone else's record by
knowing only a phone number. The answer is the same either way.

How often: bookings are counted per phone and per client address (``booking_limit_reached``),
the same counters the portal's wizard uses, and refused with 429 over a limit; while the
counters cannot be read (Redis down) bookings are refused rather than let through unlimited.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.translation import gettext as _

from clinic.core.models import Branch
from clinic.core.selectors import branch_public_list
from patients.dedup import PersonFacts, duplicate_candidates
from patients.models import Person
from patients.normalizers import normalize_name_part, normalize_phone
from portal.ratelimit import Limit, RateLimitUnavailable, limit_reached, seconds_left
from scheduling.errors import IdempotencyKeyReused, SchedulingError, SlotConflict
from scheduling.models import Appointment, BookingChannel, Resource, Service
from scheduling.schedules import working_intervals
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book

from .fhir import SERVICE_SYSTEM, FhirError, SlotKey, slot_decode
from .selectors import notice_allows, online_schedule

IDEMPOTENCY_KEY_MAX_LENGTH = 100
BOOKINGS_PER_PHONE_HOUR = Limit("booking-phone-hour", 10, 3600)
BOOKINGS_PER_PHONE_DAY = Limit("booking-phone-day", 20, 86400)
BOOKINGS_PER_IP_HOUR = Limit("booking-ip-hour", 30, 3600)


class BookingThrottled(FhirError):
    """A booking limit was reached (429); ``retry_after`` seconds until it resets."""

    def __init__(self, diagnostics: str, retry_after: int) -> None:
        super().__init__(429, "throttled", diagnostics)
        self.retry_after = retry_after


def booking_limit_reached(*, phone: str, ip: str | None) -> Limit | None:
    """Count one booking try of the phone (E.164) and the address; the first limit now
    exceeded, or None. Raises ``RateLimitUnavailable`` when the counters cannot be read."""
    checks = [(BOOKINGS_PER_PHONE_HOUR, phone), (BOOKINGS_PER_PHONE_DAY, phone)]
    if ip:
        checks.append((BOOKINGS_PER_IP_HOUR, ip))
    for limit, subject in checks:
        if limit_reached(limit, subject):
            return limit
    return None


def _limits_checked(phone: str, ip: str | None) -> None:
    try:
        limit = booking_limit_reached(phone=phone, ip=ip)
    except RateLimitUnavailable:
        raise FhirError(
            503,
            "transient",
            _("Online booking is paused for a minute. Please try again shortly."),
        ) from None
    if limit is not None:
        raise BookingThrottled(
            _("Too many bookings were tried. Try again in %(value)s s.")
            % {"value": seconds_left(limit)},
            seconds_left(limit),
        )


@dataclass
class ContainedPatient:
    last_name: str
    first_name: str
    patronymic: str
    phone: str
    birth_date: datetime.date


@dataclass
class Booked:
    appointment: Appointment
    service: Service
    slot_id: str
    replayed: bool


def _invalid(expression: str, message: str) -> FhirError:
    return FhirError(400, "invalid", message, expression)


def _service_code(body: dict[str, Any]) -> str | None:
    concepts = body.get("serviceType")
    if concepts is None:
        return None
    try:
        codings = concepts[0]["coding"]
        coding = next(c for c in codings if c.get("system", SERVICE_SYSTEM) == SERVICE_SYSTEM)
        return str(coding["code"])
    except (LookupError, TypeError, StopIteration, AttributeError):
        raise _invalid(
            "Appointment.serviceType",
            _("Give the service as serviceType[0].coding with the system “%(system)s”.")
            % {"system": SERVICE_SYSTEM},
        ) from None


def _slot_key(body: dict[str, Any]) -> tuple[str, SlotKey]:
    try:
        text = str(body["slot"][0]["reference"])
    except (LookupError, TypeError):
        raise _invalid(
            "Appointment.slot", _("Give the slot as slot[0].reference “Slot/<id>”.")
        ) from None
    slot_id = text.removeprefix("Slot/")
    try:
        return slot_id, slot_decode(slot_id)
    except ValueError:
        raise _invalid(
            "Appointment.slot", _("“%(value)s” is not a slot of this server.") % {"value": text}
        ) from None


def _contained_patient(body: dict[str, Any], region: str) -> ContainedPatient:
    contained = [
        item
        for item in body.get("contained") or []
        if isinstance(item, dict) and item.get("resourceType") == "Patient"
    ]
    if len(contained) != 1:
        raise _invalid(
            "Appointment.contained", _("Give the patient as one contained Patient resource.")
        )
    patient = contained[0]
    references = {
        str((participant.get("actor") or {}).get("reference", ""))
        for participant in body.get("participant") or []
        if isinstance(participant, dict)
    }
    if f"#{patient.get('id', '')}" not in references:
        raise _invalid(
            "Appointment.participant",
            _("A participant must refer to the contained Patient as “#<its id>”."),
        )
    names = patient.get("name") or [{}]
    name = names[0] if isinstance(names, list) and isinstance(names[0], dict) else {}
    family = normalize_name_part(str(name.get("family") or ""))
    given = [normalize_name_part(str(part)) for part in name.get("given") or [] if part]
    if not family or not given:
        raise _invalid("Patient.name", _("Give the patient's family name and given name."))
    phones = [
        str(item.get("value") or "")
        for item in patient.get("telecom") or []
        if isinstance(item, dict) and item.get("system") == "phone"
    ]
    if not phones or not phones[0].strip():
        raise _invalid("Patient.telecom", _("Give the patient's phone number."))
    try:
        phone = normalize_phone(phones[0], region=region)
    except ValidationError:
        raise _invalid(
            "Patient.telecom",
            _("“%(value)s” is not a phone number.") % {"value": phones[0]},
        ) from None
    typed_birth_date = str(patient.get("birthDate") or "")
    try:
        birth_date = datetime.date.fromisoformat(typed_birth_date)
    except ValueError:
        raise _invalid(
            "Patient.birthDate",
            _("“%(value)s” is not a birth date (YYYY-MM-DD).") % {"value": typed_birth_date},
        ) from None
    return ContainedPatient(
        last_name=family,
        first_name=given[0],
        patronymic=" ".join(given[1:]),
        phone=phone,
        birth_date=birth_date,
    )


def returning_patient(*, organization: Any, patient: ContainedPatient) -> Person | None:
    """The one living person with the same phone and a similar name and birth date, if any."""
    candidates = duplicate_candidates(
        organization=organization,
        facts=PersonFacts(
            last_name=patient.last_name,
            first_name=patient.first_name,
            patronymic=patient.patronymic,
            birth_date=patient.birth_date,
            phones=(patient.phone,),
        ),
    )
    sure = [c for c in candidates if {"phone", "name_birth_date"} <= set(c.reasons)]
    return sure[0].person if len(sure) == 1 else None


def booking_branch(doctor: Resource, starts_at: datetime.datetime) -> Branch | None:
    """The public branch whose working interval of the doctor holds ``starts_at``."""
    day = starts_at.date()
    intervals = working_intervals(
        [doctor], day - datetime.timedelta(days=1), day + datetime.timedelta(days=1)
    )[doctor.pk]
    branch_ids = {i.branch_id for i in intervals if i.starts_at <= starts_at < i.ends_at}
    return branch_public_list().filter(pk__in=branch_ids).first()


def website_actor() -> Any:
    """The website's booking account (see the module's docstring), or None when unset."""
    username = getattr(settings, "WEBSITE_BOOKING_USERNAME", "")
    if not username:
        return None
    return get_user_model().objects.filter(username=username, is_active=True).first()


def _unavailable() -> FhirError:
    return FhirError(503, "transient", _("Online booking is not available at this branch."))


def appointment_create(
    *, body: Any, idempotency_key: str | None, client_ip: str | None = None
) -> Booked:
    """Book the contained patient into the slot; raises ``FhirError`` for every refusal.

    ``client_ip`` is the caller's address for the per-address booking limit."""
    if not isinstance(body, dict) or body.get("resourceType") != "Appointment":
        raise _invalid("resourceType", _("Send an Appointment resource."))
    if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise _invalid(
            "Idempotency-Key",
            _("The idempotency key must have 1 to %(max)s characters.")
            % {"max": IDEMPOTENCY_KEY_MAX_LENGTH},
        )
    slot_id, key = _slot_key(body)
    code = _service_code(body)
    if code is not None and code != str(key.service_public_id):
        raise _invalid(
            "Appointment.serviceType",
            _("The service “%(value)s” is not the service of the slot.") % {"value": code},
        )
    bookable = online_schedule(key.doctor_public_id, None, key.service_public_id)
    if bookable is None:
        raise FhirError(
            404, "not-found", _("The slot “%(value)s” does not exist.") % {"value": slot_id}
        )
    doctor, service = bookable[0].doctor, bookable[1]
    patient = _contained_patient(body, doctor.organization.phone_region)
    _limits_checked(patient.phone, client_ip)
    branch = booking_branch(doctor, key.starts_at)
    if branch is None or not notice_allows(doctor, key.starts_at):
        raise FhirError(
            409, "conflict", _("The slot “%(value)s” is no longer offered.") % {"value": slot_id}
        )
    actor = website_actor()
    if actor is None:
        raise _unavailable()
    person = returning_patient(organization=doctor.organization, patient=patient)
    request = BookingRequest(
        branch=branch,
        services=[service],
        starts_at=key.starts_at,
        channel=BookingChannel.PORTAL,
        doctor=doctor,
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
        idempotency_key=idempotency_key,
    )
    try:
        booked = appointment_book(actor=actor, request=request)
    except PermissionDenied:
        raise _unavailable() from None
    except SlotConflict as refusal:
        raise FhirError(409, "conflict", str(refusal.message), "Appointment.slot") from None
    except IdempotencyKeyReused as refusal:
        raise FhirError(422, "business-rule", str(refusal.message), "Idempotency-Key") from None
    except SchedulingError as refusal:
        raise FhirError(
            400, "business-rule", str(refusal.message), f"Appointment.{refusal.field or 'slot'}"
        ) from None
    return Booked(
        appointment=booked,
        service=service,
        slot_id=slot_id,
        replayed=bool(getattr(booked, "replayed", False)),
    )


__all__ = [
    "Booked",
    "BookingThrottled",
    "appointment_create",
    "booking_branch",
    "booking_limit_reached",
    "returning_patient",
    "website_actor",
]
