"""What the public feeds show: active doctors, services bookable online, and their places.

Only active organizations and branches appear (``branch_public_list``), only active doctors of
active staff, and only services the portal channel may book. Each function costs a fixed number
of queries whatever the number of rows, so that a public request stays bounded.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db.models import Exists, IntegerField, OuterRef, Q, QuerySet, Value
from django.utils import timezone

from billing.selectors import price_priority, prices_in_force
from clinic.core.models import Branch, StaffStatus
from clinic.core.selectors import branch_public_list
from scheduling.models import (
    BookingChannel,
    PayerKind,
    Resource,
    ResourceKind,
    Service,
    WorkSchedule,
)
from scheduling.services import doctor_performs


def _current_schedules(today: datetime.date) -> QuerySet[WorkSchedule]:
    return WorkSchedule.objects.filter(branch__in=branch_public_list()).filter(
        Q(date_to__isnull=True) | Q(date_to__gte=today)
    )


def public_doctors() -> QuerySet[Resource]:
    """Active doctors (of active staff) who have a current schedule in a public branch."""
    today = timezone.localdate()
    return (
        Resource.objects.filter(
            kind=ResourceKind.DOCTOR,
            is_active=True,
            staff__status=StaffStatus.ACTIVE,
            organization__is_active=True,
        )
        .filter(Exists(_current_schedules(today).filter(resource=OuterRef("pk"))))
        .select_related("staff__specialty", "organization")
        .order_by("name", "pk")
    )


def public_services() -> QuerySet[Service]:
    """Active services of active organizations that patients may book on the portal."""
    return (
        Service.objects.filter(
            is_active=True,
            organization__is_active=True,
            channels__contains=[BookingChannel.PORTAL.value],
        )
        .select_related("kind", "organization")
        .prefetch_related("requirements")
        .order_by("name", "pk")
    )


@dataclass
class PublicSchedule:
    """One doctor in one branch, with the online services he performs there."""

    doctor: Resource
    branch: Branch
    services: list[Service] = field(default_factory=list)


def public_schedules(
    doctors: Sequence[Resource], branches: Sequence[Branch], services: Sequence[Service]
) -> list[PublicSchedule]:
    """The (doctor, branch) pairs of current work schedules among the given rows (one query).

    ``services`` must come with their requirements prefetched (``public_services`` does).
    """
    today = timezone.localdate()
    by_doctor = {doctor.pk: doctor for doctor in doctors}
    by_branch = {branch.pk: branch for branch in branches}
    pairs = (
        _current_schedules(today)
        .filter(resource_id__in=list(by_doctor), branch_id__in=list(by_branch))
        .values_list("resource_id", "branch_id")
        .distinct()
    )
    found = []
    for doctor_id, branch_id in sorted(
        pairs, key=lambda pair: (by_doctor[pair[0]].name, pair[0], by_branch[pair[1]].name)
    ):
        doctor = by_doctor[doctor_id]
        branch = by_branch[branch_id]
        found.append(
            PublicSchedule(
                doctor=doctor,
                branch=branch,
                services=[
                    service
                    for service in services
                    if service.organization_id == doctor.organization_id
                    and doctor_performs(doctor, service)
                ],
            )
        )
    return found


def online_doctors() -> list[Resource]:
    """Public doctors who may be booked online: the portal's settings of a doctor can turn
    online booking off (no settings row counts as bookable)."""
    return list(
        public_doctors()
        .exclude(online_settings__is_bookable_online=False)
        .select_related("online_settings")
    )


def online_schedules() -> list[PublicSchedule]:
    """(doctor, branch) pairs of doctors bookable online, each with the services his online
    settings allow (all he performs when they name none). The portal, the FHIR feed and the
    SMART files offer exactly these."""
    doctors = online_doctors()
    settings_model = apps.get_model("portal", "DoctorOnlineSettings")
    allowed: dict[int, set[int]] = {}
    for doctor_id, service_id in settings_model.services.through.objects.filter(
        doctoronlinesettings__doctor__in=doctors
    ).values_list("doctoronlinesettings__doctor_id", "service_id"):
        allowed.setdefault(doctor_id, set()).add(service_id)
    schedules = public_schedules(doctors, list(branch_public_list()), list(public_services()))
    for entry in schedules:
        if entry.doctor.pk in allowed:
            entry.services = [s for s in entry.services if s.pk in allowed[entry.doctor.pk]]
    return [entry for entry in schedules if entry.services]


def online_schedule(
    doctor_public_id: Any,
    branch_public_id: Any,
    service_public_id: Any,
    *,
    schedules: Sequence[PublicSchedule] | None = None,
) -> tuple[PublicSchedule, Service] | None:
    """The online schedule of a doctor in a branch and its service, when bookable online
    (among ``schedules`` when the caller has them)."""
    for entry in online_schedules() if schedules is None else schedules:
        if entry.doctor.public_id != doctor_public_id or (
            branch_public_id is not None and entry.branch.public_id != branch_public_id
        ):
            continue
        service = next((s for s in entry.services if s.public_id == service_public_id), None)
        if service is not None:
            return entry, service
    return None


def notice_allows(doctor: Resource, starts_at: datetime.datetime) -> bool:
    """The doctor's own online horizon and minimum notice, when his settings set them."""
    online = getattr(doctor, "online_settings", None)
    if online is None:
        return True
    now = timezone.now()
    if online.min_notice_minutes is not None and starts_at < now + datetime.timedelta(
        minutes=online.min_notice_minutes
    ):
        return False
    return not (
        online.horizon_days is not None
        and starts_at > now + datetime.timedelta(days=online.horizon_days)
    )


def self_pay_prices(
    *, services: Iterable[Service], branches: Sequence[Branch], on_date: datetime.date
) -> dict[tuple[int, int], Decimal]:
    """Self-pay prices by (branch id, service id), by billing's own rule for each branch, in
    one query whatever the number of branches (a UNION of billing's per-branch reads)."""
    service_ids = [service.pk for service in services]
    if not service_ids or not branches:
        return {}
    per_branch = [
        prices_in_force(
            branch=branch, on_date=on_date, payer_kind=PayerKind.SELF_PAY, contract=None
        )
        .filter(service_id__in=service_ids)
        .order_by("service_id", *price_priority())
        .distinct("service_id")
        .annotate(branch_tag=Value(branch.pk, output_field=IntegerField()))
        .values_list("branch_tag", "service_id", "amount")
        for branch in branches
    ]
    first, *rest = per_branch
    rows = first.union(*rest, all=True) if rest else first
    return {(branch_id, service_id): amount for branch_id, service_id, amount in rows}
