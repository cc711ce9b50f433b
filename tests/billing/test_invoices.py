"""Invoices: made from real appointments, priced line by line with the payer's rules, posted into
the patient's debt, cancelled, and frozen by the database once posted."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import ProgrammingError, transaction
from django.utils import timezone

from billing import services
from billing.errors import BillingError
from billing.models import (
    AdjustmentKind,
    AdjustmentMethod,
    Contract,
    DiscountRule,
    GuaranteeLetter,
    Invoice,
    InvoiceLine,
    InvoiceState,
    PatientAccount,
    PaymentMethod,
    ServiceBilling,
)
from billing.services import PartInput
from billing.shifts import shift_open
from patients.models import Person
from scheduling.models import Appointment, BookingChannel, CancelReason, PayerKind, Resource
from scheduling.services import BookingRequest, appointment_book, appointment_cancel
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import ServiceFactory, doctor, local, tomorrow, works

from .conftest import Desk
from .factories import ContractFactory, PriceFactory, PriceListFactory

pytestmark = pytest.mark.django_db

LONG_AGO = datetime.date(2020, 1, 1)


def book(desk: Desk, who: Resource, patient: Person, day: datetime.date, hhmm: str) -> Appointment:
    """A real appointment for the consultation and the ultrasound, booked at the desk."""
    return appointment_book(
        actor=desk.registrar,
        request=BookingRequest(
            branch=desk.branch,
            services=[desk.consultation, desk.ultrasound],
            starts_at=local(day, hhmm),
            channel=BookingChannel.DESK,
            patient=patient,
            doctor=who,
        ),
    )


@pytest.fixture
def therapist(desk: Desk) -> Resource:
    resource = doctor(desk.branch, name="Dr Petrov")
    works(resource)
    return resource


@pytest.fixture
def visitor(desk: Desk) -> Person:
    person: Person = PersonFactory(organization=desk.organization)
    return person


def debt_and_advance(desk: Desk, patient: Person) -> tuple[Decimal, Decimal]:
    account = PatientAccount.objects.filter(organization=desk.organization, patient=patient).first()
    if account is None:
        return Decimal("0"), Decimal("0")
    return account.debt, account.advance


def draft(desk: Desk, **fields: Any) -> Invoice:
    return services.invoice_create(actor=desk.registrar, branch=desk.branch, **fields)


def dms_contract(desk: Desk, **fields: Any) -> Contract:
    """A DMS contract with its own price list (the consultation at 1800, the ultrasound at 2500)."""
    price_list = PriceListFactory(organization=desk.organization, payer_kind=PayerKind.DMS)
    PriceFactory(price_list=price_list, service=desk.consultation, amount=Decimal("1800.00"))
    PriceFactory(price_list=price_list, service=desk.ultrasound, amount=Decimal("2500.00"))
    contract: Contract = ContractFactory(
        organization=desk.organization, price_list=price_list, **fields
    )
    return contract


# --- from appointments --------------------------------------------------------------------


def test_an_appointment_is_invoiced_with_its_services_and_its_doctor(
    desk: Desk, therapist: Resource, visitor: Person
) -> None:
    appointment = book(desk, therapist, visitor, tomorrow(), "10:00")

    invoice = services.invoice_from_appointments(actor=desk.registrar, appointments=[appointment])

    lines = list(invoice.lines.order_by("position"))
    assert [(line.service_code, line.unit_price, line.amount) for line in lines] == [
        ("B01.047.001", Decimal("2200.00"), Decimal("2200.00")),
        ("A04.16.001", Decimal("2750.00"), Decimal("2750.00")),
    ]
    assert {line.appointment_id for line in lines} == {appointment.pk}
    assert {line.performer_id for line in lines} == {therapist.pk}
    assert invoice.patient_id == visitor.pk
    assert invoice.state == InvoiceState.DRAFT
    assert invoice.total == Decimal("4950.00")


def test_an_invoiced_appointment_is_not_invoiced_again(
    desk: Desk, therapist: Resource, visitor: Person
) -> None:
    appointment = book(desk, therapist, visitor, tomorrow(), "10:00")
    services.invoice_from_appointments(actor=desk.registrar, appointments=[appointment])

    with pytest.raises(BillingError) as refused:
        services.invoice_from_appointments(actor=desk.registrar, appointments=[appointment])

    assert refused.value.code == "nothing_to_invoice"
    assert Invoice.objects.filter(patient=visitor).count() == 1
    assert InvoiceLine.objects.filter(appointment=appointment).count() == 2


def test_a_cancelled_invoice_frees_its_services_for_a_new_one(
    desk: Desk, therapist: Resource, visitor: Person
) -> None:
    appointment = book(desk, therapist, visitor, tomorrow(), "10:00")
    first = services.invoice_from_appointments(actor=desk.registrar, appointments=[appointment])
    services.invoice_cancel(actor=desk.registrar, invoice=first)

    second = services.invoice_from_appointments(actor=desk.registrar, appointments=[appointment])

    assert second.pk != first.pk
    assert second.lines.count() == 2


def test_a_period_is_invoiced_without_cancelled_or_already_invoiced_visits(
    desk: Desk, therapist: Resource, visitor: Person
) -> None:
    day = tomorrow()
    invoiced = book(desk, therapist, visitor, day, "10:00")
    cancelled = book(desk, therapist, visitor, day, "12:00")
    later = book(desk, therapist, visitor, day + datetime.timedelta(days=1), "10:00")
    outside = book(desk, therapist, visitor, day + datetime.timedelta(days=3), "10:00")
    appointment_cancel(
        actor=desk.registrar,
        appointment=cancelled,
        reason=CancelReason.objects.get(code="patient_request"),
    )
    services.invoice_from_appointments(actor=desk.registrar, appointments=[invoiced])

    visits = services.appointments_to_invoice(
        patient=visitor, branch=desk.branch, start=day, end=day + datetime.timedelta(days=1)
    )
    invoice = services.invoice_from_appointments(actor=desk.registrar, appointments=visits)

    assert [visit.pk for visit in visits] == [invoiced.pk, cancelled.pk, later.pk]
    assert list(invoice.lines.order_by("position").values_list("appointment_id", flat=True)) == [
        later.pk,
        later.pk,
    ]
    assert invoice.total == Decimal("4950.00")
    assert not InvoiceLine.objects.filter(appointment__in=[cancelled, outside]).exists()


def test_only_cancelled_visits_are_nothing_to_invoice(
    desk: Desk, therapist: Resource, visitor: Person
) -> None:
    appointment = appointment_cancel(
        actor=desk.registrar,
        appointment=book(desk, therapist, visitor, tomorrow(), "10:00"),
        reason=CancelReason.objects.get(code="patient_request"),
    )

    with pytest.raises(BillingError) as refused:
        services.invoice_from_appointments(actor=desk.registrar, appointments=[appointment])

    assert refused.value.code == "nothing_to_invoice"
    assert not Invoice.objects.filter(patient=visitor).exists()


def test_a_visit_service_without_a_price_refuses_the_whole_invoice(
    desk: Desk, therapist: Resource, visitor: Person
) -> None:
    appointment = book(desk, therapist, visitor, tomorrow(), "10:00")
    desk.price_list.prices.filter(service=desk.ultrasound).delete()

    with pytest.raises(BillingError) as refused:
        services.invoice_from_appointments(actor=desk.registrar, appointments=[appointment])

    assert refused.value.code == "price_missing"
    assert "A04.16.001 Abdomen US" in refused.value.message
    assert not Invoice.objects.filter(patient=visitor).exists()


# --- refusals when a line is added --------------------------------------------------------


def test_a_service_without_a_price_for_the_payer_is_refused_by_name(desk: Desk) -> None:
    unpriced = ServiceFactory(organization=desk.organization, code="A09.05.023", name="Glucose")
    invoice = draft(desk, patient=desk.patient)

    with pytest.raises(BillingError) as refused:
        services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=unpriced)

    assert refused.value.code == "price_missing"
    assert refused.value.field == "service"
    assert "A09.05.023 Glucose" in refused.value.message
    invoice.refresh_from_db()
    assert invoice.lines.count() == 0
    assert invoice.total == Decimal("0")


def test_a_service_the_lab_cannot_perform_is_refused_with_the_note(desk: Desk) -> None:
    ServiceBilling.objects.create(
        service=desk.ultrasound, lab_unavailable=True, lab_unavailable_note="Until 5 December."
    )
    invoice = draft(desk, patient=desk.patient)

    with pytest.raises(BillingError) as refused:
        services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.ultrasound)

    assert refused.value.code == "service_unavailable_at_lab"
    assert "A04.16.001 Abdomen US" in refused.value.message
    assert "Until 5 December." in refused.value.message
    assert invoice.lines.count() == 0


@pytest.mark.parametrize("how", ["not_sellable", "inactive"])
def test_a_service_that_is_not_sold_is_refused(desk: Desk, how: str) -> None:
    if how == "not_sellable":
        ServiceBilling.objects.create(service=desk.ultrasound, is_sellable=False)
    else:
        type(desk.ultrasound).objects.filter(pk=desk.ultrasound.pk).update(is_active=False)
        desk.ultrasound.refresh_from_db()
    invoice = draft(desk, patient=desk.patient)

    with pytest.raises(BillingError) as refused:
        services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.ultrasound)

    assert refused.value.code == "service_not_sold"
    assert "A04.16.001" in refused.value.message
    assert invoice.lines.count() == 0


def test_an_expired_contract_is_refused_when_the_invoice_is_made(desk: Desk) -> None:
    expired = dms_contract(desk, valid_to=timezone.localdate() - datetime.timedelta(days=1))

    with pytest.raises(BillingError) as refused:
        draft(desk, patient=desk.patient, contract=expired)

    assert refused.value.code == "contract_not_valid"
    assert expired.number in refused.value.message
    assert not Invoice.objects.filter(contract=expired).exists()


def test_a_contract_that_ran_out_refuses_new_lines_and_posting(desk: Desk) -> None:
    contract = dms_contract(desk)
    invoice = draft(desk, patient=desk.patient, contract=contract)
    services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.consultation)
    Contract.objects.filter(pk=contract.pk).update(is_active=False)

    with pytest.raises(BillingError) as on_line:
        services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.ultrasound)
    with pytest.raises(BillingError) as on_post:
        services.invoice_post(actor=desk.registrar, invoice=invoice)

    assert on_line.value.code == on_post.value.code == "contract_not_valid"
    invoice.refresh_from_db()
    assert invoice.state == InvoiceState.DRAFT
    assert invoice.lines.count() == 1


def test_a_contract_invoice_is_priced_by_the_contract_and_is_not_the_patients_debt(
    desk: Desk,
) -> None:
    contract = dms_contract(desk)
    invoice = draft(desk, patient=desk.patient, contract=contract)
    services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.consultation)

    posted = services.invoice_post(actor=desk.registrar, invoice=invoice)

    assert posted.payer_kind == PayerKind.DMS
    assert posted.total == Decimal("1800.00")
    assert debt_and_advance(desk, desk.patient) == (Decimal("0"), Decimal("0"))


def test_a_patient_of_another_organization_is_refused(desk: Desk) -> None:
    stranger = PersonFactory()

    with pytest.raises(BillingError) as refused:
        draft(desk, patient=stranger)

    assert (refused.value.code, refused.value.field) == ("patient_not_found", "patient")
    assert not Invoice.objects.exists()


def test_a_dms_visit_without_the_contract_is_refused(desk: Desk) -> None:
    with pytest.raises(BillingError) as refused:
        draft(desk, patient=desk.patient, payer_kind=PayerKind.DMS)

    assert refused.value.code == "contract_required"


# --- guarantee letters --------------------------------------------------------------------


def letter_for(desk: Desk, contract: Contract, limit: str, *covered: Any) -> GuaranteeLetter:
    letter = GuaranteeLetter.objects.create(
        contract=contract,
        patient=desk.patient,
        number=f"GL-{GuaranteeLetter.objects.count() + 1}",
        valid_from=LONG_AGO,
        valid_to=timezone.localdate() + datetime.timedelta(days=30),
        limit_amount=Decimal(limit),
    )
    letter.services.set(covered)
    return letter


def test_a_contract_needing_a_guarantee_letter_refuses_posting_without_one(desk: Desk) -> None:
    contract = dms_contract(desk, requires_guarantee_letter=True)
    invoice = draft(desk, patient=desk.patient, contract=contract)
    services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.consultation)

    with pytest.raises(BillingError) as refused:
        services.invoice_post(actor=desk.registrar, invoice=invoice)

    assert refused.value.code == "guarantee_letter_required"
    assert refused.value.field == "guarantee_letter"
    invoice.refresh_from_db()
    assert invoice.state == InvoiceState.DRAFT
    assert invoice.posted_at is None


def test_a_guarantee_letter_covers_invoices_up_to_its_limit(desk: Desk) -> None:
    contract = dms_contract(desk, requires_guarantee_letter=True)
    letter = letter_for(desk, contract, "3000.00")
    first = draft(desk, patient=desk.patient, contract=contract, guarantee_letter=letter)
    services.invoice_line_add(actor=desk.registrar, invoice=first, service=desk.consultation)
    services.invoice_post(actor=desk.registrar, invoice=first)
    second = draft(desk, patient=desk.patient, contract=contract, guarantee_letter=letter)
    services.invoice_line_add(actor=desk.registrar, invoice=second, service=desk.consultation)

    with pytest.raises(BillingError) as refused:
        services.invoice_post(actor=desk.registrar, invoice=second)

    assert refused.value.code == "guarantee_limit_exceeded"
    assert "3000.00" in refused.value.message
    assert "1800.00" in refused.value.message
    second.refresh_from_db()
    assert second.state == InvoiceState.DRAFT


def test_a_guarantee_letter_refuses_a_service_it_does_not_cover(desk: Desk) -> None:
    contract = dms_contract(desk)
    letter = letter_for(desk, contract, "100000.00", desk.consultation)
    invoice = draft(desk, patient=desk.patient, contract=contract, guarantee_letter=letter)
    services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.consultation)
    services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.ultrasound)

    with pytest.raises(BillingError) as refused:
        services.invoice_post(actor=desk.registrar, invoice=invoice)

    assert refused.value.code == "guarantee_letter_service"
    assert "A04.16.001" in refused.value.message
    invoice.refresh_from_db()
    assert invoice.state == InvoiceState.DRAFT


def test_a_guarantee_letter_of_another_patient_is_refused(desk: Desk) -> None:
    contract = dms_contract(desk)
    letter = letter_for(desk, contract, "5000.00")

    with pytest.raises(BillingError) as refused:
        draft(
            desk,
            patient=PersonFactory(organization=desk.organization),
            contract=contract,
            guarantee_letter=letter,
        )

    assert refused.value.code == "guarantee_letter_mismatch"


# --- discounts and markups ----------------------------------------------------------------


def rule(desk: Desk, **fields: Any) -> DiscountRule:
    values: dict[str, Any] = {
        "organization": desk.organization,
        "name": f"Rule {DiscountRule.objects.count() + 1}",
        "kind": AdjustmentKind.DISCOUNT,
        "method": AdjustmentMethod.PERCENT,
        "valid_from": LONG_AGO,
        **fields,
    }
    created: DiscountRule = DiscountRule.objects.create(**values)
    return created


def test_an_automatic_percent_discount_is_applied_and_totalled(desk: Desk) -> None:
    general = rule(desk, value=Decimal("10"), is_automatic=True)
    invoice = draft(desk, patient=desk.patient)

    line = services.invoice_line_add(
        actor=desk.registrar, invoice=invoice, service=desk.consultation
    )

    assert line.adjustment_rule_id == general.pk
    assert line.adjustment == Decimal("-220.00")
    assert line.amount == Decimal("1980.00")
    invoice.refresh_from_db()
    assert (invoice.total, invoice.discount_total) == (Decimal("1980.00"), Decimal("220.00"))


def test_a_percent_is_rounded_half_up_to_the_kopeck(desk: Desk) -> None:
    odd = ServiceFactory(organization=desk.organization, code="A11.01.001")
    PriceFactory(price_list=desk.price_list, service=odd, amount=Decimal("999.95"))
    rule(desk, value=Decimal("10"), is_automatic=True)
    invoice = draft(desk, patient=desk.patient)

    line = services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=odd)

    assert line.adjustment == Decimal("-100.00")  # 99.995 rounds up
    assert line.amount == Decimal("899.95")


def test_the_contracts_automatic_rule_beats_the_general_one(desk: Desk) -> None:
    contract = dms_contract(desk)
    rule(desk, value=Decimal("10"), is_automatic=True)
    own = rule(desk, value=Decimal("20"), is_automatic=True, contract=contract)
    with_contract = draft(desk, patient=desk.patient, contract=contract)
    self_pay = draft(desk, patient=desk.patient)

    contract_line = services.invoice_line_add(
        actor=desk.registrar, invoice=with_contract, service=desk.consultation
    )
    self_pay_line = services.invoice_line_add(
        actor=desk.registrar, invoice=self_pay, service=desk.consultation
    )

    assert contract_line.adjustment_rule_id == own.pk
    assert contract_line.amount == Decimal("1440.00")  # 1800 less 20 %
    assert self_pay_line.amount == Decimal("1980.00")  # 2200 less the general 10 %


def test_a_services_own_rule_beats_a_rule_for_every_service(desk: Desk) -> None:
    rule(desk, value=Decimal("10"), is_automatic=True)
    own = rule(
        desk,
        kind=AdjustmentKind.DISCOUNT,
        method=AdjustmentMethod.AMOUNT,
        value=Decimal("300.00"),
        is_automatic=True,
        service=desk.ultrasound,
    )
    invoice = draft(desk, patient=desk.patient)

    line = services.invoice_line_add(
        actor=desk.registrar, invoice=invoice, service=desk.ultrasound, quantity=2
    )

    assert line.adjustment_rule_id == own.pk
    assert line.adjustment == Decimal("-600.00")  # 300 per unit, two units
    assert line.amount == Decimal("4900.00")


def test_an_automatic_markup_adds_to_the_line(desk: Desk) -> None:
    rule(
        desk,
        kind=AdjustmentKind.MARKUP,
        value=Decimal("15"),
        is_automatic=True,
        service=desk.ultrasound,
    )
    invoice = draft(desk, patient=desk.patient)

    line = services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.ultrasound)

    assert line.adjustment == Decimal("412.50")
    assert line.amount == Decimal("3162.50")
    invoice.refresh_from_db()
    assert invoice.discount_total == Decimal("-412.50")


def test_an_inactive_or_expired_automatic_rule_is_not_applied(desk: Desk) -> None:
    rule(desk, value=Decimal("10"), is_automatic=True, is_active=False)
    rule(
        desk,
        value=Decimal("20"),
        is_automatic=True,
        valid_to=timezone.localdate() - datetime.timedelta(days=1),
    )
    invoice = draft(desk, patient=desk.patient)

    line = services.invoice_line_add(
        actor=desk.registrar, invoice=invoice, service=desk.consultation
    )

    assert line.adjustment_rule_id is None
    assert line.amount == Decimal("2200.00")


def test_a_manual_discount_within_the_limit_is_applied(desk: Desk) -> None:
    manual = rule(desk, value=Decimal("5"), max_value=Decimal("15"))
    invoice = draft(desk, patient=desk.patient)
    line = services.invoice_line_add(
        actor=desk.registrar, invoice=invoice, service=desk.consultation
    )

    at_limit = services.invoice_line_adjust(
        actor=desk.registrar, line=line, rule=manual, value=Decimal("15")
    )
    assert (at_limit.adjustment, at_limit.amount) == (Decimal("-330.00"), Decimal("1870.00"))
    default = services.invoice_line_adjust(actor=desk.registrar, line=line, rule=manual)
    assert default.amount == Decimal("2090.00")
    removed = services.invoice_line_adjust(actor=desk.registrar, line=line, rule=None)
    assert (removed.adjustment_rule_id, removed.amount) == (None, Decimal("2200.00"))
    invoice.refresh_from_db()
    assert (invoice.total, invoice.discount_total) == (Decimal("2200.00"), Decimal("0.00"))


def test_a_manual_discount_over_the_limit_is_refused_and_changes_nothing(desk: Desk) -> None:
    manual = rule(desk, value=Decimal("5"), max_value=Decimal("15"))
    fixed = rule(desk, value=Decimal("7"))
    invoice = draft(desk, patient=desk.patient)
    line = services.invoice_line_add(
        actor=desk.registrar, invoice=invoice, service=desk.consultation
    )

    with pytest.raises(BillingError) as over:
        services.invoice_line_adjust(
            actor=desk.registrar, line=line, rule=manual, value=Decimal("15.01")
        )
    with pytest.raises(BillingError) as over_fixed:
        services.invoice_line_adjust(
            actor=desk.registrar, line=line, rule=fixed, value=Decimal("8")
        )

    assert over.value.code == over_fixed.value.code == "discount_over_limit"
    assert over.value.field == "value"
    line.refresh_from_db()
    assert (line.adjustment_rule_id, line.amount) == (None, Decimal("2200.00"))


def test_an_automatic_rule_cannot_be_applied_by_hand(desk: Desk) -> None:
    automatic = rule(desk, value=Decimal("10"), is_automatic=True, service=desk.ultrasound)
    invoice = draft(desk, patient=desk.patient)
    line = services.invoice_line_add(
        actor=desk.registrar, invoice=invoice, service=desk.consultation
    )

    with pytest.raises(BillingError) as refused:
        services.invoice_line_adjust(actor=desk.registrar, line=line, rule=automatic)

    assert refused.value.code == "discount_not_applicable"


# --- posting, personalising, cancelling ---------------------------------------------------


def posted(desk: Desk, patient: Person | None) -> Invoice:
    invoice = draft(desk, patient=patient)
    services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.consultation)
    services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.ultrasound)
    return services.invoice_post(actor=desk.registrar, invoice=invoice)


def test_posting_a_self_pay_invoice_makes_it_the_patients_debt(desk: Desk) -> None:
    invoice = posted(desk, desk.patient)

    assert invoice.state == InvoiceState.POSTED
    assert invoice.posted_at is not None
    assert debt_and_advance(desk, desk.patient) == (Decimal("4950.00"), Decimal("0.00"))
    with pytest.raises(BillingError) as refused:
        services.invoice_line_add(actor=desk.registrar, invoice=invoice, service=desk.consultation)
    assert refused.value.code == "invoice_not_draft"


def test_an_empty_invoice_is_not_posted(desk: Desk) -> None:
    with pytest.raises(BillingError) as refused:
        services.invoice_post(actor=desk.registrar, invoice=draft(desk, patient=desk.patient))

    assert refused.value.code == "invoice_empty"


def test_an_anonymous_order_personalised_becomes_the_patients_debt_less_what_is_paid(
    desk: Desk,
) -> None:
    order = posted(desk, None)
    assert not PatientAccount.objects.exists()
    shift = shift_open(actor=desk.cashier, register=desk.register)
    services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=order,
        parts=[PartInput(PaymentMethod.CASH, Decimal("1000.00"))],
    )
    assert not PatientAccount.objects.exists()

    personalised = services.invoice_personalise(
        actor=desk.registrar, invoice=order, patient=desk.patient
    )

    assert personalised.patient_id == desk.patient.pk
    assert debt_and_advance(desk, desk.patient) == (Decimal("3950.00"), Decimal("0.00"))
    with pytest.raises(BillingError) as again:
        services.invoice_personalise(
            actor=desk.registrar,
            invoice=order,
            patient=PersonFactory(organization=desk.organization),
        )
    assert again.value.code == "invoice_has_patient"


def test_cancelling_a_posted_unpaid_invoice_takes_back_the_debt(desk: Desk) -> None:
    invoice = posted(desk, desk.patient)

    cancelled = services.invoice_cancel(actor=desk.registrar, invoice=invoice)

    assert cancelled.state == InvoiceState.CANCELLED
    assert cancelled.cancelled_at is not None
    assert debt_and_advance(desk, desk.patient) == (Decimal("0.00"), Decimal("0.00"))
    again = services.invoice_cancel(actor=desk.registrar, invoice=invoice)
    assert again.state == InvoiceState.CANCELLED
    assert debt_and_advance(desk, desk.patient) == (Decimal("0.00"), Decimal("0.00"))


def test_a_paid_invoice_is_not_cancelled(desk: Desk) -> None:
    invoice = posted(desk, desk.patient)
    shift = shift_open(actor=desk.cashier, register=desk.register)
    services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=invoice,
        parts=[PartInput(PaymentMethod.CASH, Decimal("100.00"))],
    )

    with pytest.raises(BillingError) as refused:
        services.invoice_cancel(actor=desk.registrar, invoice=invoice)

    assert refused.value.code == "invoice_paid"
    invoice.refresh_from_db()
    assert invoice.state == InvoiceState.POSTED
    assert debt_and_advance(desk, desk.patient) == (Decimal("4850.00"), Decimal("0.00"))


# --- the database keeps a posted invoice as it was -----------------------------------------


def test_the_database_refuses_to_change_a_posted_invoices_total(desk: Desk) -> None:
    invoice = posted(desk, desk.patient)

    with (
        pytest.raises(ProgrammingError, match="billing_invoice_posted_is_final"),
        transaction.atomic(),
    ):
        Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("1.00"))

    invoice.refresh_from_db()
    assert invoice.total == Decimal("4950.00")


def test_the_database_refuses_to_delete_a_posted_invoice(desk: Desk) -> None:
    invoice = posted(desk, desk.patient)

    with (
        pytest.raises(ProgrammingError, match="billing_invoice_not_deleted_once_posted"),
        transaction.atomic(),
    ):
        Invoice.objects.filter(pk=invoice.pk).delete()

    assert Invoice.objects.filter(pk=invoice.pk).exists()


def test_the_database_lets_a_draft_be_deleted_and_a_posted_invoice_be_cancelled(
    desk: Desk,
) -> None:
    """The triggers refuse only what changes settled money, not the allowed moves."""
    unposted = draft(desk, patient=desk.patient)
    Invoice.objects.filter(pk=unposted.pk).delete()
    invoice = posted(desk, desk.patient)

    Invoice.objects.filter(pk=invoice.pk).update(
        state=InvoiceState.CANCELLED, cancelled_at=timezone.now()
    )

    assert not Invoice.objects.filter(pk=unposted.pk).exists()
    assert Invoice.objects.get(pk=invoice.pk).state == InvoiceState.CANCELLED
