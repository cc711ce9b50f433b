"""Admin of the billing catalogue: service groups, services' billing settings, price lists with
their prices, and contracts.

Reference data edited by those who may change price lists (``MANAGE_PRICE_LIST``); every row
keeps its change history (pghistory), shown on the change page. Rows are deactivated rather
than deleted: delete stays with superusers (Django's model permission).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from clinic.audit.admin import HistoryAdminMixin
from clinic.core.admin import RECORD_FIELDS, BranchListFilter, CapabilityAdminMixin
from clinic.core.roles import Capability

from .models import Contract, Price, PriceList, ServiceBilling, ServiceGroup


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
    list_display = ("service", "group", "tax_mode", "is_sellable")
    list_filter = ("is_sellable", "tax_mode", "group")
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


@admin.register(Contract)
class ContractAdmin(BillingReferenceAdmin):
    list_display = (
        "number",
        "name",
        "counterparty_name",
        "payer_kind",
        "valid_from",
        "valid_to",
        "price_list",
        "is_active",
    )
    list_filter = ("is_active", "payer_kind", "organization")
    search_fields = ("number", "name", "counterparty__name")
    list_select_related = ("organization", "price_list", "counterparty", "patient")
    autocomplete_fields = ("price_list",)
