"""The revenue report: what posted invoices sold in a period, and how much of it is paid.

Read-only selectors for the accountant's page and its exports. The period is a range of local
dates of the branch each invoice was posted in (an invoice posted at 23:30 in Novosibirsk counts
on that Novosibirsk day, whatever the UTC date); cancelled invoices and drafts are not revenue.
"Paid" is the net of what payments allocated to a line minus what refunds gave back on it.

The aggregated report is one ``GROUP BY`` query whatever the period; the detailed lines are a
lazily evaluated ``values_list`` queryset meant to be read with ``iterator(chunk_size=...)``, so
an export of a million lines streams from a server-side cursor instead of sitting in memory.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import (
    Case,
    CharField,
    Count,
    DateField,
    DecimalField,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clinic.core.models import Branch, Organization
from clinic.core.selectors import branch_list
from scheduling.models import PayerKind

from .models import InvoiceLine, InvoiceState, PaymentAllocation, PaymentKind
from .policies import can_view_financial_reports

ZERO = Decimal("0")
MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=14, decimal_places=2)

GROUPINGS: dict[str, Any] = {
    "service": gettext_lazy("Service"),
    "doctor": gettext_lazy("Doctor"),
    "group": gettext_lazy("Service group"),
    "day": gettext_lazy("Day"),
    "payer": gettext_lazy("Payer"),
}


class LocalDate(Func):
    """``(timestamp AT TIME ZONE zone)::date``: the local date of a UTC instant in a zone named
    per row (each invoice's branch), which ``TruncDate`` with one fixed zone cannot express."""

    template = "((%(expressions)s)::date)"
    arg_joiner = " AT TIME ZONE "
    output_field = DateField()


@dataclass(frozen=True)
class RevenueRow:
    """One group of the report; ``gross − discount + markup = amount``."""

    key: Any
    label: str
    lines: int
    quantity: int
    gross: Decimal
    discount: Decimal
    markup: Decimal
    amount: Decimal
    paid: Decimal

    @property
    def unpaid(self) -> Decimal:
        return self.amount - self.paid


@dataclass(frozen=True)
class RevenueReport:
    organization: Organization
    branch: Branch | None
    since: datetime.date
    until: datetime.date
    group_by: str
    rows: list[RevenueRow]

    @property
    def total(self) -> RevenueRow:
        def total_of(name: str) -> Any:
            return sum((getattr(row, name) for row in self.rows), 0)

        return RevenueRow(
            key=None,
            label=_("Total"),
            lines=total_of("lines"),
            quantity=total_of("quantity"),
            gross=total_of("gross") or ZERO,
            discount=total_of("discount") or ZERO,
            markup=total_of("markup") or ZERO,
            amount=total_of("amount") or ZERO,
            paid=total_of("paid") or ZERO,
        )


def _require_reports(actor: Any) -> None:
    if not can_view_financial_reports(actor):
        raise PermissionDenied


def report_branches(*, actor: Any, organization: Organization) -> QuerySet[Branch]:
    """The organization's branches whose revenue the actor may see: those the actor works in."""
    return branch_list(actor=actor).filter(organization=organization).order_by("name")


def _period_condition(branches: Iterable[Branch], since: datetime.date, until: datetime.date) -> Q:
    """Invoices posted in ``since``–``until`` (inclusive) in the local dates of their branch.

    Branches are grouped by time zone, so the condition is a few ranges of ``posted_at`` that
    the ``(organization, posted_at)`` index serves, not a per-row time-zone conversion.
    """
    by_zone: dict[str, list[int]] = {}
    for branch in branches:
        by_zone.setdefault(branch.time_zone, []).append(branch.pk)
    condition = Q(pk__in=[])
    for zone_name, branch_ids in by_zone.items():
        zone = Branch(time_zone=zone_name).zone
        starts = datetime.datetime.combine(since, datetime.time.min, tzinfo=zone)
        ends = datetime.datetime.combine(
            until + datetime.timedelta(days=1), datetime.time.min, tzinfo=zone
        )
        condition |= Q(
            invoice__branch_id__in=branch_ids,
            invoice__posted_at__gte=starts,
            invoice__posted_at__lt=ends,
        )
    return condition


def _paid_per_line() -> Subquery:
    """Net paid on the outer line: allocations of payments minus allocations of refunds."""
    signed = Case(
        When(payment__kind=PaymentKind.REFUND, then=-F("amount")),
        default=F("amount"),
        output_field=MONEY,
    )
    return Subquery(
        PaymentAllocation.objects.filter(line_id=OuterRef("pk"))
        .order_by()
        .values("line_id")
        .annotate(net=Sum(signed))
        .values("net"),
        output_field=MONEY,
    )


def revenue_lines(
    *,
    actor: Any,
    organization: Organization,
    since: datetime.date,
    until: datetime.date,
    branch: Branch | None = None,
) -> QuerySet[InvoiceLine]:
    """Lines of the invoices posted (and not cancelled) in the period, with ``paid`` and
    ``posted_on`` (the local date) annotated; scoped to the branches the actor may see."""
    _require_reports(actor)
    branches = list(report_branches(actor=actor, organization=organization))
    if branch is not None:
        if branch.pk not in {visible.pk for visible in branches}:
            raise PermissionDenied
        branches = [branch]
    return (
        InvoiceLine.objects.filter(
            _period_condition(branches, since, until),
            invoice__organization=organization,
            invoice__state=InvoiceState.POSTED,
        )
        .annotate(
            paid=Coalesce(_paid_per_line(), Value(ZERO), output_field=MONEY),
            posted_on=LocalDate(F("invoice__posted_at"), F("invoice__branch__time_zone")),
        )
        .order_by()
    )


def _grouping(group_by: str) -> tuple[dict[str, Any], list[str]]:
    """The key and label expressions of a grouping, and the fields that order its rows."""
    if group_by == "service":
        return {
            "key": F("service_id"),
            "label": Func(F("service__code"), Value(" "), F("service__name"), function="CONCAT"),
        }, ["label"]
    if group_by == "doctor":
        return {
            "key": F("performer_id"),
            "label": Coalesce(F("performer__name"), Value(str(_("No doctor")))),
        }, ["label"]
    if group_by == "group":
        return {
            "key": F("service__billing__group_id"),
            "label": Coalesce(F("service__billing__group__name"), Value(str(_("No group")))),
        }, ["label"]
    if group_by == "day":
        return {"key": F("posted_on"), "label": Cast(F("posted_on"), CharField())}, ["key"]
    if group_by == "payer":
        kinds = [
            When(invoice__payer_kind=kind, then=Value(str(label)))
            for kind, label in PayerKind.choices
        ]
        return {
            "key": Func(
                F("invoice__payer_kind"),
                Value(":"),
                Coalesce(Cast(F("invoice__contract__counterparty_id"), CharField()), Value("")),
                function="CONCAT",
            ),
            "label": Coalesce(
                F("invoice__contract__counterparty__name"),
                Case(*kinds, default=F("invoice__payer_kind"), output_field=CharField()),
            ),
        }, ["label"]
    raise ValueError(group_by)


def revenue_report(
    *,
    actor: Any,
    organization: Organization,
    since: datetime.date,
    until: datetime.date,
    branch: Branch | None = None,
    group_by: str = "service",
) -> RevenueReport:
    """Revenue of the period grouped by service, doctor, service group, day or payer.

    One query: the lines are grouped in the database, each line's net paid coming from a
    correlated sub-select over its allocations (joining the allocations would count a line once
    per payment). Raises ``PermissionDenied`` for staff who may not see financial reports.
    """
    lines = revenue_lines(
        actor=actor, organization=organization, since=since, until=until, branch=branch
    )
    grouping, ordering = _grouping(group_by)
    positive = Q(adjustment__gt=0)
    negative = Q(adjustment__lt=0)
    rows = (
        lines.annotate(**grouping)
        .values(*grouping)
        .annotate(
            line_count=Count("pk"),
            quantity_total=Sum("quantity", output_field=IntegerField()),
            gross=Sum(F("unit_price") * F("quantity"), output_field=MONEY),
            discount=Coalesce(
                Sum(-F("adjustment"), filter=negative), Value(ZERO), output_field=MONEY
            ),
            markup=Coalesce(Sum("adjustment", filter=positive), Value(ZERO), output_field=MONEY),
            amount_total=Sum("amount", output_field=MONEY),
            paid_total=Sum("paid", output_field=MONEY),
        )
        .order_by(*(F(name) for name in ordering))
    )
    return RevenueReport(
        organization=organization,
        branch=branch,
        since=since,
        until=until,
        group_by=group_by,
        rows=[
            RevenueRow(
                key=row["key"],
                label=str(row["label"]),
                lines=row["line_count"],
                quantity=row["quantity_total"],
                gross=row["gross"],
                discount=row["discount"],
                markup=row["markup"],
                amount=row["amount_total"],
                paid=row["paid_total"],
            )
            for row in rows
        ],
    )


# The columns of the detailed export, in order: (field of ``revenue_line_rows``, header).
DETAIL_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("posted_on", gettext_lazy("Date")),
    ("invoice_id", gettext_lazy("Invoice")),
    ("patient_name", gettext_lazy("Patient")),
    ("service_code", gettext_lazy("Code")),
    ("service_name", gettext_lazy("Service")),
    ("performer__name", gettext_lazy("Doctor")),
    ("quantity", gettext_lazy("Quantity")),
    ("unit_price", gettext_lazy("Price")),
    ("adjustment", gettext_lazy("Discount (−) or markup (+)")),
    ("amount", gettext_lazy("Amount")),
    ("paid", gettext_lazy("Paid")),
)


def revenue_line_rows(
    *,
    actor: Any,
    organization: Organization,
    since: datetime.date,
    until: datetime.date,
    branch: Branch | None = None,
) -> QuerySet[Any]:
    """The report's lines as tuples in ``DETAIL_COLUMNS`` order, by date and invoice.

    Tuples, not model instances: an export reads each row once, and a million instances with
    their related objects would cost several times the memory and time.
    """
    lines = revenue_lines(
        actor=actor, organization=organization, since=since, until=until, branch=branch
    )
    return (
        lines.annotate(
            patient_name=Func(
                Value(" "),
                F("invoice__patient__last_name"),
                F("invoice__patient__first_name"),
                NullIf(F("invoice__patient__patronymic"), Value("")),
                function="CONCAT_WS",
                output_field=CharField(),
            )
        )
        .order_by("invoice__posted_at", "invoice_id", "position")
        .values_list(*(name for name, _header in DETAIL_COLUMNS))
    )
