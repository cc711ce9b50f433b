"""Printed billing documents: the contract for paid medical services, the invoice, the act of
services rendered, the certificate of payment for the tax deduction, a receipt copy and the cash
book sheet, as HTML and as PDF (WeasyPrint, like ``desk.prints`` and the route sheet).

Each document is a Django template. An organization may replace the shipped wording of a kind
with its own active ``DocumentTemplate``; it is given the same context, made of plain values
(strings, dates, lists of dicts) rather than model instances, so that an edited template shows
what the shipped one lists and cannot walk from a patient to other rows. Money arrives formatted
the Russian way (``4 950,00``) because the forms are Russian legal documents whatever the
interface language; dates are ``date`` objects already in the branch's (or organization's) time
zone.

Access: staff who take payments in the branch, or who see financial reports and work in it.
Rows of another organization are looked up as missing (404); a branch of the actor's own
organization where the actor has no such right is refused (403).
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, DecimalField, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404
from django.template import TemplateSyntaxError, engines
from django.template.loader import get_template, render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.models import Branch, Organization
from clinic.core.policies import can_view_branch
from clinic.core.selectors import branch_list, organization_list
from clinic.core.validators import validate_inn
from patients.models import Person, PersonRelation
from scheduling.models import PayerKind, Service

from . import policies
from .errors import BillingError
from .models import (
    CashMovement,
    CashMovementKind,
    CashRegister,
    Contract,
    DocumentKind,
    DocumentTemplate,
    FiscalReceipt,
    Invoice,
    InvoiceLine,
    InvoiceState,
    Payment,
    PaymentAllocation,
    PaymentKind,
    PaymentMethod,
    PaymentPart,
    ReceiptState,
    ServiceBundleItem,
)
from .params import date_param

ZERO = Decimal("0.00")
# The certificate's service codes (FNS form): 01 ordinary medical services, 02 expensive
# treatment from the Government's list, deductible in full.
CODE_ORDINARY = "01"
CODE_EXPENSIVE = "02"
SERVICES_MAX = 200

_MONEY_FIELD: DecimalField[Decimal, Decimal] = DecimalField(max_digits=14, decimal_places=2)


def shipped_template_name(kind: str) -> str:
    """The template file shipped for a document kind (``templates/billing/documents/``)."""
    return f"billing/documents/{DocumentKind(kind).value}.html"


def shipped_template_source(kind: str) -> str:
    """The shipped template's text: the starting point an organization edits in the admin."""
    template = get_template(shipped_template_name(kind))
    source: str = template.template.source  # type: ignore[attr-defined]
    return source


def organization_template_body(*, kind: str, organization: Organization) -> str | None:
    """The organization's own active wording of the kind, or None to use the shipped one."""
    return (
        DocumentTemplate.objects.filter(organization=organization, kind=kind, is_active=True)
        .values_list("body", flat=True)
        .first()
    )


def document_html(*, kind: str, context: Mapping[str, Any], organization: Organization) -> str:
    """The document as HTML in the active language: the organization's template when it has an
    active one, else the shipped file.

    An organization's template that does not compile is refused with a message naming the
    document, so the administrator knows which template to correct.
    """
    body = organization_template_body(kind=kind, organization=organization)
    if body is None:
        return render_to_string(shipped_template_name(kind), dict(context))
    try:
        template = engines["django"].from_string(body)
    except TemplateSyntaxError as exc:
        raise BillingError(
            "document_template_invalid",
            _("The organization's template of “%(value)s” has an error: %(error)s")
            % {"value": DocumentKind(kind).label, "error": exc},
            field="template",
        ) from exc
    return template.render(dict(context))


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML

    pdf: bytes = HTML(string=html).write_pdf()
    return pdf


def document_render(*, kind: str, context: Mapping[str, Any], organization: Organization) -> bytes:
    """The document printed to PDF (see ``document_html`` for which template is used)."""
    return html_to_pdf(document_html(kind=kind, context=context, organization=organization))


# ---- formatting -------------------------------------------------------------------------------


def money_text(value: Decimal | None) -> str:
    """``Decimal("4950")`` -> ``"4 950,00"``: grouped by a no-break space, decimal comma."""
    amount = (value or ZERO).quantize(Decimal("0.01"))
    grouped = f"{abs(amount):,.2f}".replace(",", "\u00a0").replace(".", ",")
    return f"−{grouped}" if amount < 0 else grouped


def _zone(organization: Organization) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(organization.time_zone)


def _organization(organization: Organization) -> dict[str, str]:
    return {
        "name": organization.name,
        "short_name": organization.short_name or organization.name,
        "inn": organization.inn,
        "kpp": organization.kpp,
        "ogrn": organization.ogrn,
        "address": organization.address,
    }


def _branch(branch: Branch) -> dict[str, str]:
    return {"name": branch.name, "address": branch.address, "phone": branch.phone}


def _person(person: Person | None) -> dict[str, Any]:
    if person is None:
        return {"full_name": "", "birth_date": None, "address": "", "document": ""}
    document = " ".join(
        part for part in (person.document_series, person.document_number) if part
    ).strip()
    return {
        "full_name": person.full_name,
        "birth_date": person.birth_date,
        "address": person.registration_address or person.actual_address,
        "document": document,
        "document_issued_by": person.document_issued_by,
        "document_issued_on": person.document_issued_on,
    }


def _local_date(moment: datetime.datetime | None, zone: zoneinfo.ZoneInfo) -> datetime.date | None:
    return moment.astimezone(zone).date() if moment is not None else None


# ---- access -----------------------------------------------------------------------------------


def may_print_for_branch(actor: Any, branch: Branch) -> bool:
    """Cashiers of the branch, and those who see financial reports and work in it."""
    return policies.can_take_payment(actor, branch) or (
        policies.can_view_financial_reports(actor) and can_view_branch(actor, branch)
    )


def _ensure_may_print(actor: Any, branch: Branch) -> None:
    if not may_print_for_branch(actor, branch):
        raise PermissionDenied


def _ensure_may_print_for_organization(actor: Any, organization_id: int) -> None:
    """For documents of the organization as a whole (a patient's contract or certificate): the
    right in at least one branch of it."""
    branches = branch_list(actor=actor).filter(organization_id=organization_id)
    if not any(may_print_for_branch(actor, branch) for branch in branches):
        raise PermissionDenied


def _scoped(queryset: QuerySet[Any], actor: Any) -> QuerySet[Any]:
    return queryset.filter(organization__in=organization_list(actor=actor))


def invoice_get_for_actor(*, actor: Any, public_id: uuid.UUID) -> Invoice:
    """The invoice in the actor's organizations, or 404."""
    invoice: Invoice | None = (
        _scoped(Invoice.objects.all(), actor)
        .select_related("organization", "branch", "patient", "contract__counterparty")
        .filter(public_id=public_id)
        .first()
    )
    if invoice is None:
        raise Http404
    return invoice


def contract_get_for_actor(*, actor: Any, public_id: uuid.UUID) -> Contract:
    """The contract in the actor's organizations, or 404."""
    contract: Contract | None = (
        _scoped(Contract.objects.all(), actor)
        .select_related("organization", "patient", "counterparty", "price_list")
        .filter(public_id=public_id)
        .first()
    )
    if contract is None:
        raise Http404
    return contract


def payment_get_for_actor(*, actor: Any, public_id: uuid.UUID) -> Payment:
    """The payment or refund in the actor's organizations, or 404."""
    payment: Payment | None = (
        _scoped(Payment.objects.all(), actor)
        .select_related("organization", "branch", "patient", "posted_by")
        .filter(public_id=public_id)
        .first()
    )
    if payment is None:
        raise Http404
    return payment


# ---- invoice lines: the contract, the invoice and the act -------------------------------------


def _compositions(lines: list[InvoiceLine]) -> dict[int, list[str]]:
    """What each complex service on the lines includes ("code name × n"), in one query."""
    parts: dict[int, list[str]] = {}
    for bundle_id, code, name, quantity in (
        ServiceBundleItem.objects.filter(bundle_id__in={line.service_id for line in lines})
        .order_by("bundle_id", "component__code")
        .values_list("bundle_id", "component__code", "component__name", "quantity")
    ):
        parts.setdefault(bundle_id, []).append(
            f"{code} {name}" + (f" × {quantity}" if quantity > 1 else "")
        )
    return parts


def _line_rows(lines: list[InvoiceLine], zone: zoneinfo.ZoneInfo) -> list[dict[str, Any]]:
    compositions = _compositions(lines)
    return [
        {
            "position": line.position,
            "code": line.service_code,
            "name": line.service_name,
            "quantity": line.quantity,
            "price": money_text(line.unit_price),
            "adjustment": money_text(line.adjustment) if line.adjustment else "",
            "amount": money_text(line.amount),
            "performer": line.performer.name if line.performer else "",
            "includes": compositions.get(line.service_id, []),
            "visit_date": _local_date(line.appointment.starts_at, zone)
            if line.appointment
            else None,
        }
        for line in lines
    ]


def _invoice_lines(invoice: Invoice) -> list[InvoiceLine]:
    return list(invoice.lines.select_related("performer", "appointment").order_by("position", "pk"))


def _payer(invoice: Invoice) -> str:
    if invoice.contract is not None and invoice.contract.counterparty is not None:
        return invoice.contract.counterparty.name
    return invoice.patient.full_name if invoice.patient is not None else ""


def _invoice_date(invoice: Invoice) -> datetime.date:
    moment = invoice.posted_at or invoice.created_at
    return moment.astimezone(invoice.branch.zone).date()


def _invoice_common(invoice: Invoice) -> dict[str, Any]:
    lines = _invoice_lines(invoice)
    gross = sum((line.unit_price * line.quantity for line in lines), ZERO)
    return {
        "organization": _organization(invoice.organization),
        "branch": _branch(invoice.branch),
        "number": invoice.number,
        "date": _invoice_date(invoice),
        "patient": _person(invoice.patient),
        "payer": _payer(invoice),
        "payer_kind": invoice.get_payer_kind_display(),
        "contract_number": invoice.contract.number if invoice.contract else "",
        "is_draft": invoice.state == InvoiceState.DRAFT,
        "is_cancelled": invoice.state == InvoiceState.CANCELLED,
        "lines": _line_rows(lines, invoice.branch.zone),
        "gross_total": money_text(gross),
        "discount_total": money_text(invoice.discount_total),
        "has_adjustments": any(line.adjustment for line in lines),
        "total": money_text(invoice.total),
        "note": invoice.note,
    }


def invoice_document_html(*, actor: Any, invoice: Invoice, kind: str) -> str:
    """The invoice (``invoice``), the act of services rendered (``act``) or the contract for
    paid medical services made for this invoice (``paid_services_contract``).

    Raises ``PermissionDenied`` unless the actor may print in the invoice's branch.
    """
    _ensure_may_print(actor, invoice.branch)
    context = _invoice_common(invoice)
    if kind == DocumentKind.PAID_SERVICES_CONTRACT:
        context["contract_number"] = context["contract_number"] or invoice.number
        context["price_rows"] = []
    elif kind == DocumentKind.ACT:
        visits = [row["visit_date"] for row in context["lines"] if row["visit_date"]]
        context["first_visit"] = min(visits) if visits else None
        context["last_visit"] = max(visits) if visits else None
    elif kind != DocumentKind.INVOICE:
        raise ValueError(kind)
    return document_html(kind=kind, context=context, organization=invoice.organization)


def contract_document_html(*, actor: Any, contract: Contract) -> str:
    """The contract for paid medical services of a ``Contract`` signed with a patient: the
    services of its invoices (cancelled ones left out) and its own price list's prices.

    A contract with a company or an insurer is not this document: refused with a message.
    """
    _ensure_may_print_for_organization(actor, contract.organization_id)
    if contract.patient is None:
        raise BillingError(
            "contract_without_patient",
            _("Contract %(value)s is not signed with a patient.") % {"value": contract.number},
            field="contract",
        )
    zone = _zone(contract.organization)
    lines = list(
        InvoiceLine.objects.filter(invoice__contract=contract)
        .exclude(invoice__state=InvoiceState.CANCELLED)
        .select_related("performer", "appointment")
        .order_by("invoice_id", "position")
    )
    price_rows = []
    if contract.price_list is not None:
        price_rows = [
            {
                "code": price.service.code,
                "name": price.service.name,
                "price": money_text(price.amount),
            }
            for price in contract.price_list.prices.select_related("service").order_by(
                "service__code"
            )
        ]
    context = {
        "organization": _organization(contract.organization),
        "branch": None,
        "number": contract.number,
        "contract_number": contract.number,
        "date": contract.valid_from,
        "valid_to": contract.valid_to,
        "patient": _person(contract.patient),
        "payer": contract.counterparty_name,
        "lines": _line_rows(lines, zone),
        "price_rows": price_rows,
        "has_adjustments": any(line.adjustment for line in lines),
        "total": money_text(sum((line.amount for line in lines), ZERO)),
        "is_draft": False,
        "is_cancelled": not contract.is_active,
    }
    return document_html(
        kind=DocumentKind.PAID_SERVICES_CONTRACT,
        context=context,
        organization=contract.organization,
    )


# ---- the receipt copy -------------------------------------------------------------------------


def receipt_copy_html(*, actor: Any, payment: Payment) -> str:
    """A copy of the payment's (or refund's) fiscal receipt with its fiscal data.

    Refused while the register has not printed it: a copy without FN, FD and FPD would prove
    nothing.
    """
    _ensure_may_print(actor, payment.branch)
    receipt = FiscalReceipt.objects.filter(payment=payment).select_related("register").first()
    if receipt is None or receipt.state != ReceiptState.PRINTED:
        raise BillingError(
            "receipt_not_printed",
            _("The receipt of payment %(value)s is not printed by the register yet.")
            % {"value": payment.number},
            field="payment",
        )
    task = receipt.task or {}
    zone = payment.branch.zone
    methods = dict(PaymentMethod.choices)
    context = {
        "organization": _organization(payment.organization),
        "branch": _branch(payment.branch),
        "register": receipt.register.name,
        "taxation_type": receipt.register.taxation_type,
        "is_refund": payment.kind == PaymentKind.REFUND,
        "operation": receipt.get_operation_display(),
        "payment_number": payment.number,
        "patient": _person(payment.patient),
        "posted_at": payment.posted_at.astimezone(zone),
        "printed_at": receipt.printed_at.astimezone(zone) if receipt.printed_at else None,
        "fn_number": receipt.fn_number,
        "fd_number": receipt.fiscal_document_number,
        "fpd": receipt.fiscal_document_sign,
        "receipt_number": receipt.receipt_number,
        "shift_number": receipt.device_shift_number,
        "operator": task.get("operator_name", ""),
        "items": [
            {
                "name": item.get("name", ""),
                "price": money_text(Decimal(item.get("price", "0"))),
                "quantity": item.get("quantity", ""),
                "amount": money_text(Decimal(item.get("amount", "0"))),
            }
            for item in task.get("items", [])
        ],
        "payments": [
            {"method": methods.get(part.method, part.method), "amount": money_text(part.amount)}
            for part in payment.parts.order_by("pk")
        ],
        "total": money_text(payment.total),
        "client_contact": task.get("client_email") or task.get("client_phone") or "",
    }
    return document_html(
        kind=DocumentKind.RECEIPT_COPY, context=context, organization=payment.organization
    )


# ---- query parameters -------------------------------------------------------------------------


def _text(data: Mapping[str, Any], name: str) -> str:
    return str(data.get(name) or "").strip()


def _required(value: str, name: str) -> str:
    if not value:
        raise BillingError(
            "required",
            _("The parameter “%(field)s” is required.") % {"field": name},
            field=name,
        )
    return value


def _date_param(data: Mapping[str, Any], name: str) -> datetime.date:
    return date_param(_required(_text(data, name), name), field=name)


def _uuid_param(value: str, name: str, unknown: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise BillingError(
            f"unknown_{name}", unknown % {"field": name, "value": value}, field=name
        ) from exc


def _person_param(actor: Any, data: Mapping[str, Any], name: str) -> Person:
    value = _required(_text(data, name), name)
    unknown = _("The parameter “%(field)s”: unknown person “%(value)s”.")
    public_id = _uuid_param(value, name, unknown)
    person = (
        _scoped(Person.objects.all(), actor)
        .select_related("organization")
        .filter(public_id=public_id, merged_into__isnull=True)
        .first()
    )
    if person is None:
        raise BillingError(f"unknown_{name}", unknown % {"field": name, "value": value}, field=name)
    return person


@dataclass(frozen=True)
class TaxCertificateParams:
    """What the certificate is asked for, as read from the request.

    ``taxpayer`` is the person who paid and claims the deduction: the patient, or a relative
    recorded in the patient's relations (a parent for a child, a spouse). ``services`` empty means
    every service.
    """

    patient: Person
    taxpayer: Person
    relation: str
    taxpayer_inn: str
    date_from: datetime.date
    date_to: datetime.date
    services: tuple[Service, ...]


def _relation(patient: Person, taxpayer: Person, value: str) -> str:
    if taxpayer.pk == patient.pk:
        return ""
    relation = (
        PersonRelation.objects.filter(person=patient, relative=taxpayer).order_by("pk").first()
    )
    if relation is None:
        raise BillingError(
            "taxpayer_not_related",
            _(
                "The parameter “%(field)s”: “%(value)s” is not recorded as a relative of the "
                "patient."
            )
            % {"field": "taxpayer", "value": value},
            field="taxpayer",
        )
    return relation.get_relation_display()


def _services_param(data: Any, organization_id: int) -> tuple[Service, ...]:
    values: list[str] = []
    raw = data.getlist("services") if hasattr(data, "getlist") else [data.get("services") or ""]
    for item in raw:
        values.extend(part.strip() for part in str(item).split(",") if part.strip())
    if len(values) > SERVICES_MAX:
        raise BillingError(
            "too_many_services",
            _("The parameter “%(field)s” names more than %(limit)d services.")
            % {"field": "services", "limit": SERVICES_MAX},
            field="services",
        )
    unknown = _("The parameter “%(field)s”: unknown service “%(value)s”.")
    wanted = {value: _uuid_param(value, "services", unknown) for value in values}
    found = {
        service.public_id: service
        for service in Service.objects.filter(
            organization_id=organization_id, public_id__in=wanted.values()
        )
    }
    for value, public_id in wanted.items():
        if public_id not in found:
            raise BillingError(
                "unknown_services",
                unknown % {"field": "services", "value": value},
                field="services",
            )
    return tuple(sorted(found.values(), key=lambda service: service.code))


def tax_certificate_params_from(*, actor: Any, data: Any) -> TaxCertificateParams:
    """Read ``patient`` (public id), ``from`` and ``to`` (YYYY-MM-DD, one calendar year: the
    certificate is for one tax year), ``services`` (public ids, repeated or comma-separated;
    none: all), ``taxpayer`` (public id; default: the patient) and ``taxpayer_inn`` (optional,
    checked).

    Every value that cannot be used is refused with a ``BillingError`` naming the parameter and
    quoting the value. A patient of another organization is "unknown".
    """
    patient = _person_param(actor, data, "patient")
    date_from = _date_param(data, "from")
    date_to = _date_param(data, "to")
    if date_to < date_from:
        raise BillingError(
            "dates_out_of_order",
            _("The parameter “%(field)s”: %(value)s is before the start of the period.")
            % {"field": "to", "value": date_to.isoformat()},
            field="to",
        )
    if date_to.year != date_from.year:
        raise BillingError(
            "period_not_one_year",
            _(
                "The parameter “%(field)s”: %(value)s is in another year than the start; the "
                "certificate is for one tax year."
            )
            % {"field": "to", "value": date_to.isoformat()},
            field="to",
        )
    taxpayer_value = _text(data, "taxpayer")
    taxpayer = _person_param(actor, data, "taxpayer") if taxpayer_value else patient
    if taxpayer.organization_id != patient.organization_id:
        raise BillingError(
            "unknown_taxpayer",
            _("The parameter “%(field)s”: unknown person “%(value)s”.")
            % {"field": "taxpayer", "value": taxpayer_value},
            field="taxpayer",
        )
    relation = _relation(patient, taxpayer, taxpayer_value)
    taxpayer_inn = _text(data, "taxpayer_inn")
    if taxpayer_inn:
        try:
            validate_inn(taxpayer_inn)
        except ValidationError as exc:
            raise BillingError(
                "invalid_inn",
                _("The parameter “%(field)s”: “%(value)s” is not a valid INN.")
                % {"field": "taxpayer_inn", "value": taxpayer_inn},
                field="taxpayer_inn",
            ) from exc
    return TaxCertificateParams(
        patient=patient,
        taxpayer=taxpayer,
        relation=relation,
        taxpayer_inn=taxpayer_inn,
        date_from=date_from,
        date_to=date_to,
        services=_services_param(data, patient.organization_id),
    )


# ---- the certificate of payment for the tax deduction -----------------------------------------


def _local_day_bounds(
    date_from: datetime.date, date_to: datetime.date, zone: zoneinfo.ZoneInfo
) -> tuple[datetime.datetime, datetime.datetime]:
    start = datetime.datetime.combine(date_from, datetime.time.min, tzinfo=zone)
    end = datetime.datetime.combine(
        date_to + datetime.timedelta(days=1), datetime.time.min, tzinfo=zone
    )
    return start, end


def deductible_paid_by_code(
    *,
    patient: Person,
    date_from: datetime.date,
    date_to: datetime.date,
    services: tuple[Service, ...] = (),
) -> dict[str, Decimal]:
    """What the patient's services were paid in the period (organization-local dates), minus
    what was refunded on them in it, by the certificate's service code.

    Counted from allocations to invoice lines of the patient's self-pay invoices (money an
    insurer or a company paid is not the taxpayer's), so an advance counts when it pays for a
    service and never twice. One SQL aggregation. The catalogue has no mark for expensive
    treatment, so every service is under code 01 and code 02 is zero.
    """
    start, end = _local_day_bounds(date_from, date_to, _zone(patient.organization))
    allocations = PaymentAllocation.objects.filter(
        line__invoice__patient=patient,
        line__invoice__organization_id=patient.organization_id,
        line__invoice__payer_kind=PayerKind.SELF_PAY,
        payment__posted_at__gte=start,
        payment__posted_at__lt=end,
    )
    if services:
        allocations = allocations.filter(line__service__in=services)
    signed = Case(
        When(payment__kind=PaymentKind.REFUND, then=-F("amount")),
        default=F("amount"),
        output_field=_MONEY_FIELD,
    )
    totals = allocations.aggregate(
        paid=Coalesce(Sum(signed), Value(ZERO), output_field=_MONEY_FIELD)
    )
    return {CODE_ORDINARY: totals["paid"], CODE_EXPENSIVE: ZERO}


def tax_certificate_html(*, actor: Any, params: TaxCertificateParams) -> str:
    """The certificate of payment for medical services for the tax office (the FNS form in
    force from 2024): the clinic, the taxpayer, the patient when another person, the year and
    the amounts by service code.
    """
    patient = params.patient
    organization = patient.organization
    _ensure_may_print_for_organization(actor, organization.pk)
    amounts = deductible_paid_by_code(
        patient=patient,
        date_from=params.date_from,
        date_to=params.date_to,
        services=params.services,
    )
    same_person = params.taxpayer.pk == patient.pk
    context = {
        "organization": _organization(organization),
        "year": params.date_from.year,
        "date_from": params.date_from,
        "date_to": params.date_to,
        "issued_on": timezone.localdate(timezone=_zone(organization)),
        "taxpayer": {**_person(params.taxpayer), "inn": params.taxpayer_inn},
        "patient": _person(patient),
        "same_person": same_person,
        "relation": params.relation,
        "services": [{"code": service.code, "name": service.name} for service in params.services],
        "amount_ordinary": money_text(amounts[CODE_ORDINARY]),
        "amount_expensive": money_text(amounts[CODE_EXPENSIVE]),
        "code_ordinary": CODE_ORDINARY,
        "code_expensive": CODE_EXPENSIVE,
        "total": money_text(amounts[CODE_ORDINARY] + amounts[CODE_EXPENSIVE]),
    }
    return document_html(
        kind=DocumentKind.TAX_CERTIFICATE, context=context, organization=organization
    )


# ---- the cash book sheet ----------------------------------------------------------------------


@dataclass(frozen=True)
class CashBookParams:
    register: CashRegister
    day: datetime.date


def cash_book_params_from(*, actor: Any, data: Mapping[str, Any]) -> CashBookParams:
    """Read ``register`` (public id of a register in the actor's organizations) and ``date``
    (YYYY-MM-DD, the branch's local day)."""
    value = _required(_text(data, "register"), "register")
    unknown = _("The parameter “%(field)s”: unknown cash register “%(value)s”.")
    public_id = _uuid_param(value, "register", unknown)
    register = (
        _scoped(CashRegister.objects.all(), actor)
        .select_related("organization", "branch")
        .filter(public_id=public_id)
        .first()
    )
    if register is None:
        raise BillingError(
            "unknown_register", unknown % {"field": "register", "value": value}, field="register"
        )
    return CashBookParams(register=register, day=_date_param(data, "date"))


def _cash_signed(kind_field: str, income: str) -> Case:
    return Case(
        When(**{kind_field: income}, then=F("amount")),
        default=-F("amount"),
        output_field=_MONEY_FIELD,
    )


def _cash_parts(register: CashRegister) -> QuerySet[PaymentPart]:
    return PaymentPart.objects.filter(method=PaymentMethod.CASH, payment__shift__register=register)


def cash_balance_before(*, register: CashRegister, moment: datetime.datetime) -> Decimal:
    """The cash the register's drawer held at ``moment`` by its documents.

    The cash book carries its balance from day to day: the first shift's opening cash is the
    till's initial money, every later shift's opening cash is a count of the same money, not a
    receipt. Cash payments add, cash refunds and cash out take away, cash in adds.
    """
    first_shift = register.shifts.filter(opened_at__lt=moment).order_by("opened_at", "pk").first()
    if first_shift is None:
        return ZERO
    zero = Value(ZERO)
    parts = _cash_parts(register).filter(payment__posted_at__lt=moment)
    paid = parts.aggregate(
        total=Coalesce(
            Sum(_cash_signed("payment__kind", PaymentKind.PAYMENT)), zero, output_field=_MONEY_FIELD
        )
    )["total"]
    moved = CashMovement.objects.filter(shift__register=register, posted_at__lt=moment).aggregate(
        total=Coalesce(
            Sum(_cash_signed("kind", CashMovementKind.CASH_IN)), zero, output_field=_MONEY_FIELD
        )
    )["total"]
    opening: Decimal = first_shift.opening_cash
    return opening + paid + moved


def cash_book_html(*, actor: Any, params: CashBookParams) -> str:
    """The cash book sheet of a register for a local day: the balance at the start of the day,
    every cash receipt and payout in time order, the day's totals and the closing balance.

    When the register's first shift ever opens that day, its opening cash is the opening
    balance (see ``cash_balance_before``).
    """
    register = params.register
    _ensure_may_print(actor, register.branch)
    zone = register.branch.zone
    start, end = _local_day_bounds(params.day, params.day, zone)
    opening = cash_balance_before(register=register, moment=start)
    if not register.shifts.filter(opened_at__lt=start).exists():
        first_today = register.shifts.filter(opened_at__lt=end).order_by("opened_at", "pk").first()
        opening = first_today.opening_cash if first_today is not None else ZERO
    entries: list[dict[str, Any]] = []
    parts = (
        _cash_parts(register)
        .filter(payment__posted_at__gte=start, payment__posted_at__lt=end)
        .select_related("payment__patient")
        .order_by("payment__posted_at", "pk")
    )
    for part in parts:
        payment = part.payment
        income = payment.kind == PaymentKind.PAYMENT
        entries.append(
            {
                "at": payment.posted_at.astimezone(zone),
                "document": payment.number,
                "kind": payment.get_kind_display(),
                "counterpart": payment.patient.full_name if payment.patient else "",
                "reason": payment.reason,
                "income_value": part.amount if income else ZERO,
                "expense_value": ZERO if income else part.amount,
            }
        )
    for movement in CashMovement.objects.filter(
        shift__register=register, posted_at__gte=start, posted_at__lt=end
    ).order_by("posted_at", "pk"):
        income = movement.kind == CashMovementKind.CASH_IN
        entries.append(
            {
                "at": movement.posted_at.astimezone(zone),
                "document": f"{movement.pk:08d}",
                "kind": movement.get_kind_display(),
                "counterpart": "",
                "reason": movement.reason,
                "income_value": movement.amount if income else ZERO,
                "expense_value": ZERO if income else movement.amount,
            }
        )
    entries.sort(key=lambda entry: entry["at"])
    income_total = sum((entry["income_value"] for entry in entries), ZERO)
    expense_total = sum((entry["expense_value"] for entry in entries), ZERO)
    for entry in entries:
        entry["income"] = money_text(entry["income_value"]) if entry["income_value"] else ""
        entry["expense"] = money_text(entry["expense_value"]) if entry["expense_value"] else ""
    cashiers = sorted(
        {
            shift.cashier.get_full_name() or shift.cashier.get_username()
            for shift in register.shifts.filter(opened_at__lt=end)
            .filter(Q(closed_at__isnull=True) | Q(closed_at__gte=start))
            .select_related("cashier")
        }
    )
    context = {
        "organization": _organization(register.organization),
        "branch": _branch(register.branch),
        "register": register.name,
        "day": params.day,
        "entries": entries,
        "opening_balance": money_text(opening),
        "income_total": money_text(income_total),
        "expense_total": money_text(expense_total),
        "closing_balance": money_text(opening + income_total - expense_total),
        "cashiers": cashiers,
    }
    return document_html(
        kind=DocumentKind.CASH_BOOK, context=context, organization=register.organization
    )
