"""The revenue report: exact totals over a small hand-made set of sales, each grouping, the period
in the branch's local dates, who may see it, refused parameters and the exports' rows."""

from __future__ import annotations

import csv
import datetime
import io
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLResolver, include, path
from django.utils import timezone, translation
from django.utils.formats import localize

import clinic.urls
from billing import services, shifts
from billing.models import (
    AdjustmentKind,
    AdjustmentMethod,
    DiscountRule,
    Invoice,
    InvoiceLine,
    InvoiceState,
    PaymentMethod,
)
from billing.reports import revenue_line_rows, revenue_report
from billing.services import PartInput
from clinic.core.models import Branch
from clinic.core.roles import Role
from patients.models import Person
from scheduling.models import Resource, Service
from tests.core.factories import BranchFactory, OrganizationFactory, staff_with_role
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import ServiceFactory, doctor

from .conftest import Desk
from .factories import ServiceBillingFactory, ServiceGroupFactory


def _with_report_urls() -> list[Any]:
    """The project's URLs, with the reports' mounted at /billing/reports/ if not yet there."""
    patterns = list(clinic.urls.urlpatterns)
    if not any(
        isinstance(pattern, URLResolver) and pattern.namespace == "billing_reports"
        for pattern in patterns
    ):
        patterns.insert(0, path("billing/reports/", include("billing.report_urls")))
    return patterns


urlpatterns = _with_report_urls()

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

ENGLISH = {"Accept-Language": "en"}
PAGE = "/billing/reports/revenue/"
CSV = "/billing/reports/revenue.csv"
XLSX = "/billing/reports/revenue.xlsx"


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """Labels and headers are compared in the source language, whatever the default."""
    with translation.override("en"):
        yield


@dataclass
class Sales:
    """Two posted invoices, paid in part with a refund, beside a draft and a cancelled one."""

    desk: Desk
    first: Invoice
    second: Invoice
    second_patient: Person
    petrov: Resource
    sidorova: Resource
    since: datetime.date
    until: datetime.date

    def report(self, group_by: str, actor: Any = None) -> Any:
        return revenue_report(
            actor=actor or self.desk.accountant,
            organization=self.desk.organization,
            since=self.since,
            until=self.until,
            group_by=group_by,
        )

    def query(self, **extra: str) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), **extra}


@pytest.fixture
def sales(desk: Desk) -> Sales:
    """Invoice 1: therapist by Petrov 2200.00 and ultrasound by Sidorova 2750.00 less 10%
    (275.00); paid 3000.00 in cash (2200.00 + 800.00), 300.00 of the ultrasound refunded.
    Invoice 2: therapist × 2 by Sidorova 4400.00; paid 1000.00 by card."""
    organization = desk.organization
    petrov = doctor(desk.branch, name="Petrov A.")
    sidorova = doctor(desk.branch, name="Sidorova B.")
    ServiceBillingFactory(
        service=desk.consultation,
        group=ServiceGroupFactory(organization=organization, name="Consultations"),
    )
    staff_discount = DiscountRule.objects.create(
        organization=organization,
        name="Staff 10%",
        kind=AdjustmentKind.DISCOUNT,
        method=AdjustmentMethod.PERCENT,
        value=Decimal("10"),
        valid_from=datetime.date(2020, 1, 1),
    )
    cashier = desk.cashier
    shift = shifts.shift_open(actor=cashier, register=desk.register, opening_cash="0")

    first = services.invoice_create(actor=cashier, branch=desk.branch, patient=desk.patient)
    services.invoice_line_add(
        actor=cashier, invoice=first, service=desk.consultation, performer=petrov
    )
    ultrasound = services.invoice_line_add(
        actor=cashier, invoice=first, service=desk.ultrasound, performer=sidorova
    )
    services.invoice_line_adjust(actor=cashier, line=ultrasound, rule=staff_discount)
    first = services.invoice_post(actor=cashier, invoice=first)

    second_patient = PersonFactory(
        organization=organization, last_name="Smirnov", first_name="Oleg", patronymic=""
    )
    second = services.invoice_create(actor=cashier, branch=desk.branch, patient=second_patient)
    services.invoice_line_add(
        actor=cashier, invoice=second, service=desk.consultation, quantity=2, performer=sidorova
    )
    second = services.invoice_post(actor=cashier, invoice=second)

    draft = services.invoice_create(actor=cashier, branch=desk.branch, patient=second_patient)
    services.invoice_line_add(actor=cashier, invoice=draft, service=desk.ultrasound)
    cancelled = services.invoice_create(actor=cashier, branch=desk.branch, patient=desk.patient)
    services.invoice_line_add(actor=cashier, invoice=cancelled, service=desk.ultrasound)
    services.invoice_cancel(
        actor=cashier, invoice=services.invoice_post(actor=cashier, invoice=cancelled)
    )

    payment = services.payment_post(
        actor=cashier,
        branch=desk.branch,
        shift=shift,
        invoice=first,
        parts=[PartInput(PaymentMethod.CASH, Decimal("3000.00"))],
    )
    services.refund_post(
        actor=cashier,
        payment=payment,
        shift=shift,
        parts=[PartInput(PaymentMethod.CASH, Decimal("300.00"))],
        lines=[(ultrasound, Decimal("300.00"))],
        reason="Partly not performed",
    )
    services.payment_post(
        actor=cashier,
        branch=desk.branch,
        shift=shift,
        invoice=second,
        parts=[PartInput(PaymentMethod.CARD, Decimal("1000.00"), card_rrn="000000000001")],
    )
    today = timezone.localdate(timezone=desk.branch.zone)
    return Sales(
        desk=desk,
        first=first,
        second=second,
        second_patient=second_patient,
        petrov=petrov,
        sidorova=sidorova,
        since=today - datetime.timedelta(days=1),
        until=today + datetime.timedelta(days=1),
    )


def figures(row: Any) -> tuple[Any, ...]:
    return (
        row.label,
        row.lines,
        row.quantity,
        row.gross,
        row.discount,
        row.markup,
        row.amount,
        row.paid,
    )


D = Decimal


def test_totals_are_exact_and_leave_out_drafts_and_cancelled_invoices(sales: Sales) -> None:
    report = sales.report("service")
    assert figures(report.total) == (
        "Total",
        3,
        4,
        D("9350.00"),
        D("275.00"),
        D("0"),
        D("9075.00"),
        D("3700.00"),
    )
    assert report.total.unpaid == D("5375.00")


def test_by_service(sales: Sales) -> None:
    assert [figures(row) for row in sales.report("service").rows] == [
        ("A04.16.001 Abdomen US", 1, 1, D("2750.00"), D("275.00"), 0, D("2475.00"), D("500.00")),
        ("B01.047.001 Therapist", 2, 3, D("6600.00"), 0, 0, D("6600.00"), D("3200.00")),
    ]


def test_by_doctor(sales: Sales) -> None:
    assert [figures(row) for row in sales.report("doctor").rows] == [
        ("Petrov A.", 1, 1, D("2200.00"), 0, 0, D("2200.00"), D("2200.00")),
        ("Sidorova B.", 2, 3, D("7150.00"), D("275.00"), 0, D("6875.00"), D("1500.00")),
    ]
    assert [row.key for row in sales.report("doctor").rows] == [sales.petrov.pk, sales.sidorova.pk]


def test_by_service_group_puts_ungrouped_services_together(sales: Sales) -> None:
    assert [figures(row) for row in sales.report("group").rows] == [
        ("Consultations", 2, 3, D("6600.00"), 0, 0, D("6600.00"), D("3200.00")),
        ("No group", 1, 1, D("2750.00"), D("275.00"), 0, D("2475.00"), D("500.00")),
    ]


def test_by_day_and_by_payer(sales: Sales) -> None:
    posted_on = timezone.localtime(sales.first.posted_at, sales.desk.branch.zone).date()
    [day] = sales.report("day").rows
    assert (day.key, day.amount, day.paid) == (posted_on, D("9075.00"), D("3700.00"))
    [payer] = sales.report("payer").rows
    assert (payer.label, payer.lines, payer.amount, payer.paid) == (
        "Self-pay",
        3,
        D("9075.00"),
        D("3700.00"),
    )


def test_the_lines_are_read_in_one_grouped_query(sales: Sales) -> None:
    """Besides the permission and branch look-ups, one statement reads the lines and groups."""
    with CaptureQueriesContext(connection) as captured:
        sales.report("doctor")
    statements = [query["sql"] for query in captured.captured_queries]
    [on_lines] = [sql for sql in statements if '"billing_invoiceline"' in sql]
    assert "GROUP BY" in on_lines
    assert len(statements) <= 4


def test_a_cashier_may_not_see_revenue(sales: Sales) -> None:
    with pytest.raises(PermissionDenied):
        sales.report("service", actor=sales.desk.cashier)
    client = Client()
    client.force_login(sales.desk.cashier)
    assert client.get(PAGE, sales.query()).status_code == 403
    assert client.get(CSV, sales.query()).status_code == 403
    assert client.get(XLSX, sales.query()).status_code == 403


def test_the_accountant_sees_the_page_with_totals_and_export_links(
    sales: Sales, django_assert_max_num_queries: Any
) -> None:
    client = Client()
    client.force_login(sales.desk.accountant)
    with django_assert_max_num_queries(13):
        response = client.get(PAGE, sales.query(group="doctor"), headers=ENGLISH)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("data-revenue-row") == 2
    with translation.override("en"):
        sidorova_amount, total_amount = localize(D("6875.00")), localize(D("9075.00"))
    assert "Sidorova B." in html and sidorova_amount in html and total_amount in html
    assert f"{CSV}?since={sales.since.isoformat()}" in html
    assert f"{XLSX}?since={sales.since.isoformat()}" in html


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ({"since": "2026-02-30"}, "since", "2026-02-30"),
        ({"until": "yesterday"}, "until", "yesterday"),
        ({"since": "2026-03-10", "until": "2026-03-09"}, "until", "2026-03-09"),
        ({"since": "2024-01-01", "until": "2026-01-01"}, "until", "2026-01-01"),
        ({"group": "month"}, "group", "month"),
        ({"branch": "00000000-0000-0000-0000-000000000000"}, "branch", "00000000-0000"),
    ],
)
def test_bad_parameters_answer_400_naming_the_field_and_value(
    desk: Desk, query: dict[str, str], field: str, value: str
) -> None:
    client = Client()
    client.force_login(desk.accountant)
    page = client.get(PAGE, query)
    assert page.status_code == 400
    html = page.content.decode()
    assert f'data-report-error="{field}"' in html
    assert re.search(rf'class="field field--error">\s*<label for="report-{field}">', html)
    assert value in html
    export = client.get(CSV, query)
    assert export.status_code == 400
    assert value in export.content.decode()


def test_csv_export_has_one_row_per_invoice_line(sales: Sales) -> None:
    client = Client()
    client.force_login(sales.desk.accountant)
    response = client.get(CSV, sales.query(), headers=ENGLISH)
    assert response.status_code == 200
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    posted_on = timezone.localtime(sales.first.posted_at, sales.desk.branch.zone).date()
    day = posted_on.isoformat()
    first, second = f"{sales.first.pk:08d}", f"{sales.second.pk:08d}"
    patient = sales.desk.patient.full_name
    money_of_first = ["2200.00", "0.00", "2200.00", "2200.00"]
    money_of_second = ["2750.00", "-275.00", "2475.00", "500.00"]
    money_of_third = ["2200.00", "0.00", "4400.00", "1000.00"]
    assert rows == [
        [
            "Date",
            "Invoice",
            "Patient",
            "Code",
            "Service",
            "Doctor",
            "Quantity",
            "Price",
            "Discount (−) or markup (+)",
            "Amount",
            "Paid",
        ],
        [day, first, patient, "B01.047.001", "Therapist", "Petrov A.", "1", *money_of_first],
        [day, first, patient, "A04.16.001", "Abdomen US", "Sidorova B.", "1", *money_of_second],
        [
            day,
            second,
            "Smirnov Oleg",
            "B01.047.001",
            "Therapist",
            "Sidorova B.",
            "2",
            *money_of_third,
        ],
    ]


def test_xlsx_export_holds_the_same_lines(sales: Sales) -> None:
    client = Client()
    client.force_login(sales.desk.accountant)
    response = client.get(XLSX, sales.query(), headers=ENGLISH)
    assert response.status_code == 200
    workbook = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    rows = list(workbook.active.iter_rows(values_only=True))
    assert len(rows) == 4
    assert rows[2][1:] == (
        f"{sales.first.pk:08d}",
        sales.desk.patient.full_name,
        "A04.16.001",
        "Abdomen US",
        "Sidorova B.",
        1,
        2750,
        -275,
        2475,
        500,
    )


# --- the period in local dates --------------------------------------------------------------


def _posted(branch: Branch, service: Service, at: datetime.datetime, amount: str) -> Invoice:
    """A posted invoice of one line, written directly to fix its posting instant."""
    invoice = Invoice.objects.create(
        organization=branch.organization,
        branch=branch,
        state=InvoiceState.POSTED,
        posted_at=at,
        total=Decimal(amount),
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        position=1,
        service=service,
        service_code=service.code,
        service_name=service.name,
        unit_price=Decimal(amount),
        amount=Decimal(amount),
    )
    return invoice


def test_the_period_is_in_each_branchs_local_dates() -> None:
    """March 2026 in Novosibirsk (UTC+7) and in Kaliningrad (UTC+2): an instant late on 31
    March in Kaliningrad is already April in Novosibirsk."""
    organization = OrganizationFactory()
    novosibirsk = BranchFactory(organization=organization, time_zone="Asia/Novosibirsk")
    kaliningrad = BranchFactory(organization=organization, time_zone="Europe/Kaliningrad")
    accountant = staff_with_role(
        Role.ACCOUNTANT, organization=organization, branches=[novosibirsk, kaliningrad]
    ).user
    service = ServiceFactory(organization=organization)
    local = zoneinfo.ZoneInfo("Asia/Novosibirsk")
    _posted(novosibirsk, service, datetime.datetime(2026, 2, 28, 23, 59, 59, tzinfo=local), "1")
    _posted(novosibirsk, service, datetime.datetime(2026, 3, 1, 0, 0, tzinfo=local), "2")
    _posted(novosibirsk, service, datetime.datetime(2026, 3, 31, 23, 59, 59, tzinfo=local), "4")
    _posted(novosibirsk, service, datetime.datetime(2026, 4, 1, 0, 0, tzinfo=local), "8")
    late_march_in_kaliningrad = datetime.datetime(2026, 3, 31, 20, 30, tzinfo=datetime.UTC)
    _posted(kaliningrad, service, late_march_in_kaliningrad, "16")
    _posted(novosibirsk, service, late_march_in_kaliningrad, "32")

    def report(branch: Branch | None) -> Any:
        return revenue_report(
            actor=accountant,
            organization=organization,
            since=datetime.date(2026, 3, 1),
            until=datetime.date(2026, 3, 31),
            branch=branch,
            group_by="day",
        )

    assert [(row.key, row.amount) for row in report(novosibirsk).rows] == [
        (datetime.date(2026, 3, 1), D("2.00")),
        (datetime.date(2026, 3, 31), D("4.00")),
    ]
    assert [(row.key, row.amount) for row in report(None).rows] == [
        (datetime.date(2026, 3, 1), D("2.00")),
        (datetime.date(2026, 3, 31), D("20.00")),
    ]
    lines = revenue_line_rows(
        actor=accountant,
        organization=organization,
        since=datetime.date(2026, 3, 1),
        until=datetime.date(2026, 3, 31),
        branch=kaliningrad,
    )
    assert [(row[0], row[-2]) for row in lines] == [(datetime.date(2026, 3, 31), D("16.00"))]


def test_a_branch_the_accountant_does_not_work_in_is_refused(desk: Desk) -> None:
    other = BranchFactory(organization=desk.organization)
    with pytest.raises(PermissionDenied):
        revenue_report(
            actor=desk.accountant,
            organization=desk.organization,
            since=datetime.date(2026, 3, 1),
            until=datetime.date(2026, 3, 31),
            branch=other,
        )
