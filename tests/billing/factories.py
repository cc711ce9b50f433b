"""Factories of the billing catalogue: groups, price lists, prices and contracts."""

from __future__ import annotations

import datetime
from decimal import Decimal

import factory

from billing.models import (
    Contract,
    Counterparty,
    CounterpartyKind,
    Price,
    PriceList,
    ServiceBilling,
    ServiceGroup,
)
from scheduling.models import PayerKind

LONG_AGO = datetime.date(2020, 1, 1)


class ServiceGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceGroup

    organization = factory.SubFactory("tests.core.factories.OrganizationFactory")
    name = factory.Sequence(lambda n: f"Group {n}")


class ServiceBillingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceBilling

    service = factory.SubFactory("tests.scheduling.factories.ServiceFactory")
    group = factory.SubFactory(
        ServiceGroupFactory, organization=factory.SelfAttribute("..service.organization")
    )


class PriceListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PriceList

    organization = factory.SubFactory("tests.core.factories.OrganizationFactory")
    name = factory.Sequence(lambda n: f"Price list {n}")
    payer_kind = PayerKind.SELF_PAY
    valid_from = LONG_AGO


class PriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Price

    price_list = factory.SubFactory(PriceListFactory)
    service = factory.SubFactory(
        "tests.scheduling.factories.ServiceFactory",
        organization=factory.SelfAttribute("..price_list.organization"),
    )
    amount = Decimal("1000.00")


class CounterpartyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Counterparty

    organization = factory.SubFactory("tests.core.factories.OrganizationFactory")
    kind = CounterpartyKind.DMS_INSURER
    name = factory.Sequence(lambda n: f"Insurer {n} JSC")


class ContractFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contract

    organization = factory.SubFactory("tests.core.factories.OrganizationFactory")
    number = factory.Sequence(lambda n: f"DMS-{n:04d}")
    name = factory.Sequence(lambda n: f"Insurance contract {n}")
    payer_kind = PayerKind.DMS
    counterparty = factory.SubFactory(
        CounterpartyFactory, organization=factory.SelfAttribute("..organization")
    )
    valid_from = LONG_AGO
