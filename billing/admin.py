"""Admin of billing: the catalogue (service groups, services' billing settings, complex
services, price lists with their prices), payers and contracts (counterparties, model agreements,
contracts with their payment schedules, guarantee letters, discount rules), cash registers,
document templates, and read-only views of the money documents and fiscal receipts.

Reference data edited by those who may change price lists (``MANAGE_PRICE_LIST``); every row
keeps its change history (pghistory), shown on the change page. Rows are deactivated rather
than deleted: delete stays with superusers (Django's model permission).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from clinic.audit.admin import HistoryAdminMixin, ReadOnlyAdminMixin
from clinic.core.admin import RECORD_FIELDS, BranchListFilter, CapabilityAdminMixin
from clinic.core.roles import Capability

from .contracts import contract_take_template_terms
from .documents import shipped_template_source
from .models import (
    CashMovement,
    CashRegister,
    CashShift,
    Contract,
    ContractPayment,
    ContractTemplate,
    Counterparty,
    DiscountRule,
    DocumentKind,
    DocumentTemplate,
    FiscalReceipt,
    GuaranteeLetter,
    Invoice,
    InvoiceLine,
    OnlinePayment,
    Payment,
    PaymentAllocation,
    PaymentPart,
    Price,
    PriceList,
    ServiceBilling,
    ServiceBundleItem,
    ServiceGroup,
)


class BillingReferenceAdmin(HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Tracked billing reference data: record fields read-only, author set on creation."""

    capability = Capability.MANAGE_PRICE_LIST
    readonly_fields = RECORD_FIELDS

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        instances = formset.save(commit=False)
        for instance in instances:
            if instance.pk is None and getattr(instance, "created_by_id", False) is None:
                instance.created_by = request.user
            instance.save()
        for deleted in formset.deleted_objects:
            deleted.delete()
        formset.save_m2m()


@admin.register(ServiceGroup)
class ServiceGroupAdmin(BillingReferenceAdmin):
    list_display = ("name", "parent", "organization", "order", "is_active")
    list_filter = ("is_active", "organization")
    search_fields = ("name",)
    list_select_related = ("organization", "parent")
    autocomplete_fields = ("parent",)


@admin.register(ServiceBilling)
class ServiceBillingAdmin(BillingReferenceAdmin):
    list_display = ("service", "group", "tax_mode", "is_sellable", "lab_unavailable")
    list_filter = ("is_sellable", "lab_unavailable", "tax_mode", "group")
    search_fields = ("service__code", "service__name")
    list_select_related = ("service", "group")
    autocomplete_fields = ("service", "group")


class PriceInline(CapabilityAdminMixin, admin.TabularInline):
    model = Price
    capability = Capability.MANAGE_PRICE_LIST
    fields = ("service", "amount")
    autocomplete_fields = ("service",)
    extra = 0

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("service")


@admin.register(PriceList)
class PriceListAdmin(BillingReferenceAdmin):
    list_display = (
        "name",
        "organization",
        "branch",
        "payer_kind",
        "valid_from",
        "valid_to",
        "is_active",
    )
    list_filter = ("is_active", "payer_kind", "organization", ("branch", BranchListFilter))
    search_fields = ("name",)
    list_select_related = ("organization", "branch")
    date_hierarchy = "valid_from"
    inlines = (PriceInline,)


class ContractPaymentInline(CapabilityAdminMixin, admin.TabularInline):
    model = ContractPayment
    capability = Capability.MANAGE_PRICE_LIST
    extra = 0


@admin.register(ServiceBundleItem)
class ServiceBundleItemAdmin(CapabilityAdminMixin, admin.ModelAdmin):
    """The composition of complex services: one row per included service."""

    capability = Capability.MANAGE_PRICE_LIST
    list_display = ("bundle", "component", "quantity")
    search_fields = ("bundle__code", "bundle__name", "component__code", "component__name")
    list_select_related = ("bundle", "component")
    autocomplete_fields = ("bundle", "component")


@admin.register(Counterparty)
class CounterpartyAdmin(BillingReferenceAdmin):
    list_display = ("name", "kind", "inn", "kpp", "organization", "is_active")
    list_filter = ("is_active", "kind", "organization")
    search_fields = ("name", "inn")
    list_select_related = ("organization",)


@admin.register(ContractTemplate)
class ContractTemplateAdmin(BillingReferenceAdmin):
    """Model agreements; the contract form fills a new contract's terms from the one chosen."""

    list_display = ("name", "payer_kind", "price_list", "term_days", "is_active")
    list_filter = ("is_active", "payer_kind", "organization")
    search_fields = ("name",)
    autocomplete_fields = ("price_list",)


@admin.register(GuaranteeLetter)
class GuaranteeLetterAdmin(BillingReferenceAdmin):
    list_display = ("number", "contract", "patient", "valid_from", "valid_to", "limit_amount")
    list_filter = ("is_active", "contract")
    search_fields = ("number", "patient__last_name", "contract__number")
    list_select_related = ("contract", "patient")
    autocomplete_fields = ("contract", "patient", "services")


@admin.register(DiscountRule)
class DiscountRuleAdmin(BillingReferenceAdmin):
    list_display = (
        "name",
        "kind",
        "method",
        "value",
        "max_value",
        "is_automatic",
        "contract",
        "group",
        "service",
        "is_active",
    )
    list_filter = ("is_active", "kind", "is_automatic", "organization")
    search_fields = ("name",)
    autocomplete_fields = ("contract", "group", "service")


@admin.register(CashRegister)
class CashRegisterAdmin(BillingReferenceAdmin):
    capability = Capability.MANAGE_REFERENCE_DATA
    list_display = ("name", "branch", "driver", "is_active")
    list_filter = ("is_active", "driver", ("branch", BranchListFilter))
    search_fields = ("name",)
    list_select_related = ("branch",)


@admin.register(DocumentTemplate)
class DocumentTemplateAdmin(BillingReferenceAdmin):
    """An organization's wording of a document; the shipped template is shown beside it and is
    where a new one starts from (``?kind=`` on the add page)."""

    list_display = ("kind", "organization", "is_active", "updated_at")
    list_filter = ("is_active", "kind", "organization")
    readonly_fields = (*RECORD_FIELDS, "shipped_template")

    @admin.display(description=_("shipped template"))
    def shipped_template(self, obj: DocumentTemplate) -> str:
        return shipped_template_source(obj.kind) if obj.kind else ""

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        kind = request.GET.get("kind", "")
        if kind in DocumentKind.values:
            initial["body"] = shipped_template_source(kind)
        return initial


class DocumentAdmin(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Money documents are shown, never edited here: they change only through the services."""

    capability = Capability.VIEW_FINANCIAL_REPORT


class InvoiceLineInline(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.TabularInline):
    model = InvoiceLine
    capability = Capability.VIEW_FINANCIAL_REPORT
    extra = 0
    fields = (
        "position",
        "service_code",
        "service_name",
        "performer",
        "quantity",
        "unit_price",
        "adjustment",
        "amount",
    )
    readonly_fields = fields


@admin.register(Invoice)
class InvoiceAdmin(DocumentAdmin):
    list_display = ("__str__", "patient", "payer_kind", "state", "total", "posted_at", "branch")
    list_filter = ("state", "payer_kind", "online_priced", ("branch", BranchListFilter))
    search_fields = ("patient__last_name", "patient__first_name")
    list_select_related = ("patient", "branch")
    date_hierarchy = "posted_at"
    inlines = (InvoiceLineInline,)


class PaymentPartInline(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.TabularInline):
    model = PaymentPart
    capability = Capability.VIEW_FINANCIAL_REPORT
    extra = 0


class PaymentAllocationInline(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.TabularInline):
    model = PaymentAllocation
    capability = Capability.VIEW_FINANCIAL_REPORT
    extra = 0


@admin.register(Payment)
class PaymentAdmin(DocumentAdmin):
    list_display = ("__str__", "kind", "patient", "total", "posted_at", "posted_by", "branch")
    list_filter = ("kind", ("branch", BranchListFilter))
    search_fields = ("patient__last_name", "patient__first_name")
    list_select_related = ("patient", "branch", "posted_by")
    date_hierarchy = "posted_at"
    inlines = (PaymentPartInline, PaymentAllocationInline)


@admin.register(OnlinePayment)
class OnlinePaymentAdmin(DocumentAdmin):
    """Online payments, including those the gateway took but billing could not post
    (``needs_review``): the cashier posts those by hand and refunds or allocates the money."""

    list_display = ("__str__", "invoice", "amount", "state", "gateway_payment_id", "created_at")
    list_filter = ("state", "gateway")
    search_fields = ("gateway_payment_id", "phone")
    list_select_related = ("invoice",)
    date_hierarchy = "created_at"


@admin.register(CashShift)
class CashShiftAdmin(DocumentAdmin):
    list_display = ("__str__", "cashier", "state", "opened_at", "closed_at")
    list_filter = ("state", "register")
    list_select_related = ("register", "cashier")
    date_hierarchy = "opened_at"


@admin.register(CashMovement)
class CashMovementAdmin(DocumentAdmin):
    list_display = ("__str__", "shift", "reason", "posted_at", "posted_by")
    list_filter = ("kind",)
    date_hierarchy = "posted_at"


@admin.register(FiscalReceipt)
class FiscalReceiptAdmin(DocumentAdmin):
    list_display = (
        "__str__",
        "operation",
        "state",
        "register",
        "fiscal_document_number",
        "printed_at",
        "created_at",
    )
    list_filter = ("state", "operation", "register")
    search_fields = ("task_uuid", "fiscal_document_number")
    list_select_related = ("register",)
    date_hierarchy = "created_at"


@admin.register(Contract)
class ContractAdmin(BillingReferenceAdmin):
    list_display = (
        "number",
        "name",
        "counterparty",
        "payer_kind",
        "valid_from",
        "valid_to",
        "price_list",
        "is_active",
    )
    list_filter = ("is_active", "payer_kind", "organization")
    search_fields = ("number", "name", "counterparty__name")
    list_select_related = ("organization", "price_list", "counterparty", "patient")
    autocomplete_fields = ("price_list", "counterparty", "patient", "template")
    inlines = (ContractPaymentInline,)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A new contract made from a model agreement takes the terms left empty from it."""
        if not change:
            contract_take_template_terms(obj)
        super().save_model(request, obj, form, change)
