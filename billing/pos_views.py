"""The cashier's desk (POS), under /pos/: shifts, finding the patient, invoicing their visits,
payments split over methods, refunds and the fiscal receipts of the day.

Every action is a plain form post answered with a redirect back to the page (so a reload never
posts twice); a refusal (``BillingError``) re-renders the page with status 400, the message
next to the field it names and the typed values kept, and nothing is posted. A payment or refund
form carries an idempotency key made when it was rendered, so a double submit posts once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from clinic.core.models import Branch
from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from desk.booking_views import patient_for
from desk.selectors import grid_branches
from patients.models import Person
from patients.search import person_search
from patients.views import person_rows, requires
from scheduling.models import Appointment

from . import pos_selectors as selectors
from .errors import BillingError
from .fiscal import receipt_retry
from .models import CashMovementKind, InvoiceState, PaymentMethod, ReceiptState
from .params import date_param
from .policies import can_take_payment, can_view_financial_reports
from .services import (
    PartInput,
    invoice_from_appointments,
    invoice_line_adjust,
    invoice_post,
    money,
    payment_post,
)
from .services import refund_post as refund_document_post
from .shifts import cash_move, cashier_actions, shift_close, shift_open, shift_report_x

SEARCH_LIMIT = 10

PAY_METHODS: list[tuple[str, Any]] = [
    (PaymentMethod.CASH, gettext_lazy("Cash")),
    (PaymentMethod.CARD, gettext_lazy("Card")),
    (PaymentMethod.ONLINE, gettext_lazy("Online")),
    (PaymentMethod.ADVANCE, gettext_lazy("From advance")),
]
REFUND_METHODS: list[tuple[str, Any]] = [
    (PaymentMethod.CASH, gettext_lazy("Cash")),
    (PaymentMethod.CARD, gettext_lazy("Card")),
    (PaymentMethod.ADVANCE, gettext_lazy("To the patient's advance")),
]
TO_ADVANCE = "advance"

_INDEXED = re.compile(r"^(?P<name>\w+)\[(?P<index>\d+)\](?P<rest>.*)$")


def may_take_payment(user: Any) -> bool:
    return has_capability(user, Capability.TAKE_PAYMENT)


# ---- where the cashier works ---------------------------------------------------------------


def _branches(request: HttpRequest) -> list[Branch]:
    """The branches the cashier works in and may take payments at (403 if none)."""
    branches = [
        branch
        for branch in grid_branches(actor=request.user)
        if can_take_payment(request.user, branch)
    ]
    if not branches:
        raise PermissionDenied
    return branches


def _branch(request: HttpRequest) -> Branch:
    branches = _branches(request)
    raw = request.POST.get("branch") or request.GET.get("branch", "")
    if raw:
        for branch in branches:
            if str(branch.public_id) == raw:
                return branch
        raise Http404(_("Unknown branch “%(value)s”.") % {"value": raw})
    return branches[0]


def _patient(request: HttpRequest, branch: Branch) -> Person | None:
    raw = request.POST.get("patient") or request.GET.get("patient", "")
    if not raw:
        return None
    try:
        public_id = uuid.UUID(raw)
    except ValueError:
        raise Http404(_("Unknown patient “%(value)s”.") % {"value": raw}) from None
    patient = patient_for(request.user, public_id, branch.organization_id)
    if patient is None:
        raise Http404(_("Unknown patient “%(value)s”.") % {"value": raw})
    return patient


def _page_url(branch: Branch, patient: Person | None = None, **extra: str) -> str:
    query = {"branch": str(branch.public_id)}
    if patient is not None:
        query["patient"] = str(patient.public_id)
    query.update(extra)
    return f"{reverse('pos:page')}?{urlencode(query)}"


def _back(branch: Branch, patient: Person | None = None, **extra: str) -> HttpResponse:
    return HttpResponseRedirect(_page_url(branch, patient, **extra), status=303)


def _new_key() -> str:
    return f"pos-{uuid.uuid4().hex}"


# ---- the page ------------------------------------------------------------------------------


def _remap(field: str | None, index_map: Sequence[int]) -> str | None:
    """A service's ``parts[2].amount`` names the third part it was given; the form's row of
    that part may have another index (empty rows are not sent)."""
    if field is None:
        return None
    match = _INDEXED.match(field)
    if match is None:
        return field
    index = int(match["index"])
    if index >= len(index_map):
        return field
    return f"{match['name']}[{index_map[index]}]{match['rest']}"


def _pay_rows(values: QueryDict | None, errors: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for index, (method, label) in enumerate(PAY_METHODS):
        prefix = f"parts[{index}]"
        rows.append(
            {
                "index": index,
                "method": method,
                "label": label,
                "amount_name": f"{prefix}.amount",
                "rrn_name": f"{prefix}.card_rrn",
                "amount": values.get(f"{prefix}.amount", "") if values else "",
                "rrn": values.get(f"{prefix}.card_rrn", "") if values else "",
                "error": errors.get(f"{prefix}.amount") or errors.get(f"{prefix}.method"),
                "rrn_error": errors.get(f"{prefix}.card_rrn"),
            }
        )
    return rows


def _refund_context(
    row: selectors.RefundablePayment, values: QueryDict | None, errors: dict[str, str]
) -> dict[str, Any]:
    lines = []
    for index, refundable in enumerate(row.lines):
        prefix = f"lines[{index}]"
        ticked = values is not None and values.get(f"{prefix}.line") == str(refundable.line.pk)
        lines.append(
            {
                "index": index,
                "line": refundable.line,
                "left": refundable.left,
                "check_name": f"{prefix}.line",
                "amount_name": f"{prefix}.amount",
                "checked": ticked,
                "amount": values.get(f"{prefix}.amount", "") if values else f"{refundable.left}",
                "error": errors.get(f"{prefix}.amount") or errors.get(f"{prefix}.line"),
            }
        )
    parts = []
    for index, (method, label) in enumerate(REFUND_METHODS):
        prefix = f"parts[{index}]"
        parts.append(
            {
                "index": index,
                "method": method,
                "label": label,
                "left": row.methods.get(method),
                "amount_name": f"{prefix}.amount",
                "amount": values.get(f"{prefix}.amount", "") if values else "",
                "error": errors.get(f"{prefix}.amount") or errors.get(f"{prefix}.method"),
            }
        )
    return {
        "row": row,
        "lines": lines,
        "parts": parts,
        "reason": values.get("reason", "") if values else "",
        "errors": errors,
        "key": values.get("idempotency_key", "") if values else "",
    }


def _render(
    request: HttpRequest,
    branch: Branch,
    *,
    patient: Person | None = None,
    status: int = 200,
    shift_errors: tuple[str, dict[str, str]] | None = None,
    pay_errors: dict[str, str] | None = None,
    pay_values: QueryDict | None = None,
    visit_errors: dict[str, str] | None = None,
    refund_errors: tuple[str, dict[str, str]] | None = None,
    refund_values: QueryDict | None = None,
    receipt_errors: dict[str, str] | None = None,
    discount_errors: dict[str, str] | None = None,
) -> HttpResponse:
    actor = request.user
    panels = selectors.pos_registers(branch=branch)
    if shift_errors is not None:
        for panel in panels:
            if str(panel.register.public_id) == shift_errors[0]:
                panel.errors = shift_errors[1]
    shift = selectors.pos_shift_of(branch=branch, cashier=actor)
    receipts = selectors.pos_receipts(branch=branch)
    today = selectors.pos_today(branch)
    actions_day, actions_error = today, ""
    raw_day = request.GET.get("day", "").strip()
    if raw_day:
        try:
            actions_day = date_param(raw_day, field="day")
        except BillingError as error:
            actions_error = str(error.message)
    query = request.GET.get("q", "").strip()
    found = []
    if query:
        found = person_rows(hit.person for hit in person_search(actor=actor, query=query))
        found = [row for row in found if row.person.organization_id == branch.organization_id]
        found = found[:SEARCH_LIMIT]
    context: dict[str, Any] = {
        "branch": branch,
        "branches": _branches(request),
        "panels": panels,
        "shift": shift,
        "query": query,
        "found": found,
        "patient": patient,
        "receipts": receipts,
        "polling": _polling(receipts),
        "receipt_errors": receipt_errors or {},
        "actions": cashier_actions(actor=actor, cashier=actor, day=actions_day, zone=branch.zone),
        "actions_day": actions_day,
        "actions_today": actions_day == today,
        "actions_error": actions_error,
        "zone": branch.zone,
        "movement_kinds": CashMovementKind.choices,
    }
    if patient is not None:
        debt, advance = selectors.pos_account(patient=patient, branch=branch)
        invoices = selectors.pos_invoices_to_pay(patient=patient, branch=branch)
        chosen = (pay_values.get("invoice") if pay_values else None) or request.GET.get(
            "invoice", ""
        )
        if not chosen:
            chosen = str(invoices[0].invoice.public_id) if invoices else TO_ADVANCE
        errors = pay_errors or {}
        refundable = selectors.pos_refundable_payments(patient=patient, branch=branch)
        refund_open = refund_errors[0] if refund_errors else ""
        refunds = []
        for row in refundable:
            failed = str(row.payment.public_id) == refund_open
            refund = _refund_context(
                row,
                refund_values if failed else None,
                refund_errors[1] if failed and refund_errors else {},
            )
            refund["open"] = failed
            if not refund["key"]:
                refund["key"] = _new_key()
            refunds.append(refund)
        context.update(
            {
                "debt": debt,
                "advance": advance,
                "visits": selectors.pos_visits_to_invoice(patient=patient, branch=branch),
                "visit_errors": visit_errors or {},
                "invoices": invoices,
                "chosen_invoice": chosen,
                "to_advance": TO_ADVANCE,
                "pay_rows": _pay_rows(pay_values, errors),
                "pay_errors": errors,
                "pay_key": (pay_values.get("idempotency_key") if pay_values else None)
                or _new_key(),
                "cash_given": pay_values.get("cash_given", "") if pay_values else "",
                "refunds": refunds,
                "manual_rules": selectors.pos_manual_rules(branch=branch),
                "discount_errors": discount_errors or {},
            }
        )
    context["may_view_reports"] = can_view_financial_reports(actor)
    return render(request, "billing/pos/page.html", context, status=status)


@require_GET
@requires(lambda user: may_take_payment(user) or can_view_financial_reports(user))
def pos_page(request: HttpRequest) -> HttpResponse:
    """The cash desk: the shift panel, the patient found, what they owe and the receipts.

    An accountant, whose workplace this is without taking payments, goes to the reports.
    """
    if not may_take_payment(request.user):
        return HttpResponseRedirect(reverse("billing_reports:revenue"))
    branch = _branch(request)
    return _render(request, branch, patient=_patient(request, branch))


@require_GET
@requires(may_take_payment)
def receipts_fragment(request: HttpRequest) -> HttpResponse:
    """The receipts table alone: the page polls it while a receipt is not printed."""
    branch = _branch(request)
    receipts = selectors.pos_receipts(branch=branch)
    context = {
        "branch": branch,
        "receipts": receipts,
        "polling": _polling(receipts),
        "zone": branch.zone,
        "receipt_errors": {},
    }
    return render(request, "billing/pos/_receipts.html", context)


# ---- shifts --------------------------------------------------------------------------------


def _register_or_404(request: HttpRequest, branch: Branch) -> Any:
    raw = request.POST.get("register", "")
    register = selectors.pos_register_get(branch=branch, public_id=raw)
    if register is None:
        raise Http404(_("Unknown cash register “%(value)s”.") % {"value": raw})
    return register


def _shift_or_404(request: HttpRequest, branch: Branch) -> Any:
    raw = request.POST.get("shift", "")
    shift = selectors.pos_shift_get(branch=branch, public_id=raw)
    if shift is None:
        raise Http404(_("Unknown cash shift “%(value)s”.") % {"value": raw})
    return shift


def _shift_refused(
    request: HttpRequest, branch: Branch, register: Any, error: BillingError
) -> HttpResponse:
    return _render(
        request,
        branch,
        patient=_patient(request, branch),
        status=400,
        shift_errors=(str(register.public_id), {error.field or "shift": str(error.message)}),
    )


@require_POST
@requires(may_take_payment)
def shift_open_view(request: HttpRequest) -> HttpResponse:
    branch = _branch(request)
    register = _register_or_404(request, branch)
    raw = request.POST.get("opening_cash", "").strip().replace(",", ".") or "0"
    try:
        try:
            opening = Decimal(raw)
        except ArithmeticError:
            raise BillingError(
                "invalid_amount",
                _("“%(value)s” is not an amount of money.") % {"value": raw},
                field="opening_cash",
            ) from None
        shift_open(actor=request.user, register=register, opening_cash=opening)
    except BillingError as error:
        return _shift_refused(request, branch, register, error)
    messages.success(request, _("The shift is open at %(value)s.") % {"value": register.name})
    return _back(branch, _patient(request, branch))


@require_POST
@requires(may_take_payment)
def shift_close_view(request: HttpRequest) -> HttpResponse:
    branch = _branch(request)
    shift = _shift_or_404(request, branch)
    try:
        shift_close(actor=request.user, shift=shift)
    except BillingError as error:
        return _shift_refused(request, branch, shift.register, error)
    messages.success(
        request,
        _("The shift is closed; the register prints the Z report and the totals are compared."),
    )
    return _back(branch, _patient(request, branch))


@require_POST
@requires(may_take_payment)
def shift_report_x_view(request: HttpRequest) -> HttpResponse:
    branch = _branch(request)
    shift = _shift_or_404(request, branch)
    try:
        shift_report_x(actor=request.user, shift=shift)
    except BillingError as error:
        return _shift_refused(request, branch, shift.register, error)
    messages.success(request, _("The X report is sent to the register."))
    return _back(branch, _patient(request, branch))


@require_POST
@requires(may_take_payment)
def cash_move_view(request: HttpRequest) -> HttpResponse:
    branch = _branch(request)
    shift = _shift_or_404(request, branch)
    try:
        movement = cash_move(
            actor=request.user,
            shift=shift,
            kind=request.POST.get("kind", ""),
            amount=money(request.POST.get("amount", "").strip().replace(",", "."), field="amount"),
            reason=request.POST.get("reason", ""),
        )
    except BillingError as error:
        return _shift_refused(request, branch, shift.register, error)
    messages.success(
        request,
        _("%(kind)s of %(amount)s is recorded.")
        % {"kind": movement.get_kind_display(), "amount": movement.amount},
    )
    return _back(branch, _patient(request, branch))


# ---- invoicing and payments ----------------------------------------------------------------


def _require_patient(request: HttpRequest, branch: Branch) -> Person:
    patient = _patient(request, branch)
    if patient is None:
        raise Http404(_("Choose the patient first."))
    return patient


@require_POST
@requires(may_take_payment)
def invoice_visits_view(request: HttpRequest) -> HttpResponse:
    """A draft invoice of the ticked visits' services not yet invoiced."""
    branch = _branch(request)
    patient = _require_patient(request, branch)
    wanted = request.POST.getlist("appointment")
    ids = []
    for raw in wanted:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            continue
    appointments = list(
        Appointment.objects.select_related("status", "branch", "patient", "doctor")
        .filter(public_id__in=ids, patient=patient, branch=branch)
        .order_by("starts_at")
    )
    try:
        invoice = invoice_from_appointments(actor=request.user, appointments=appointments)
    except BillingError as error:
        return _render(
            request,
            branch,
            patient=patient,
            status=400,
            visit_errors={error.field or "appointments": str(error.message)},
        )
    messages.success(
        request,
        _("Invoice %(value)s for %(total)s is ready to pay.")
        % {"value": invoice.number, "total": invoice.total},
    )
    return _back(branch, patient, invoice=str(invoice.public_id))


@require_POST
@requires(may_take_payment)
def discount_view(request: HttpRequest) -> HttpResponse:
    """Apply a manual discount or markup rule to a line of a draft invoice (or remove it)."""
    branch = _branch(request)
    patient = _require_patient(request, branch)
    invoice = selectors.pos_invoice_get(
        patient=patient, branch=branch, public_id=request.POST.get("invoice", "")
    )
    if invoice is None:
        raise Http404(_("Unknown invoice."))
    line = invoice.lines.filter(position=request.POST.get("position") or 0).first()
    if line is None:
        raise Http404(_("Unknown invoice line."))
    rules = {str(rule.public_id): rule for rule in selectors.pos_manual_rules(branch=branch)}
    raw_rule = request.POST.get("rule", "")
    raw_value = request.POST.get("value", "").strip().replace(",", ".")
    field_key = f"{invoice.public_id}:{line.position}"
    try:
        if raw_rule and raw_rule not in rules:
            raise BillingError(
                "discount_not_applicable",
                _("Unknown discount rule “%(value)s”.") % {"value": raw_rule},
                field="rule",
            )
        value = None
        if raw_value:
            try:
                value = Decimal(raw_value)
            except InvalidOperation as exc:
                raise BillingError(
                    "invalid_amount",
                    _("“%(value)s” is not a number.") % {"value": raw_value},
                    field="value",
                ) from exc
        invoice_line_adjust(actor=request.user, line=line, rule=rules.get(raw_rule), value=value)
    except BillingError as error:
        return _render(
            request,
            branch,
            patient=patient,
            status=400,
            discount_errors={field_key: str(error.message)},
        )
    return _back(branch, patient, invoice=str(invoice.public_id))


def _parts(
    data: QueryDict, methods: Sequence[tuple[str, Any]], *, with_rrn: bool, rows: list[int]
) -> list[PartInput]:
    """The non-empty method rows of a form as the service's parts; ``rows`` receives each
    part's row in the form (filled as it goes, so a refusal can be placed by its row)."""
    parts: list[PartInput] = []
    for index, (method, _label) in enumerate(methods):
        raw = data.get(f"parts[{index}].amount", "").strip().replace(",", ".")
        if not raw:
            continue
        rows.append(index)
        # Named by its place among the parts sent, as the service names them (see _remap).
        amount = money(raw, field=f"parts[{len(parts)}].amount")
        rrn = data.get(f"parts[{index}].card_rrn", "").strip() if with_rrn else ""
        parts.append(PartInput(method, amount, card_rrn=rrn))
    return parts


@require_POST
@requires(may_take_payment)
def pay_view(request: HttpRequest) -> HttpResponse:
    """Post a payment for the chosen invoice (a draft is posted first, in the same transaction)
    or into the patient's advance."""
    branch = _branch(request)
    patient = _require_patient(request, branch)
    key = request.POST.get("idempotency_key", "").strip()[:100]
    if selectors.pos_payment_by_key(key) is not None:
        messages.info(request, _("This payment is already posted."))
        return _back(branch, patient)
    shift = None
    raw_shift = request.POST.get("shift", "")
    if raw_shift:
        shift = _shift_or_404(request, branch)
    target = request.POST.get("invoice", "")
    rows: list[int] = []
    try:
        parts = _parts(request.POST, PAY_METHODS, with_rrn=True, rows=rows)
        with transaction.atomic():
            invoice = None
            if target != TO_ADVANCE:
                invoice = selectors.pos_invoice_get(
                    patient=patient, branch=branch, public_id=target
                )
                if invoice is None:
                    raise BillingError(
                        "invoice_not_found",
                        _("Choose the invoice to pay, or pay into the advance."),
                        field="invoice",
                    )
                if invoice.state == InvoiceState.DRAFT:
                    invoice = invoice_post(actor=request.user, invoice=invoice)
            payment = payment_post(
                actor=request.user,
                branch=branch,
                shift=shift,
                parts=parts,
                patient=patient,
                invoice=invoice,
                idempotency_key=key or None,
            )
    except BillingError as error:
        field = _remap(error.field, rows) or "parts"
        return _render(
            request,
            branch,
            patient=patient,
            status=400,
            pay_errors={field: str(error.message)},
            pay_values=request.POST,
        )
    messages.success(
        request,
        _("Payment %(value)s of %(total)s is posted; the receipt is on its way to the register.")
        % {"value": payment.number, "total": payment.total},
    )
    return _back(branch, patient)


@require_POST
@requires(may_take_payment)
def refund_view(request: HttpRequest) -> HttpResponse:
    """Give money back against a payment: for the ticked lines and/or from the advance."""
    branch = _branch(request)
    patient = _require_patient(request, branch)
    key = request.POST.get("idempotency_key", "").strip()[:100]
    if selectors.pos_payment_by_key(key) is not None:
        messages.info(request, _("This refund is already posted."))
        return _back(branch, patient)
    raw_payment = request.POST.get("payment", "")
    payment = selectors.pos_payment_get(branch=branch, public_id=raw_payment)
    if payment is None or payment.patient_id != patient.pk:
        raise Http404(_("Unknown payment “%(value)s”.") % {"value": raw_payment})
    shift = selectors.pos_shift_of(branch=branch, cashier=request.user)
    if request.POST.get("shift"):
        shift = _shift_or_404(request, branch)
    refundable = {
        row.payment.pk: row
        for row in selectors.pos_refundable_payments(patient=patient, branch=branch)
    }
    row = refundable.get(payment.pk)
    part_rows: list[int] = []
    line_rows: list[int] = []
    try:
        parts = _parts(request.POST, REFUND_METHODS, with_rrn=False, rows=part_rows)
        lines: list[tuple[Any, Decimal]] = []
        for index, refundable_line in enumerate(row.lines if row is not None else []):
            if request.POST.get(f"lines[{index}].line") != str(refundable_line.line.pk):
                continue
            raw = request.POST.get(f"lines[{index}].amount", "").strip().replace(",", ".")
            line_rows.append(index)
            amount = money(raw, field=f"lines[{len(lines)}].amount")
            lines.append((refundable_line.line, amount))
        refund = refund_document_post(
            actor=request.user,
            payment=payment,
            shift=shift,
            parts=parts,
            lines=lines,
            reason=request.POST.get("reason", ""),
            idempotency_key=key or None,
        )
    except BillingError as error:
        field = error.field or "parts"
        field = _remap(field, line_rows if field.startswith("lines[") else part_rows) or field
        return _render(
            request,
            branch,
            patient=patient,
            status=400,
            refund_errors=(str(payment.public_id), {field: str(error.message)}),
            refund_values=request.POST,
        )
    messages.success(
        request,
        _("Refund %(value)s of %(total)s is posted; the return receipt is on its way.")
        % {"value": refund.number, "total": refund.total},
    )
    return _back(branch, patient)


# ---- receipts ------------------------------------------------------------------------------


@require_POST
@requires(may_take_payment)
def receipt_retry_view(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    branch = _branch(request)
    receipt = selectors.pos_receipt_get(branch=branch, public_id=public_id)
    if receipt is None:
        raise Http404(_("Unknown receipt “%(value)s”.") % {"value": public_id})
    try:
        receipt_retry(actor=request.user, receipt=receipt)
    except BillingError as error:
        return _render(
            request,
            branch,
            patient=_patient(request, branch),
            status=400,
            receipt_errors={str(receipt.public_id): str(error.message)},
        )
    messages.success(request, _("The receipt is sent to the register again."))
    return _back(branch, _patient(request, branch))


def _polling(receipts: Sequence[Any]) -> bool:
    """Poll the receipts while one of them is still on its way to the register."""
    return any(receipt.state != ReceiptState.PRINTED for receipt in receipts)
