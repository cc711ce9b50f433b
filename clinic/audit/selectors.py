"""Reads of audit data: the change history of one record."""

from __future__ import annotations

from typing import Any

import pghistory.models
from django.db import models
from django.db.models import QuerySet

from .models import AccessLog


def history_for_object(obj: models.Model) -> QuerySet[Any]:
    """Every tracked change of ``obj`` (oldest first) with the user and URL that caused it."""
    return (
        pghistory.models.MiddlewareEvents.objects.tracks(obj)
        .order_by("pgh_created_at", "pgh_id")
    )


def access_log_for_object(obj: models.Model) -> QuerySet[AccessLog]:
    return AccessLog.objects.filter(
        object_type=obj._meta.label, object_id=str(getattr(obj, "public_id", None) or obj.pk)
    ).select_related("user")
