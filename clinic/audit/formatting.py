"""Readable change history: labels, timestamps and before/after values of pghistory events.

Shared by the admin's history section and the desk's patient page.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils import dateformat, formats, timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .selectors import history_for_object

EVENT_LABELS = {
    "insert": _("Created"),
    "update": _("Changed"),
    "delete": _("Deleted"),
}

EMPTY_VALUE = "—"
VALUE_MAX_CHARS = 200


def format_timestamp(value: datetime.datetime) -> str:
    """Local time to the second: audit readers compare events that are seconds apart."""
    return dateformat.format(timezone.localtime(value), "Y-m-d H:i:s")


def _fields_by_column(model: type[models.Model]) -> dict[str, models.Field[Any, Any]]:
    """Concrete fields of ``model`` under every key a history diff may use for them."""
    fields: dict[str, models.Field[Any, Any]] = {}
    for field in model._meta.concrete_fields:
        fields[field.name] = field
        fields[field.attname] = field
        if field.column:
            fields[field.column] = field
    return fields


def field_order(model: type[models.Model]) -> dict[str, int]:
    return {field.name: index for index, field in enumerate(model._meta.concrete_fields)}


class HistoryValueFormatter:
    """Turns raw values of a history diff (JSON from ``row_to_json``) into readable text.

    Choices show their labels, dates the local time, and foreign keys the related record's name;
    the related records of all events are fetched together, one query per related model.
    """

    def __init__(
        self, model: type[models.Model] | None, diffs: Iterable[dict[str, Any]], *, resolve: bool
    ) -> None:
        self.fields = _fields_by_column(model) if model is not None else {}
        self.related: dict[tuple[type[models.Model], str], models.Model] = {}
        if resolve and model is not None:
            self._load_related(diffs)

    def _load_related(self, diffs: Iterable[dict[str, Any]]) -> None:
        wanted: dict[type[models.Model], set[str]] = defaultdict(set)
        for diff in diffs:
            for key, pair in diff.items():
                field = self.fields.get(key)
                if field is None or not field.is_relation or field.related_model is None:
                    continue
                related_model = field.related_model
                if isinstance(related_model, str):  # unresolved lazy reference
                    continue
                wanted[related_model].update(str(value) for value in pair if value is not None)
        for related_model, ids in wanted.items():
            for pk, instance in related_model._default_manager.in_bulk(list(ids)).items():
                self.related[(related_model, str(pk))] = instance

    def label(self, key: str) -> str:
        field = self.fields.get(key)
        if field is None:
            return key
        return str(field.verbose_name)

    def value(self, key: str, value: Any) -> str:
        if value is None or value == "":
            return EMPTY_VALUE
        field = self.fields.get(key)
        if isinstance(value, bool):
            return gettext("yes") if value else gettext("no")
        if field is not None:
            if field.is_relation and field.related_model is not None:
                related_model = field.related_model
                if not isinstance(related_model, str):
                    instance = self.related.get((related_model, str(value)))
                    if instance is not None:
                        return Truncator(str(instance)).chars(VALUE_MAX_CHARS)
                return f"#{value}"
            if field.flatchoices:
                return str(dict(field.flatchoices).get(value, value))
            if isinstance(field, models.DateTimeField) and isinstance(value, str):
                parsed = parse_datetime(value)
                if parsed is not None:
                    if timezone.is_naive(parsed):
                        parsed = timezone.make_aware(parsed, timezone.get_fixed_timezone(0))
                    return format_timestamp(parsed)
            elif isinstance(field, models.DateField) and isinstance(value, str):
                parsed_date = parse_date(value)
                if parsed_date is not None:
                    return str(formats.localize(parsed_date))
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        return Truncator(str(value)).chars(VALUE_MAX_CHARS)

    def changes(
        self, diff: dict[str, Any] | None, order: dict[str, int]
    ) -> list[tuple[str, str, str]]:
        """(field label, before, after) for each changed field, in the model's field order."""
        if not diff:
            return []
        keys = sorted(
            diff,
            key=lambda key: (
                (order.get(self.fields[key].name, len(order)), key)
                if key in self.fields
                else (len(order), key)
            ),
        )
        rows = []
        for key in keys:
            pair = diff[key]
            before, after = (pair[0], pair[1]) if isinstance(pair, list | tuple) else (None, pair)
            rows.append((self.label(key), self.value(key, before), self.value(key, after)))
        return rows


@dataclass
class HistoryRow:
    """One event of a record's change history as the pages show it."""

    when: str
    who: str
    event: str
    changes: list[tuple[str, str, str]]
    notes: list[str]


def event_author(event: Any) -> str:
    """Who made a change: the staff member's short name, the login, or "system"."""
    user = event.user
    if user is None:
        return gettext("system")
    staff = getattr(user, "staff", None)
    if staff is not None:
        return str(staff.short_name)
    return str(user.get_username())


def history_rows(
    obj: models.Model,
    *,
    limit: int = 50,
    hidden_fields: Collection[str] = frozenset({"updated_at", "created_at"}),
    context_notes: Mapping[str, Any] | None = None,
) -> list[HistoryRow]:
    """The latest changes of ``obj``, newest first: a fixed number of queries (the events with
    their users, then one per kind of related record named in them). ``context_notes`` maps a
    key of the history context (set by the service that made the change) to a note with a
    ``%(value)s`` placeholder."""
    events = list(history_for_object(obj).select_related("user", "user__staff").reverse()[:limit])
    diffs = [
        {key: pair for key, pair in (event.pgh_diff or {}).items() if key not in hidden_fields}
        for event in events
    ]
    model = type(obj)
    formatter = HistoryValueFormatter(model, diffs, resolve=True)
    order = {field.name: index for index, field in enumerate(model._meta.concrete_fields)}
    rows = []
    for event, diff in zip(events, diffs, strict=True):
        context = event.pgh_context or {}
        rows.append(
            HistoryRow(
                when=format_timestamp(event.pgh_created_at),
                who=event_author(event),
                event=str(EVENT_LABELS.get(event.pgh_label, event.pgh_label)),
                changes=formatter.changes(diff, order),
                notes=[
                    str(note) % {"value": context[key]}
                    for key, note in (context_notes or {}).items()
                    if context.get(key)
                ],
            )
        )
    return rows
