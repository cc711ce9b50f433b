"""A clinic to publish: one public branch with a therapist who works every day, a service
bookable online with a self-pay price, a desk-only service, a closed branch, and the website's
booking account."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from clinic.core.models import Branch, Specialty
from clinic.core.roles import Role
from scheduling.models import BookingChannel, Resource, Service
from tests.billing.factories import PriceFactory, PriceListFactory
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.scheduling.factories import doctor, service_for, works


@dataclass
class Website:
    branch: Branch
    closed_branch: Branch
    specialty: Specialty
    doctor: Resource
    service: Service
    desk_only: Service
    account: Any


@pytest.fixture
def website(settings: Any) -> Website:
    branch = BranchFactory(name="Central", phone="+74951234567", address="Moscow, Tverskaya 1")
    organization = branch.organization
    closed_branch = BranchFactory(organization=organization, name="Closed", is_active=False)
    specialty = SpecialtyFactory(code="therapist", name="Therapist")
    therapist = doctor(branch, specialty=specialty, name="Petrov I. I.")
    works(therapist, start="09:00", end="12:00", break_from=None, break_to=None)
    service = service_for(
        specialty, organization=organization, duration_minutes=30, name="Therapist visit"
    )
    desk_only = service_for(
        specialty,
        organization=organization,
        name="Sick note",
        channels=[BookingChannel.DESK.value],
    )
    prices = PriceListFactory(organization=organization)
    PriceFactory(price_list=prices, service=service, amount=Decimal("1500.00"))
    PriceFactory(price_list=prices, service=desk_only, amount=Decimal("300.00"))
    account = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch]).user
    settings.WEBSITE_BOOKING_USERNAME = account.username
    return Website(
        branch=branch,
        closed_branch=closed_branch,
        specialty=specialty,
        doctor=therapist,
        service=service,
        desk_only=desk_only,
        account=account,
    )


def another_doctor(site: Website, name: str) -> Resource:
    """One more therapist working in the branch (for query-count comparisons)."""
    extra = doctor(site.branch, specialty=site.specialty, name=name)
    works(extra, start="09:00", end="12:00", break_from=None, break_to=None)
    return extra
