"""Invoices, payments and refunds: every write of money goes through these functions.

Rules kept here, in one place:

* A draft invoice is priced when a line is added (``billing.selectors.price_for``); a service
  without a price for the payer, one that is not sold, or one its lab cannot perform now is
  refused with a message naming it, and nothing is added.
* Posting freezes the invoice (a database trigger keeps it so) and adds a self-pay invoice to
  the patient's debt. A guarantee letter's limit is checked under a lock on the letter.
* A payment or refund is written once, with its parts and allocations, in one transaction that
  also updates the patient's balance (locked first, so concurrent postings for one patient queue)
  and queues its one fiscal receipt through the outbox (``billing.fiscal``).
* A refund gives back only what was paid: per invoice line, per payment method of the payment it
  refunds, and no more advance than the patient has.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.db.models import (
    Case,
    DecimalField,
    F,
    Max,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.models import Branch
from clinic.core.sql import insert_returning_id, saved_as
from clinic.outbox.services import outbox_relay_on_commit
from patients.models import Person
from scheduling.models import Appointment, AppointmentStatus, PayerKind, Service

from . import policies
from .errors import BillingError
from .models import (
    AdjustmentKind,
    AdjustmentMethod,
    CashRegister,
    CashShift,
    Contract,
    DiscountRule,
    GuaranteeLetter,
    Invoice,
    InvoiceLine,
    InvoiceState,
    PatientAccount,
    Payment,
    PaymentAllocation,
    PaymentKind,
    PaymentMethod,
    PaymentPart,
    ServiceBilling,
    ShiftState,
    TaxMode,
)
from .selectors import price_for
from .slips import slip_queue

CENT = Decimal("0.01")
ZERO = Decimal("0")


def money(value: Any, *, field: str) -> Decimal:
    """A positive amount with at most two decimals, or a refusal naming the field and value."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise BillingError(
            "invalid_amount",
            _("“%(value)s” is not an amount of money.") % {"value": value},
            field=field,
        ) from exc
    if not amount.is_finite() or amount != amount.quantize(CENT):
        raise BillingError(
            "invalid_amount",
            _("“%(value)s” is not an amount of money with at most two decimals.")
            % {"value": value},
            field=field,
        )
    if amount <= 0:
        raise BillingError(
            "amount_not_positive",
            _("The amount must be greater than zero, not %(value)s.") % {"value": amount},
            field=field,
        )
    return amount


def _today(branch: Branch) -> datetime.date:
    return timezone.localtime(timezone.now(), branch.zone).date()


def _require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied


# --- invoices ------------------------------------------------------------------------------


def invoice_create(
    *,
    actor: Any,
    branch: Branch,
    patient: Person | None = None,
    payer_kind: str = PayerKind.SELF_PAY,
    contract: Contract | None = None,
    guarantee_letter: GuaranteeLetter | None = None,
    note: str = "",
) -> Invoice:
    """A new draft invoice; without a patient it is an anonymous order."""
    _require(policies.can_prepare_invoices(actor, branch))
    _patient_check(patient, branch)
    day = _today(branch)
    if contract is not None:
        _contract_check(contract, branch=branch, on_date=day)
        payer_kind = contract.payer_kind
    elif payer_kind != PayerKind.SELF_PAY:
        raise BillingError(
            "contract_required",
            _("A visit paid by “%(value)s” needs the payer's contract.")
            % {"value": PayerKind(payer_kind).label},
            field="contract",
        )
    if guarantee_letter is not None:
        if contract is None or guarantee_letter.contract_id != contract.pk:
            raise BillingError(
                "guarantee_letter_mismatch",
                _("The guarantee letter %(value)s is not under this contract.")
                % {"value": guarantee_letter.number},
                field="guarantee_letter",
            )
        if patient is None or guarantee_letter.patient_id != patient.pk:
            raise BillingError(
                "guarantee_letter_mismatch",
                _("The guarantee letter %(value)s is for another patient.")
                % {"value": guarantee_letter.number},
                field="guarantee_letter",
            )
    return Invoice.objects.create(
        organization_id=branch.organization_id,
        branch=branch,
        patient=patient,
        payer_kind=payer_kind,
        contract=contract,
        guarantee_letter=guarantee_letter,
        note=note,
        created_by=actor,
    )


def _patient_check(patient: Person | None, branch: Branch) -> None:
    if patient is not None and patient.organization_id != branch.organization_id:
        raise BillingError(
            "patient_not_found",
            _("The patient %(value)s is registered with another organization.")
            % {"value": patient.full_name},
            field="patient",
        )


def _contract_check(contract: Contract, *, branch: Branch, on_date: datetime.date) -> None:
    if contract.organization_id != branch.organization_id:
        raise BillingError(
            "contract_not_found",
            _("The contract %(value)s belongs to another organization.")
            % {"value": contract.number},
            field="contract",
        )
    if not contract.is_valid_on(on_date):
        raise BillingError(
            "contract_not_valid",
            _("The contract %(value)s is not valid on %(date)s.")
            % {"value": contract.number, "date": on_date.isoformat()},
            field="contract",
        )


def service_sellable_check(service: Service) -> ServiceBilling | None:
    """Refuse a service that is not sold or that its lab cannot perform now."""
    settings = ServiceBilling.objects.filter(service=service).first()
    if not service.is_active or (settings is not None and not settings.is_sellable):
        raise BillingError(
            "service_not_sold",
            _("The service %(value)s is not sold.") % {"value": f"{service.code} {service.name}"},
            field="service",
        )
    if settings is not None and settings.lab_unavailable:
        message = _("The lab cannot perform %(value)s at the moment.") % {
            "value": f"{service.code} {service.name}"
        }
        if settings.lab_unavailable_note:
            message = f"{message} {settings.lab_unavailable_note}"
        raise BillingError("service_unavailable_at_lab", message, field="service")
    return settings


def _draft_locked(invoice: Invoice) -> Invoice:
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.state != InvoiceState.DRAFT:
        raise BillingError(
            "invoice_not_draft",
            _("Invoice %(value)s is %(state)s and cannot be changed.")
            % {"value": locked.number, "state": locked.get_state_display()},
            field="invoice",
        )
    return locked


@transaction.atomic
def invoice_line_add(
    *,
    actor: Any,
    invoice: Invoice,
    service: Service,
    quantity: int = 1,
    appointment: Appointment | None = None,
    performer: Any = None,
) -> InvoiceLine:
    """Add a priced line to a draft invoice (automatic discount rules applied)."""
    _require(policies.can_prepare_invoices(actor, invoice.branch))
    locked = _draft_locked(invoice)
    if service.organization_id != locked.organization_id:
        raise BillingError(
            "service_not_found",
            _("The service %(value)s belongs to another organization.") % {"value": service.code},
            field="service",
        )
    if quantity < 1:
        raise BillingError(
            "invalid_quantity",
            _("The quantity must be at least 1, not %(value)s.") % {"value": quantity},
            field="quantity",
        )
    settings = service_sellable_check(service)
    day = _today(locked.branch)
    contract = locked.contract
    if contract is not None:
        _contract_check(contract, branch=locked.branch, on_date=day)
    price = price_for(
        service=service,
        branch=locked.branch,
        on_date=day,
        payer_kind=locked.payer_kind,
        contract=contract,
    )
    if price is None:
        raise BillingError(
            "price_missing",
            _("There is no price of %(value)s for the payer “%(payer)s”.")
            % {
                "value": f"{service.code} {service.name}",
                "payer": contract.number if contract else PayerKind(locked.payer_kind).label,
            },
            field="service",
        )
    position = (locked.lines.aggregate(last=Max("position"))["last"] or 0) + 1
    line = InvoiceLine(
        invoice=locked,
        position=position,
        service=service,
        service_code=service.code,
        service_name=service.name,
        appointment=appointment,
        performer=performer if performer is not None else getattr(appointment, "doctor", None),
        quantity=quantity,
        unit_price=price.amount,
        tax_mode=settings.tax_mode if settings is not None else TaxMode.NO_VAT,
    )
    rule = _automatic_rule(locked, service, settings, day)
    line.adjustment_rule = rule
    line.adjustment = _adjustment(line, rule, rule.value) if rule is not None else ZERO
    line.amount = line.unit_price * line.quantity + line.adjustment
    line.save()
    _totals_refresh(locked)
    return line


def _automatic_rule(
    invoice: Invoice,
    service: Service,
    settings: ServiceBilling | None,
    day: datetime.date,
) -> DiscountRule | None:
    """The most specific automatic rule for the line: the contract's before a general one, a
    service's before its group's before one for every service."""
    group_id = settings.group_id if settings is not None else None
    candidates = [
        rule
        for rule in DiscountRule.objects.filter(
            Q(contract__isnull=True) | Q(contract=invoice.contract),
            Q(service__isnull=True) | Q(service=service),
            Q(group__isnull=True) | Q(group_id=group_id),
            organization_id=invoice.organization_id,
            is_automatic=True,
            is_active=True,
        )
        if rule.is_valid_on(day)
    ]
    if not candidates:
        return None
    return max(
        candidates,
        key=lambda rule: (
            rule.contract_id is not None,
            rule.service_id is not None,
            rule.group_id is not None,
            rule.pk,
        ),
    )


def _adjustment(line: InvoiceLine, rule: DiscountRule, value: Decimal) -> Decimal:
    """The signed adjustment of a rule on a line (a discount never makes a line negative)."""
    base = line.unit_price * line.quantity
    if rule.method == AdjustmentMethod.PERCENT:
        size = (base * value / Decimal(100)).quantize(CENT, rounding=ROUND_HALF_UP)
    else:
        size = value * line.quantity
    if rule.kind == AdjustmentKind.DISCOUNT:
        return -min(size, base)
    return size


@transaction.atomic
def invoice_line_adjust(
    *, actor: Any, line: InvoiceLine, rule: DiscountRule | None, value: Decimal | None = None
) -> InvoiceLine:
    """Apply a manual discount or markup rule to a draft line (None removes it).

    Staff may set a value up to the rule's limit; without a limit the rule's own value applies.
    """
    _require(policies.can_apply_discount(actor))
    locked = _draft_locked(line.invoice)
    line = InvoiceLine.objects.get(pk=line.pk, invoice=locked)
    if rule is None:
        line.adjustment_rule = None
        line.adjustment = ZERO
    else:
        day = _today(locked.branch)
        if (
            rule.organization_id != locked.organization_id
            or rule.is_automatic
            or not rule.is_valid_on(day)
            or (rule.contract_id is not None and rule.contract_id != locked.contract_id)
            or (rule.service_id is not None and rule.service_id != line.service_id)
        ):
            raise BillingError(
                "discount_not_applicable",
                _("The rule “%(value)s” cannot be applied to %(service)s.")
                % {"value": rule.name, "service": line.service_code},
                field="rule",
            )
        chosen = rule.value if value is None else Decimal(value)
        limit = rule.max_value if rule.max_value is not None else rule.value
        if chosen < 0 or chosen > limit:
            raise BillingError(
                "discount_over_limit",
                _("%(value)s is over the limit %(limit)s of the rule “%(rule)s”.")
                % {"value": chosen, "limit": limit, "rule": rule.name},
                field="value",
            )
        line.adjustment_rule = rule
        line.adjustment = _adjustment(line, rule, chosen)
    line.amount = line.unit_price * line.quantity + line.adjustment
    line.save(update_fields=["adjustment_rule", "adjustment", "amount"])
    _totals_refresh(locked)
    return line


@transaction.atomic
def invoice_line_remove(*, actor: Any, line: InvoiceLine) -> None:
    _require(policies.can_prepare_invoices(actor, line.invoice.branch))
    locked = _draft_locked(line.invoice)
    InvoiceLine.objects.filter(pk=line.pk, invoice=locked).delete()
    _totals_refresh(locked)


def _totals_refresh(invoice: Invoice) -> None:
    sums = invoice.lines.aggregate(total=Sum("amount"), adjustments=Sum("adjustment"))
    invoice.total = sums["total"] or ZERO
    invoice.discount_total = -(sums["adjustments"] or ZERO)
    invoice.save(update_fields=["total", "discount_total", "updated_at"])


def invoiced_services(appointments: Iterable[Appointment]) -> set[tuple[int, int]]:
    """(appointment id, service id) pairs already on an invoice that is not cancelled."""
    return set(
        InvoiceLine.objects.filter(appointment__in=list(appointments))
        .exclude(invoice__state=InvoiceState.CANCELLED)
        .values_list("appointment_id", "service_id")
    )


@transaction.atomic
def invoice_from_appointments(
    *,
    actor: Any,
    appointments: Sequence[Appointment],
    contract: Contract | None = None,
    guarantee_letter: GuaranteeLetter | None = None,
) -> Invoice:
    """A draft invoice of the services of one patient's appointments not yet invoiced.

    The appointments are one visit or all visits in a period (see ``appointments_to_invoice``);
    cancelled and no-show visits are skipped; each line records the visit's doctor.
    """
    # Read again: the caller's objects may be stale (a visit cancelled since it was listed).
    current = Appointment.objects.select_related("status", "branch", "patient", "doctor").filter(
        pk__in=[appointment.pk for appointment in appointments]
    )
    visits = [
        appointment
        for appointment in current.order_by("starts_at")
        if appointment.status.code not in (AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW)
    ]
    if not visits:
        raise BillingError(
            "nothing_to_invoice",
            _("There are no visits to invoice."),
            field="appointments",
        )
    patients = {appointment.patient_id for appointment in visits}
    branches = {appointment.branch_id for appointment in visits}
    if len(patients) != 1 or None in patients or len(branches) != 1:
        raise BillingError(
            "appointments_mixed",
            _("One invoice is for one registered patient's visits in one branch."),
            field="appointments",
        )
    first = visits[0]
    invoice = invoice_create(
        actor=actor,
        branch=first.branch,
        patient=first.patient,
        payer_kind=first.payer_kind,
        contract=contract,
        guarantee_letter=guarantee_letter,
    )
    done = invoiced_services(visits)
    added = 0
    for appointment in visits:
        for item in appointment.lines.select_related("service").order_by("pk"):
            if (appointment.pk, item.service_id) in done:
                continue
            invoice_line_add(
                actor=actor,
                invoice=invoice,
                service=item.service,
                quantity=item.quantity,
                appointment=appointment,
            )
            added += 1
    if not added:
        raise BillingError(
            "nothing_to_invoice",
            _("Every service of these visits is already invoiced."),
            field="appointments",
        )
    invoice.refresh_from_db()
    return invoice


def appointments_to_invoice(
    *, patient: Person, branch: Branch, start: datetime.date, end: datetime.date
) -> list[Appointment]:
    """The patient's visits in the branch from ``start`` to ``end`` (local dates, inclusive)."""
    zone = branch.zone
    since = datetime.datetime.combine(start, datetime.time.min, tzinfo=zone)
    until = datetime.datetime.combine(end + datetime.timedelta(days=1), datetime.time.min, zone)
    return list(
        Appointment.objects.select_related("status", "branch", "patient", "doctor")
        .filter(patient=patient, branch=branch, starts_at__gte=since, starts_at__lt=until)
        .order_by("starts_at")
    )


@transaction.atomic
def invoice_post(*, actor: Any, invoice: Invoice) -> Invoice:
    """Freeze a draft invoice; a self-pay invoice of a patient becomes the patient's debt."""
    _require(policies.can_prepare_invoices(actor, invoice.branch))
    locked = _draft_locked(invoice)
    if not locked.lines.exists():
        raise BillingError(
            "invoice_empty",
            _("Invoice %(value)s has no lines.") % {"value": locked.number},
            field="invoice",
        )
    day = _today(locked.branch)
    if locked.contract is not None:
        _contract_check(locked.contract, branch=locked.branch, on_date=day)
        if locked.contract.requires_guarantee_letter and locked.guarantee_letter is None:
            raise BillingError(
                "guarantee_letter_required",
                _("The contract %(value)s needs the insurer's guarantee letter.")
                % {"value": locked.contract.number},
                field="guarantee_letter",
            )
    if locked.guarantee_letter is not None:
        _guarantee_check(locked, day)
    locked.state = InvoiceState.POSTED
    locked.posted_at = timezone.now()
    locked.posted_by = actor
    locked.save(update_fields=["state", "posted_at", "posted_by", "updated_at"])
    if _owed_by_patient(locked):
        account = account_locked(locked.organization_id, locked.patient_id)
        account.debt += locked.total
        account.save(update_fields=["debt", "updated_at"])
    return locked


def _owed_by_patient(invoice: Invoice) -> bool:
    return invoice.patient_id is not None and invoice.payer_kind == PayerKind.SELF_PAY


def _guarantee_check(invoice: Invoice, day: datetime.date) -> None:
    letter = GuaranteeLetter.objects.select_for_update().get(invoices=invoice)
    if not letter.is_valid_on(day):
        raise BillingError(
            "guarantee_letter_not_valid",
            _("The guarantee letter %(value)s is not valid on %(date)s.")
            % {"value": letter.number, "date": day.isoformat()},
            field="guarantee_letter",
        )
    allowed = set(letter.services.values_list("pk", flat=True))
    if allowed:
        outside = invoice.lines.exclude(service_id__in=allowed).first()
        if outside is not None:
            raise BillingError(
                "guarantee_letter_service",
                _("The guarantee letter %(value)s does not cover %(service)s.")
                % {"value": letter.number, "service": outside.service_code},
                field="guarantee_letter",
            )
    used = (
        Invoice.objects.filter(guarantee_letter=letter, state=InvoiceState.POSTED).aggregate(
            used=Sum("total")
        )["used"]
        or ZERO
    )
    if used + invoice.total > letter.limit_amount:
        raise BillingError(
            "guarantee_limit_exceeded",
            _(
                "The guarantee letter %(value)s covers %(limit)s; %(used)s is used and this "
                "invoice needs %(total)s."
            )
            % {
                "value": letter.number,
                "limit": letter.limit_amount,
                "used": used,
                "total": invoice.total,
            },
            field="guarantee_letter",
        )


@transaction.atomic
def invoice_cancel(*, actor: Any, invoice: Invoice) -> Invoice:
    """Cancel an invoice nothing is paid on (a draft, or a posted one issued by mistake)."""
    _require(policies.can_prepare_invoices(actor, invoice.branch))
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if locked.state == InvoiceState.CANCELLED:
        return locked
    if PaymentAllocation.objects.filter(line__invoice=locked).exists():
        raise BillingError(
            "invoice_paid",
            _("Invoice %(value)s has payments: refund them first.") % {"value": locked.number},
            field="invoice",
        )
    was_posted = locked.state == InvoiceState.POSTED
    locked.state = InvoiceState.CANCELLED
    locked.cancelled_at = timezone.now()
    if locked.posted_at is None:
        locked.posted_at = locked.cancelled_at
    locked.save(update_fields=["state", "cancelled_at", "posted_at", "updated_at"])
    if was_posted and _owed_by_patient(locked):
        account = account_locked(locked.organization_id, locked.patient_id)
        account.debt -= locked.total
        account.save(update_fields=["debt", "updated_at"])
    return locked


@transaction.atomic
def invoice_personalise(*, actor: Any, invoice: Invoice, patient: Person) -> Invoice:
    """Give an anonymous order its patient; what is still unpaid becomes the patient's debt."""
    _require(policies.can_prepare_invoices(actor, invoice.branch))
    locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
    _patient_check(patient, locked.branch)
    if locked.patient_id is not None:
        raise BillingError(
            "invoice_has_patient",
            _("Invoice %(value)s already has a patient.") % {"value": locked.number},
            field="patient",
        )
    locked.patient = patient
    locked.save(update_fields=["patient", "updated_at"])
    if locked.state == InvoiceState.POSTED and _owed_by_patient(locked):
        account = account_locked(locked.organization_id, patient.pk)
        account.debt += invoice_outstanding(locked)
        account.save(update_fields=["debt", "updated_at"])
    return locked


# --- balances ------------------------------------------------------------------------------


def account_locked(organization_id: int, patient_id: int | None) -> PatientAccount:
    """The patient's balance row, created if missing, locked until the transaction ends."""
    assert patient_id is not None
    account = (
        PatientAccount.objects.select_for_update()
        .filter(organization_id=organization_id, patient_id=patient_id)
        .first()
    )
    if account is not None:
        return account
    try:
        with transaction.atomic():
            PatientAccount.objects.create(organization_id=organization_id, patient_id=patient_id)
    except IntegrityError:
        pass  # created by a concurrent posting; lock that one
    return PatientAccount.objects.select_for_update().get(
        organization_id=organization_id, patient_id=patient_id
    )


def _settled() -> Sum:
    """What allocations settle of a line: payments, less the refunds that corrected one.

    A refund for a service not rendered takes the part off both what is owed and what is paid,
    so it leaves the line's gap as it was; a correction's refund gives the money back for a
    rendered service, which is owed again. A line lacks: amount − payments + corrections.
    """
    return Sum(
        Case(
            When(payment__kind=PaymentKind.PAYMENT, then=F("amount")),
            When(payment__is_correction=True, then=-F("amount")),
            default=Value(ZERO),
            output_field=DecimalField(max_digits=12, decimal_places=2),
        )
    )


def line_outstanding(lines: Sequence[InvoiceLine]) -> dict[int, Decimal]:
    """What each line still lacks (see ``_settled``), in one query."""
    covered: dict[int, Decimal] = dict(
        PaymentAllocation.objects.filter(line__in=[line.pk for line in lines])
        .values_list("line_id")
        .annotate(settled=_settled())
        .values_list("line_id", "settled")
    )
    return {line.pk: line.amount - covered.get(line.pk, ZERO) for line in lines}


def lines_with_outstanding(invoice: Invoice) -> tuple[list[InvoiceLine], dict[int, Decimal]]:
    """The invoice's lines in order and what each lacks, read together in one query."""
    settled = (
        PaymentAllocation.objects.filter(line=OuterRef("pk"))
        .values("line")
        .annotate(settled=_settled())
        .values("settled")
    )
    money: DecimalField[Decimal, Decimal] = DecimalField(max_digits=12, decimal_places=2)
    annotated = invoice.lines.order_by("position").annotate(
        settled=Coalesce(Subquery(settled), Value(ZERO), output_field=money)
    )
    lines: list[InvoiceLine] = []
    outstanding: dict[int, Decimal] = {}
    for line in annotated:
        lines.append(line)
        outstanding[line.pk] = line.amount - line.settled
    return lines, outstanding


def invoice_outstanding(invoice: Invoice) -> Decimal:
    _lines, outstanding = lines_with_outstanding(invoice)
    return sum(outstanding.values(), ZERO)


# --- payments and refunds ------------------------------------------------------------------


@dataclass(frozen=True)
class PartInput:
    """One method of a payment as the cashier entered it."""

    method: str
    amount: Decimal
    card_rrn: str = ""
    card_auth_code: str = ""


def _parts_checked(parts: Sequence[PartInput]) -> list[PartInput]:
    if not parts:
        raise BillingError("no_payment_parts", _("Enter how the money is paid."), field="parts")
    checked = []
    for index, part in enumerate(parts):
        if part.method not in PaymentMethod.values:
            raise BillingError(
                "invalid_method",
                _("“%(value)s” is not a payment method.") % {"value": part.method},
                field=f"parts[{index}].method",
            )
        amount = money(part.amount, field=f"parts[{index}].amount")
        checked.append(
            PartInput(part.method, amount, part.card_rrn.strip(), part.card_auth_code.strip())
        )
    return checked


def _shift_checked(shift: CashShift | None, parts: Sequence[PartInput], branch: Branch) -> None:
    at_desk = [part for part in parts if part.method in (PaymentMethod.CASH, PaymentMethod.CARD)]
    if shift is None:
        if at_desk:
            raise BillingError(
                "shift_required",
                _("Open a cash shift to take cash or card payments."),
                field="shift",
            )
        return
    # FOR SHARE: postings at one register do not wait for each other, but closing the shift
    # (FOR UPDATE) waits for them, and a posting after the close sees it closed. The register
    # comes in the same statement: the receipt needs it.
    register = next(
        iter(
            CashRegister.objects.raw(
                "SELECT register.*, shift.state AS shift_state, shift.opened_at AS shift_opened_at"
                " FROM billing_cashshift shift"
                " JOIN billing_cashregister register ON register.id = shift.register_id"
                " WHERE shift.id = %s FOR SHARE OF shift",
                [shift.pk],
            )
        )
    )
    state, opened_at = register.shift_state, register.shift_opened_at  # type: ignore[attr-defined]
    if state != ShiftState.OPEN:
        raise BillingError(
            "shift_closed",
            _("The cash shift of %(value)s is closed.")
            % {"value": opened_at.astimezone(branch.zone).strftime("%d.%m.%Y %H:%M")},
            field="shift",
        )
    if register.branch_id != branch.pk:
        raise BillingError(
            "shift_other_branch",
            _("The cash register %(value)s is in another branch.") % {"value": register.name},
            field="shift",
        )
    shift.register = register  # the receipt's register, without another query


class _AlreadyPosted(Exception):
    """A racing request with the same idempotency key posted the document first."""

    def __init__(self, payment: Payment) -> None:
        super().__init__(payment.public_id)
        self.payment = payment


def _existing(idempotency_key: str | None) -> Payment | None:
    if not idempotency_key:
        return None
    return Payment.objects.filter(idempotency_key=idempotency_key).first()


@transaction.atomic
def payment_post(
    *,
    actor: Any,
    branch: Branch,
    shift: CashShift | None,
    parts: Sequence[PartInput],
    patient: Person | None = None,
    invoice: Invoice | None = None,
    allocations: Sequence[tuple[InvoiceLine, Decimal]] | None = None,
    idempotency_key: str | None = None,
) -> Payment:
    """Post a payment: for an invoice (partly or in full), or into the patient's advance.

    Without explicit ``allocations`` the money settles the invoice's unpaid lines in order; what
    is left goes to the patient's advance. ``idempotency_key`` makes a double-submitted form post
    one payment. Queues the payment's fiscal receipt in the same transaction.
    """

    _require(policies.can_take_payment(actor, branch))
    if (found := _existing(idempotency_key)) is not None:
        return found
    checked = _parts_checked(parts)
    _shift_checked(shift, checked, branch)
    if invoice is not None:
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("patient")
            .get(pk=invoice.pk)
        )
        _payable_check(invoice, branch)
        patient = invoice.patient if invoice.patient_id is not None else patient
    if patient is None and invoice is None:
        raise BillingError(
            "payer_required", _("Choose the patient or the invoice to pay."), field="patient"
        )
    _patient_check(patient, branch)
    account = account_locked(branch.organization_id, patient.pk) if patient is not None else None
    total = sum((part.amount for part in checked), ZERO)
    from_advance = sum((p.amount for p in checked if p.method == PaymentMethod.ADVANCE), ZERO)
    if from_advance:
        available = account.advance if account is not None else ZERO
        if from_advance > available:
            raise BillingError(
                "advance_insufficient",
                _("The advance is %(available)s, less than %(value)s.")
                % {"available": available, "value": from_advance},
                field="parts",
            )
    planned = _allocations_planned(invoice, allocations, total)
    allocated = sum((amount for _line, amount in planned), ZERO)
    left_over = total - allocated
    if from_advance > allocated:
        raise BillingError(
            "advance_for_advance",
            _("The advance cannot pay into the advance: %(value)s is left unallocated.")
            % {"value": from_advance - allocated},
            field="parts",
        )
    if left_over and account is None:
        raise BillingError(
            "overpayment",
            _("%(value)s is more than the order lacks; an anonymous order takes no advance.")
            % {"value": left_over},
            field="parts",
        )
    balance = None
    if account is not None:
        owed = invoice is not None and _owed_by_patient(invoice)
        balance = Balance(
            account,
            debt=account.debt - allocated if owed else account.debt,
            advance=account.advance + left_over - from_advance,
        )
    try:
        return _document_write(
            actor=actor,
            branch=branch,
            shift=shift,
            kind=PaymentKind.PAYMENT,
            patient=patient,
            invoice=invoice,
            parts=checked,
            planned=planned,
            idempotency_key=idempotency_key,
            balance=balance,
        )
    except _AlreadyPosted as posted:
        return posted.payment


def _payable_check(invoice: Invoice, branch: Branch) -> None:
    if invoice.organization_id != branch.organization_id:
        raise BillingError(
            "invoice_not_found",
            _("Invoice %(value)s belongs to another organization.") % {"value": invoice.number},
            field="invoice",
        )
    if invoice.state != InvoiceState.POSTED:
        raise BillingError(
            "invoice_not_posted",
            _("Invoice %(value)s is %(state)s: only a posted invoice is paid.")
            % {"value": invoice.number, "state": invoice.get_state_display()},
            field="invoice",
        )
    if invoice.payer_kind != PayerKind.SELF_PAY:
        raise BillingError(
            "invoice_paid_by_payer",
            _("Invoice %(value)s is paid by the contract's payer, not at the cash desk.")
            % {"value": invoice.number},
            field="invoice",
        )


def _allocations_planned(
    invoice: Invoice | None,
    allocations: Sequence[tuple[InvoiceLine, Decimal]] | None,
    total: Decimal,
) -> list[tuple[InvoiceLine, Decimal]]:
    """Which lines the money settles: as given (checked against what each lacks) or in order."""
    if invoice is None:
        if allocations:
            raise BillingError(
                "invoice_required", _("Choose the invoice the lines are on."), field="invoice"
            )
        return []
    lines, outstanding = lines_with_outstanding(invoice)
    if allocations is None:
        planned = []
        left = total
        for line in lines:
            share = min(left, outstanding[line.pk])
            if share > 0:
                planned.append((line, share))
                left -= share
        if not planned:
            raise BillingError(
                "invoice_settled",
                _("Invoice %(value)s is paid in full.") % {"value": invoice.number},
                field="invoice",
            )
        return planned
    by_pk = {line.pk: line for line in lines}
    planned = []
    for index, (line, amount) in enumerate(allocations):
        value = money(amount, field=f"allocations[{index}].amount")
        if line.pk not in by_pk:
            raise BillingError(
                "line_not_on_invoice",
                _("The line %(value)s is not on invoice %(invoice)s.")
                % {"value": line.service_code, "invoice": invoice.number},
                field=f"allocations[{index}].line",
            )
        if value > outstanding[line.pk]:
            raise BillingError(
                "over_allocation",
                _("%(value)s is more than %(service)s lacks (%(lacks)s).")
                % {"value": value, "service": line.service_code, "lacks": outstanding[line.pk]},
                field=f"allocations[{index}].amount",
            )
        planned.append((by_pk[line.pk], value))
    return planned


# A payment or refund with its parts, allocations, the patient's new balance, its receipt and the
# receipt's outbox message, in one statement (one round trip; all or nothing). ``{payment}``,
# ``{message}`` and ``{receipt}`` are the rows' INSERT ... RETURNING id from Django's compiler;
# the receipt takes the payment's and the message's ids from their CTEs.
DOCUMENT_WRITE_SQL = f"""
    WITH payment AS ({{payment}}),
    parts AS (
      INSERT INTO {PaymentPart._meta.db_table}
        (payment_id, method, amount, card_rrn, card_auth_code)
      SELECT payment.id, part.method, part.amount, part.rrn, part.auth
      FROM payment, unnest(%s::varchar[], %s::numeric[], %s::varchar[], %s::varchar[])
        AS part(method, amount, rrn, auth)
    ),
    allocations AS (
      INSERT INTO {PaymentAllocation._meta.db_table} (payment_id, line_id, amount)
      SELECT payment.id, allocation.line, allocation.amount
      FROM payment, unnest(%s::bigint[], %s::numeric[]) AS allocation(line, amount)
    ),
    account AS (
      UPDATE {PatientAccount._meta.db_table} SET debt = %s, advance = %s, updated_at = %s
      WHERE id = %s
    ),
    message AS ({{message}}),
    receipt AS ({{receipt}})
    SELECT (SELECT id FROM payment), (SELECT id FROM message), (SELECT id FROM receipt)
"""  # noqa: S608 (table names from the models)


@dataclass(frozen=True)
class Balance:
    """A patient's balance after the document, written with it."""

    account: PatientAccount
    debt: Decimal
    advance: Decimal


def _document_write(
    *,
    actor: Any,
    branch: Branch,
    shift: CashShift | None,
    kind: str,
    patient: Person | None,
    invoice: Invoice | None,
    parts: Sequence[PartInput],
    planned: Sequence[tuple[InvoiceLine, Decimal]],
    idempotency_key: str | None,
    balance: Balance | None,
    corrects: Payment | None = None,
    reason: str = "",
    is_correction: bool = False,
) -> Payment:
    """Write the document, its parts and allocations, the balance, its receipt and the receipt's
    outbox message in one statement (``DOCUMENT_WRITE_SQL``)."""
    from .fiscal import FISCAL_CHANNEL, receipt_prepare

    payment = Payment(
        organization_id=branch.organization_id,
        branch=branch,
        kind=kind,
        patient=patient,
        invoice=invoice,
        shift=shift,
        total=sum((part.amount for part in parts), ZERO),
        corrects=corrects,
        reason=reason,
        is_correction=is_correction,
        posted_at=timezone.now(),
        posted_by=actor,
        idempotency_key=idempotency_key or None,
    )
    written_parts = [
        PaymentPart(
            payment=payment,
            method=part.method,
            amount=part.amount,
            card_rrn=part.card_rrn,
            card_auth_code=part.card_auth_code,
        )
        for part in parts
    ]
    allocations = [
        PaymentAllocation(payment=payment, line=line, amount=amount) for line, amount in planned
    ]
    receipt, message = receipt_prepare(payment, written_parts, allocations)
    receipt.payment_id = RawSQL("(SELECT id FROM payment)", [])
    receipt.outbox_message_id = RawSQL("(SELECT id FROM message)", [])
    payment_sql, payment_params = insert_returning_id(payment)
    message_sql, message_params = insert_returning_id(message)
    receipt_sql, receipt_params = insert_returning_id(receipt)
    params = [
        *payment_params,
        [part.method for part in written_parts],
        [part.amount for part in written_parts],
        [part.card_rrn for part in written_parts],
        [part.card_auth_code for part in written_parts],
        [allocation.line_id for allocation in allocations],
        [allocation.amount for allocation in allocations],
        balance.debt if balance else None,
        balance.advance if balance else None,
        timezone.now(),
        balance.account.pk if balance else None,
        *message_params,
        *receipt_params,
    ]
    try:
        # A savepoint only where a racing duplicate can exist: one with the same key.
        savepoint = transaction.atomic() if idempotency_key else contextlib.nullcontext()
        with savepoint, connection.cursor() as cursor:
            cursor.execute(
                DOCUMENT_WRITE_SQL.format(
                    payment=payment_sql, message=message_sql, receipt=receipt_sql
                ),
                params,
            )
            row = cursor.fetchone()
    except IntegrityError:
        # The same form submitted twice at once: the other request posted it first.
        if idempotency_key and (found := _existing(idempotency_key)) is not None:
            raise _AlreadyPosted(found) from None
        raise
    assert row is not None
    payment_id, message_id, receipt_id = row
    saved_as(payment, payment_id)
    saved_as(message, message_id)
    receipt.payment_id = payment_id
    receipt.outbox_message_id = message_id
    saved_as(receipt, receipt_id)
    if balance is not None:
        balance.account.debt, balance.account.advance = balance.debt, balance.advance
    outbox_relay_on_commit(FISCAL_CHANNEL)
    slip_queue(payment, receipt.register)
    return payment


def refundable_by_method(payment: Payment) -> dict[str, Decimal]:
    """What may still be given back by each method of a payment (after earlier refunds)."""
    return refundable_by_method_many([payment]).get(payment.pk, {})


def refundable_by_method_many(payments: Sequence[Payment]) -> dict[int, dict[str, Decimal]]:
    """``refundable_by_method`` for several payments in two queries."""
    left: dict[int, dict[str, Decimal]] = {payment.pk: {} for payment in payments}
    for payment_id, method, amount in (
        PaymentPart.objects.filter(payment__in=list(left))
        .values_list("payment_id", "method")
        .annotate(s=Sum("amount"))
        .values_list("payment_id", "method", "s")
    ):
        left[payment_id][method] = amount
    for corrects_id, method, amount in (
        PaymentPart.objects.filter(
            payment__corrects__in=list(left), payment__kind=PaymentKind.REFUND
        )
        .exclude(method=PaymentMethod.ADVANCE)
        .values_list("payment__corrects_id", "method")
        .annotate(s=Sum("amount"))
        .values_list("payment__corrects_id", "method", "s")
    ):
        if corrects_id is None:
            continue
        methods = left[corrects_id]
        methods[method] = methods.get(method, ZERO) - amount
    return left


@transaction.atomic
def refund_post(
    *,
    actor: Any,
    payment: Payment,
    shift: CashShift | None,
    parts: Sequence[PartInput],
    lines: Sequence[tuple[InvoiceLine, Decimal]] = (),
    reason: str,
    idempotency_key: str | None = None,
    correction: bool = False,
) -> Payment:
    """Give money back against a payment: for services not rendered (``lines``) and/or from
    the patient's advance; its own document with its own return receipt.

    The parts say how the money goes back: cash or card up to what the payment took that way,
    or ``advance`` to keep it on the patient's advance.
    """

    branch = payment.branch
    _require(policies.can_refund(actor, branch))
    if (found := _existing(idempotency_key)) is not None:
        return found
    if payment.kind != PaymentKind.PAYMENT:
        raise BillingError(
            "refund_of_refund",
            _("Document %(value)s is a refund: refund the payment itself.")
            % {"value": payment.number},
            field="payment",
        )
    if not reason.strip():
        raise BillingError("reason_required", _("Say why the money is given back."), field="reason")
    checked = _parts_checked(parts)
    _shift_checked(shift, checked, branch)
    account = (
        account_locked(payment.organization_id, payment.patient_id)
        if payment.patient_id is not None
        else None
    )
    locked_payment = Payment.objects.select_for_update().get(pk=payment.pk)
    planned = _refund_lines_checked(locked_payment, lines)
    total = sum((part.amount for part in checked), ZERO)
    on_lines = sum((amount for _line, amount in planned), ZERO)
    from_advance = total - on_lines
    if from_advance < 0:
        raise BillingError(
            "refund_parts_short",
            _("The refund's methods add up to %(value)s, less than the lines' %(lines)s.")
            % {"value": total, "lines": on_lines},
            field="parts",
        )
    refundable = refundable_by_method(locked_payment)
    for index, part in enumerate(checked):
        if part.method == PaymentMethod.ADVANCE:
            if account is None:
                raise BillingError(
                    "advance_needs_patient",
                    _("Only a patient's payment can be returned to the advance."),
                    field=f"parts[{index}].method",
                )
            continue
        if part.amount > refundable.get(part.method, ZERO):
            raise BillingError(
                "over_refund",
                _("%(value)s by %(method)s is more than the payment can give back (%(left)s).")
                % {
                    "value": part.amount,
                    "method": PaymentMethod(part.method).label,
                    "left": refundable.get(part.method, ZERO),
                },
                field=f"parts[{index}].amount",
            )
    if from_advance and (account is None or from_advance > account.advance):
        raise BillingError(
            "over_refund",
            _("%(value)s is more than the patient's advance (%(advance)s).")
            % {"value": from_advance, "advance": account.advance if account else ZERO},
            field="parts",
        )
    balance = None
    if account is not None:
        kept = sum((p.amount for p in checked if p.method == PaymentMethod.ADVANCE), ZERO)
        invoice = locked_payment.invoice
        owed_again = correction and invoice is not None and _owed_by_patient(invoice)
        balance = Balance(
            account,
            # A correction's lines were rendered: owed again until the new payment.
            debt=account.debt + on_lines if owed_again else account.debt,
            advance=account.advance + kept - from_advance,
        )
    try:
        return _document_write(
            actor=actor,
            branch=branch,
            shift=shift,
            kind=PaymentKind.REFUND,
            patient=locked_payment.patient,
            invoice=locked_payment.invoice,
            parts=checked,
            planned=planned,
            idempotency_key=idempotency_key,
            balance=balance,
            corrects=locked_payment,
            reason=reason.strip(),
            is_correction=correction,
        )
    except _AlreadyPosted as posted:
        return posted.payment


def _refund_lines_checked(
    payment: Payment, lines: Sequence[tuple[InvoiceLine, Decimal]]
) -> list[tuple[InvoiceLine, Decimal]]:
    """Each line refunded at most what this payment paid on it, less earlier refunds."""
    if not lines:
        return []
    paid_by_this: dict[int, Decimal] = dict(payment.allocations.values_list("line_id", "amount"))
    refunded_before: dict[int, Decimal] = dict(
        PaymentAllocation.objects.filter(
            payment__corrects=payment, payment__kind=PaymentKind.REFUND
        )
        .values_list("line_id")
        .annotate(s=Sum("amount"))
        .values_list("line_id", "s")
    )
    planned = []
    for index, (line, amount) in enumerate(lines):
        value = money(amount, field=f"lines[{index}].amount")
        left = paid_by_this.get(line.pk, ZERO) - refunded_before.get(line.pk, ZERO)
        if value > left:
            raise BillingError(
                "over_refund",
                _("%(value)s is more than can be refunded for %(service)s (%(left)s).")
                % {"value": value, "service": line.service_code, "left": left},
                field=f"lines[{index}].amount",
            )
        planned.append((line, value))
    return planned


@transaction.atomic
def payment_correct(
    *,
    actor: Any,
    payment: Payment,
    shift: CashShift | None,
    parts: Sequence[PartInput],
    reason: str,
) -> tuple[Payment, Payment]:
    """Put right a payment entered with the wrong methods: a refund of it and a new payment,
    each its own document and receipt; the original stays as it was."""
    if Payment.objects.filter(corrects=payment).exists():
        raise BillingError(
            "payment_partly_refunded",
            _(
                "Payment %(value)s already has refunds: refund what is left of it and post "
                "the payment again instead."
            )
            % {"value": payment.number},
            field="payment",
        )
    allocations = [
        (allocation.line, allocation.amount)
        for allocation in payment.allocations.select_related("line")
    ]
    original_parts = [
        PartInput(part.method, part.amount, part.card_rrn, part.card_auth_code)
        for part in payment.parts.all()
    ]
    refund = refund_post(
        actor=actor,
        payment=payment,
        shift=shift,
        parts=original_parts,
        lines=allocations,
        reason=reason,
        correction=True,
    )
    replacement = payment_post(
        actor=actor,
        branch=payment.branch,
        shift=shift,
        parts=parts,
        patient=payment.patient,
        invoice=payment.invoice if allocations else None,
        allocations=allocations or None,
    )
    return refund, replacement
