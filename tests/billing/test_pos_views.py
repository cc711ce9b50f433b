"""The cashier's POS page through the test client: who may open it, shifts, split payments with
an idempotency key, invoicing a visit, refunds, refusals shown by their field with nothing
posted, and receipts printed by a fake register over HTTP (the fiscal relay runs in the test)."""

from __future__ import annotations

import datetime
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import include, path, reverse
from django.utils import timezone

import clinic.urls
from billing import services, shifts
from billing.models import (
    CashShift,
    FiscalReceipt,
    Invoice,
    InvoiceState,
    PatientAccount,
    Payment,
    PaymentKind,
    PaymentMethod,
    ReceiptState,
    ShiftState,
)
from clinic.outbox.services import outbox_relay
from devices.fake_atol import FakeAtol
from scheduling.models import Appointment, BookingChannel
from scheduling.services import BookingRequest, appointment_book
from tests.core.factories import SpecialtyFactory
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

from .conftest import Desk
from .factories import PriceFactory

# The page's URLs as clinic/urls.py mounts them (``pos/``), for as long as it may not yet.
urlpatterns = [
    *(
        []
        if any(getattr(p, "namespace", None) == "pos" for p in clinic.urls.urlpatterns)
        else [path("pos/", include("billing.pos_urls"))]
    ),
    *clinic.urls.urlpatterns,
]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]


def relay() -> None:
    while outbox_relay(channel="fiscal").claimed:
        pass


@pytest.fixture
def patient(desk: Desk) -> Any:
    person = PersonFactory(
        organization=desk.organization, last_name="Kuznetsova", first_name="Olga"
    )
    ContactFactory(person=person, value="+79165550101")
    return person


def cashier_client(desk: Desk) -> Client:
    client = Client(headers={"accept-language": "en"})
    client.force_login(desk.cashier)
    return client


def page_url(desk: Desk, patient: Any = None, **extra: str) -> str:
    url = f"{reverse('pos:page')}?branch={desk.branch.public_id}"
    if patient is not None:
        url += f"&patient={patient.public_id}"
    for key, value in extra.items():
        url += f"&{key}={value}"
    return url


def form_key(html: str, form_marker: str) -> str:
    """The idempotency key rendered in the form marked ``form_marker``."""
    start = html.index(form_marker)
    found = re.search(r'name="idempotency_key" value="([^"]+)"', html[start:])
    assert found is not None
    return found.group(1)


def posted_invoice(desk: Desk, patient: Any) -> Invoice:
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.consultation)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.ultrasound)
    return services.invoice_post(actor=desk.cashier, invoice=invoice)


def open_shift(desk: Desk) -> CashShift:
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="500")
    relay()
    return shift


def pay_data(desk: Desk, patient: Any, shift: CashShift | None, **fields: str) -> dict[str, str]:
    data = {
        "branch": str(desk.branch.public_id),
        "patient": str(patient.public_id),
        "idempotency_key": f"pos-{uuid.uuid4().hex}",
    }
    if shift is not None:
        data["shift"] = str(shift.public_id)
    data.update(fields)
    return data


def balance(desk: Desk, patient: Any) -> tuple[Decimal, Decimal]:
    account = PatientAccount.objects.get(organization=desk.organization, patient=patient)
    return account.debt, account.advance


# ---- access --------------------------------------------------------------------------------


def test_a_cashier_opens_the_page_with_the_branch_registers(desk: Desk) -> None:
    response = cashier_client(desk).get(reverse("pos:page"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-register="{desk.register.public_id}"' in html
    assert "data-open-shift" in html
    assert "<kbd>F2</kbd>" in html and "<kbd>F4</kbd>" in html and "<kbd>F8</kbd>" in html


def test_a_registrar_is_refused_with_403(desk: Desk) -> None:
    client = Client(headers={"accept-language": "en"})
    client.force_login(desk.registrar)
    assert client.get(reverse("pos:page")).status_code == 403
    assert (
        client.post(
            reverse("pos:shift_open"),
            {"branch": str(desk.branch.public_id), "register": str(desk.register.public_id)},
        ).status_code
        == 403
    )
    assert not CashShift.objects.exists()


def test_an_accountant_landing_on_the_cash_desk_goes_to_the_reports(desk: Desk) -> None:
    client = Client(headers={"accept-language": "en"})
    client.force_login(desk.accountant)
    response = client.get(reverse("pos:page"))
    assert response.status_code == 302
    assert response["Location"] == reverse("billing_reports:revenue")
    assert client.post(reverse("pos:pay"), {}).status_code == 403


def test_anonymous_is_sent_to_the_login_page(desk: Desk) -> None:
    response = Client().get(reverse("pos:page"))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_patient_is_found_by_phone_and_shown_with_the_balance(desk: Desk, patient: Any) -> None:
    client = cashier_client(desk)
    found = client.get(page_url(desk, q="+7 916 555-01-01"))
    assert f'data-pick-patient="{patient.public_id}"' in found.content.decode()
    shown = client.get(page_url(desk, patient))
    html = shown.content.decode()
    assert "data-patient-name>Kuznetsova Olga" in html
    assert "data-debt>0<" in html


# ---- shifts --------------------------------------------------------------------------------


def test_the_cashier_opens_a_shift_with_opening_cash(desk: Desk, atol: FakeAtol) -> None:
    client = cashier_client(desk)
    response = client.post(
        reverse("pos:shift_open"),
        {
            "branch": str(desk.branch.public_id),
            "register": str(desk.register.public_id),
            "opening_cash": "1500,00",
        },
    )
    assert response.status_code == 303
    shift = CashShift.objects.get(register=desk.register)
    assert shift.state == ShiftState.OPEN
    assert shift.opening_cash == Decimal("1500.00")
    assert shift.cashier == desk.cashier
    html = client.get(response["Location"]).content.decode()
    assert "data-cash-in-drawer>1500.00<" in html
    assert "Shift opened" in html


def test_cash_out_over_the_drawer_is_refused_by_the_amount(desk: Desk, atol: FakeAtol) -> None:
    shift = open_shift(desk)
    response = cashier_client(desk).post(
        reverse("pos:cash_move"),
        {
            "branch": str(desk.branch.public_id),
            "shift": str(shift.public_id),
            "kind": "cash_out",
            "amount": "600.00",
        },
    )
    assert response.status_code == 400
    assert 'data-field-errors="amount">The drawer holds 500.00, less than 600.00.' in (
        response.content.decode()
    )
    assert not shift.movements.exists()


# ---- payments ------------------------------------------------------------------------------


def test_a_posted_invoice_is_paid_in_cash_and_by_card(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    shift = open_shift(desk)
    invoice = posted_invoice(desk, patient)
    client = cashier_client(desk)
    html = client.get(page_url(desk, patient)).content.decode()
    assert f'data-invoice="{invoice.public_id}"' in html
    assert "data-outstanding>4950.00<" in html

    response = client.post(
        reverse("pos:pay"),
        pay_data(
            desk,
            patient,
            shift,
            invoice=str(invoice.public_id),
            **{
                "parts[0].amount": "2000",
                "parts[1].amount": "2950.00",
                "parts[1].card_rrn": "123456789012",
                "cash_given": "5000",
            },
        ),
    )
    assert response.status_code == 303
    payment = Payment.objects.get(invoice=invoice)
    assert payment.total == Decimal("4950.00")
    assert sorted(payment.parts.values_list("method", "amount", "card_rrn")) == [
        (PaymentMethod.CARD, Decimal("2950.00"), "123456789012"),
        (PaymentMethod.CASH, Decimal("2000.00"), ""),
    ]
    assert balance(desk, patient) == (Decimal("0.00"), Decimal("0.00"))

    polled = client.get(reverse("pos:receipts") + f"?branch={desk.branch.public_id}")
    assert f'data-receipt-payment="{payment.public_id}"' in polled.content.decode()
    assert "data-polling" in polled.content.decode()
    relay()
    assert FiscalReceipt.objects.get(payment=payment).state == ReceiptState.PRINTED
    polled = client.get(reverse("pos:receipts") + f"?branch={desk.branch.public_id}")
    assert 'data-receipt-state="printed"' in polled.content.decode()
    assert "data-polling" not in polled.content.decode()


def test_a_double_submit_posts_one_payment(desk: Desk, patient: Any, atol: FakeAtol) -> None:
    shift = open_shift(desk)
    invoice = posted_invoice(desk, patient)
    client = cashier_client(desk)
    key = form_key(client.get(page_url(desk, patient)).content.decode(), "data-pay-form")
    data = pay_data(
        desk, patient, shift, invoice=str(invoice.public_id), **{"parts[0].amount": "1000.00"}
    )
    data["idempotency_key"] = key
    first = client.post(reverse("pos:pay"), data)
    second = client.post(reverse("pos:pay"), data)
    assert first.status_code == second.status_code == 303
    assert Payment.objects.filter(invoice=invoice).count() == 1
    assert balance(desk, patient) == (Decimal("3950.00"), Decimal("0.00"))


def test_a_visit_is_invoiced_and_its_draft_posted_and_paid_in_one_go(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    specialty = SpecialtyFactory(name="Therapy")
    therapist = doctor(desk.branch, specialty=specialty, name="Dr Lebedev", grid_step_minutes=30)
    works(therapist)
    visit_service = service_for(specialty, organization=desk.organization, name="Therapist visit")
    PriceFactory(price_list=desk.price_list, service=visit_service, amount=Decimal("1800.00"))
    appointment = appointment_book(
        actor=desk.registrar,
        request=BookingRequest(
            branch=desk.branch,
            services=[visit_service],
            starts_at=local(tomorrow(), "10:00"),
            channel=BookingChannel.DESK,
            patient=patient,
            doctor=therapist,
        ),
    )
    # The visit took place yesterday.
    Appointment.objects.filter(pk=appointment.pk).update(
        starts_at=appointment.starts_at - datetime.timedelta(days=2),
        ends_at=appointment.ends_at - datetime.timedelta(days=2),
    )
    shift = open_shift(desk)
    client = cashier_client(desk)
    html = client.get(page_url(desk, patient)).content.decode()
    assert f'value="{appointment.public_id}"' in html

    response = client.post(
        reverse("pos:invoice_visits"),
        {
            "branch": str(desk.branch.public_id),
            "patient": str(patient.public_id),
            "appointment": [str(appointment.public_id)],
        },
    )
    assert response.status_code == 303
    invoice = Invoice.objects.get(patient=patient)
    assert invoice.state == InvoiceState.DRAFT
    assert invoice.total == Decimal("1800.00")
    html = client.get(response["Location"]).content.decode()
    assert f'value="{appointment.public_id}"' not in html  # invoiced, so no longer offered

    response = client.post(
        reverse("pos:pay"),
        pay_data(
            desk, patient, shift, invoice=str(invoice.public_id), **{"parts[0].amount": "1800"}
        ),
    )
    assert response.status_code == 303
    invoice.refresh_from_db()
    assert invoice.state == InvoiceState.POSTED
    assert Payment.objects.get(invoice=invoice).total == Decimal("1800.00")
    assert balance(desk, patient) == (Decimal("0.00"), Decimal("0.00"))


def test_a_refused_draft_payment_leaves_the_draft_unposted(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    """The draft is posted and paid in one transaction: a refused payment posts neither."""
    shift = open_shift(desk)
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.consultation)
    response = cashier_client(desk).post(
        reverse("pos:pay"),
        pay_data(
            desk, patient, shift, invoice=str(invoice.public_id), **{"parts[3].amount": "100.00"}
        ),
    )
    assert response.status_code == 400
    assert 'data-field-errors="parts">The advance is 0' in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.state == InvoiceState.DRAFT
    assert not Payment.objects.exists()


def test_paying_in_a_closed_shift_is_refused(desk: Desk, patient: Any, atol: FakeAtol) -> None:
    shift = open_shift(desk)
    invoice = posted_invoice(desk, patient)
    client = cashier_client(desk)
    client.get(page_url(desk, patient))
    shifts.shift_close(actor=desk.cashier, shift=shift)  # closed from another screen

    response = client.post(
        reverse("pos:pay"),
        pay_data(desk, patient, shift, invoice=str(invoice.public_id), **{"parts[0].amount": "10"}),
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-field-errors="shift">The cash shift of' in html
    assert "is closed." in html
    assert not Payment.objects.exists()
    assert balance(desk, patient) == (Decimal("4950.00"), Decimal("0"))


def test_a_bad_amount_is_shown_by_its_own_field(desk: Desk, patient: Any, atol: FakeAtol) -> None:
    shift = open_shift(desk)
    invoice = posted_invoice(desk, patient)
    response = cashier_client(desk).post(
        reverse("pos:pay"),
        pay_data(
            desk,
            patient,
            shift,
            invoice=str(invoice.public_id),
            **{"parts[0].amount": "", "parts[1].amount": "12.345"},
        ),
    )
    assert response.status_code == 400
    assert (
        'data-field-errors="parts[1].amount">“12.345” is not an amount of money with at most two '
        "decimals." in response.content.decode()
    )
    assert not Payment.objects.exists()


# ---- refunds -------------------------------------------------------------------------------


def paid(desk: Desk, patient: Any, shift: CashShift) -> Payment:
    invoice = posted_invoice(desk, patient)
    return services.payment_post(
        actor=desk.cashier,
        branch=desk.branch,
        shift=shift,
        invoice=invoice,
        parts=[
            services.PartInput(PaymentMethod.CASH, Decimal("2200.00")),
            services.PartInput(PaymentMethod.CARD, Decimal("2750.00"), card_rrn="000011112222"),
        ],
    )


def refund_data(desk: Desk, patient: Any, payment: Payment, **fields: str) -> dict[str, str]:
    return {
        "branch": str(desk.branch.public_id),
        "patient": str(patient.public_id),
        "payment": str(payment.public_id),
        "idempotency_key": f"pos-{uuid.uuid4().hex}",
        **fields,
    }


def test_a_service_not_rendered_is_refunded_to_the_card(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    shift = open_shift(desk)
    payment = paid(desk, patient, shift)
    ultrasound = payment.invoice.lines.get(service=desk.ultrasound)
    client = cashier_client(desk)
    html = client.get(page_url(desk, patient)).content.decode()
    assert f'data-refundable="{payment.public_id}"' in html
    # The lines are offered in the invoice's order: the consultation, then the ultrasound.
    assert f'name="lines[1].line" value="{ultrasound.pk}"' in html

    response = client.post(
        reverse("pos:refund"),
        refund_data(
            desk,
            patient,
            payment,
            reason="Ultrasound not performed",
            **{
                "lines[1].line": str(ultrasound.pk),
                "lines[1].amount": "2750.00",
                "parts[1].amount": "2750.00",
            },
        ),
    )
    assert response.status_code == 303
    refund = Payment.objects.get(kind=PaymentKind.REFUND)
    assert refund.corrects == payment
    assert refund.total == Decimal("2750.00")
    assert refund.reason == "Ultrasound not performed"
    assert list(refund.parts.values_list("method", "amount")) == [
        (PaymentMethod.CARD, Decimal("2750.00"))
    ]
    assert list(refund.allocations.values_list("line", "amount")) == [
        (ultrasound.pk, Decimal("2750.00"))
    ]
    relay()
    assert FiscalReceipt.objects.get(payment=refund).state == ReceiptState.PRINTED


def test_an_over_refund_is_refused_by_its_field_and_nothing_is_posted(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    shift = open_shift(desk)
    payment = paid(desk, patient, shift)
    ultrasound = payment.invoice.lines.get(service=desk.ultrasound)
    response = cashier_client(desk).post(
        reverse("pos:refund"),
        refund_data(
            desk,
            patient,
            payment,
            reason="Not performed",
            **{
                "lines[1].line": str(ultrasound.pk),
                "lines[1].amount": "2750.00",
                "parts[0].amount": "2750.00",
            },
        ),
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        'data-field-errors="parts[0].amount">2750.00 by Cash is more than the payment can give '
        "back (2200.00)." in html
    )
    assert "data-open-on-load" in html  # the dialog opens again with what was typed
    assert 'value="Not performed"' in html
    assert not Payment.objects.filter(kind=PaymentKind.REFUND).exists()
    assert FiscalReceipt.objects.filter(operation="sell_return").count() == 0


def test_a_refund_without_a_reason_is_refused(desk: Desk, patient: Any, atol: FakeAtol) -> None:
    shift = open_shift(desk)
    payment = paid(desk, patient, shift)
    response = cashier_client(desk).post(
        reverse("pos:refund"),
        refund_data(desk, patient, payment, reason=" ", **{"parts[1].amount": "10.00"}),
    )
    assert response.status_code == 400
    assert 'data-field-errors="reason">Say why the money is given back.' in (
        response.content.decode()
    )
    assert not Payment.objects.filter(kind=PaymentKind.REFUND).exists()


# ---- receipts and closing ------------------------------------------------------------------


def test_closing_is_refused_while_a_receipt_is_unprinted_and_a_retry_prints_it(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    atol.set_mode("offline")
    shift = shifts.shift_open(actor=desk.cashier, register=desk.register, opening_cash="0")
    relay()
    opening = FiscalReceipt.objects.get(shift=shift)
    assert opening.state == ReceiptState.QUEUED
    client = cashier_client(desk)

    response = client.post(
        reverse("pos:shift_close"),
        {"branch": str(desk.branch.public_id), "shift": str(shift.public_id)},
    )
    assert response.status_code == 400
    assert (
        'data-field-errors="shift">1 receipt(s) of the shift are not printed yet: wait for the '
        "register or retry them before closing." in response.content.decode()
    )
    shift.refresh_from_db()
    assert shift.state == ShiftState.OPEN
    assert f'data-receipt="{opening.public_id}"' in response.content.decode()
    assert "data-receipt-retry" in response.content.decode()

    atol.set_mode("ok")
    response = client.post(
        reverse("pos:receipt_retry", args=[opening.public_id]),
        {"branch": str(desk.branch.public_id)},
    )
    assert response.status_code == 303
    relay()
    opening.refresh_from_db()
    assert opening.state == ReceiptState.PRINTED

    response = client.post(
        reverse("pos:shift_close"),
        {"branch": str(desk.branch.public_id), "shift": str(shift.public_id)},
    )
    assert response.status_code == 303
    relay()
    html = client.get(response["Location"]).content.decode()
    assert 'data-reconciliation="matches"' in html


def test_retrying_a_printed_receipt_is_refused_by_the_receipt(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    shift = open_shift(desk)
    opening = FiscalReceipt.objects.get(shift=shift)
    response = cashier_client(desk).post(
        reverse("pos:receipt_retry", args=[opening.public_id]),
        {"branch": str(desk.branch.public_id)},
    )
    assert response.status_code == 400
    assert 'data-field-errors="receipt">The receipt is Printed: there is nothing to retry.' in (
        response.content.decode()
    )


def test_the_page_costs_the_same_queries_whatever_the_number_of_payments(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    shift = open_shift(desk)
    client = cashier_client(desk)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(page_url(desk, patient))
        assert response.status_code == 200
        return len(captured)

    paid(desk, patient, shift)
    relay()
    client.get(page_url(desk, patient))
    one = queries()
    for _ in range(3):
        paid(desk, patient, shift)
    relay()
    assert queries() == one
    assert one <= 40


def test_a_manual_discount_is_applied_within_its_limit(desk: Desk, patient: Any) -> None:
    import datetime

    from billing.models import AdjustmentMethod, DiscountRule

    rule = DiscountRule.objects.create(
        organization=desk.organization,
        name="Pensioner",
        method=AdjustmentMethod.PERCENT,
        value=Decimal("5"),
        max_value=Decimal("10"),
        valid_from=datetime.date(2020, 1, 1),
    )
    invoice = services.invoice_create(actor=desk.cashier, branch=desk.branch, patient=patient)
    services.invoice_line_add(actor=desk.cashier, invoice=invoice, service=desk.consultation)
    client = cashier_client(desk)
    page = client.get(page_url(desk, patient)).content.decode()
    assert "data-discount-form" in page and "Pensioner (5.00%, up to 10.00)" in page
    data = {
        "branch": str(desk.branch.public_id),
        "patient": str(patient.public_id),
        "invoice": str(invoice.public_id),
        "position": "1",
        "rule": str(rule.public_id),
        "value": "15",
    }
    over = client.post(reverse("pos:discount"), data)
    assert over.status_code == 400
    assert "15 is over the limit 10.00 of the rule “Pensioner”." in over.content.decode()
    invoice.refresh_from_db()
    assert invoice.total == Decimal("2200.00")
    applied = client.post(reverse("pos:discount"), {**data, "value": "10"})
    assert applied.status_code == 303
    invoice.refresh_from_db()
    assert invoice.total == Decimal("1980.00")
    assert invoice.discount_total == Decimal("220.00")
    removed = client.post(reverse("pos:discount"), {**data, "rule": "", "value": ""})
    assert removed.status_code == 303
    invoice.refresh_from_db()
    assert invoice.total == Decimal("2200.00")


def test_the_cashiers_actions_of_another_day(desk: Desk, patient: Any, atol: FakeAtol) -> None:
    import datetime

    from billing.models import CashShift

    shift = open_shift(desk)
    paid(desk, patient, shift)
    client = cashier_client(desk)
    today = client.get(page_url(desk)).content.decode()
    section = today[today.index("data-cashier-actions") :]
    assert "Shift opened" in section and "Payment" in section
    # Move the shift and its documents to a week ago: today is empty, that day shows them.
    week_ago = timezone.now() - datetime.timedelta(days=7)
    CashShift.objects.filter(pk=shift.pk).update(opened_at=week_ago)
    with connection.cursor() as cursor:  # payments are final: move them past their trigger
        cursor.execute("ALTER TABLE billing_payment DISABLE TRIGGER USER")
        cursor.execute("UPDATE billing_payment SET posted_at = %s", [week_ago])
        cursor.execute("ALTER TABLE billing_payment ENABLE TRIGGER USER")
    assert "data-cashier-actions" not in client.get(page_url(desk)).content.decode()
    day = timezone.localtime(week_ago, desk.branch.zone).date().isoformat()
    earlier = client.get(page_url(desk, day=day)).content.decode()
    assert "data-cashier-actions" in earlier and "Shift opened" in earlier
    bad = client.get(page_url(desk, day="31.02"))
    assert "The parameter “day”: “31.02” is not a date (YYYY-MM-DD)." in bad.content.decode()


def test_the_next_shift_opens_with_what_the_last_left_in_the_drawer(
    desk: Desk, patient: Any, atol: FakeAtol
) -> None:
    client = cashier_client(desk)
    assert 'value="0.00" data-opening-cash' in client.get(page_url(desk)).content.decode()
    shift = open_shift(desk)  # 500 at opening
    paid(desk, patient, shift)
    relay()
    shifts.shift_close(actor=desk.cashier, shift=shift)
    relay()
    shift.refresh_from_db()
    left = shift.totals["cash_in_drawer"]
    assert Decimal(left) > Decimal("500")
    html = client.get(page_url(desk)).content.decode()
    assert f'value="{left}" data-opening-cash' in html
