"""Merging two records of one patient moves their appointments, and unmerging moves them back."""

from __future__ import annotations

import pytest

from clinic.core.roles import Role
from patients.merge import person_merge, person_unmerge
from scheduling.models import Appointment, BookingChannel
from scheduling.services import BookingRequest, appointment_book
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


def test_appointments_follow_the_merged_patient_and_come_back_on_unmerge():
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    therapist = doctor(branch, specialty=specialty)
    works(therapist)
    service = service_for(specialty, organization=branch.organization)
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    survivor = PersonFactory(organization=branch.organization)
    merged = PersonFactory(organization=branch.organization)
    appointment = appointment_book(
        actor=registrar.user,
        request=BookingRequest(
            branch=branch,
            services=[service],
            starts_at=local(tomorrow(), "10:00"),
            channel=BookingChannel.DESK,
            patient=merged,
            doctor=therapist,
        ),
    )
    head = staff_with_role(Role.HEAD_OF_REGISTRY, organization=branch.organization).user

    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason="one person")
    assert Appointment.objects.get(pk=appointment.pk).patient == survivor
    assert merge.moved["rows"]["appointments"] == [appointment.pk]

    person_unmerge(actor=head, merge=merge)
    assert Appointment.objects.get(pk=appointment.pk).patient == merged
