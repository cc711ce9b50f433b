"""What the portal's public pages list: bookable doctors with their branches and services.

Built on the public feeds' selectors (``integrations.website.selectors``) so the portal and the
FHIR feeds never disagree about who is public; the portal then drops doctors whose online
settings say they are not bookable and narrows each doctor's services to the ones his settings
allow (no settings row: bookable, every service, price shown). Prices are the portal's own
(``portal.pricing``), read in one batch for a whole page.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Max, Min, Q
from django.utils import timezone

from clinic.core.models import Branch, Specialty
from clinic.core.selectors import branch_public_list
from integrations.website.selectors import (
    PublicSchedule,
    online_doctors,
    online_schedules,
)
from scheduling.models import Resource, Service, WorkSchedule

from .models import ConsultationMode, DoctorOnlineSettings
from .pricing import PortalPrice, portal_prices, price_key, settings_of


class Audience:
    CHILDREN = "children"
    ADULTS = "adults"


@dataclass
class BranchCard:
    branch: Branch
    opens: datetime.time | None
    closes: datetime.time | None


@dataclass
class ServiceOffer:
    """A service a doctor takes online bookings for, with its price (None: not shown)."""

    service: Service
    price: PortalPrice | None


@dataclass
class DoctorCard:
    doctor: Resource
    settings: DoctorOnlineSettings | None
    branches: list[Branch] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    prices: dict[int, PortalPrice] = field(default_factory=dict)

    @property
    def show_price(self) -> bool:
        return self.settings is None or self.settings.show_price

    @property
    def offers(self) -> list[ServiceOffer]:
        return [ServiceOffer(service, self.prices.get(service.pk)) for service in self.services]

    @property
    def mode(self) -> ConsultationMode:
        return consultation_mode(self.doctor)

    @property
    def photo_url(self) -> str:
        photo = self.settings.photo if self.settings is not None else None
        return photo.url if photo else ""

    @property
    def initials(self) -> str:
        return name_initials(self.doctor.name)

    @property
    def for_children(self) -> bool:
        return self.settings is not None and self.settings.for_children

    @property
    def for_adults(self) -> bool:
        return self.settings is None or self.settings.for_adults


@dataclass
class ServiceCard:
    """A service with the lowest shown price and the lowest price for paying online."""

    service: Service
    price: Decimal | None
    doctors: list[Resource] = field(default_factory=list)
    online_price: Decimal | None = None

    @property
    def online_is_cheaper(self) -> bool:
        return (
            self.price is not None
            and self.online_price is not None
            and self.online_price < self.price
        )


def consultation_mode(doctor: Resource) -> ConsultationMode:
    """How the doctor consults patients who book online (no settings row: in the clinic)."""
    settings = settings_of(doctor)
    if settings is None:
        return ConsultationMode.IN_CLINIC
    return ConsultationMode(settings.consultation_mode)


def name_initials(name: str) -> str:
    """Up to two capital letters standing for a name, for the card of a doctor without a photo."""
    letters = [word[0] for word in name.replace(".", " ").split() if word[:1].isalpha()]
    return "".join(letters[:2]).upper()


def branch_cards() -> list[BranchCard]:
    """Public branches with the earliest start and latest end of their current schedules."""
    today = timezone.localdate()
    hours = {
        row["branch_id"]: row
        for row in WorkSchedule.objects.filter(Q(date_to__isnull=True) | Q(date_to__gte=today))
        .values("branch_id")
        .annotate(opens=Min("start_time"), closes=Max("end_time"))
    }
    return [
        BranchCard(
            branch=branch,
            opens=hours.get(branch.pk, {}).get("opens"),
            closes=hours.get(branch.pk, {}).get("closes"),
        )
        for branch in branch_public_list().order_by("name", "pk")
    ]


def bookable_doctors() -> list[Resource]:
    """Public doctors who may be booked online (no settings row counts as bookable)."""
    return online_doctors()


def bookable_schedules() -> list[PublicSchedule]:
    """(doctor, branch) pairs of bookable doctors, each with the services bookable online."""
    return online_schedules()


def doctor_cards(
    *, specialty: str = "", branch: str = "", audience: str = "", priced: bool = True
) -> list[DoctorCard]:
    """Bookable doctors, filtered by specialty code, branch public id and who they see, each
    with today's prices of his services in his home branch (one batch for all, unless not
    ``priced``)."""
    cards: dict[int, DoctorCard] = {}
    for entry in bookable_schedules():
        if branch and str(entry.branch.public_id) != branch:
            continue
        doctor = entry.doctor
        staff_specialty = _specialty_of(doctor)
        if specialty and (staff_specialty is None or staff_specialty.code != specialty):
            continue
        card = cards.get(doctor.pk)
        if card is None:
            card = cards[doctor.pk] = DoctorCard(doctor=doctor, settings=settings_of(doctor))
        card.branches.append(entry.branch)
        for service in entry.services:
            if service not in card.services:
                card.services.append(service)
    found = list(cards.values())
    if audience == Audience.CHILDREN:
        found = [card for card in found if card.for_children]
    elif audience == Audience.ADULTS:
        found = [card for card in found if card.for_adults]
    if priced:
        prices = portal_prices(
            [(card.doctor, service, None) for card in found for service in card.services],
            on=timezone.localdate(),
        )
        for card in found:
            for service in card.services:
                price = prices.get(price_key(card.doctor, service))
                if price is not None:
                    card.prices[service.pk] = price
    return found


def doctor_card(public_id: str) -> DoctorCard | None:
    return next((c for c in doctor_cards() if str(c.doctor.public_id) == public_id), None)


def service_cards() -> list[ServiceCard]:
    """Services bookable online with the lowest portal price among the doctors who perform
    them where they work, counting only doctors who let their price be shown (one batch)."""
    schedules = bookable_schedules()
    cards: dict[int, ServiceCard] = {}
    offers = []
    for entry in schedules:
        for service in entry.services:
            card = cards.setdefault(service.pk, ServiceCard(service=service, price=None))
            if entry.doctor not in card.doctors:
                card.doctors.append(entry.doctor)
            offers.append((entry.doctor, service, entry.branch))
    prices = portal_prices(offers, on=timezone.localdate())
    for doctor, service, branch in offers:
        price = prices.get(price_key(doctor, service, branch))
        if price is None:
            continue
        card = cards[service.pk]
        card.price = price.full if card.price is None else min(card.price, price.full)
        card.online_price = (
            price.online if card.online_price is None else min(card.online_price, price.online)
        )
    return sorted(cards.values(), key=lambda card: (card.service.name, card.service.pk))


def _specialty_of(doctor: Resource) -> Specialty | None:
    return doctor.staff.specialty if doctor.staff is not None else None


def specialties(cards: list[DoctorCard]) -> list[tuple[str, str]]:
    """(code, name) of the specialties of the listed doctors, for the filter."""
    found = {}
    for card in cards:
        specialty = _specialty_of(card.doctor)
        if specialty is not None:
            found[specialty.code] = specialty.name
    return sorted(found.items(), key=lambda item: item[1])
