"""Demo data of the schedule: the demo clinic's doctors, rooms and ultrasound devices as
resources, a small service catalogue, Monday–Friday schedules and a few booked appointments.

Called by ``clinic.core.demo.demo_load`` after the organization and its staff exist. Schedules go
through ``rostering`` and appointments through ``appointment_book`` (as the demo administrator
and registrar), so the demo obeys the same rules as real data. Idempotent: once the demo
catalogue exists, a second run changes nothing.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from clinic.accounts.models import User
from clinic.core.models import Branch, Organization, Room, RoomType, Specialty, Staff
from patients.models import Person
from patients.services import ContactInput, PersonInput, person_create

from . import rostering
from .errors import SchedulingError
from .models import (
    AppointmentKind,
    BookingChannel,
    Resource,
    ResourceKind,
    Service,
    ServiceRequirement,
)
from .services import BookingRequest, appointment_book

THERAPIST, PAEDIATRICIAN, ULTRASOUND_DOCTOR = "27", "49", "109"

# code, name, kind, minutes, doctor's specialty, needs an ultrasound room and device, max age
SERVICES = [
    ("B01.047.001", "Приём врача-терапевта первичный", "primary", 30, THERAPIST, False, None),
    ("B01.047.002", "Приём врача-терапевта повторный", "repeat", 20, THERAPIST, False, None),
    ("B01.031.001", "Приём врача-педиатра первичный", "primary", 30, PAEDIATRICIAN, False, 17),
    (
        "A04.16.001",
        "Ультразвуковое исследование органов брюшной полости",
        "procedure",
        20,
        ULTRASOUND_DOCTOR,
        True,
        None,
    ),
]

PATIENTS = [
    ("Иванов", "Пётр", "Сергеевич", datetime.date(1975, 3, 14), "+79161110001"),
    ("Сидорова", "Наталья", "Петровна", datetime.date(1988, 11, 2), "+79161110002"),
    ("Кузьмин", "Олег", "Владимирович", datetime.date(1962, 7, 21), "+79161110003"),
    ("Белова", "Дарья", "Игоревна", datetime.date(2016, 5, 9), "+79161110004"),
    ("Орлов", "Максим", "Андреевич", datetime.date(1994, 1, 30), "+79161110005"),
]

WORK_START, WORK_END = datetime.time(9), datetime.time(18)
BREAK_START, BREAK_END = datetime.time(13), datetime.time(14)
BOOKING_DAYS = 5  # working days ahead that get appointments


def scheduling_demo_exists(organization: Organization) -> bool:
    return Service.objects.filter(organization=organization, code=SERVICES[0][0]).exists()


@transaction.atomic
def scheduling_demo_load(organization: Organization) -> bool:
    """Create the schedule's demo data unless it exists; True when something was created."""
    if scheduling_demo_exists(organization):
        return False
    administrator = User.objects.get(username="admin")
    registrar = User.objects.get(username="registrar")
    branches = list(Branch.objects.filter(organization=organization).order_by("pk"))
    doctors = _doctor_resources(organization, administrator, branches)
    for branch in branches:
        _room_and_device_resources(branch, administrator)
    services = _services(organization, administrator)
    start = timezone.localdate() - datetime.timedelta(days=30)
    for resource in doctors:
        rostering.schedule_create(
            actor=administrator,
            resource=resource,
            date_from=start,
            weekdays=[1, 2, 3, 4, 5],
            start_time=WORK_START,
            end_time=WORK_END,
            break_start=BREAK_START,
            break_end=BREAK_END,
            reason="demo",
        )
    patients = _patients(organization, registrar)
    _appointments(registrar, branches[0], doctors, services, patients)
    return True


def _doctor_resources(
    organization: Organization, actor: Any, branches: list[Branch]
) -> list[Resource]:
    """Every demo doctor (staff with a specialty) as a resource of his first branch."""
    resources = []
    for staff in (
        Staff.objects.filter(organization=organization, specialty__isnull=False)
        .prefetch_related("branches")
        .order_by("pk")
    ):
        home = min(staff.branches.all(), key=lambda branch: branch.pk, default=branches[0])
        specialty_code = staff.specialty.code if staff.specialty else ""
        resources.append(
            rostering.resource_create(
                actor=actor,
                branch=home,
                kind=ResourceKind.DOCTOR,
                name=staff.short_name,
                staff=staff,
                grid_step_minutes=10 if specialty_code == ULTRASOUND_DOCTOR else 15,
                max_patient_age=17 if specialty_code == PAEDIATRICIAN else None,
            )
        )
    return resources


def _room_and_device_resources(branch: Branch, actor: Any) -> None:
    for space in Room.objects.filter(branch=branch).order_by("number"):
        rostering.resource_create(
            actor=actor,
            branch=branch,
            kind=ResourceKind.ROOM,
            name=f"{space.number} {space.name}".strip(),
            room=space,
        )
    rostering.resource_create(
        actor=actor,
        branch=branch,
        kind=ResourceKind.EQUIPMENT,
        name="Аппарат УЗИ Mindray DC-70",
        equipment_type="ultrasound",
    )


def _services(organization: Organization, actor: Any) -> dict[str, Service]:
    created = {}
    for code, name, kind_code, minutes, specialty_code, ultrasound, max_age in SERVICES:
        service = Service(
            organization=organization,
            code=code,
            name=name,
            kind=AppointmentKind.objects.get(code=kind_code),
            duration_minutes=minutes,
            max_age=max_age,
            created_by=actor,
        )
        service.full_clean()
        service.save()
        ServiceRequirement.objects.create(
            service=service,
            kind=ResourceKind.DOCTOR,
            specialty=Specialty.objects.get(code=specialty_code),
        )
        if ultrasound:
            ServiceRequirement.objects.create(
                service=service, kind=ResourceKind.ROOM, room_type=RoomType.ULTRASOUND
            )
            ServiceRequirement.objects.create(
                service=service, kind=ResourceKind.EQUIPMENT, equipment_type="ultrasound"
            )
        created[code] = service
    return created


def _patients(organization: Organization, actor: Any) -> list[Person]:
    people = []
    for last_name, first_name, patronymic, birth_date, phone in PATIENTS:
        existing = Person.objects.filter(
            organization=organization,
            last_name=last_name,
            first_name=first_name,
            birth_date=birth_date,
        ).first()
        people.append(
            existing
            or person_create(
                actor=actor,
                organization=organization,
                data=PersonInput(
                    last_name=last_name,
                    first_name=first_name,
                    patronymic=patronymic,
                    birth_date=birth_date,
                    contacts=[ContactInput(kind="mobile", value=phone)],
                ),
            )
        )
    return people


def _appointments(
    actor: Any,
    branch: Branch,
    doctors: list[Resource],
    services: dict[str, Service],
    patients: list[Person],
) -> None:
    """A few visits on the coming working days: therapist, paediatrician and ultrasound."""
    by_specialty = {
        resource.staff.specialty.code: resource
        for resource in doctors
        if resource.staff is not None
        and resource.staff.specialty is not None
        and resource.branch_id == branch.pk
    }
    adults = [p for p in patients if p.birth_date and p.birth_date.year < 2008]
    children = [p for p in patients if p.birth_date and p.birth_date.year >= 2008]
    plan = [
        ("10:00", THERAPIST, "B01.047.001", adults[0]),
        ("10:30", THERAPIST, "B01.047.002", adults[1]),
        ("11:00", PAEDIATRICIAN, "B01.031.001", children[0]),
        ("15:00", ULTRASOUND_DOCTOR, "A04.16.001", adults[2]),
        ("16:00", THERAPIST, "B01.047.001", adults[3]),
    ]
    day = timezone.localdate()
    booked_days = 0
    while booked_days < BOOKING_DAYS:
        day += datetime.timedelta(days=1)
        if day.isoweekday() > 5:
            continue
        booked_days += 1
        for index, (hhmm, specialty_code, code, patient) in enumerate(plan):
            if (index + booked_days) % 2:  # a sparse, varied grid rather than the same rows
                continue
            doctor = by_specialty.get(specialty_code)
            if doctor is None:
                continue
            starts_at = timezone.make_aware(
                datetime.datetime.combine(day, datetime.time.fromisoformat(hhmm))
            )
            try:
                appointment_book(
                    actor=actor,
                    request=BookingRequest(
                        branch=branch,
                        services=[services[code]],
                        starts_at=starts_at,
                        channel=BookingChannel.DESK,
                        patient=patient,
                        doctor=doctor,
                    ),
                )
            except SchedulingError:
                continue  # a holiday in the production calendar: that day stays free
