"""Template filters of the shell."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.utils.dateparse import parse_duration
from django.utils.translation import ngettext

register = template.Library()


@register.filter
def duration(value: object) -> str:
    """A duration in words, in whole hours and minutes: "1 hour 30 minutes", "15 minutes".

    Takes a ``timedelta`` or an ISO 8601 duration string ("PT15M", as django-axes passes its
    cool-off time). Anything else, or a duration that is not positive, gives an empty string so
    that a template can fall back to a general wording with ``{% if %}``.
    """
    if isinstance(value, str):
        value = parse_duration(value)
    if not isinstance(value, timedelta) or value.total_seconds() <= 0:
        return ""
    total_minutes = max(1, round(value.total_seconds() / 60))
    hours, minutes = divmod(total_minutes, 60)
    parts = []
    if hours:
        parts.append(ngettext("%(count)d hour", "%(count)d hours", hours) % {"count": hours})
    if minutes:
        parts.append(
            ngettext("%(count)d minute", "%(count)d minutes", minutes) % {"count": minutes}
        )
    return " ".join(parts)
