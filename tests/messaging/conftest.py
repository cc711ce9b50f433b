"""A branch with a therapist working 09:00–18:00 every day, a registrar who books, and a patient
with a mobile phone and consent to SMS and WhatsApp."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group

from clinic.core.models import Branch
from clinic.core.roles import Role
from messaging.models import BranchSender, MessageChannel, ReminderRule, RuleEvent
from patients.models import Consent, ConsentKind, ConsentSource, ContactKind, Person
from scheduling.models import Appointment, BookingChannel, Resource, Service
from scheduling.services import BookingRequest, appointment_book
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import doctor, local, service_for, works

PHONE = "+79165557777"


@dataclass
class Clinic:
    branch: Branch
    doctor: Resource
    service: Service
    patient: Person
    registrar: Any

    @property
    def organization(self) -> Any:
        return self.branch.organization

    def book(self, day: datetime.date, at: str, patient: Person | None = None) -> Appointment:
        return appointment_book(
            actor=self.registrar,
            request=BookingRequest(
                branch=self.branch,
                services=[self.service],
                starts_at=local(day, at),
                channel=BookingChannel.DESK,
                doctor=self.doctor,
                patient=patient or self.patient,
            ),
        )

    def rule(self, event: str, **fields: Any) -> ReminderRule:
        fields.setdefault("channels", [MessageChannel.SMS])
        return ReminderRule.objects.create(
            organization=self.organization,
            name=f"{event} rule",
            event=event,
            template_code=fields.pop("template_code", event),
            **fields,
        )


def consent(person: Person, channel: str) -> Consent:
    return Consent.objects.create(
        person=person,
        kind=ConsentKind.COMMUNICATION,
        channel=channel,
        given_on=datetime.date(2025, 1, 1),
        source=ConsentSource.PAPER,
    )


@pytest.fixture
def clinic() -> Clinic:
    branch = BranchFactory(name="Central", address="Moscow, Tverskaya 1", phone="+74951234567")
    specialty = SpecialtyFactory(code="therapist", name="Therapist")
    therapist = doctor(branch, specialty=specialty, name="Petrov I. I.")
    works(therapist, start="09:00", end="18:00", break_from=None, break_to=None)
    service = service_for(specialty, organization=branch.organization, name="Therapist visit")
    patient = PersonFactory(organization=branch.organization, first_name="Мария")
    ContactFactory(person=patient, kind=ContactKind.MOBILE, value=PHONE)
    consent(patient, MessageChannel.SMS)
    consent(patient, MessageChannel.WHATSAPP)
    registrar = staff_with_role(
        Role.REGISTRAR, organization=branch.organization, branches=[branch]
    ).user
    registrar.groups.add(Group.objects.get(name=Role.HEAD_OF_REGISTRY))
    BranchSender.objects.create(
        branch=branch, sms_from="+15005550006", whatsapp_from="+14155238886"
    )
    return Clinic(branch, therapist, service, patient, registrar)


__all__ = ["PHONE", "Clinic", "RuleEvent", "clinic", "consent"]
