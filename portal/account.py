"""The patient's account: who a confirmed phone stands for, and what they may see and change.

There are no portal passwords. A visitor proves a phone with a one-time code, and the session
then carries that phone and nothing else. Every page works out from the phone, on each request,
which cards belong to it: the people whose card lists that phone, the children and wards they
are the legal representative of, and visits booked online under that phone before the desk
completed the card. Each object an account URL names is looked up *within* that set, so
another patient's id answers 404 exactly like an id that does not exist.
"""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing.models import (
    Invoice,
    InvoiceState,
    OnlinePayment,
    OnlinePaymentState,
    Payment,
    ReceiptState,
)
from billing.services import invoice_outstanding
from patients.models import PHONE_KINDS, Person
from scheduling.models import Appointment, AppointmentStatus

ACCOUNT_KEY = "portal_account"
LOGIN_PHONE_KEY = "portal_login_phone"
PAST_SHOWN = 30
INVOICES_SHOWN = 30


def account_login(request: HttpRequest, phone: str) -> None:
    """Start the account session for a phone the visitor has just confirmed."""
    request.session.cycle_key()  # a new session id: nothing from before the login carries over
    request.session.pop(LOGIN_PHONE_KEY, None)
    request.session[ACCOUNT_KEY] = {"phone": phone, "seen": int(time.time())}


def account_logout(request: HttpRequest) -> None:
    request.session.pop(ACCOUNT_KEY, None)
    request.session.cycle_key()


def account_phone(request: HttpRequest) -> str | None:
    """The confirmed phone of this session, or None (never logged in, or idle too long)."""
    state = request.session.get(ACCOUNT_KEY)
    if not isinstance(state, dict) or not state.get("phone"):
        return None
    now = int(time.time())
    idle_limit = settings.PORTAL_ACCOUNT_IDLE_MINUTES * 60
    if now - int(state.get("seen", 0)) > idle_limit:
        request.session.pop(ACCOUNT_KEY, None)
        return None
    if now - int(state["seen"]) > 60:  # write the session back at most once a minute
        request.session[ACCOUNT_KEY] = {**state, "seen": now}
    return str(state["phone"])


@dataclass(frozen=True)
class Account:
    """What a confirmed phone stands for."""

    phone: str
    people: tuple[Person, ...]

    @property
    def person_ids(self) -> list[int]:
        return [person.pk for person in self.people]


def account_for(phone: str) -> Account:
    """The cards of the phone's owners and of those they legally represent (merged cards are
    followed to the surviving one by the merge itself, so they are left out here)."""
    owners = list(
        Person.objects.filter(
            contacts__kind__in=PHONE_KINDS, contacts__value=phone, merged_into__isnull=True
        )
        .distinct()
        .order_by("last_name", "first_name", "pk")
    )
    today = timezone.localdate()
    represented = list(
        Person.objects.filter(
            Q(relations__valid_until__isnull=True) | Q(relations__valid_until__gte=today),
            relations__relative__in=owners,
            relations__is_legal_representative=True,
            merged_into__isnull=True,
        )
        .exclude(pk__in=[owner.pk for owner in owners])
        .distinct()
        .order_by("birth_date", "pk")
    )
    return Account(phone=phone, people=(*owners, *represented))


def appointments_of(account: Account) -> QuerySet[Appointment]:
    """Every visit of the account's people, and the online bookings still waiting for a card."""
    return (
        Appointment.objects.filter(
            Q(patient_id__in=account.person_ids)
            | Q(patient__isnull=True, primary_phone=account.phone)
        )
        .select_related("status", "doctor", "branch", "patient")
        .prefetch_related("services")
    )


def appointments_split(account: Account) -> tuple[list[Appointment], list[Appointment]]:
    """Upcoming visits (soonest first, cancelled ones left out) and past ones (latest first)."""
    now = timezone.now()
    every = appointments_of(account)
    upcoming = list(
        every.filter(starts_at__gte=now)
        .exclude(status__code=AppointmentStatus.CANCELLED)
        .order_by("starts_at")
    )
    past = list(
        every.filter(Q(starts_at__lt=now) | Q(status__code=AppointmentStatus.CANCELLED)).order_by(
            "-starts_at"
        )[:PAST_SHOWN]
    )
    return upcoming, past


def appointment_owned(account: Account, public_id: uuid.UUID) -> Appointment | None:
    return appointments_of(account).filter(public_id=public_id).first()


def change_allowed(appointment: Appointment) -> bool:
    """The clinic's rule for changes online: not in a final status, and far enough ahead."""
    if appointment.status.is_final:
        return False
    notice = datetime.timedelta(minutes=settings.PORTAL_CHANGE_NOTICE_MINUTES)
    return appointment.starts_at >= timezone.now() + notice


def invoices_of(account: Account) -> QuerySet[Invoice]:
    return (
        Invoice.objects.filter(patient_id__in=account.person_ids, state=InvoiceState.POSTED)
        .select_related("branch", "patient", "organization")
        .order_by("-created_at")
    )


def invoice_owned(account: Account, public_id: uuid.UUID) -> Invoice | None:
    return invoices_of(account).filter(public_id=public_id).first()


@dataclass(frozen=True)
class InvoiceRow:
    invoice: Invoice
    outstanding: Decimal
    pending: OnlinePayment | None


def invoice_rows(account: Account) -> list[InvoiceRow]:
    rows = []
    for invoice in invoices_of(account)[:INVOICES_SHOWN]:
        pending = (
            invoice.online_payments.filter(state=OnlinePaymentState.PENDING)
            .exclude(confirmation_url="")
            .order_by("-created_at")
            .first()
        )
        rows.append(InvoiceRow(invoice, invoice_outstanding(invoice), pending))
    return rows


def payments_of(account: Account) -> QuerySet[Payment]:
    """Payments and refunds of the account's people, with their fiscal receipts."""
    return (
        Payment.objects.filter(patient_id__in=account.person_ids)
        .select_related("receipt", "branch", "organization", "patient")
        .order_by("-posted_at")
    )


def payment_owned(account: Account, public_id: uuid.UUID) -> Payment | None:
    return payments_of(account).filter(public_id=public_id).first()


def receipt_printed(payment: Payment) -> bool:
    receipt = getattr(payment, "receipt", None)
    return receipt is not None and receipt.state == ReceiptState.PRINTED
