"""Admin of the audit trail: the change history section of tracked models, the event log,
record reads and security events.

Everything here is read-only: audit rows are written by services and database triggers, never
typed in by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from pghistory.admin import EventsAdmin

from clinic.core.policies import can_view_audit_log

from .formatting import (
    EMPTY_VALUE,
    EVENT_LABELS,
    HistoryValueFormatter,
    field_order,
    format_timestamp,
)
from .models import AccessLog, SecurityEvent
from .selectors import history_for_object

if TYPE_CHECKING:
    _ModelAdminBase = admin.ModelAdmin[Any]
else:
    _ModelAdminBase = object

HISTORY_FIELD = "change_history"


def _event_user(event: Any) -> str:
    user = getattr(event, "user", None)
    if user is not None:
        return str(user.get_username())
    context = event.pgh_context or {}
    if context.get("user") is not None:
        return f"#{context['user']}"
    return gettext("system")


def _render_changes(rows: Sequence[tuple[str, str, str]]) -> SafeString:
    if not rows:
        return format_html("{}", EMPTY_VALUE)
    items = format_html_join(
        "",
        '<li><strong>{}</strong>: <span class="history-before">{}</span> → '
        '<span class="history-after">{}</span></li>',
        rows,
    )
    return format_html('<ul class="history-changes">{}</ul>', items)


def event_log_url(obj: models.Model) -> str | None:
    """The event log (pghistory admin) filtered to the events of ``obj``, if it is installed."""
    try:
        base = reverse("admin:pghistory_middlewareevents_changelist")
    except NoReverseMatch:
        return None
    query = urlencode({"obj": f"{obj._meta.label}:{obj.pk}", "method": "tracks"})
    return f"{base}?{query}"


def render_history_table(obj: models.Model, *, limit: int) -> SafeString:
    """The latest ``limit`` history events of ``obj`` as an HTML table, newest first.

    Every value (names, user names, field values) is escaped by ``format_html``.
    """
    events = list(history_for_object(obj).select_related("user").reverse()[: limit + 1])
    more = len(events) > limit
    events = events[:limit]
    if not events:
        return format_html('<p class="history-empty">{}</p>', gettext("No changes recorded."))
    model = type(obj)
    order = field_order(model)
    formatter = HistoryValueFormatter(
        model, [event.pgh_diff for event in events if event.pgh_diff], resolve=True
    )
    rows = format_html_join(
        "\n",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                format_timestamp(event.pgh_created_at),
                _event_user(event),
                EVENT_LABELS.get(event.pgh_label, event.pgh_label),
                _render_changes(formatter.changes(event.pgh_diff, order)),
            )
            for event in events
        ),
    )
    table = format_html(
        '<table class="clinic-history"><thead><tr>'
        "<th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
        "</tr></thead><tbody>{}</tbody></table>",
        gettext("When"),
        gettext("Who"),
        gettext("Event"),
        gettext("Changes (before → after)"),
        rows,
    )
    url = event_log_url(obj)
    if url is None:
        return table
    note = (
        gettext("Only the latest %(count)d changes are shown.") % {"count": limit} + " "
        if more
        else ""
    )
    return format_html(
        '{}<p class="history-more">{}<a href="{}">{}</a></p>',
        table,
        note,
        url,
        gettext("Open in the event log"),
    )


class HistoryAdminMixin(_ModelAdminBase):
    """Adds a read-only "Change history" section to the change page of a tracked model.

    The history comes from the pghistory triggers (``history_for_object``), so it includes bulk
    ``QuerySet.update`` calls and raw SQL, with the user of the request that made each change.
    It is shown to users who may view the audit log. Put the mixin before ``ModelAdmin``.
    """

    history_limit = 50

    def history_visible(self, request: HttpRequest, obj: models.Model | None) -> bool:
        return obj is not None and obj.pk is not None and can_view_audit_log(request.user)

    def get_readonly_fields(
        self, request: HttpRequest, obj: models.Model | None = None
    ) -> list[str]:
        fields = [f for f in super().get_readonly_fields(request, obj) if f != HISTORY_FIELD]
        if self.history_visible(request, obj):
            fields.append(HISTORY_FIELD)
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None) -> Any:
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            fields = [f for f in options.get("fields", ()) if f != HISTORY_FIELD]
            fieldsets.append((name, {**options, "fields": fields}))
        if self.history_visible(request, obj):
            fieldsets.append(
                (
                    _("Change history"),
                    {"classes": ("collapse",), "fields": (HISTORY_FIELD,)},
                )
            )
        return fieldsets

    @admin.display(description=_("Changes"))
    def change_history(self, obj: models.Model) -> SafeString:
        return render_history_table(obj, limit=self.history_limit)


class ReadOnlyAdminMixin(_ModelAdminBase):
    """Audit rows are evidence: nobody adds, edits or deletes them through the admin."""

    def has_add_permission(self, request: HttpRequest, *args: Any, **kwargs: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditLogViewMixin(_ModelAdminBase):
    """Opens a log to users whose role may view the audit log, besides Django's view perm."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or can_view_audit_log(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or can_view_audit_log(request.user)


@admin.register(AccessLog)
class AccessLogAdmin(AuditLogViewMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "user", "object_type", "object_id", "purpose", "ip_address")
    list_filter = (
        ("occurred_at", admin.DateFieldListFilter),
        "object_type",
        ("user", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("user__username", "ip_address", "object_id", "path", "purpose")
    list_select_related = ("user",)
    show_full_result_count = False
    list_per_page = 100
    fields = (
        "occurred_at",
        "user",
        "object_type",
        "object_id",
        "purpose",
        "ip_address",
        "path",
    )


@admin.register(SecurityEvent)
class SecurityEventAdmin(AuditLogViewMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "kind", "username", "user", "ip_address", "path", "detail")
    list_filter = (
        "kind",
        ("occurred_at", admin.DateFieldListFilter),
        ("user", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("username", "user__username", "ip_address", "detail", "path")
    list_select_related = ("user",)
    show_full_result_count = False
    list_per_page = 100
    fields = (
        "occurred_at",
        "kind",
        "user",
        "username",
        "ip_address",
        "user_agent",
        "path",
        "detail",
    )


class ClinicEventsAdmin(EventsAdmin):
    """The pghistory event log with readable changes, users fetched in the same query and access
    for users who may view the audit log.

    pghistory registers it itself from its ``ready()`` (which runs after the admin
    autodiscovery): point ``PGHISTORY_ADMIN_CLASS`` at ``clinic.audit.admin.ClinicEventsAdmin``.
    """

    list_select_related = ("user",)
    show_full_result_count = False

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        return ("pgh_created_at", "pgh_obj_model", "pgh_obj_id", "event_label", "user", "changes")

    @admin.display(description=_("event"), ordering="pgh_label")
    def event_label(self, event: Any) -> str:
        return str(EVENT_LABELS.get(event.pgh_label, event.pgh_label))

    @admin.display(description=_("changes (before → after)"))
    def changes(self, event: Any) -> SafeString:
        model = _tracked_model(event.pgh_obj_model)
        formatter = HistoryValueFormatter(model, [], resolve=False)
        order = field_order(model) if model is not None else {}
        return _render_changes(formatter.changes(event.pgh_diff, order))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(super().has_view_permission(request, obj)) or can_view_audit_log(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(super().has_module_permission(request)) or can_view_audit_log(request.user)


def _tracked_model(label: str) -> type[models.Model] | None:
    from django.apps import apps

    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


__all__ = [
    "HISTORY_FIELD",
    "AccessLogAdmin",
    "ClinicEventsAdmin",
    "HistoryAdminMixin",
    "ReadOnlyAdminMixin",
    "SecurityEventAdmin",
]
