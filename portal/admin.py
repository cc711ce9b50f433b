"""Admin of the portal: each doctor's online-booking settings (one-time codes stay out of it:
only their hashes are kept and they expire in minutes)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from clinic.audit.admin import HistoryAdminMixin
from clinic.core.admin import RECORD_FIELDS, CapabilityAdminMixin
from clinic.core.roles import Capability

from .models import DoctorOnlineSettings


@admin.register(DoctorOnlineSettings)
class DoctorOnlineSettingsAdmin(HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    capability = Capability.MANAGE_REFERENCE_DATA
    readonly_fields = ("photo_preview", *RECORD_FIELDS)
    list_display = (
        "doctor",
        "is_bookable_online",
        "consultation_mode",
        "show_price",
        "prepayment_amount",
        "for_children",
        "for_adults",
        "has_photo",
    )
    list_filter = ("is_bookable_online", "consultation_mode", "for_children")
    search_fields = ("doctor__name",)
    list_select_related = ("doctor",)
    autocomplete_fields = ("doctor", "services")

    @admin.display(description=_("photo as patients see it"))
    def photo_preview(self, obj: DoctorOnlineSettings) -> str:
        if not obj.photo:
            return "—"
        return format_html(
            '<img src="{}" alt="{}" style="max-width: 8rem; max-height: 8rem;">',
            obj.photo.url,
            obj.doctor.name,
        )

    @admin.display(description=_("photo"), boolean=True)
    def has_photo(self, obj: DoctorOnlineSettings) -> bool:
        return bool(obj.photo)
