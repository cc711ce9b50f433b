"""Admin of the portal: each doctor's online-booking settings (one-time codes stay out of it:
only their hashes are kept and they expire in minutes)."""

from __future__ import annotations

from django.contrib import admin

from clinic.audit.admin import HistoryAdminMixin
from clinic.core.admin import RECORD_FIELDS, CapabilityAdminMixin
from clinic.core.roles import Capability

from .models import DoctorOnlineSettings


@admin.register(DoctorOnlineSettings)
class DoctorOnlineSettingsAdmin(HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    capability = Capability.MANAGE_REFERENCE_DATA
    readonly_fields = RECORD_FIELDS
    list_display = (
        "doctor",
        "is_bookable_online",
        "consultation_mode",
        "show_price",
        "prepayment_amount",
        "for_children",
        "for_adults",
    )
    list_filter = ("is_bookable_online", "consultation_mode", "for_children")
    search_fields = ("doctor__name",)
    list_select_related = ("doctor",)
    autocomplete_fields = ("doctor", "services")
