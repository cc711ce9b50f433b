"""/api/v1/billing/: the billing API."""

from django.urls import URLPattern, URLResolver, path

from . import api, money_api

urlpatterns: list[URLPattern | URLResolver] = [
    path("prices/lookup/", api.PriceLookupView.as_view(), name="billing-price-lookup"),
    path("invoices/", money_api.InvoiceCreateView.as_view(), name="billing-invoices"),
    path(
        "invoices/<uuid:public_id>/",
        money_api.InvoiceDetailView.as_view(),
        name="billing-invoice",
    ),
    path(
        "invoices/<uuid:public_id>/post/",
        money_api.InvoicePostView.as_view(),
        name="billing-invoice-post",
    ),
    path(
        "invoices/<uuid:public_id>/cancel/",
        money_api.InvoiceCancelView.as_view(),
        name="billing-invoice-cancel",
    ),
    path("payments/", money_api.PaymentCreateView.as_view(), name="billing-payments"),
    path(
        "payments/<uuid:public_id>/",
        money_api.PaymentDetailView.as_view(),
        name="billing-payment",
    ),
    path(
        "payments/<uuid:public_id>/refunds/",
        money_api.RefundCreateView.as_view(),
        name="billing-payment-refunds",
    ),
    path(
        "receipts/<uuid:public_id>/",
        money_api.ReceiptDetailView.as_view(),
        name="billing-receipt",
    ),
    path(
        "receipts/<uuid:public_id>/retry/",
        money_api.ReceiptRetryView.as_view(),
        name="billing-receipt-retry",
    ),
    path(
        "patients/<uuid:public_id>/balance/",
        money_api.PatientBalanceView.as_view(),
        name="billing-patient-balance",
    ),
    path(
        "reconciliation/",
        money_api.ReconciliationView.as_view(),
        name="billing-reconciliation",
    ),
]
