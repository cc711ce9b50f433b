"""Printed billing documents: the contract, invoice, act, tax certificate, receipt copy and cash
book sheet, their PDFs, an organization's own templates, access and query parameters.

No PDF text extractor is installed, so the content is checked on the HTML the PDF is printed
from (``*_html``), and the PDF itself on its signature and the response's headers.
"""

from __future__ import annotations

import datetime
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import include, path, reverse
from django.utils import timezone

import clinic.urls
from billing import documents, services, shifts
from billing.models import (
    CashMovementKind,
    DocumentKind,
    DocumentTemplate,
    Invoice,
    Payment,
    PaymentAllocation,
    PaymentKind,
    PaymentMethod,
)
from billing.services import PartInput
from clinic.core.roles import Role
from clinic.outbox.services import outbox_relay
from patients.models import PersonRelation, Relation
from tests.core.factories import BranchFactory, staff_with_role
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import ServiceFactory, doctor

from .conftest import Desk
from .factories import PriceFactory

# The documents' URLs as the project mounts them, ahead of the project's own.
urlpatterns = [
    path("billing/documents/", include("billing.document_urls")),
    *clinic.urls.urlpatterns,
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

MOSCOW = zoneinfo.ZoneInfo("Europe/Moscow")


def relay() -> None:
    while outbox_relay(channel="fiscal").claimed:
        pass


@pytest.fixture
def sale(desk: Desk) -> dict[str, Any]:
    """A patient of the organization invoiced for a consultation (performed by a doctor) and an
    ultrasound, paid 2000 cash + 3000 card with 50 to the advance, the ultrasound refunded by
    card, all in one shift opened with 1000 in the drawer, 500 then taken out."""
    patient = PersonFactory(
        organization=desk.organization,
        last_name="Смирнова",
        first_name="Анна",
        patronymic="Сергеевна",
        birth_date=datetime.date(1985, 3, 14),
        registration_address="Москва, ул. Ленина, д. 5, кв. 7",
    )
    therapist = doctor(desk.branch, name="Петров П. П.")
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="1000")
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=patient)
    services.invoice_line_add(
        actor=desk.cashier, invoice=invoice, service=desk.consultation, performer=therapist
    )
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.ultrasound)
    invoice = services.invoice_post(actor=desk.cashier, invoice=invoice)
    payment = services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=invoice,
        parts=[
            PartInput(PaymentMethod.CASH, Decimal("2000.00")),
            PartInput(PaymentMethod.CARD, Decimal("3000.00"), card_rrn="123456789012"),
        ],
    )
    ultrasound_line = invoice.lines.get(service=desk.ultrasound)
    refund = services.refund_post(
        actor=desk.cashier,
        payment=payment,
        shift=shift,
        parts=[PartInput(PaymentMethod.CARD, Decimal("2750.00"))],
        lines=[(ultrasound_line, Decimal("2750.00"))],
        reason="Not performed",
    )
    shifts.cash_move(
        actor=desk.cashier,
        shift=shift,
        kind=CashMovementKind.CASH_OUT,
        amount="500",
        reason="Collection",
    )
    return {
        "patient": patient,
        "doctor": therapist,
        "shift": shift,
        "invoice": invoice,
        "payment": payment,
        "refund": refund,
    }


def get(client: Client, user: Any, url: str, **params: Any) -> Any:
    """GET as ``user`` with the query ``params``, asking for English messages."""
    client.force_login(user)
    return client.get(url, params, headers={"accept-language": "en"})


# ---- invoice, act, contract ---------------------------------------------------------------------


def test_invoice_html_lists_lines_discounts_and_total(desk: Desk, sale: dict[str, Any]) -> None:
    invoice: Invoice = sale["invoice"]
    html = documents.invoice_document_html(
        actor=desk.cashier, invoice=invoice, kind=DocumentKind.INVOICE
    )
    assert f"Счёт № {invoice.number} от " in html
    assert "Смирнова Анна Сергеевна" in html
    assert "B01.047.001" in html and "Therapist" in html
    assert "A04.16.001" in html and "Abdomen US" in html
    assert '<td class="num total"><strong>4\u00a0950,00</strong>' in html
    assert '<td class="num discounts">0,00</td>' in html
    assert desk.organization.inn in html


def test_act_html_names_performer_and_visit_period(desk: Desk, sale: dict[str, Any]) -> None:
    invoice: Invoice = sale["invoice"]
    html = documents.invoice_document_html(
        actor=desk.accountant, invoice=invoice, kind=DocumentKind.ACT
    )
    assert f"Акт оказанных медицинских услуг № {invoice.number}" in html
    assert "Петров П. П." in html
    assert '<span class="total">4\u00a0950,00</span>' in html


def test_contract_for_invoice_names_parties_services_and_total(
    desk: Desk, sale: dict[str, Any]
) -> None:
    html = documents.invoice_document_html(
        actor=desk.cashier, invoice=sale["invoice"], kind=DocumentKind.PAID_SERVICES_CONTRACT
    )
    organization = desk.organization
    assert organization.name in html and f"ИНН {organization.inn}" in html
    assert '<strong class="patient">Смирнова Анна Сергеевна</strong>, 14.03.1985' in html
    assert "Москва, ул. Ленина, д. 5, кв. 7" in html
    assert "Therapist" in html and "2\u00a0200,00" in html
    assert '<strong class="total">4\u00a0950,00</strong>' in html


def test_invoice_documents_as_pdf(desk: Desk, sale: dict[str, Any], client: Client) -> None:
    invoice: Invoice = sale["invoice"]
    for name, prefix in (
        ("invoice", "invoice"),
        ("act", "act"),
        ("invoice_contract", "paid-services-contract"),
    ):
        url = reverse(f"billing_documents:{name}", args=[invoice.public_id])
        response = get(client, desk.cashier, url)
        assert response.status_code == 200, name
        assert response["Content-Type"] == "application/pdf"
        assert (
            response["Content-Disposition"] == f'inline; filename="{prefix}-{invoice.number}.pdf"'
        )
        assert response.content.startswith(b"%PDF")


def test_contract_with_patient_lists_price_list_and_invoices(
    desk: Desk, sale: dict[str, Any], client: Client
) -> None:
    from billing.models import Contract
    from scheduling.models import PayerKind

    contract = Contract.objects.create(
        organization=desk.organization,
        number="П-17/2025",
        name="Paid services",
        payer_kind=PayerKind.SELF_PAY,
        patient=sale["patient"],
        valid_from=datetime.date(2025, 1, 10),
        price_list=desk.price_list,
    )
    html = documents.contract_document_html(actor=desk.cashier, contract=contract)
    assert "ДОГОВОР № П-17/2025" in html
    assert "Смирнова Анна Сергеевна" in html
    assert '<td>A04.16.001</td><td>Abdomen US</td><td class="num">2\u00a0750,00</td>' in html
    response = get(
        client, desk.cashier, reverse("billing_documents:contract", args=[contract.public_id])
    )
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")


# ---- the organization's own template ------------------------------------------------------------


def test_organization_template_overrides_the_shipped_one(desk: Desk, sale: dict[str, Any]) -> None:
    invoice: Invoice = sale["invoice"]
    DocumentTemplate.objects.create(
        organization=desk.organization,
        kind=DocumentKind.INVOICE,
        body="<p>Our invoice {{ number }} for {{ patient.full_name }}: {{ total }}</p>",
    )
    html = documents.invoice_document_html(
        actor=desk.cashier, invoice=invoice, kind=DocumentKind.INVOICE
    )
    assert html == f"<p>Our invoice {invoice.number} for Смирнова Анна Сергеевна: 4\u00a0950,00</p>"
    # Other kinds and an inactive template keep the shipped wording.
    act = documents.invoice_document_html(
        actor=desk.cashier, invoice=invoice, kind=DocumentKind.ACT
    )
    assert "Акт оказанных медицинских услуг" in act
    DocumentTemplate.objects.filter(organization=desk.organization).update(is_active=False)
    shipped = documents.invoice_document_html(
        actor=desk.cashier, invoice=invoice, kind=DocumentKind.INVOICE
    )
    assert f"Счёт № {invoice.number}" in shipped


def test_broken_organization_template_answers_400_naming_the_document(
    desk: Desk, sale: dict[str, Any], client: Client
) -> None:
    DocumentTemplate.objects.create(
        organization=desk.organization, kind=DocumentKind.ACT, body="{% if %}"
    )
    url = reverse("billing_documents:act", args=[sale["invoice"].public_id])
    response = get(client, desk.cashier, url)
    assert response.status_code == 400
    assert "Act of services rendered" in response.content.decode()


def test_shipped_template_source_is_offered_for_every_kind() -> None:
    for kind in DocumentKind.values:
        assert "<!DOCTYPE html>" in documents.shipped_template_source(kind), kind


# ---- the tax certificate ------------------------------------------------------------------------


def _past_allocation(
    desk: Desk, sale: dict[str, Any], *, kind: str, amount: str, at: datetime.datetime
) -> None:
    """A payment or refund posted at a chosen moment (documents are never back-dated by the
    services; the certificate's period needs documents on both sides of its bounds)."""
    line = sale["invoice"].lines.get(service=desk.consultation)
    payment = Payment.objects.create(
        organization=desk.organization,
        branch=desk.branch,
        kind=kind,
        patient=sale["patient"],
        invoice=sale["invoice"],
        total=Decimal(amount),
        posted_at=at,
    )
    PaymentAllocation.objects.create(payment=payment, line=line, amount=Decimal(amount))


def test_tax_certificate_sums_payments_minus_refunds_in_the_period(
    desk: Desk, sale: dict[str, Any]
) -> None:
    year = timezone.localdate(timezone=MOSCOW).year
    first = datetime.datetime(year, 1, 1, 0, 10, tzinfo=MOSCOW)
    _past_allocation(desk, sale, kind=PaymentKind.PAYMENT, amount="100.10", at=first)
    _past_allocation(
        desk, sale, kind=PaymentKind.REFUND, amount="30.03", at=first + datetime.timedelta(hours=1)
    )
    # 23:59 on 31 December, Moscow time: still the year before.
    _past_allocation(
        desk,
        sale,
        kind=PaymentKind.PAYMENT,
        amount="999.99",
        at=first - datetime.timedelta(minutes=11),
    )
    amounts = documents.deductible_paid_by_code(
        patient=sale["patient"],
        date_from=datetime.date(year, 1, 1),
        date_to=datetime.date(year, 12, 31),
    )
    # 4950 paid today − 2750 refunded today + 100.10 − 30.03 on 1 January.
    assert amounts == {"01": Decimal("2270.07"), "02": Decimal("0.00")}
    only_ultrasound = documents.deductible_paid_by_code(
        patient=sale["patient"],
        date_from=datetime.date(year, 1, 1),
        date_to=datetime.date(year, 12, 31),
        services=(desk.ultrasound,),
    )
    assert only_ultrasound["01"] == Decimal("0.00")
    new_year_day = documents.deductible_paid_by_code(
        patient=sale["patient"],
        date_from=datetime.date(year, 1, 1),
        date_to=datetime.date(year, 1, 1),
    )
    assert new_year_day["01"] == Decimal("70.07")
    last_year = documents.deductible_paid_by_code(
        patient=sale["patient"],
        date_from=datetime.date(year - 1, 12, 31),
        date_to=datetime.date(year - 1, 12, 31),
    )
    assert last_year["01"] == Decimal("999.99")


def test_tax_certificate_for_a_parent_as_pdf(
    desk: Desk, sale: dict[str, Any], client: Client
) -> None:
    mother = PersonFactory(
        organization=desk.organization, last_name="Смирнова", first_name="Ольга", patronymic=""
    )
    PersonRelation.objects.create(person=sale["patient"], relative=mother, relation=Relation.MOTHER)
    year = timezone.localdate(timezone=MOSCOW).year
    query = {
        "patient": str(sale["patient"].public_id),
        "taxpayer": str(mother.public_id),
        "taxpayer_inn": "500100732259",
        "from": f"{year}-01-01",
        "to": f"{year}-12-31",
        "services": f"{desk.consultation.public_id},{desk.ultrasound.public_id}",
    }
    params = documents.tax_certificate_params_from(actor=desk.accountant, data=query)
    html = documents.tax_certificate_html(actor=desk.accountant, params=params)
    assert '<td class="taxpayer">Смирнова Ольга</td>' in html
    assert '<td class="taxpayer-inn">500100732259</td>' in html
    assert '<td class="same-person">0 — нет</td>' in html
    assert '<td class="patient">Смирнова Анна Сергеевна</td>' in html
    assert '<td class="relation">Mother</td>' in html or '<td class="relation">Мать</td>' in html
    assert f'<td class="year">{year}</td>' in html
    assert '<td class="num amount-ordinary">2\u00a0200,00 руб.</td>' in html
    assert '<td class="num amount-expensive">0,00 руб.</td>' in html
    assert f'<td class="organization-inn">{desk.organization.inn}</td>' in html
    response = get(client, desk.accountant, reverse("billing_documents:tax_certificate"), **query)
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    assert response["Content-Disposition"] == (
        f'inline; filename="tax-certificate-{year}-{sale["patient"].public_id.hex[:8]}.pdf"'
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"patient": ""}, "The parameter “patient” is required."),
        ({"patient": "nobody"}, "The parameter “patient”: unknown person “nobody”."),
        ({"from": "2025-13-01"}, "The parameter “from”: “2025-13-01” is not a date (YYYY-MM-DD)."),
        ({"to": "2024-12-31"}, "The parameter “to”: 2024-12-31 is before the start of the period."),
        (
            {"to": "2026-01-01"},
            "The parameter “to”: 2026-01-01 is in another year than the start; the certificate "
            "is for one tax year.",
        ),
        ({"services": "bogus"}, "The parameter “services”: unknown service “bogus”."),
        ({"taxpayer_inn": "1234567890"}, "The parameter “taxpayer_inn”: “1234567890” is not a"),
    ],
)
def test_tax_certificate_refuses_bad_parameters(
    desk: Desk, sale: dict[str, Any], client: Client, changes: dict[str, str], message: str
) -> None:
    query = {"patient": str(sale["patient"].public_id), "from": "2025-01-01", "to": "2025-12-31"}
    query.update(changes)
    response = get(
        client,
        desk.accountant,
        reverse("billing_documents:tax_certificate"),
        **query,
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert message in response.content.decode()


def test_tax_certificate_refuses_a_taxpayer_not_related(
    desk: Desk, sale: dict[str, Any], client: Client
) -> None:
    stranger = PersonFactory(organization=desk.organization)
    with pytest.raises(documents.BillingError) as refused:
        documents.tax_certificate_params_from(
            actor=desk.accountant,
            data={
                "patient": str(sale["patient"].public_id),
                "taxpayer": str(stranger.public_id),
                "from": "2025-01-01",
                "to": "2025-12-31",
            },
        )
    assert refused.value.code == "taxpayer_not_related"
    assert refused.value.field == "taxpayer"


# ---- the receipt copy ---------------------------------------------------------------------------


def test_receipt_copy_shows_fiscal_data_and_is_marked_as_copy(
    desk: Desk, sale: dict[str, Any], client: Client
) -> None:
    payment: Payment = sale["payment"]
    url = reverse("billing_documents:receipt_copy", args=[payment.public_id])
    unprinted = get(client, desk.cashier, url)
    assert unprinted.status_code == 400
    assert f"The receipt of payment {payment.number} is not printed" in unprinted.content.decode()
    relay()
    receipt = payment.receipt
    receipt.refresh_from_db()
    assert receipt.fiscal_document_number
    html = documents.receipt_copy_html(actor=desk.cashier, payment=payment)
    assert "КОПИЯ<br>не является кассовым чеком" in html
    assert f'<td class="num fn">{receipt.fn_number}</td>' in html
    assert f'<td class="num fd">{receipt.fiscal_document_number}</td>' in html
    assert f'<td class="num fpd">{receipt.fiscal_document_sign}</td>' in html
    assert "Therapist" in html and "Abdomen US" in html
    assert '<strong class="total">=5\u00a0000,00</strong>' in html
    assert "=2\u00a0000,00" in html and "=3\u00a0000,00" in html
    response = get(client, desk.cashier, url)
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    assert (
        response["Content-Disposition"] == f'inline; filename="receipt-copy-{payment.number}.pdf"'
    )


# ---- the cash book sheet ------------------------------------------------------------------------


def test_cash_book_sheet_balances_the_day(desk: Desk, sale: dict[str, Any], client: Client) -> None:
    day = timezone.localdate(timezone=desk.branch.zone)
    params = documents.cash_book_params_from(
        actor=desk.accountant, data={"register": str(desk.register.public_id), "date": str(day)}
    )
    html = documents.cash_book_html(actor=desk.accountant, params=params)
    # The register's first shift opened today with 1000: that is the day's opening balance.
    assert '<td class="num opening-balance">1\u00a0000,00</td>' in html
    assert '<td class="num income-total">2\u00a0000,00</td>' in html
    assert '<td class="num expense-total">500,00</td>' in html
    assert '<td class="num closing-balance">2\u00a0500,00</td>' in html
    assert "Collection" in html and "Смирнова Анна Сергеевна" in html
    # The next day opens with what this one closed with.
    tomorrow_start = datetime.datetime.combine(
        day + datetime.timedelta(days=1), datetime.time.min, tzinfo=desk.branch.zone
    )
    assert documents.cash_balance_before(register=desk.register, moment=tomorrow_start) == Decimal(
        "2500.00"
    )
    response = get(
        client,
        desk.cashier,
        reverse("billing_documents:cash_book"),
        register=str(desk.register.public_id),
        date=str(day),
    )
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    assert response["Content-Disposition"] == f'inline; filename="cash-book-{day}.pdf"'


@pytest.mark.parametrize(
    ("register", "day", "message"),
    [
        ("", "2025-01-01", "The parameter “register” is required."),
        ("desk-1", "2025-01-01", "The parameter “register”: unknown cash register “desk-1”."),
        (None, "yesterday", "The parameter “date”: “yesterday” is not a date (YYYY-MM-DD)."),
        (None, "", "The parameter “date” is required."),
    ],
)
def test_cash_book_refuses_bad_parameters(
    desk: Desk, client: Client, register: str | None, day: str, message: str
) -> None:
    """``None`` stands for the desk's own register."""
    query = {
        "register": str(desk.register.public_id) if register is None else register,
        "date": day,
    }
    response = get(
        client,
        desk.cashier,
        reverse("billing_documents:cash_book"),
        **query,
    )
    assert response.status_code == 400
    assert message in response.content.decode()


# ---- access -------------------------------------------------------------------------------------


def test_registrar_without_rights_is_refused(
    desk: Desk, sale: dict[str, Any], client: Client
) -> None:
    invoice_url = reverse("billing_documents:invoice", args=[sale["invoice"].public_id])
    assert get(client, desk.registrar, invoice_url).status_code == 403
    cash_book = get(
        client,
        desk.registrar,
        reverse("billing_documents:cash_book"),
        register=str(desk.register.public_id),
        date="2025-01-01",
    )
    assert cash_book.status_code == 403
    certificate = get(
        client,
        desk.registrar,
        reverse("billing_documents:tax_certificate"),
        patient=str(sale["patient"].public_id),
        **{"from": "2025-01-01", "to": "2025-12-31"},
    )
    assert certificate.status_code == 403


def test_cashier_of_another_branch_is_refused(
    desk: Desk, sale: dict[str, Any], client: Client
) -> None:
    other_branch = BranchFactory(organization=desk.organization, name="North")
    cashier = staff_with_role(
        Role.CASHIER, organization=desk.organization, branches=[other_branch]
    ).user
    url = reverse("billing_documents:act", args=[sale["invoice"].public_id])
    assert get(client, cashier, url).status_code == 403


def test_another_organization_sees_nothing(
    desk: Desk, sale: dict[str, Any], client: Client
) -> None:
    outsider = staff_with_role(Role.ACCOUNTANT, branches=[BranchFactory()]).user
    for name, public_id in (
        ("invoice", sale["invoice"].public_id),
        ("receipt_copy", sale["payment"].public_id),
    ):
        assert (
            get(
                client, outsider, reverse(f"billing_documents:{name}", args=[public_id])
            ).status_code
            == 404
        )
    certificate = get(
        client,
        outsider,
        reverse("billing_documents:tax_certificate"),
        patient=str(sale["patient"].public_id),
        **{"from": "2025-01-01", "to": "2025-12-31"},
    )
    assert certificate.status_code == 400
    assert "unknown person" in certificate.content.decode()


def test_anonymous_is_sent_to_login(sale: dict[str, Any], client: Client) -> None:
    url = reverse("billing_documents:invoice", args=[sale["invoice"].public_id])
    response = client.get(url)
    assert response.status_code == 302


def test_the_act_lists_what_a_complex_service_includes(desk: Desk) -> None:
    from billing.models import ServiceBundleItem

    checkup = ServiceFactory(organization=desk.organization, code="CHK.01", name="Check-up")
    PriceFactory(price_list=desk.price_list, service=checkup, amount=Decimal("6000.00"))
    ServiceBundleItem.objects.create(bundle=checkup, component=desk.consultation)
    ServiceBundleItem.objects.create(bundle=checkup, component=desk.ultrasound, quantity=2)
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=desk.patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=checkup)
    html = documents.invoice_document_html(
        actor=desk.accountant, invoice=invoice, kind=DocumentKind.ACT
    )
    assert "в том числе: A04.16.001 Abdomen US × 2; B01.047.001 Therapist" in html
