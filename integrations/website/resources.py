"""FHIR R4 resources built from the clinic's rows (dicts ready for ``fhir.fhir_json``)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from clinic.core.models import Branch
from scheduling.availability import FREE, Slot
from scheduling.models import Appointment, Resource, Service

from .fhir import (
    BOOKING_DEEP_LINK,
    BOOKING_PHONE,
    DURATION_EXTENSION,
    PRICE_EXTENSION,
    SPECIALTY_SYSTEM,
    SlotKey,
    instant,
    instant_of,
    money,
    reference,
    schedule_id,
    service_concept,
)
from .selectors import PublicSchedule

TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"


def practitioner(doctor: Resource) -> dict[str, Any]:
    staff = doctor.staff
    assert staff is not None  # a doctor resource always names the staff member
    given = [part for part in (staff.first_name, staff.patronymic) if part]
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": str(doctor.public_id),
        "active": True,
        "name": [{"text": staff.full_name, "family": staff.last_name, "given": given}],
    }
    if staff.specialty is not None:
        resource["qualification"] = [
            {
                "code": {
                    "coding": [
                        {
                            "system": SPECIALTY_SYSTEM,
                            "code": staff.specialty.code,
                            "display": staff.specialty.name,
                        }
                    ],
                    "text": staff.specialty.name,
                }
            }
        ]
    return resource


def location(branch: Branch) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "id": str(branch.public_id),
        "status": "active",
        "name": branch.name,
        "address": {"text": branch.address},
        "managingOrganization": {"display": branch.organization.short_name},
        "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": branch.time_zone}],
    }
    if branch.phone:
        resource["telecom"] = [{"system": "phone", "value": branch.phone, "use": "work"}]
    return resource


def healthcare_service(
    service: Service, branches: Sequence[Branch], prices: dict[tuple[int, int], Decimal]
) -> dict[str, Any]:
    """The service offered in the organization's public branches, with its duration and the
    self-pay price of each branch that has one."""
    minutes = int(service.duration.total_seconds() // 60)
    extensions: list[dict[str, Any]] = [
        {
            "url": DURATION_EXTENSION,
            "valueDuration": {
                "value": minutes,
                "unit": "min",
                "system": "http://unitsofmeasure.org",
                "code": "min",
            },
        }
    ]
    for branch in branches:
        amount = prices.get((branch.pk, service.pk))
        if amount is not None:
            extensions.append(
                {
                    "url": PRICE_EXTENSION,
                    "extension": [
                        {
                            "url": "location",
                            "valueReference": reference("Location", str(branch.public_id)),
                        },
                        {
                            "url": "amount",
                            "valueMoney": money(amount, service.organization.currency),
                        },
                    ],
                }
            )
    return {
        "resourceType": "HealthcareService",
        "id": str(service.public_id),
        "active": True,
        "extension": extensions,
        "providedBy": {"display": service.organization.short_name},
        "type": [service_concept(service.public_id, service.name)],
        "name": service.name,
        "location": [
            reference("Location", str(branch.public_id), branch.name) for branch in branches
        ],
    }


def schedule(entry: PublicSchedule) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": schedule_id(entry.doctor.public_id, entry.branch.public_id),
        "active": True,
        "serviceType": [service_concept(s.public_id, s.name) for s in entry.services],
        "actor": [
            reference("Practitioner", str(entry.doctor.public_id), entry.doctor.name),
            reference("Location", str(entry.branch.public_id), entry.branch.name),
        ],
    }


def slot(
    found: Slot,
    *,
    service: Service,
    branch: Branch,
    booking_url: str | None = None,
) -> dict[str, Any]:
    """A Slot of the engine's search; with ``booking_url`` (SMART Scheduling Links) it carries
    the deep link to the portal's booking page and the branch's phone."""
    key = SlotKey(found.doctor_public_id, service.public_id, found.start)
    resource: dict[str, Any] = {
        "resourceType": "Slot",
        "id": key.encode(),
        "schedule": reference("Schedule", schedule_id(found.doctor_public_id, branch.public_id)),
        "status": "free" if found.state == FREE else "busy-tentative",
        "start": instant_of(found.start),
        "end": instant_of(found.end),
        "serviceType": [service_concept(service.public_id, service.name)],
    }
    if booking_url is not None:
        extensions: list[dict[str, Any]] = [{"url": BOOKING_DEEP_LINK, "valueUrl": booking_url}]
        if branch.phone:
            extensions.append({"url": BOOKING_PHONE, "valueString": branch.phone})
        resource["extension"] = extensions
    return resource


def appointment(booked: Appointment, *, slot_id: str, service: Service) -> dict[str, Any]:
    """The booked appointment as its patient sees it (the contained patient is not echoed:
    the answer carries only what the booking decided)."""
    assert booked.doctor is not None
    return {
        "resourceType": "Appointment",
        "id": str(booked.public_id),
        "status": "booked",
        "serviceType": [service_concept(service.public_id, service.name)],
        "start": instant(booked.starts_at),
        "end": instant(booked.ends_at),
        "slot": [reference("Slot", slot_id)],
        "created": instant(booked.created_at),
        "participant": [
            {
                "actor": reference(
                    "Practitioner", str(booked.doctor.public_id), booked.doctor.name
                ),
                "status": "accepted",
            },
            {
                "actor": reference("Location", str(booked.branch.public_id), booked.branch.name),
                "status": "accepted",
            },
        ],
    }
