"""A patient's stored balance equals the one derived from the documents after every kind of
posting, and a merge of duplicate patients carries their money documents and balances."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import connection

from billing import services, shifts
from billing.balances import patient_balance_computed
from billing.models import DiscountRule, Invoice, PatientAccount, Payment, PaymentMethod
from billing.services import PartInput
from clinic.core.roles import Role
from devices.fake_atol import FakeAtol
from patients.merge import person_merge, person_unmerge
from tests.core.factories import staff_with_role
from tests.patients.factories import PersonFactory

from .conftest import Desk

pytestmark = pytest.mark.django_db(transaction=True)

CASH, CARD, ADVANCE = PaymentMethod.CASH, PaymentMethod.CARD, PaymentMethod.ADVANCE


def stored(desk: Desk, person: object) -> tuple[Decimal, Decimal]:
    account = PatientAccount.objects.filter(organization=desk.organization, patient=person).first()
    return (account.debt, account.advance) if account else (Decimal("0"), Decimal("0"))


def computed(desk: Desk, person: object) -> tuple[Decimal, Decimal]:
    return patient_balance_computed(
        organization_id=desk.organization.pk,
        patient_id=person.pk,  # type: ignore[attr-defined]
    )


def invoice(desk: Desk, person: object, *services_: object) -> Invoice:
    draft = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=person)
    for service in services_:
        services.invoice_line_add(actor=desk.cashier, invoice=draft, service=service)
    return services.invoice_post(actor=desk.cashier, invoice=draft)


def pay(
    desk: Desk, shift: object, person: object, *parts: tuple[str, str], **kw: object
) -> Payment:
    return services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,  # type: ignore[arg-type]
        patient=person,  # type: ignore[arg-type]
        parts=[PartInput(method, Decimal(amount)) for method, amount in parts],
        **kw,  # type: ignore[arg-type]
    )


def test_the_stored_balance_is_what_the_documents_give(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    patient = desk.patient
    steps = []

    def check(step: str) -> None:
        steps.append(step)
        assert stored(desk, patient) == computed(desk, patient), steps

    pay(desk, shift, patient, (CASH, "3000.00"))
    check("advance paid in")
    first = invoice(desk, patient, desk.consultation, desk.ultrasound)  # 4950
    check("invoice posted")
    partial = pay(desk, shift, patient, (ADVANCE, "3000.00"), (CARD, "1000.00"), invoice=first)
    check("paid from the advance and by card, partly")
    pay(desk, shift, patient, (CASH, "1000.00"), invoice=first)
    check("the rest paid, 50 to the advance")
    line = first.lines.get(service=desk.ultrasound)
    services.refund_post(
        actor=desk.cashier,
        payment=partial,
        shift=shift,
        parts=[PartInput(CARD, Decimal("1000.00"))],
        lines=[(line, Decimal("1000.00"))],
        reason="Not performed",
    )
    check("a line refunded by card")
    rest = Payment.objects.filter(kind="payment", invoice=first).exclude(pk=partial.pk).get()
    services.payment_correct(
        actor=desk.cashier,
        payment=rest,
        shift=shift,
        parts=[PartInput(CARD, Decimal("1000.00"))],
        reason="Entered as the wrong method",
    )
    check("a payment corrected")
    DiscountRule.objects.create(
        organization=desk.organization,
        name="Staff",
        value=Decimal("10"),
        is_automatic=True,
        valid_from=datetime.date(2020, 1, 1),
    )
    second = invoice(desk, patient, desk.consultation)
    check("a discounted invoice posted")
    services.invoice_cancel(actor=desk.cashier, invoice=second)
    check("it was cancelled")
    anonymous = services.invoice_create(actor=desk.cashier, branch=desk.branch)
    services.invoice_line_add(actor=desk.cashier, invoice=anonymous, service=desk.consultation)
    anonymous = services.invoice_post(actor=desk.cashier, invoice=anonymous)
    services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=anonymous,
        parts=[PartInput(CASH, Decimal("1000.00"))],
    )
    services.invoice_personalise(actor=desk.cashier, invoice=anonymous, patient=patient)
    check("an anonymous order, partly paid, personalised")
    assert stored(desk, patient)[0] == Decimal("980.00")  # 2200 less 10%, less 1000 paid


def test_a_merge_moves_the_money_and_an_unmerge_moves_it_back(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    survivor = desk.patient
    duplicate = PersonFactory(organization=desk.organization, last_name=survivor.last_name)
    invoice(desk, survivor, desk.consultation)  # survivor owes 2200
    owed = invoice(desk, duplicate, desk.ultrasound)  # the duplicate owes 2750 ...
    paid = pay(desk, shift, duplicate, (CASH, "3000.00"), invoice=owed)  # ... pays, 250 over
    assert stored(desk, survivor) == (Decimal("2200.00"), Decimal("0"))
    assert stored(desk, duplicate) == (Decimal("0.00"), Decimal("250.00"))

    head = staff_with_role(
        Role.HEAD_OF_REGISTRY, organization=desk.organization, branches=[desk.branch]
    ).user
    merge = person_merge(actor=head, survivor=survivor, merged=duplicate, reason="Same person")
    assert stored(desk, survivor) == (Decimal("2200.00"), Decimal("250.00"))
    assert stored(desk, duplicate) == (Decimal("0"), Decimal("0"))
    paid.refresh_from_db()
    assert paid.patient_id == survivor.pk and paid.total == Decimal("3000.00")
    # The advance that came with the duplicate pays the survivor's own invoice.
    own = Invoice.objects.get(patient=survivor, lines__service=desk.consultation)
    pay(desk, shift, survivor, (ADVANCE, "250.00"), (CASH, "1950.00"), invoice=own)
    assert stored(desk, survivor) == (Decimal("0.00"), Decimal("0.00"))

    person_unmerge(actor=head, merge=merge)
    assert stored(desk, duplicate) == (Decimal("0.00"), Decimal("250.00"))
    # The survivor spent 250 of the advance that goes back with the other record: owed now.
    assert computed(desk, survivor) == (Decimal("0.00"), Decimal("-250.00"))
    assert stored(desk, survivor) == (Decimal("250.00"), Decimal("0.00"))


def test_a_payment_stays_final_but_for_whose_it_is(desk: Desk, atol: FakeAtol) -> None:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register)
    payment = pay(desk, shift, desk.patient, (CASH, "100.00"))
    from django.db import ProgrammingError, transaction

    with pytest.raises(ProgrammingError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(total=Decimal("1.00"))
    other = PersonFactory(organization=desk.organization)
    Payment.objects.filter(pk=payment.pk).update(patient=other)
    assert Payment.objects.get(pk=payment.pk).patient_id == other.pk
    assert connection.is_usable()
