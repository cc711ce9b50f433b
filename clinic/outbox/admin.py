"""Admin of the outbox: inspect messages and their delivery attempts, re-queue dead letters.

Messages are written only by services (``outbox_enqueue``) and changed only by the relay, so the
admin shows them read-only; "Re-queue" goes through ``outbox_requeue``, which checks the policy
and keeps the idempotency key.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from clinic.core.policies import has_capability
from clinic.core.roles import Capability

from .models import OutboxAttempt, OutboxMessage, OutboxState
from .services import OutboxPermissionDenied, outbox_requeue


def _may_manage_outbox(request: HttpRequest) -> bool:
    return has_capability(request.user, Capability.MANAGE_OUTBOX)


class OutboxReadOnlyMixin:
    """Viewable by those who manage the outbox; nobody adds, edits or deletes rows by hand."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _may_manage_outbox(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _may_manage_outbox(request)

    def has_add_permission(self, request: HttpRequest, *args: Any, **kwargs: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OutboxAttemptInline(OutboxReadOnlyMixin, admin.TabularInline):
    model = OutboxAttempt
    fields = ("number", "started_at", "finished_at", "succeeded", "error")
    readonly_fields = fields
    ordering = ("number",)
    extra = 0
    can_delete = False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(OutboxReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "channel",
        "subject",
        "state",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "short_error",
        "public_id",
    )
    list_filter = ("state", "channel", ("created_at", admin.DateFieldListFilter))
    search_fields = ("idempotency_key", "subject", "public_id")
    show_full_result_count = False
    list_per_page = 100
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "public_id",
                    "channel",
                    "subject",
                    "idempotency_key",
                    "state",
                    "attempts",
                )
            },
        ),
        (
            _("Delivery"),
            {
                "fields": (
                    "next_attempt_at",
                    "claimed_until",
                    "delivered_at",
                    "last_error",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        (_("Payload"), {"fields": ("payload_pretty",)}),
    )
    readonly_fields = (
        "public_id",
        "channel",
        "subject",
        "idempotency_key",
        "state",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "delivered_at",
        "last_error",
        "created_at",
        "updated_at",
        "payload_pretty",
    )
    inlines = (OutboxAttemptInline,)
    actions = ("requeue",)

    @admin.display(description=_("payload"))
    def payload_pretty(self, message: OutboxMessage) -> SafeString:
        text = json.dumps(message.payload, indent=2, ensure_ascii=False, sort_keys=True)
        return format_html('<pre class="outbox-payload">{}</pre>', text)

    @admin.display(description=_("last error"))
    def short_error(self, message: OutboxMessage) -> str:
        return Truncator(message.last_error).chars(80)

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return _may_manage_outbox(request)

    @admin.action(
        description=_("Re-queue the selected messages (same idempotency key)"),
        permissions=["requeue"],
    )
    def requeue(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        """Send each selected message again now; delivered or in-flight ones are refused."""
        requeued = refused = 0
        for message in queryset.order_by("pk"):
            try:
                result = outbox_requeue(message=message, actor=request.user)
            except OutboxPermissionDenied:
                refused += 1
                continue
            if result.state != OutboxState.PENDING:
                refused += 1  # being delivered right now: left to the relay
                continue
            requeued += 1
            self.log_change(request, result, gettext("Re-queued for delivery."))
        if requeued:
            self.message_user(
                request,
                ngettext("%(count)d message re-queued.", "%(count)d messages re-queued.", requeued)
                % {"count": requeued},
                messages.SUCCESS,
            )
        if refused:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message was not re-queued (delivered, being delivered or not "
                    "permitted).",
                    "%(count)d messages were not re-queued (delivered, being delivered or not "
                    "permitted).",
                    refused,
                )
                % {"count": refused},
                messages.WARNING,
            )


@admin.register(OutboxAttempt)
class OutboxAttemptAdmin(OutboxReadOnlyMixin, admin.ModelAdmin):
    list_display = ("started_at", "message", "number", "succeeded", "short_error")
    list_filter = ("succeeded", "message__channel", ("started_at", admin.DateFieldListFilter))
    search_fields = ("message__idempotency_key", "message__subject", "error")
    list_select_related = ("message",)
    show_full_result_count = False
    list_per_page = 100
    fields = ("message", "number", "started_at", "finished_at", "succeeded", "error")
    readonly_fields = fields

    @admin.display(description=_("error"))
    def short_error(self, attempt: OutboxAttempt) -> str:
        return Truncator(attempt.error).chars(80)
