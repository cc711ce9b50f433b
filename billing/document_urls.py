"""Printed billing documents as PDFs, under /billing/documents/."""

from django.urls import path

from . import document_views

app_name = "billing_documents"

urlpatterns = [
    path(
        "invoices/<uuid:public_id>/contract/",
        document_views.invoice_contract,
        name="invoice_contract",
    ),
    path("invoices/<uuid:public_id>/invoice/", document_views.invoice, name="invoice"),
    path("invoices/<uuid:public_id>/act/", document_views.act, name="act"),
    path(
        "contracts/<uuid:public_id>/",
        document_views.contract,
        name="contract",
    ),
    path(
        "payments/<uuid:public_id>/receipt-copy/",
        document_views.receipt_copy,
        name="receipt_copy",
    ),
    path("tax-certificate/", document_views.tax_certificate, name="tax_certificate"),
    path("cash-book/", document_views.cash_book, name="cash_book"),
]
