"""What a visit costs on the portal: the price list's price and the price for paying online.

The full price is billing's own: the general self-pay price list in force on the visit's date for
the branch (``billing.selectors.price_for``, and its bulk form ``self_pay_prices`` built on the
same ``prices_in_force`` rule), so the portal never quotes a price the desk would not charge.
The doctor's online settings then add what only the portal offers:

- paying online in advance costs the full price less ``prepayment_discount_percent``, rounded
  half up to the step of ``price_rounding`` and never above the full price nor below zero (a
  discount of 0 leaves the full price as it is: there is nothing to round);
- the prepayment required at booking is ``prepayment_amount``, capped at that online price
  (0: none);
- with ``show_price`` off the portal shows no price at all (``None``).

A doctor without a settings row shows the full price, with no discount and no prepayment.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from billing.selectors import price_for
from clinic.core.models import Branch
from integrations.website.selectors import self_pay_prices
from scheduling.models import PayerKind, Resource, Service

from .models import DoctorOnlineSettings, PriceRounding

KOPECK = Decimal("0.01")
HUNDRED = Decimal("100")
ROUNDING_STEPS: dict[str, Decimal] = {
    PriceRounding.NONE: KOPECK,
    PriceRounding.TO_10: Decimal("10"),
    PriceRounding.TO_50: Decimal("50"),
    PriceRounding.TO_100: Decimal("100"),
}

PriceKey = tuple[int, int, int]
"""(doctor id, service id, branch id) of one price in ``portal_prices``."""


@dataclass(frozen=True)
class PortalPrice:
    """One service of one doctor as the portal quotes it, in roubles."""

    full: Decimal
    online: Decimal
    prepayment: Decimal

    @property
    def online_is_cheaper(self) -> bool:
        return self.online < self.full

    @property
    def prepayment_required(self) -> bool:
        return self.prepayment > 0


def rounded(amount: Decimal, rounding: str) -> Decimal:
    """``amount`` rounded half up to the step of ``rounding`` (kopecks for no rounding)."""
    step = ROUNDING_STEPS.get(rounding, KOPECK)
    units = (amount / step).quantize(Decimal("1"), rounding=ROUND_HALF_UP)
    return (units * step).quantize(KOPECK)


def price_terms(full: Decimal, settings: DoctorOnlineSettings | None) -> PortalPrice:
    """The portal's terms for a full price under the doctor's settings (see the module)."""
    full = full.quantize(KOPECK, rounding=ROUND_HALF_UP)
    if settings is None:
        return PortalPrice(full=full, online=full, prepayment=Decimal("0.00"))
    discount = Decimal(settings.prepayment_discount_percent)
    online = full
    if discount > 0:
        discounted = full * (HUNDRED - min(discount, HUNDRED)) / HUNDRED
        online = min(full, max(Decimal("0.00"), rounded(discounted, settings.price_rounding)))
    prepayment = Decimal("0.00")
    if settings.prepayment_amount > 0:
        prepayment = min(Decimal(settings.prepayment_amount), online).quantize(KOPECK)
    return PortalPrice(full=full, online=online, prepayment=prepayment)


def settings_of(doctor: Resource) -> DoctorOnlineSettings | None:
    """The doctor's online settings, or None without a row (read once, then cached)."""
    try:
        return doctor.online_settings
    except DoctorOnlineSettings.DoesNotExist:
        return None


def portal_price(
    doctor: Resource,
    service: Service,
    *,
    on: datetime.date,
    branch: Branch | None = None,
    shown_only: bool = True,
) -> PortalPrice | None:
    """The portal's price of ``service`` with ``doctor`` for a visit on ``on``.

    ``branch`` is where the visit is (default: the doctor's home branch). None when the price
    list has no price, or when the doctor's settings hide prices and ``shown_only`` (the pages'
    default; a payment, which must know the amount whatever is shown, passes False).
    """
    settings = settings_of(doctor)
    if shown_only and settings is not None and not settings.show_price:
        return None
    price = price_for(
        service=service,
        branch=branch or doctor.branch,
        on_date=on,
        payer_kind=PayerKind.SELF_PAY,
    )
    if price is None:
        return None
    return price_terms(price.amount, settings)


def price_key(doctor: Resource, service: Service, branch: Branch | None = None) -> PriceKey:
    """The key of ``portal_prices`` for the doctor's service in ``branch`` (default: home)."""
    return (doctor.pk, service.pk, branch.pk if branch is not None else doctor.branch_id)


def _settings_by_doctor(doctors: Iterable[Resource]) -> dict[int, DoctorOnlineSettings | None]:
    """Each doctor's settings: those read with the doctor, the rest in one query."""
    found: dict[int, DoctorOnlineSettings | None] = {}
    unread = []
    descriptor = Resource.online_settings
    for doctor in doctors:
        if descriptor.is_cached(doctor):
            found[doctor.pk] = settings_of(doctor)
        else:
            unread.append(doctor.pk)
    if unread:
        rows = {
            row.doctor_id: row for row in DoctorOnlineSettings.objects.filter(doctor__in=unread)
        }
        found.update({pk: rows.get(pk) for pk in unread})
    return found


def portal_prices(
    offers: Iterable[tuple[Resource, Service, Branch | None]],
    *,
    on: datetime.date,
    shown_only: bool = True,
) -> dict[PriceKey, PortalPrice]:
    """``portal_price`` for many (doctor, service, branch) offers at once, by ``price_key``.

    An offer without a price (none in the list, or hidden) has no key. At most three queries
    whatever the number of offers: the home branches not given, the settings not read with the
    doctors, and the prices of every branch in one statement.
    """
    wanted = list(offers)
    if not wanted:
        return {}
    branches: dict[int, Branch] = {
        branch.pk: branch for _doctor, _service, branch in wanted if branch is not None
    }
    missing = {doctor.branch_id for doctor, _service, branch in wanted if branch is None}
    missing -= set(branches)
    if missing:
        branches.update({branch.pk: branch for branch in Branch.objects.filter(pk__in=missing)})
    settings = _settings_by_doctor({doctor.pk: doctor for doctor, _s, _b in wanted}.values())
    shown = [
        (doctor, service, branch)
        for doctor, service, branch in wanted
        if not shown_only or (row := settings[doctor.pk]) is None or row.show_price
    ]
    amounts = self_pay_prices(
        services={service.pk: service for _d, service, _b in shown}.values(),
        branches=list(branches.values()),
        on_date=on,
    )
    found: dict[PriceKey, PortalPrice] = {}
    for doctor, service, branch in shown:
        key = price_key(doctor, service, branch)
        amount = amounts.get((key[2], service.pk))
        if amount is not None:
            found[key] = price_terms(amount, settings[doctor.pk])
    return found
