"""The patient's account pages: login by phone and one-time code, visits with cancel and
reschedule, invoices with online payment, and documents and fiscal receipts to download.

Every page starts from the session's confirmed phone (``account.account_phone``); every object
in a URL is looked up among that phone's cards only, so another patient's id is a 404. The
gateway's notification view is the one page without a session: it trusts nothing in the body
and reads the payment back from the gateway.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import documents as billing_documents
from billing.document_views import pdf_response
from billing.errors import BillingError
from billing.models import DocumentKind, OnlinePayment, OnlinePaymentState
from billing.online import (
    online_payment_notified,
    online_payment_refresh,
    online_payment_start,
    payment_gateway,
)
from clinic.core.net import client_ip
from integrations.payments import GatewayRejected, PaymentGatewayError
from integrations.payments.yookassa import is_yookassa_address
from integrations.website.booking import website_actor
from scheduling.models import AppointmentService
from scheduling.services import SchedulingError, appointment_move

from . import account as accounts
from .booking import (
    BookingUnavailable,
    SlotTaken,
    portal_cancel,
    slot_chosen,
    slots_offered,
)
from .codes import code_send, code_verify, phone_checked
from .errors import PortalError
from .models import CodePurpose
from .views import portal_page

View = Callable[..., HttpResponse]

DOCUMENT_KINDS = {
    "invoice": DocumentKind.INVOICE,
    "act": DocumentKind.ACT,
    "contract": DocumentKind.PAID_SERVICES_CONTRACT,
}


def account_required(view: View) -> View:
    """The page of a logged-in account: others go to the login page and come back after."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        phone = accounts.account_phone(request)
        if phone is None:
            return redirect(f"{reverse('portal:account_login')}?next={request.path}")
        return view(request, accounts.account_for(phone), *args, **kwargs)

    return wrapped


class PhoneForm(forms.Form):
    phone = forms.CharField(
        label=gettext_lazy("Phone"),
        max_length=32,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
    )

    def clean_phone(self) -> str:
        try:
            return phone_checked(self.cleaned_data["phone"])
        except PortalError as refusal:
            raise forms.ValidationError(str(refusal.message)) from None


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code from the message"),
        max_length=6,
        min_length=6,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def _next_url(request: HttpRequest) -> str:
    wanted = request.GET.get("next") or request.POST.get("next") or ""
    account_root = reverse("portal:account")
    return wanted if wanted.startswith(account_root) else account_root


# -- login ----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@portal_page(no_store=True)
def login(request: HttpRequest) -> HttpResponse:
    """The phone step: the same answer whether or not the phone belongs to a patient."""
    if accounts.account_phone(request) is not None:
        return redirect(_next_url(request))
    form = PhoneForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            phone = form.cleaned_data["phone"]
            try:
                code_send(phone=phone, purpose=CodePurpose.LOGIN, ip=client_ip(request))
            except PortalError as refusal:
                form.add_error(refusal.field or None, str(refusal.message))
                status = refusal.status_code
            else:
                request.session[accounts.LOGIN_PHONE_KEY] = phone
                code_url = reverse("portal:account_login_code")
                return redirect(f"{code_url}?next={_next_url(request)}")
    context = {"form": form, "next": _next_url(request)}
    return render(request, "portal/account/login.html", context, status=status)


@require_http_methods(["GET", "POST"])
@portal_page(no_store=True)
def login_code(request: HttpRequest) -> HttpResponse:
    phone = request.session.get(accounts.LOGIN_PHONE_KEY)
    if not phone:
        return redirect("portal:account_login")
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            if code_verify(phone=phone, purpose=CodePurpose.LOGIN, code=form.cleaned_data["code"]):
                target = _next_url(request)
                accounts.account_login(request, str(phone))
                return redirect(target)
            form.add_error(
                "code", _("The code is wrong or has expired. Check it or ask for a new one.")
            )
    context = {"form": form, "phone": phone, "next": _next_url(request)}
    return render(request, "portal/account/login_code.html", context, status=status)


@require_POST
@portal_page(no_store=True)
def logout(request: HttpRequest) -> HttpResponse:
    accounts.account_logout(request)
    return redirect("portal:home")


# -- the account page ---------------------------------------------------------------------


@require_GET
@portal_page(no_store=True)
@account_required
def home(request: HttpRequest, account: accounts.Account) -> HttpResponse:
    upcoming, past = accounts.appointments_split(account)
    payments = list(accounts.payments_of(account)[: accounts.INVOICES_SHOWN])
    context = {
        "account": account,
        "upcoming": [(a, accounts.change_allowed(a)) for a in upcoming],
        "past": past,
        "invoices": accounts.invoice_rows(account),
        "payments": [(p, accounts.receipt_printed(p)) for p in payments],
        "can_pay_online": payment_gateway() is not None,
        "notice_minutes": settings.PORTAL_CHANGE_NOTICE_MINUTES,
    }
    return render(request, "portal/account/home.html", context)


def _owned_appointment(account: accounts.Account, public_id: uuid.UUID) -> Any:
    appointment = accounts.appointment_owned(account, public_id)
    if appointment is None:
        raise Http404(_("No such appointment in your account."))
    return appointment


def _change_refused(request: HttpRequest) -> HttpResponse:
    messages.error(
        request,
        _(
            "This appointment can no longer be changed online. Please call the clinic: changes "
            "are possible up to %(minutes)s minutes before the visit."
        )
        % {"minutes": settings.PORTAL_CHANGE_NOTICE_MINUTES},
    )
    return redirect("portal:account")


@require_POST
@portal_page(no_store=True)
@account_required
def appointment_cancel(
    request: HttpRequest, account: accounts.Account, public_id: uuid.UUID
) -> HttpResponse:
    appointment = _owned_appointment(account, public_id)
    if not accounts.change_allowed(appointment):
        return _change_refused(request)
    try:
        portal_cancel(appointment)
    except PortalError as refusal:
        messages.error(request, str(refusal.message))
    else:
        messages.success(request, _("The appointment is cancelled."))
    return redirect("portal:account")


@require_http_methods(["GET", "POST"])
@portal_page(no_store=True)
@account_required
def appointment_reschedule(
    request: HttpRequest, account: accounts.Account, public_id: uuid.UUID
) -> HttpResponse:
    """Another free time with the same doctor, service and branch (see ``reschedule_page``)."""
    appointment = _owned_appointment(account, public_id)
    if not accounts.change_allowed(appointment):
        return _change_refused(request)
    return reschedule_page(request, appointment, done_url=reverse("portal:account"))


def reschedule_page(request: HttpRequest, appointment: Any, *, done_url: str) -> HttpResponse:
    """The free times of the visit's doctor, service and branch, and the move to one of them:
    checked like a booking, so a time taken meanwhile is refused and the visit stays. Shared by
    the account and the signed link; the caller has checked that the visit may change."""
    first_line = (
        AppointmentService.objects.filter(appointment=appointment)
        .select_related("service")
        .order_by("pk")
        .first()
    )
    service = first_line.service if first_line is not None else None
    error = None
    status = 200
    if request.method == "POST":
        try:
            chosen = slot_chosen(request.POST.get("slot", ""))
            if chosen.doctor.pk != appointment.doctor_id or chosen.service != service:
                raise SlotTaken(
                    "unknown_slot",
                    _("This time can no longer be booked. Please pick another time."),
                    field="slot",
                )
            _moved(appointment, chosen.starts_at)
        except PortalError as refusal:
            error = refusal
            status = refusal.status_code
        else:
            messages.success(request, _("The appointment is moved."))
            return redirect(done_url)
    slots = []
    if service is not None and appointment.doctor is not None:
        slots = [
            slot
            for slot in slots_offered(
                service=service,
                doctor_public_id=str(appointment.doctor.public_id),
                branch_public_id=str(appointment.branch.public_id),
            )
            if slot.starts_at != appointment.starts_at
        ]
    days: dict[Any, list[Any]] = {}
    for slot in slots:
        days.setdefault(slot.starts_at.date(), []).append(slot)
    context = {
        "appointment": appointment,
        "days": days,
        "error": error,
        "zone": appointment.branch.time_zone,
        "back_url": done_url,
    }
    return render(request, "portal/account/reschedule.html", context, status=status)


def _moved(appointment: Any, starts_at: Any) -> None:
    actor = website_actor()
    if actor is None:
        raise BookingUnavailable(
            "booking_unavailable",
            _("Online booking is not available right now. Please call the clinic."),
        )
    try:
        appointment_move(
            actor=actor,
            appointment=appointment,
            starts_at=starts_at,
            reason=_("Moved by the patient online."),
        )
    except SchedulingError as refusal:
        raise SlotTaken(refusal.code, refusal.message, field="slot") from None


# -- invoices, payments and documents -----------------------------------------------------


def _owned_invoice(account: accounts.Account, public_id: uuid.UUID) -> Any:
    invoice = accounts.invoice_owned(account, public_id)
    if invoice is None:
        raise Http404(_("No such invoice in your account."))
    return invoice


@require_POST
@portal_page(no_store=True)
@account_required
def invoice_pay(
    request: HttpRequest, account: accounts.Account, public_id: uuid.UUID
) -> HttpResponse:
    """Send the patient to the gateway's payment page for what the invoice still lacks."""
    invoice = _owned_invoice(account, public_id)
    return_url = request.build_absolute_uri(
        reverse("portal:account_invoice_paid", args=[invoice.public_id])
    )
    try:
        online = online_payment_start(
            invoice=invoice,
            return_url=return_url,
            phone=account.phone,
            description=_("Invoice %(number)s, %(clinic)s")
            % {"number": invoice.number, "clinic": invoice.organization.name},
        )
    except BillingError as refusal:
        messages.error(request, str(refusal.message))
        return redirect("portal:account")
    if online.state == OnlinePaymentState.PENDING and online.confirmation_url:
        return redirect(online.confirmation_url)
    return redirect("portal:account_invoice_paid", invoice.public_id)


@require_GET
@portal_page(no_store=True)
@account_required
def invoice_paid(
    request: HttpRequest, account: accounts.Account, public_id: uuid.UUID
) -> HttpResponse:
    """Where the gateway sends the patient back: the payment's state, read from the gateway."""
    invoice = _owned_invoice(account, public_id)
    online = OnlinePayment.objects.filter(invoice=invoice).order_by("-created_at").first()
    if online is not None:
        online = online_payment_refresh(online)
    context = {"invoice": invoice, "online": online, "states": OnlinePaymentState}
    return render(request, "portal/account/invoice_paid.html", context)


def _pdf(html: Callable[[], str], filename: str) -> HttpResponse:
    try:
        pdf = billing_documents.html_to_pdf(html())
    except BillingError as refusal:
        raise Http404(str(refusal.message)) from None
    response = pdf_response(pdf, filename)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@portal_page(no_store=True)
@account_required
def invoice_document(
    request: HttpRequest, account: accounts.Account, public_id: uuid.UUID, kind: str
) -> HttpResponse:
    if kind not in DOCUMENT_KINDS:
        raise Http404(_("No such document."))
    invoice = _owned_invoice(account, public_id)
    actor = website_actor()
    if actor is None:
        raise Http404(_("Documents cannot be downloaded right now."))
    return _pdf(
        lambda: billing_documents.invoice_document_html(
            actor=actor, invoice=invoice, kind=DOCUMENT_KINDS[kind]
        ),
        f"{kind}-{invoice.number}.pdf",
    )


@require_GET
@portal_page(no_store=True)
@account_required
def payment_receipt(
    request: HttpRequest, account: accounts.Account, public_id: uuid.UUID
) -> HttpResponse:
    payment = accounts.payment_owned(account, public_id)
    actor = website_actor()
    if payment is None or actor is None:
        raise Http404(_("No such receipt in your account."))
    return _pdf(
        lambda: billing_documents.receipt_copy_html(actor=actor, payment=payment),
        f"receipt-{payment.number}.pdf",
    )


# -- the gateway's notifications ----------------------------------------------------------


def _trusted_sender(request: HttpRequest) -> bool:
    address = client_ip(request)
    return address in settings.PAYMENT_NOTIFY_ADDRESSES or is_yookassa_address(address)


@csrf_exempt
@require_POST
def payment_notification(request: HttpRequest) -> HttpResponse:
    """The gateway's webhook. 200 once the payment is settled (or is not ours); 503 asks the
    gateway to deliver again later; a sender outside the gateway's networks gets 403."""
    if not _trusted_sender(request):
        return HttpResponse(status=403)
    try:
        online_payment_notified(request.body)
    except GatewayRejected:
        return HttpResponse(status=400)
    except (PaymentGatewayError, BillingError):
        return HttpResponse(status=503)
    return HttpResponse(status=200)
