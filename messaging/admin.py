"""Admin of patient messaging: branch senders, templates (previewed while they are written),
reminder rules, and read-only messages and conversations. Settings are edited by those who
change reference data; every row keeps its history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from clinic.audit.admin import HistoryAdminMixin, ReadOnlyAdminMixin
from clinic.core.admin import RECORD_FIELDS, CapabilityAdminMixin
from clinic.core.roles import Capability

from .models import (
    PLACEHOLDERS,
    BranchSender,
    Conversation,
    Feedback,
    Message,
    MessageTemplate,
    ReminderRule,
)
from .rendering import render, sample_params, unknown_placeholders


class MessagingSettingsAdmin(HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    capability = Capability.MANAGE_REFERENCE_DATA
    readonly_fields = RECORD_FIELDS


@admin.register(BranchSender)
class BranchSenderAdmin(MessagingSettingsAdmin):
    list_display = (
        "branch",
        "sms_from",
        "whatsapp_from",
        "email_from",
        "quiet_from",
        "quiet_to",
        "feedback_manager",
    )


@admin.register(MessageTemplate)
class MessageTemplateAdmin(MessagingSettingsAdmin):
    """The change form shows the text filled with sample values as it is typed
    (``template_preview.js`` posts the text to ``preview/``), before anything is saved."""

    list_display = ("name", "code", "channel", "language", "is_active")
    list_filter = ("channel", "language", "is_active")
    search_fields = ("name", "code", "body")
    readonly_fields = (*RECORD_FIELDS, "parameters", "preview")
    change_form_template = "admin/messaging/messagetemplate/change_form.html"

    class Media:
        js = ("messaging/template_preview.js",)

    @admin.display(description=_("parameters"))
    def parameters(self, obj: MessageTemplate | None = None) -> str:
        return ", ".join(f"{{{name}}} — {label}" for name, label in PLACEHOLDERS.items())

    @admin.display(description=_("preview"))
    def preview(self, obj: MessageTemplate | None = None) -> str:
        text = render(obj.body, sample_params()) if obj is not None and obj.body else ""
        return format_html('<pre class="template-preview" data-template-preview>{}</pre>', text)

    def get_urls(self) -> list[URLPattern]:
        preview = require_POST(self.admin_site.admin_view(self.preview_view))
        return [
            path("preview/", preview, name="messaging_messagetemplate_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            return JsonResponse({"error": str(_("Not allowed."))}, status=403)
        body = request.POST.get("body", "")
        unknown = unknown_placeholders(body)
        return JsonResponse(
            {
                "text": render(body, sample_params()),
                "unknown": [f"{{{name}}}" for name in unknown],
            }
        )


@admin.register(ReminderRule)
class ReminderRuleAdmin(MessagingSettingsAdmin):
    list_display = (
        "name",
        "event",
        "template_code",
        "channels",
        "branch",
        "asks_to_confirm",
        "asks_for_rating",
        "is_active",
    )
    list_filter = ("event", "is_active")
    filter_horizontal = ("services",)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Every message sent or received, with its state; failures filter out at once."""

    capability = Capability.MANAGE_REFERENCE_DATA
    list_display = ("created_at", "direction", "channel", "to", "patient", "state", "skip_reason")
    list_filter = ("state", "channel", "direction")
    search_fields = ("to", "provider_id", "patient__last_name")
    list_select_related = ("patient",)
    date_hierarchy = "created_at"


class MessageInline(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.TabularInline):
    capability = Capability.MANAGE_REFERENCE_DATA
    model = Message
    fields = ("created_at", "direction", "body", "state")
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).order_by("created_at")


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    capability = Capability.MANAGE_REFERENCE_DATA
    list_display = ("address", "channel", "patient", "last_inbound_at", "needs_answer")
    list_filter = ("needs_answer", "channel")
    inlines = (MessageInline,)


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Patients' ratings; the managers close low ones' tasks on the reviews page."""

    capability = Capability.MANAGE_REFERENCE_DATA
    list_display = ("created_at", "branch", "patient", "rating", "source", "task_state", "manager")
    list_filter = ("rating", "task_state", "source")
    list_select_related = ("branch", "patient", "manager")
    date_hierarchy = "created_at"
