"""Factories of the core: organizations, branches, rooms, specialties, users and staff."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth.models import Group

from clinic.accounts.models import User
from clinic.core.models import Branch, Department, Organization, Room, RoomType, Specialty, Staff

# Valid 10-digit INNs (check digit correct), used in turn so organizations stay unique.
VALID_INNS = ["7707083893", "7728168971", "7736207543", "5024002119", "7702070139", "7710140679"]


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Medical Centre {n} LLC")
    short_name = factory.Sequence(lambda n: f"Medical Centre {n}")
    inn = factory.Sequence(lambda n: VALID_INNS[n % len(VALID_INNS)])
    kpp = "770701001"
    ogrn = "1027700132195"
    time_zone = "Europe/Moscow"


class BranchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Branch

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Branch {n}")
    address = factory.Sequence(lambda n: f"Moscow, Lenina st. {n}")
    phone = "+74950000000"


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department

    branch = factory.SubFactory(BranchFactory)
    name = factory.Sequence(lambda n: f"Department {n}")


class RoomFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Room

    branch = factory.SubFactory(BranchFactory)
    number = factory.Sequence(lambda n: f"{100 + n}")
    room_type = RoomType.CONSULTING


class SpecialtyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Specialty
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"S{n}")
    name = factory.Sequence(lambda n: f"Specialty {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def roles(self, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
        if create and extracted:
            self.groups.set(Group.objects.filter(name__in=extracted))
        if create:
            self.save()


class StaffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Staff
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    last_name = factory.Sequence(lambda n: f"Ivanov{n}")
    first_name = "Ivan"
    patronymic = "Ivanovich"
    position = "Physician"

    @factory.post_generation
    def branches(self, create: bool, extracted: list[Branch] | None, **kwargs: Any) -> None:
        if not create:
            return
        if extracted is None:
            extracted = [BranchFactory(organization=self.organization)]
        self.branches.set(extracted)


def staff_with_role(role: str, **kwargs: Any) -> Staff:
    """A staff member whose login has exactly one role."""
    user = UserFactory(roles=[role])
    return StaffFactory(user=user, **kwargs)
