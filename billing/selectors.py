"""Reads of the price list: the price of a service for a visit, and the booking form's lookup.

Which price applies (``price_for`` and ``price_lookup`` share the rule, in ``prices_in_force``):

1. A contract valid on the date whose price list is active and valid on the date: that list and
   nothing else. A service missing from it is not covered by the contract and has no price
   (falling back to the general list would quote an insurer a price it never agreed).
2. Otherwise the organization's active lists of the payer kind valid on the date, for the branch
   or for all branches, leaving out lists that belong to a contract (an insurer's negotiated
   prices are for its own contract's visits only). For each service the price comes from the
   first of those lists that has it: a branch's own list before the all-branch one, then the
   latest ``valid_from``. A branch list may therefore override a few prices and leave the rest
   to the all-branch list.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import F, Q, QuerySet

from clinic.core.models import Branch
from clinic.core.selectors import branch_list, organization_list
from patients.models import Person
from scheduling.models import Service

from .models import (
    CashRegister,
    CashShift,
    Contract,
    FiscalReceipt,
    Invoice,
    PatientAccount,
    Payment,
    Price,
    PriceList,
    ServiceBilling,
    ServiceGroup,
)

PRICE_LOOKUP_LIMIT = 100


@dataclass(frozen=True)
class PriceRow:
    """One line of the booking form's price lookup; ``price`` is None when there is no price."""

    group_name: str
    service_code: str
    service_name: str
    duration_minutes: int
    price: Decimal | None
    service_public_id: str


def _valid_lists(day: datetime.date) -> Q:
    return Q(is_active=True, valid_from__lte=day) & (
        Q(valid_to__isnull=True) | Q(valid_to__gte=day)
    )


def prices_in_force(
    *, branch: Branch, on_date: datetime.date, payer_kind: str, contract: Contract | None
) -> QuerySet[Price]:
    """Prices of the lists that apply (see the module's docstring), best first for a service.

    Reads ``contract.price_list``: pass a contract fetched with it (``contract_list`` does) to
    save a query.
    """
    if (
        contract is not None
        and contract.is_valid_on(on_date)
        and contract.price_list is not None
        and contract.price_list.is_valid_on(on_date)
    ):
        lists = PriceList.objects.filter(pk=contract.price_list.pk)
    else:
        lists = PriceList.objects.filter(
            _valid_lists(on_date),
            Q(branch=branch) | Q(branch__isnull=True),
            organization_id=branch.organization_id,
            payer_kind=payer_kind,
            contracts__isnull=True,
        )
    return Price.objects.filter(price_list__in=lists).order_by(*price_priority())


def price_for(
    *,
    service: Service,
    branch: Branch,
    on_date: datetime.date,
    payer_kind: str,
    contract: Contract | None = None,
) -> Price | None:
    """The price of ``service`` for a visit on ``on_date`` (None: no price); one query."""
    return (
        prices_in_force(branch=branch, on_date=on_date, payer_kind=payer_kind, contract=contract)
        .filter(service=service)
        .select_related("price_list")
        .first()
    )


def _group_and_descendants(organization_id: int, group_id: int) -> list[int]:
    """The group and every group below it (one query for the organization's whole tree)."""
    children: dict[int | None, list[int]] = {}
    for pk, parent_id in ServiceGroup.objects.filter(organization_id=organization_id).values_list(
        "pk", "parent_id"
    ):
        children.setdefault(parent_id, []).append(pk)
    found: list[int] = []
    pending = [group_id]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def price_lookup(
    *,
    actor: Any,
    branch: Branch,
    query: str = "",
    group_id: int | None = None,
    payer_kind: str,
    contract: Contract | None = None,
    on_date: datetime.date,
) -> list[PriceRow]:
    """Sellable active services of the branch's organization whose code or name contains
    ``query`` (any case), in ``group_id`` or its subgroups, with their price for the payer.

    At most ``PRICE_LOOKUP_LIMIT`` rows, ordered by group and code. Three queries whatever the
    number of services (the group tree when a group is given, the services, their prices), and
    none for an actor outside the branch's organization (an empty list).
    """
    services = Service.objects.filter(
        organization_id=branch.organization_id,
        organization__in=organization_list(actor=actor),
        is_active=True,
    ).exclude(billing__is_sellable=False)
    query = query.strip()
    if query:
        services = services.filter(Q(code__icontains=query) | Q(name__icontains=query))
    if group_id is not None:
        services = services.filter(
            billing__group_id__in=_group_and_descendants(branch.organization_id, group_id)
        )
    found = list(
        services.select_related("kind", "billing__group").order_by(
            F("billing__group__order").asc(nulls_last=True),
            F("billing__group__name").asc(nulls_last=True),
            "code",
        )[:PRICE_LOOKUP_LIMIT]
    )
    if not found:
        return []
    amounts: dict[int, Decimal] = dict(
        prices_in_force(branch=branch, on_date=on_date, payer_kind=payer_kind, contract=contract)
        .filter(service__in=[service.pk for service in found])
        .order_by("service_id", *price_priority())
        .distinct("service_id")
        .values_list("service_id", "amount")
    )
    return [
        PriceRow(
            group_name=_group_name(service),
            service_code=service.code,
            service_name=service.name,
            duration_minutes=int(service.duration.total_seconds() // 60),
            price=amounts.get(service.pk),
            service_public_id=str(service.public_id),
        )
        for service in found
    ]


def price_priority() -> list[Any]:
    """Best price list first for one service: the branch's own, then the latest start.

    The lookup puts ``service_id`` before it because PostgreSQL's DISTINCT ON needs the
    distinct column to lead the ORDER BY."""
    return [
        F("price_list__branch_id").asc(nulls_last=True),
        "-price_list__valid_from",
        "-price_list_id",
    ]


def _group_name(service: Service) -> str:
    """The service's group, or "" when it has no billing settings (the reverse one-to-one
    raises an ``AttributeError`` subclass then) or no group."""
    billing: ServiceBilling | None = getattr(service, "billing", None)
    if billing is None or billing.group is None:
        return ""
    return billing.group.name


def contract_list(*, actor: Any) -> QuerySet[Contract]:
    """Contracts of the actor's organizations."""
    return Contract.objects.select_related("price_list").filter(
        organization__in=organization_list(actor=actor)
    )


def service_group_list(*, actor: Any) -> QuerySet[ServiceGroup]:
    """Active service groups of the actor's organizations."""
    return ServiceGroup.objects.filter(
        organization__in=organization_list(actor=actor), is_active=True
    )


def invoice_list(*, actor: Any) -> QuerySet[Invoice]:
    """Invoices of the branches the actor works in."""
    return Invoice.objects.select_related("branch", "patient", "contract").filter(
        branch__in=branch_list(actor=actor)
    )


def payment_list(*, actor: Any) -> QuerySet[Payment]:
    """Payments and refunds of the branches the actor works in."""
    return Payment.objects.select_related("branch", "patient", "invoice", "shift").filter(
        branch__in=branch_list(actor=actor)
    )


def receipt_list(*, actor: Any) -> QuerySet[FiscalReceipt]:
    """Fiscal receipts of the registers in the actor's branches."""
    return FiscalReceipt.objects.select_related("register", "payment").filter(
        register__branch__in=branch_list(actor=actor)
    )


def register_list(*, actor: Any) -> QuerySet[CashRegister]:
    return CashRegister.objects.select_related("branch").filter(
        branch__in=branch_list(actor=actor), is_active=True
    )


def shift_list(*, actor: Any) -> QuerySet[CashShift]:
    return CashShift.objects.select_related("register", "register__branch").filter(
        register__branch__in=branch_list(actor=actor)
    )


def patient_balance(*, organization_id: int, patient: Person) -> tuple[Decimal, Decimal]:
    """The patient's (debt, advance) with the organization; zeros when nothing was posted."""
    row = (
        PatientAccount.objects.filter(organization_id=organization_id, patient=patient)
        .values_list("debt", "advance")
        .first()
    )
    return row if row is not None else (Decimal("0"), Decimal("0"))
