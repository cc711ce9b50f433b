"""Admin of telephony: the PBX connection (token, lines, extensions), and read-only views of
calls, planned calls and the raw webhook bodies kept for review.

The token is never shown or stored in clear: the administrator types a new one (or leaves the
field empty to have one made) and it is hashed by ``services.telephony_token_set``; a made one
is shown once in the success message. Calls and planned calls are written at the desk through
``telephony.services``; here they are only looked up.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from clinic.audit.admin import HistoryAdminMixin, ReadOnlyAdminMixin
from clinic.core.admin import RECORD_FIELDS, CapabilityAdminMixin
from clinic.core.roles import Capability

from . import services
from .errors import TelephonyError
from .models import (
    Call,
    OperatorExtension,
    PlannedCall,
    RawTelephonyEvent,
    TelephonyLine,
    TelephonySettings,
)


class TelephonyReferenceAdmin(HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Connection settings with history, edited by administrators."""

    capability = Capability.MANAGE_REFERENCE_DATA
    readonly_fields = RECORD_FIELDS

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class TelephonySettingsForm(forms.ModelForm):
    new_token = forms.CharField(
        label=_("New webhook token"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "At least 24 characters. Leave empty to keep the current token; a new connection "
            "without a token gets a random one, shown once after saving."
        ),
    )

    class Meta:
        model = TelephonySettings
        fields = ["organization", "is_active"]

    def clean_new_token(self) -> str:
        token: str = self.cleaned_data["new_token"]
        if token and len(token) < 24:
            raise forms.ValidationError(
                _("The token must be at least 24 characters long."), code="token_too_short"
            )
        return token


@admin.register(TelephonySettings)
class TelephonySettingsAdmin(TelephonyReferenceAdmin):
    form = TelephonySettingsForm
    list_display = ("organization", "is_active", "token_set_at")
    list_filter = ("is_active",)
    list_select_related = ("organization",)
    readonly_fields = (*RECORD_FIELDS, "token_set_at")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        typed = form.cleaned_data.get("new_token", "")
        if not typed and obj.token_hash:
            return
        try:
            token = services.telephony_token_set(
                organization=obj.organization, token=typed or None, actor=request.user
            )
        except TelephonyError as error:
            messages.error(request, str(error.message))
            return
        if not typed:
            messages.warning(
                request,
                gettext("The webhook token is %(token)s. Copy it now: it is not shown again.")
                % {"token": token},
            )


@admin.register(TelephonyLine)
class TelephonyLineAdmin(TelephonyReferenceAdmin):
    list_display = ("number", "name", "organization", "branch", "is_active")
    list_filter = ("is_active", "organization")
    search_fields = ("number", "name")
    list_select_related = ("organization", "branch")


@admin.register(OperatorExtension)
class OperatorExtensionAdmin(TelephonyReferenceAdmin):
    list_display = ("extension", "staff", "organization")
    list_filter = ("organization",)
    search_fields = ("extension", "staff__last_name")
    list_select_related = ("organization", "staff")
    autocomplete_fields = ("staff",)


class ReadOnlyTelephonyAdmin(
    ReadOnlyAdminMixin, HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin
):
    """Rows the desk and the PBX write through ``telephony.services``; here only looked up."""

    capability = Capability.MANAGE_REFERENCE_DATA
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [
            f.name for f in self.model._meta.get_fields() if f.concrete and not f.many_to_many
        ]
        return [*fields, *super().get_readonly_fields(request, obj)]


@admin.register(Call)
class CallAdmin(ReadOnlyTelephonyAdmin):
    list_display = (
        "started_at",
        "caller_number",
        "called_line",
        "direction",
        "state",
        "operator",
        "purpose",
        "outcome",
    )
    list_filter = ("state", "direction", "purpose", "outcome", "organization")
    search_fields = ("call_id", "caller_number", "called_line")
    list_select_related = ("operator", "organization")
    date_hierarchy = "started_at"


@admin.register(PlannedCall)
class PlannedCallAdmin(ReadOnlyTelephonyAdmin):
    list_display = ("due_at", "patient", "phone", "reason", "assigned_to", "status")
    list_filter = ("status", "organization")
    search_fields = ("patient__last_name", "phone", "reason")
    list_select_related = ("patient", "assigned_to")
    date_hierarchy = "due_at"


@admin.register(RawTelephonyEvent)
class RawTelephonyEventAdmin(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Every webhook body as received; the failed ones are the review queue."""

    capability = Capability.MANAGE_REFERENCE_DATA
    list_display = ("received_at", "organization", "status", "error_code", "call")
    list_filter = ("status", "organization")
    search_fields = ("body", "error")
    list_select_related = ("organization", "call")
    readonly_fields = (
        "organization",
        "received_at",
        "status",
        "error_code",
        "error",
        "body",
        "call",
    )
    date_hierarchy = "received_at"
    show_full_result_count = False
