"""Factories for the schedule: a doctor who works every day, services, rooms, devices."""

from __future__ import annotations

import datetime
from typing import Any

import factory
from django.utils import timezone

from clinic.core.models import Branch, Room, RoomType
from clinic.core.roles import Role
from scheduling.models import (
    AppointmentKind,
    Resource,
    ResourceKind,
    Rotation,
    Service,
    ServiceRequirement,
    WorkSchedule,
)
from tests.core.factories import BranchFactory, RoomFactory, SpecialtyFactory, staff_with_role


def kind(code: str = "primary") -> AppointmentKind:
    return AppointmentKind.objects.get(code=code)


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Service

    organization = factory.SubFactory("tests.core.factories.OrganizationFactory")
    code = factory.Sequence(lambda n: f"B01.{n:03d}")
    name = factory.Sequence(lambda n: f"Consultation {n}")
    kind = factory.LazyFunction(kind)
    duration_minutes = 30


def doctor(
    branch: Branch,
    *,
    specialty: Any = None,
    grid_step_minutes: int = 15,
    name: str | None = None,
    **resource_fields: Any,
) -> Resource:
    """A doctor resource (with a login of the doctor role) in the branch."""
    staff = staff_with_role(
        Role.DOCTOR,
        organization=branch.organization,
        branches=[branch],
        specialty=specialty or SpecialtyFactory(),
    )
    return Resource.objects.create(
        organization=branch.organization,
        branch=branch,
        kind=ResourceKind.DOCTOR,
        name=name or staff.short_name,
        staff=staff,
        grid_step_minutes=grid_step_minutes,
        **resource_fields,
    )


def room(branch: Branch, room_type: str = RoomType.CONSULTING, **kwargs: Any) -> Resource:
    space: Room = RoomFactory(branch=branch, room_type=room_type, **kwargs)
    return Resource.objects.create(
        organization=branch.organization,
        branch=branch,
        kind=ResourceKind.ROOM,
        name=f"Room {space.number}",
        room=space,
    )


def device(branch: Branch, equipment_type: str = "ultrasound") -> Resource:
    return Resource.objects.create(
        organization=branch.organization,
        branch=branch,
        kind=ResourceKind.EQUIPMENT,
        name=f"{equipment_type} {Resource.objects.count() + 1}",
        equipment_type=equipment_type,
    )


def works(
    resource: Resource,
    *,
    branch: Branch | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    start: str = "09:00",
    end: str = "17:00",
    break_from: str | None = "13:00",
    break_to: str | None = "14:00",
    weekdays: list[int] | None = None,
    follows_calendar: bool = False,
    **fields: Any,
) -> WorkSchedule:
    """A schedule: every day (unless weekdays are given) from a year ago on, in local time."""
    parse = datetime.time.fromisoformat
    return WorkSchedule.objects.create(
        resource=resource,
        branch=branch or resource.branch,
        date_from=date_from or timezone.localdate() - datetime.timedelta(days=365),
        date_to=date_to,
        rotation=fields.pop("rotation", Rotation.WEEKDAYS),
        weekdays=weekdays if weekdays is not None else [1, 2, 3, 4, 5, 6, 7],
        start_time=parse(start),
        end_time=parse(end),
        break_start=parse(break_from) if break_from else None,
        break_end=parse(break_to) if break_to else None,
        follows_calendar=follows_calendar,
        **fields,
    )


def service_for(
    specialty: Any, *, organization: Any, duration_minutes: int = 30, **fields: Any
) -> Service:
    """A service that needs a doctor of the specialty."""
    service: Service = ServiceFactory(
        organization=organization, duration_minutes=duration_minutes, **fields
    )
    ServiceRequirement.objects.create(
        service=service, kind=ResourceKind.DOCTOR, specialty=specialty
    )
    return service


def local(day: datetime.date, hhmm: str) -> datetime.datetime:
    """An aware datetime at local time (Europe/Moscow, the test organizations' zone)."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.fromisoformat(hhmm)))


def tomorrow() -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=1)


__all__ = [
    "BranchFactory",
    "ServiceFactory",
    "device",
    "doctor",
    "kind",
    "local",
    "room",
    "service_for",
    "tomorrow",
    "works",
]
