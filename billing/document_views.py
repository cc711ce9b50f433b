"""Printed billing documents as PDF responses.

The views only translate the request: they fetch through ``billing.documents`` (404 outside the
actor's organizations), let the document check access (403, recorded as a security event) and
answer with the PDF shown inline, so the browser opens its print dialog. A query parameter or a
state that cannot be printed answers 400 with the message as plain text: the message quotes
the value from the request, which must not be rendered as HTML.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.http import require_GET

from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record

from . import documents
from .errors import BillingError
from .models import DocumentKind


def pdf_response(pdf: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


def _printed(
    request: HttpRequest, what: str, html: Callable[[], str], filename: Callable[[], str]
) -> HttpResponse:
    """Render the document; a refusal of access is recorded before it becomes the 403 page, a
    refusal of the request is the 400 answer with its message."""
    try:
        pdf = documents.html_to_pdf(html())
    except PermissionDenied:
        security_event_record(
            kind=SecurityEventKind.ACCESS_DENIED,
            request=request,
            user=request.user,
            detail=f"print {what}",
        )
        raise
    except BillingError as error:
        return _bad_request(error)
    return pdf_response(pdf, filename())


def _bad_request(error: BillingError) -> HttpResponse:
    return HttpResponseBadRequest(str(error.message), content_type="text/plain; charset=utf-8")


def _invoice_document(request: HttpRequest, public_id: uuid.UUID, kind: str) -> HttpResponse:
    invoice = documents.invoice_get_for_actor(actor=request.user, public_id=public_id)
    return _printed(
        request,
        kind,
        lambda: documents.invoice_document_html(actor=request.user, invoice=invoice, kind=kind),
        lambda: f"{kind.replace('_', '-')}-{invoice.number}.pdf",
    )


@require_GET
@login_required
def invoice_contract(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The contract for paid medical services for the services of an invoice."""
    return _invoice_document(request, public_id, DocumentKind.PAID_SERVICES_CONTRACT)


@require_GET
@login_required
def invoice(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The invoice (счёт) with its lines, discounts and total."""
    return _invoice_document(request, public_id, DocumentKind.INVOICE)


@require_GET
@login_required
def act(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The act of services rendered for an invoice: performers and visit dates."""
    return _invoice_document(request, public_id, DocumentKind.ACT)


@require_GET
@login_required
def contract(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The contract for paid medical services of a contract signed with a patient."""
    found = documents.contract_get_for_actor(actor=request.user, public_id=public_id)
    return _printed(
        request,
        DocumentKind.PAID_SERVICES_CONTRACT,
        lambda: documents.contract_document_html(actor=request.user, contract=found),
        lambda: f"contract-{found.public_id.hex[:8]}.pdf",
    )


@require_GET
@login_required
def receipt_copy(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """A copy of the fiscal receipt of a payment or refund."""
    payment = documents.payment_get_for_actor(actor=request.user, public_id=public_id)
    return _printed(
        request,
        DocumentKind.RECEIPT_COPY,
        lambda: documents.receipt_copy_html(actor=request.user, payment=payment),
        lambda: f"receipt-copy-{payment.number}.pdf",
    )


@require_GET
@login_required
def tax_certificate(request: HttpRequest) -> HttpResponse:
    """The certificate of payment for the tax deduction: ``patient``, ``from``, ``to``,
    optionally ``services``, ``taxpayer`` and ``taxpayer_inn`` (see
    ``documents.tax_certificate_params_from``)."""
    try:
        params = documents.tax_certificate_params_from(actor=request.user, data=request.GET)
    except BillingError as error:
        return _bad_request(error)
    return _printed(
        request,
        DocumentKind.TAX_CERTIFICATE,
        lambda: documents.tax_certificate_html(actor=request.user, params=params),
        lambda: f"tax-certificate-{params.date_from.year}-{params.patient.public_id.hex[:8]}.pdf",
    )


@require_GET
@login_required
def cash_book(request: HttpRequest) -> HttpResponse:
    """The cash book sheet of a register for a day: ``register`` and ``date``."""
    try:
        params = documents.cash_book_params_from(actor=request.user, data=request.GET)
    except BillingError as error:
        return _bad_request(error)
    return _printed(
        request,
        DocumentKind.CASH_BOOK,
        lambda: documents.cash_book_html(actor=request.user, params=params),
        lambda: f"cash-book-{params.day.isoformat()}.pdf",
    )
