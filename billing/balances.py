"""A patient's balance recomputed from the documents, and what a merge of two patients does to it.

The posting services keep ``PatientAccount`` up to date step by step; ``patient_balance_computed``
derives the same figures from the documents alone, in SQL:

* debt — what the patient's posted self-pay invoices still lack: each line's amount less the
  payments allocated to it, plus the refunds that corrected a payment (a service refunded as not
  rendered is neither owed nor paid);
* advance — over the patient's payments and refunds, with the refund's sign: the document's
  total less what it allocated to invoice lines and less what it took from the advance.

A merge moves the merged patient's invoices, payments and contracts to the survivor (an unmerge
moves them back); the hook registered here then recomputes both people's balances, so no money
is lost from view or counted twice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Case, DecimalField, F, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce

from patients.models import Person
from scheduling.models import PayerKind

from .models import (
    InvoiceLine,
    InvoiceState,
    PatientAccount,
    Payment,
    PaymentAllocation,
    PaymentKind,
    PaymentMethod,
    PaymentPart,
)

ZERO = Decimal("0")
MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=14, decimal_places=2)


def _signed(amount: str, kind: str) -> Case:
    return Case(
        When(**{kind: PaymentKind.REFUND}, then=-F(amount)),
        default=F(amount),
        output_field=MONEY,
    )


def _total(queryset: QuerySet[Any], expression: Any) -> Decimal:
    value = queryset.aggregate(total=Coalesce(Sum(expression), Value(ZERO), output_field=MONEY))
    return Decimal(value["total"])


def patient_balance_computed(*, organization_id: int, patient_id: int) -> tuple[Decimal, Decimal]:
    """(debt, advance) of the patient derived from the documents (four aggregate queries)."""
    lines = InvoiceLine.objects.filter(
        invoice__organization_id=organization_id,
        invoice__patient_id=patient_id,
        invoice__state=InvoiceState.POSTED,
        invoice__payer_kind=PayerKind.SELF_PAY,
    )
    owed = _total(lines, F("amount"))
    settled = _total(
        PaymentAllocation.objects.filter(line__in=lines),
        Case(
            When(payment__kind=PaymentKind.PAYMENT, then=F("amount")),
            When(payment__is_correction=True, then=-F("amount")),
            default=Value(ZERO),
            output_field=MONEY,
        ),
    )
    documents = Payment.objects.filter(organization_id=organization_id, patient_id=patient_id)
    totals = _total(documents, _signed("total", "kind"))
    allocated = _total(
        PaymentAllocation.objects.filter(payment__in=documents),
        _signed("amount", "payment__kind"),
    )
    from_advance = _total(
        PaymentPart.objects.filter(payment__in=documents, method=PaymentMethod.ADVANCE),
        _signed("amount", "payment__kind"),
    )
    return owed - settled, totals - allocated - from_advance


def patient_account_rebuild(*, organization_id: int, patient_id: int) -> PatientAccount:
    """Set the patient's stored balance to the one the documents give (call in a transaction)."""
    from .services import account_locked

    account = account_locked(organization_id, patient_id)
    debt, advance = patient_balance_computed(organization_id=organization_id, patient_id=patient_id)
    # Spent more advance than the documents now give (an unmerge took back money another
    # record paid in): the shortfall is owed.
    account.debt, account.advance = debt + max(-advance, ZERO), max(advance, ZERO)
    account.save(update_fields=["debt", "advance", "updated_at"])
    return account


def _rebalance_after_merge(survivor: Person, merged: Person) -> None:
    """Both people's balances after their documents moved (one way or the other)."""
    for person in sorted((survivor, merged), key=lambda person: person.pk):
        patient_account_rebuild(organization_id=person.organization_id, patient_id=person.pk)


def merge_handling_register() -> None:
    from patients.merge import merge_hook_register, merge_mover_register

    from .models import Contract, GuaranteeLetter, Invoice

    merge_mover_register("invoices", Invoice, "patient")
    merge_mover_register("payments", Payment, "patient")
    merge_mover_register("contracts", Contract, "patient")
    merge_mover_register("guarantee_letters", GuaranteeLetter, "patient")
    merge_hook_register(
        "billing_balances",
        _rebalance_after_merge,
        handles=("billing.PatientAccount.patient",),
    )
