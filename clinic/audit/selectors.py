"""Reads of audit data: the change history of one record."""

from __future__ import annotations

from typing import Any

import pghistory.models
from django.db import models
from django.db.models import QuerySet

from .models import AccessLog


def history_for_object(obj: models.Model) -> QuerySet[Any]:
    """Every tracked change of ``obj`` (oldest first) with the user and URL that caused it.

    Each row is a ``pghistory.models.MiddlewareEvents``: ``pgh_label`` (insert/update/delete),
    ``pgh_data`` (the row after the change), ``pgh_diff`` (``{field: [before, after]}``, also for
    bulk ``QuerySet.update``), ``user`` and ``url`` from the request's context.

    Ordered by event id: ``pgh_created_at`` is the start of the writing transaction, so a
    transaction that waited for another one's row lock can carry an earlier time than the change
    it follows, while the id (and ``pgh_diff``) follow the order the changes were made.

    ``Model.delete()`` clears the instance's ``pk``; to read the history of a deleted record pass
    an instance carrying its old primary key, e.g. ``Organization(pk=old_pk)``.
    """
    if obj.pk is None:
        raise ValueError(
            f"{obj._meta.label} has no primary key (unsaved, or cleared by delete()): "
            "pass an instance with the record's primary key."
        )
    return pghistory.models.MiddlewareEvents.objects.tracks(obj).order_by("pgh_id")


def access_log_for_object(obj: models.Model) -> QuerySet[AccessLog]:
    return AccessLog.objects.filter(
        object_type=obj._meta.label, object_id=str(getattr(obj, "public_id", None) or obj.pk)
    ).select_related("user")
