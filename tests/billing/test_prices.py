"""Which price applies (price_for), the booking form's lookup (price_lookup) and the models'
database rules."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from billing.demo import load_demo
from billing.models import CashRegister, Contract, Price, PriceList, ServiceBilling, ServiceGroup
from billing.selectors import PRICE_LOOKUP_LIMIT, PriceRow, price_for, price_lookup
from clinic.core.roles import Role
from scheduling.models import PayerKind, Service
from tests.core.factories import BranchFactory, OrganizationFactory, staff_with_role
from tests.scheduling.factories import ServiceFactory

from .factories import (
    ContractFactory,
    PriceFactory,
    PriceListFactory,
    ServiceBillingFactory,
    ServiceGroupFactory,
)

pytestmark = pytest.mark.django_db

DAY = datetime.date(2026, 3, 10)


@pytest.fixture
def clinic() -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    organization = branch.organization
    other_branch = BranchFactory(organization=organization, name="North")
    service = ServiceFactory(organization=organization, code="B01.047.001", name="Therapist")
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    return {
        "organization": organization,
        "branch": branch,
        "other_branch": other_branch,
        "service": service,
        "actor": registrar.user,
    }


def price_list(c: dict[str, Any], **fields: Any) -> PriceList:
    values: dict[str, Any] = {"organization": c["organization"]}
    values.update(fields)
    result: PriceList = PriceListFactory(**values)
    return result


def priced(c: dict[str, Any], amount: str, **list_fields: Any) -> Price:
    result: Price = PriceFactory(
        price_list=price_list(c, **list_fields), service=c["service"], amount=Decimal(amount)
    )
    return result


def amount_for(c: dict[str, Any], **changes: Any) -> Decimal | None:
    values: dict[str, Any] = {
        "service": c["service"],
        "branch": c["branch"],
        "on_date": DAY,
        "payer_kind": PayerKind.SELF_PAY,
    }
    values.update(changes)
    found = price_for(**values)
    return found.amount if found is not None else None


# price_for ------------------------------------------------------------------------------------


def test_the_branch_list_wins_over_the_all_branch_list(clinic: dict[str, Any]) -> None:
    priced(clinic, "1500.00", valid_from=datetime.date(2026, 2, 1))
    priced(clinic, "1700.50", branch=clinic["branch"], valid_from=datetime.date(2025, 1, 1))

    assert amount_for(clinic) == Decimal("1700.50")
    assert amount_for(clinic, branch=clinic["other_branch"]) == Decimal("1500.00")


def test_another_branchs_list_is_not_used(clinic: dict[str, Any]) -> None:
    priced(clinic, "900.00", branch=clinic["other_branch"])

    assert amount_for(clinic) is None


def test_the_latest_valid_from_wins(clinic: dict[str, Any]) -> None:
    priced(clinic, "1000.00", valid_from=datetime.date(2025, 1, 1))
    priced(clinic, "1200.00", valid_from=datetime.date(2026, 1, 1))
    priced(clinic, "1400.00", valid_from=datetime.date(2026, 4, 1))  # not yet on DAY

    assert amount_for(clinic) == Decimal("1200.00")
    assert amount_for(clinic, on_date=datetime.date(2025, 12, 31)) == Decimal("1000.00")
    assert amount_for(clinic, on_date=datetime.date(2026, 4, 1)) == Decimal("1400.00")


def test_a_list_that_ended_is_not_used(clinic: dict[str, Any]) -> None:
    priced(clinic, "800.00", valid_from=datetime.date(2024, 1, 1))
    priced(
        clinic,
        "999.00",
        valid_from=datetime.date(2026, 1, 1),
        valid_to=datetime.date(2026, 3, 9),
    )

    assert amount_for(clinic) == Decimal("800.00")
    assert amount_for(clinic, on_date=datetime.date(2026, 3, 9)) == Decimal("999.00")


def test_an_inactive_list_is_ignored(clinic: dict[str, Any]) -> None:
    priced(clinic, "800.00", valid_from=datetime.date(2024, 1, 1))
    priced(clinic, "999.00", branch=clinic["branch"], is_active=False)

    assert amount_for(clinic) == Decimal("800.00")


def test_the_payer_kind_chooses_the_list(clinic: dict[str, Any]) -> None:
    priced(clinic, "2000.00")
    priced(clinic, "1600.00", payer_kind=PayerKind.DMS)

    assert amount_for(clinic) == Decimal("2000.00")
    assert amount_for(clinic, payer_kind=PayerKind.DMS) == Decimal("1600.00")
    assert amount_for(clinic, payer_kind=PayerKind.OMS) is None


def test_no_price_is_none(clinic: dict[str, Any]) -> None:
    price_list(clinic)  # a list without the service

    assert amount_for(clinic) is None


def test_a_valid_contract_uses_its_own_list_only(clinic: dict[str, Any]) -> None:
    priced(clinic, "2000.00", payer_kind=PayerKind.DMS, branch=clinic["branch"])
    contract_price = priced(clinic, "1750.25", payer_kind=PayerKind.DMS)
    contract = ContractFactory(
        organization=clinic["organization"], price_list=contract_price.price_list
    )
    uncovered = ServiceFactory(organization=clinic["organization"])
    PriceFactory(
        price_list=price_list(clinic, payer_kind=PayerKind.DMS),
        service=uncovered,
        amount=Decimal("500.00"),
    )

    assert amount_for(clinic, payer_kind=PayerKind.DMS, contract=contract) == Decimal("1750.25")
    # The contract does not cover the service: no price, not the general DMS one.
    assert (
        amount_for(clinic, service=uncovered, payer_kind=PayerKind.DMS, contract=contract) is None
    )


def test_a_contract_out_of_date_falls_back_to_the_payers_list(clinic: dict[str, Any]) -> None:
    priced(clinic, "2000.00", payer_kind=PayerKind.DMS)
    contract_price = priced(clinic, "1750.00", payer_kind=PayerKind.DMS)
    lapsed = ContractFactory(
        organization=clinic["organization"],
        price_list=contract_price.price_list,
        valid_to=datetime.date(2026, 3, 9),
    )

    assert amount_for(clinic, payer_kind=PayerKind.DMS, contract=lapsed) == Decimal("2000.00")
    assert amount_for(
        clinic, payer_kind=PayerKind.DMS, contract=lapsed, on_date=datetime.date(2026, 3, 9)
    ) == Decimal("1750.00")


def test_a_contract_with_an_inactive_list_falls_back(clinic: dict[str, Any]) -> None:
    priced(clinic, "2000.00", payer_kind=PayerKind.DMS)
    contract_price = priced(clinic, "1750.00", payer_kind=PayerKind.DMS, is_active=False)
    contract = ContractFactory(
        organization=clinic["organization"], price_list=contract_price.price_list
    )

    assert amount_for(clinic, payer_kind=PayerKind.DMS, contract=contract) == Decimal("2000.00")


def test_a_contracts_list_is_not_the_payers_general_list(clinic: dict[str, Any]) -> None:
    """An insurer's negotiated prices apply to its contract only, never to other DMS visits."""
    contract_price = priced(clinic, "1750.00", payer_kind=PayerKind.DMS, branch=clinic["branch"])
    ContractFactory(organization=clinic["organization"], price_list=contract_price.price_list)

    assert amount_for(clinic, payer_kind=PayerKind.DMS) is None


def test_price_for_costs_one_query(clinic: dict[str, Any], django_assert_num_queries: Any) -> None:
    priced(clinic, "1000.00")
    with django_assert_num_queries(1):
        assert amount_for(clinic) == Decimal("1000.00")


# price_lookup ---------------------------------------------------------------------------------


def lookup(c: dict[str, Any], **changes: Any) -> list[PriceRow]:
    values: dict[str, Any] = {
        "actor": c["actor"],
        "branch": c["branch"],
        "payer_kind": PayerKind.SELF_PAY,
        "on_date": DAY,
    }
    values.update(changes)
    return price_lookup(**values)


def test_lookup_rows_carry_group_code_name_duration_and_price(clinic: dict[str, Any]) -> None:
    group = ServiceGroupFactory(organization=clinic["organization"], name="Visits")
    ServiceBillingFactory(service=clinic["service"], group=group)
    priced(clinic, "2200.00")
    unpriced = ServiceFactory(
        organization=clinic["organization"],
        code="A04.16.001",
        name="Ultrasound",
        duration_minutes=20,
    )

    rows = lookup(clinic)

    assert rows == [
        PriceRow(
            group_name="Visits",
            service_code="B01.047.001",
            service_name="Therapist",
            duration_minutes=30,
            price=Decimal("2200.00"),
            service_public_id=str(clinic["service"].public_id),
        ),
        PriceRow(
            group_name="",
            service_code="A04.16.001",
            service_name="Ultrasound",
            duration_minutes=20,
            price=None,
            service_public_id=str(unpriced.public_id),
        ),
    ]
    assert isinstance(rows[0].price, Decimal)


def test_lookup_matches_code_or_name_in_any_case(clinic: dict[str, Any]) -> None:
    ServiceFactory(organization=clinic["organization"], code="A04.16.001", name="Ultrasound")
    ServiceFactory(organization=clinic["organization"], code="X99", name="Massage", is_active=False)

    assert [row.service_code for row in lookup(clinic, query="b01.047")] == ["B01.047.001"]
    assert [row.service_code for row in lookup(clinic, query="ULTRA")] == ["A04.16.001"]
    assert lookup(clinic, query="massage") == []  # inactive


def test_lookup_filters_by_group_and_its_subgroups(clinic: dict[str, Any]) -> None:
    organization = clinic["organization"]
    diagnostics = ServiceGroupFactory(organization=organization, name="Diagnostics")
    ultrasound = ServiceGroupFactory(
        organization=organization, name="Ultrasound", parent=diagnostics
    )
    visits = ServiceGroupFactory(organization=organization, name="Visits")
    ServiceBillingFactory(service=clinic["service"], group=visits)
    ServiceBillingFactory(
        service=ServiceFactory(organization=organization, code="A04.16.001"), group=ultrasound
    )
    ServiceBillingFactory(
        service=ServiceFactory(organization=organization, code="A05.10.006"), group=diagnostics
    )

    # By group (Diagnostics before Ultrasound by name, both order 0), then by code.
    assert [row.service_code for row in lookup(clinic, group_id=diagnostics.pk)] == [
        "A05.10.006",
        "A04.16.001",
    ]
    assert [row.service_code for row in lookup(clinic, group_id=ultrasound.pk)] == ["A04.16.001"]
    assert [row.service_code for row in lookup(clinic, group_id=visits.pk)] == ["B01.047.001"]


def test_lookup_leaves_out_services_not_for_sale(clinic: dict[str, Any]) -> None:
    ServiceBillingFactory(service=clinic["service"], is_sellable=False)

    assert lookup(clinic) == []


def test_lookup_is_scoped_to_the_actors_organizations(clinic: dict[str, Any]) -> None:
    outsider = staff_with_role(Role.REGISTRAR)  # another organization
    ServiceFactory(organization=outsider.organization)

    assert lookup(clinic, actor=outsider.user) == []


def test_lookup_uses_the_contract_list(clinic: dict[str, Any]) -> None:
    priced(clinic, "2000.00", payer_kind=PayerKind.DMS)
    contract_list = price_list(clinic, payer_kind=PayerKind.DMS)
    PriceFactory(price_list=contract_list, service=clinic["service"], amount=Decimal("1500.00"))
    contract = ContractFactory(organization=clinic["organization"], price_list=contract_list)

    assert [row.price for row in lookup(clinic, payer_kind=PayerKind.DMS)] == [Decimal("2000.00")]
    assert [row.price for row in lookup(clinic, payer_kind=PayerKind.DMS, contract=contract)] == [
        Decimal("1500.00")
    ]


def test_lookup_costs_a_fixed_number_of_queries_and_is_capped(
    clinic: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    organization = clinic["organization"]
    general = price_list(clinic)
    own = price_list(clinic, branch=clinic["branch"])
    groups = [ServiceGroupFactory(organization=organization, name=name) for name in "ABC"]
    for number in range(150):
        service = ServiceFactory(organization=organization, code=f"S{number:03d}")
        ServiceBillingFactory(service=service, group=groups[number % 3])
        if number % 2:
            PriceFactory(price_list=general, service=service, amount=Decimal(number))
        if number % 5 == 0:
            PriceFactory(price_list=own, service=service, amount=Decimal("1.50"))

    with django_assert_max_num_queries(3):
        rows = lookup(clinic, query="s", group_id=groups[0].pk)
    assert len(rows) == 50
    with django_assert_max_num_queries(3):
        rows = lookup(clinic, query="S")
    assert len(rows) == PRICE_LOOKUP_LIMIT
    prices = {row.service_code: row.price for row in rows}
    assert prices["S000"] == Decimal("1.50")  # the branch's own list
    assert prices["S003"] == Decimal("3")  # the all-branch list
    assert prices["S006"] is None  # in no list


# models ---------------------------------------------------------------------------------------


def test_the_database_refuses_a_negative_price(clinic: dict[str, Any]) -> None:
    price = priced(clinic, "10.00")
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.filter(pk=price.pk).update(amount=Decimal("-0.01"))
    price.refresh_from_db()
    assert price.amount == Decimal("10.00")


def test_full_clean_refuses_a_negative_price(clinic: dict[str, Any]) -> None:
    price = Price(price_list=price_list(clinic), service=clinic["service"], amount=Decimal("-1.00"))
    with pytest.raises(ValidationError) as error:
        price.full_clean()
    assert "amount" in error.value.message_dict


def test_one_price_per_service_in_a_list(clinic: dict[str, Any]) -> None:
    price = priced(clinic, "10.00")
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.create(
            price_list=price.price_list, service=clinic["service"], amount=Decimal("11.00")
        )


def test_a_list_cannot_end_before_it_starts(clinic: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        price_list(clinic, valid_from=DAY, valid_to=DAY - datetime.timedelta(days=1))


def test_a_group_cannot_be_inside_its_own_subgroup(clinic: dict[str, Any]) -> None:
    top = ServiceGroupFactory(organization=clinic["organization"])
    child = ServiceGroupFactory(organization=clinic["organization"], parent=top)
    top.parent = child
    with pytest.raises(ValidationError) as error:
        top.full_clean()
    assert "parent" in error.value.message_dict


def test_price_changes_are_kept_in_history(clinic: dict[str, Any]) -> None:
    price = priced(clinic, "10.00")
    Price.objects.filter(pk=price.pk).update(amount=Decimal("12.00"))
    events = (
        apps.get_model("billing", "PriceEvent")
        .objects.filter(pgh_obj_id=price.pk)
        .order_by("pgh_id")
    )
    assert [event.amount for event in events] == [Decimal("10.00"), Decimal("12.00")]


def test_demo_prices_the_demo_services_once() -> None:
    organization = OrganizationFactory()
    branch = BranchFactory(organization=organization)
    for code in ("B01.047.001", "A04.16.001"):
        ServiceFactory(organization=organization, code=code)

    assert load_demo(organization, branch) is True
    assert load_demo(organization, branch) is False

    therapist = Service.objects.get(organization=organization, code="B01.047.001")
    ultrasound = Service.objects.get(organization=organization, code="A04.16.001")
    day = datetime.date.today()
    self_pay = price_for(
        service=ultrasound, branch=branch, on_date=day, payer_kind=PayerKind.SELF_PAY
    )
    assert self_pay is not None and self_pay.amount == Decimal("2950.00")
    contract = Contract.objects.get(organization=organization)
    dms = price_for(
        service=therapist, branch=branch, on_date=day, payer_kind=PayerKind.DMS, contract=contract
    )
    assert dms is not None and dms.amount == Decimal("1980.00")
    assert ServiceBilling.objects.filter(service__organization=organization).count() == 2
    assert ServiceGroup.objects.filter(organization=organization).count() == 3
    register = CashRegister.objects.get(branch=branch)
    assert register.device_config["url"].startswith("http://127.0.0.1:")
    assert contract.counterparty is not None and contract.counterparty.inn
