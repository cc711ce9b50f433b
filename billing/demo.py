"""Demo data of the price list: service groups, the demo services' billing settings, a self-pay
price list for all branches with one branch's own override, and a DMS contract with its own list.

Called by ``clinic.core.demo`` after the schedule's demo catalogue exists (the prices are for
its services, found by code; a missing one is skipped). Idempotent: once the demo groups exist,
a second run changes nothing.
"""

from __future__ import annotations

import datetime
import os
from decimal import Decimal

from django.db import models, transaction
from django.utils import timezone

from clinic.accounts.models import User
from clinic.core.models import Branch, Organization
from scheduling.models import PayerKind, Service

from .models import (
    CashRegister,
    Contract,
    Counterparty,
    CounterpartyKind,
    FiscalDriverKind,
    Price,
    PriceList,
    ServiceBilling,
    ServiceGroup,
    TaxMode,
)

VISITS_GROUP = "Приёмы врачей"
DIAGNOSTICS_GROUP = "Диагностика"
ULTRASOUND_GROUP = "Ультразвуковая диагностика"

# service code, group, self-pay price, DMS contract price (None: not covered)
PRICES: list[tuple[str, str, Decimal, Decimal | None]] = [
    ("B01.047.001", VISITS_GROUP, Decimal("2200.00"), Decimal("1980.00")),
    ("B01.047.002", VISITS_GROUP, Decimal("1800.00"), Decimal("1620.00")),
    ("B01.031.001", VISITS_GROUP, Decimal("2400.00"), None),
    ("A04.16.001", ULTRASOUND_GROUP, Decimal("2750.00"), Decimal("2500.00")),
]
BRANCH_OVERRIDES = {"A04.16.001": Decimal("2950.00")}


def billing_demo_exists(organization: Organization) -> bool:
    return ServiceGroup.objects.filter(organization=organization, name=VISITS_GROUP).exists()


def _saved(row: models.Model) -> None:
    row.full_clean()
    row.save()


DEMO_REGISTER_NAME = "Касса 1"
# dev.py run starts the fake register on this port (CLINIC_DEMO_REGISTER_PORT).
DEMO_REGISTER_URL = f"http://127.0.0.1:{os.environ.get('CLINIC_DEMO_REGISTER_PORT', '16732')}"


def register_demo_load(branch: Branch) -> bool:
    """The demo branch's cash register, talking to the fake ATOL register ``dev.py run`` starts
    (``python -m devices.fake_atol``); a clinic points it at its own register in the admin."""
    if CashRegister.objects.filter(branch=branch).exists():
        return False
    CashRegister.objects.create(
        organization_id=branch.organization_id,
        branch=branch,
        name=DEMO_REGISTER_NAME,
        driver=FiscalDriverKind.ATOL_WEB,
        device_config={"url": DEMO_REGISTER_URL},
    )
    return True


@transaction.atomic
def load_demo(organization: Organization, branch: Branch) -> bool:
    """Create the price list's demo data unless it exists; True when something was created.

    ``branch`` gets its own self-pay list that overrides one price of the all-branch list, so
    the demo shows the branch rule of ``billing.selectors.price_for``.
    """
    registered = register_demo_load(branch)
    if billing_demo_exists(organization):
        return registered
    author = User.objects.filter(username="admin").first()
    year_start = datetime.date(timezone.localdate().year, 1, 1)

    groups: dict[str, ServiceGroup] = {}
    for order, (name, parent_name) in enumerate(
        [(VISITS_GROUP, None), (DIAGNOSTICS_GROUP, None), (ULTRASOUND_GROUP, DIAGNOSTICS_GROUP)]
    ):
        group = ServiceGroup(
            organization=organization,
            name=name,
            parent=groups[parent_name] if parent_name else None,
            order=(order + 1) * 10,
            created_by=author,
        )
        _saved(group)
        groups[name] = group

    services = {
        service.code: service
        for service in Service.objects.filter(
            organization=organization, code__in=[code for code, *_rest in PRICES]
        )
    }
    for code, group_name, _price, _dms in PRICES:
        if code in services:
            _saved(
                ServiceBilling(
                    service=services[code],
                    group=groups[group_name],
                    tax_mode=TaxMode.NO_VAT,
                    created_by=author,
                )
            )

    def price_list(name: str, payer_kind: str, list_branch: Branch | None) -> PriceList:
        row = PriceList(
            organization=organization,
            branch=list_branch,
            name=name,
            payer_kind=payer_kind,
            valid_from=year_start,
            created_by=author,
        )
        _saved(row)
        return row

    def price(row: PriceList, code: str, amount: Decimal) -> None:
        if code in services:
            _saved(Price(price_list=row, service=services[code], amount=amount, created_by=author))

    self_pay = price_list("Прейскурант платных услуг", PayerKind.SELF_PAY, None)
    for code, _group, amount, _dms in PRICES:
        price(self_pay, code, amount)
    branch_list = price_list(f"Прейскурант филиала «{branch.name}»", PayerKind.SELF_PAY, branch)
    for code, amount in BRANCH_OVERRIDES.items():
        price(branch_list, code, amount)

    dms_list = price_list("ДМС: АО «СОГАЗ»", PayerKind.DMS, None)
    for code, _group, _amount, dms_amount in PRICES:
        if dms_amount is not None:
            price(dms_list, code, dms_amount)
    insurer = Counterparty(
        organization=organization,
        kind=CounterpartyKind.DMS_INSURER,
        name="АО «Страховое общество газовой промышленности»",
        inn="7736035485",
        kpp="770501001",
        address="107078, г. Москва, пр-т Академика Сахарова, д. 10",
        created_by=author,
    )
    _saved(insurer)
    _saved(
        Contract(
            organization=organization,
            number=f"ДМС-{year_start.year}/017",
            name="Договор ДМС на медицинское обслуживание застрахованных",
            payer_kind=PayerKind.DMS,
            counterparty=insurer,
            requires_guarantee_letter=False,
            valid_from=year_start,
            price_list=dms_list,
            created_by=author,
        )
    )
    return True
