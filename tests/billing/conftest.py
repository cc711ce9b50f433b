"""A cash desk to test money flows against: an organization with a branch, priced services, a
patient, a registrar and a cashier, and a cash register that talks to a fake ATOL web server
over real HTTP."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from billing.models import CashRegister, FiscalDriverKind, PriceList
from clinic.core.models import Branch
from clinic.core.roles import Role
from devices.fake_atol import FakeAtol
from patients.models import Person
from scheduling.models import PayerKind, Service
from tests.core.factories import BranchFactory, staff_with_role
from tests.devices.escpos_capture import printer  # noqa: F401  (a fake slip printer)
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import ServiceFactory

from .factories import PriceFactory, PriceListFactory


@pytest.fixture
def atol() -> Iterator[FakeAtol]:
    """A fake ATOL register of the test's own, on a free local port."""
    server = FakeAtol.start(port=0)
    yield server
    server.stop()


@dataclass
class Desk:
    branch: Branch
    register: CashRegister
    price_list: PriceList
    consultation: Service
    ultrasound: Service
    patient: Person
    registrar: Any
    cashier: Any
    accountant: Any

    @property
    def organization(self) -> Any:
        return self.branch.organization


@pytest.fixture
def desk(atol: FakeAtol) -> Desk:
    branch = BranchFactory(name="Central")
    organization = branch.organization
    consultation = ServiceFactory(organization=organization, code="B01.047.001", name="Therapist")
    ultrasound = ServiceFactory(organization=organization, code="A04.16.001", name="Abdomen US")
    price_list = PriceListFactory(
        organization=organization,
        payer_kind=PayerKind.SELF_PAY,
        valid_from=datetime.date(2020, 1, 1),
    )
    PriceFactory(price_list=price_list, service=consultation, amount=Decimal("2200.00"))
    PriceFactory(price_list=price_list, service=ultrasound, amount=Decimal("2750.00"))
    register = CashRegister.objects.create(
        organization=organization,
        branch=branch,
        name="Desk 1",
        driver=FiscalDriverKind.ATOL_WEB,
        device_config={"url": atol.url, "poll_seconds": 2, "poll_interval": 0.02},
    )
    return Desk(
        branch=branch,
        register=register,
        price_list=price_list,
        consultation=consultation,
        ultrasound=ultrasound,
        patient=PersonFactory(organization=organization),
        registrar=staff_with_role(
            Role.REGISTRAR, organization=organization, branches=[branch]
        ).user,
        cashier=staff_with_role(Role.CASHIER, organization=organization, branches=[branch]).user,
        accountant=staff_with_role(
            Role.ACCOUNTANT, organization=organization, branches=[branch]
        ).user,
    )
