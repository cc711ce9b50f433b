"""What the portal's public pages list: bookable doctors with their branches and services.

Built on the public feeds' selectors (``integrations.website.selectors``) so the portal and the
FHIR feeds never disagree about who is public; the portal then drops doctors whose online
settings say they are not bookable and narrows each doctor's services to the ones his settings
allow (no settings row: bookable, every service, price shown).
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
    public_doctors,
    public_schedules,
    public_services,
    self_pay_prices,
)
from scheduling.models import Resource, Service, WorkSchedule

from .models import DoctorOnlineSettings


class Audience:
    CHILDREN = "children"
    ADULTS = "adults"


@dataclass
class BranchCard:
    branch: Branch
    opens: datetime.time | None
    closes: datetime.time | None


@dataclass
class DoctorCard:
    doctor: Resource
    settings: DoctorOnlineSettings | None
    branches: list[Branch] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)

    @property
    def show_price(self) -> bool:
        return self.settings is None or self.settings.show_price

    @property
    def for_children(self) -> bool:
        return self.settings is not None and self.settings.for_children

    @property
    def for_adults(self) -> bool:
        return self.settings is None or self.settings.for_adults


@dataclass
class ServiceCard:
    service: Service
    price: Decimal | None
    doctors: list[Resource] = field(default_factory=list)


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
    return list(
        public_doctors()
        .exclude(online_settings__is_bookable_online=False)
        .select_related("online_settings")
    )


def _settings_of(doctor: Resource) -> DoctorOnlineSettings | None:
    try:
        return doctor.online_settings
    except DoctorOnlineSettings.DoesNotExist:
        return None


def bookable_schedules() -> list[PublicSchedule]:
    """(doctor, branch) pairs of bookable doctors, each with the services bookable online."""
    doctors = bookable_doctors()
    allowed: dict[int, set[int]] = {}
    for doctor_id, service_id in DoctorOnlineSettings.services.through.objects.filter(
        doctoronlinesettings__doctor__in=doctors
    ).values_list("doctoronlinesettings__doctor_id", "service_id"):
        allowed.setdefault(doctor_id, set()).add(service_id)
    schedules = public_schedules(doctors, list(branch_public_list()), list(public_services()))
    for entry in schedules:
        if entry.doctor.pk in allowed:
            entry.services = [s for s in entry.services if s.pk in allowed[entry.doctor.pk]]
    return [entry for entry in schedules if entry.services]


def doctor_cards(*, specialty: str = "", branch: str = "", audience: str = "") -> list[DoctorCard]:
    """Bookable doctors, filtered by specialty code, branch public id and who they see."""
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
            card = cards[doctor.pk] = DoctorCard(doctor=doctor, settings=_settings_of(doctor))
        card.branches.append(entry.branch)
        for service in entry.services:
            if service not in card.services:
                card.services.append(service)
    found = list(cards.values())
    if audience == Audience.CHILDREN:
        found = [card for card in found if card.for_children]
    elif audience == Audience.ADULTS:
        found = [card for card in found if card.for_adults]
    return found


def doctor_card(public_id: str) -> DoctorCard | None:
    return next((c for c in doctor_cards() if str(c.doctor.public_id) == public_id), None)


def service_cards() -> list[ServiceCard]:
    """Services bookable online with the self-pay price, shown only when some doctor who
    performs the service lets his price be shown."""
    schedules = bookable_schedules()
    cards: dict[int, ServiceCard] = {}
    price_shown: set[int] = set()
    branches: dict[int, Branch] = {}
    for entry in schedules:
        branches[entry.branch.pk] = entry.branch
        settings = _settings_of(entry.doctor)
        for service in entry.services:
            card = cards.setdefault(service.pk, ServiceCard(service=service, price=None))
            if entry.doctor not in card.doctors:
                card.doctors.append(entry.doctor)
            if settings is None or settings.show_price:
                price_shown.add(service.pk)
    prices = self_pay_prices(
        services=[card.service for card in cards.values()],
        branches=list(branches.values()),
        on_date=timezone.localdate(),
    )
    for card in cards.values():
        if card.service.pk in price_shown:
            amounts = [a for (_b, s), a in prices.items() if s == card.service.pk]
            card.price = min(amounts) if amounts else None
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
