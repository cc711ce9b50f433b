"""Factories of the patient registry: people, their contacts, card types and medical cards.

They write rows directly (no duplicate check): use ``patients.services`` when the behaviour under
test is registration itself.
"""

from __future__ import annotations

import datetime

import factory

from patients.models import CardType, Contact, ContactKind, MedicalCard, Person, Sex
from patients.normalizers import phone_digits, search_key

from ..core.factories import BranchFactory, OrganizationFactory


class PersonFactory(factory.django.DjangoModelFactory):
    """A living person; ``name_key`` follows the name as ``Person.refresh_name_key`` makes it."""

    class Meta:
        model = Person

    organization = factory.SubFactory(OrganizationFactory)
    last_name = factory.Sequence(lambda n: f"Иванова{n}")
    first_name = "Мария"
    patronymic = "Петровна"
    birth_date = datetime.date(1980, 12, 31)
    sex = Sex.FEMALE
    name_key = factory.LazyAttribute(
        lambda person: search_key(person.last_name, person.first_name, person.patronymic)
    )


class ContactFactory(factory.django.DjangoModelFactory):
    """A mobile phone in E.164 by default; pass ``kind=ContactKind.EMAIL`` with an address."""

    class Meta:
        model = Contact

    person = factory.SubFactory(PersonFactory)
    kind = ContactKind.MOBILE
    value = factory.Sequence(lambda n: f"+7916{n:07d}")
    digits = factory.LazyAttribute(
        lambda contact: "" if contact.kind == ContactKind.EMAIL else phone_digits(contact.value)
    )


class CardTypeFactory(factory.django.DjangoModelFactory):
    """A card type of one organization (the standard ones have no organization)."""

    class Meta:
        model = CardType

    organization = factory.SubFactory(OrganizationFactory)
    code = factory.Sequence(lambda n: f"type-{n}")
    name = factory.Sequence(lambda n: f"Card type {n}")
    number_prefix = ""


class MedicalCardFactory(factory.django.DjangoModelFactory):
    """An open card in the archive, of a type and branch of the person's organization."""

    class Meta:
        model = MedicalCard

    person = factory.SubFactory(PersonFactory)
    organization = factory.SelfAttribute("person.organization")
    card_type = factory.SubFactory(
        CardTypeFactory, organization=factory.SelfAttribute("..organization")
    )
    branch = factory.SubFactory(BranchFactory, organization=factory.SelfAttribute("..organization"))
    number = factory.Sequence(lambda n: f"{n + 1}")
