"""Building blocks for writing several rows in one statement.

A posting that writes a document and its dependants (an appointment with its lines and
occupancies, a payment with its parts, allocations and receipt) sends them as one statement of
data-modifying CTEs: one round trip instead of one per row, and still all or nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, models
from django.db.models.sql import InsertQuery


def insert_returning_id(instance: models.Model) -> tuple[str, list[Any]]:
    """The ``INSERT ... RETURNING id`` that ``instance.save()`` would send for a new row, built
    by Django's own insert compiler (so defaults and ``auto_now`` apply as a save applies them).

    A field may hold an expression (``RawSQL("(SELECT id FROM payment)", [])``) to take its value
    from an earlier CTE of the same statement.
    """
    model = type(instance)
    meta = model._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated and f is not meta.auto_field]
    query = InsertQuery(model)
    query.insert_values(fields, [instance])
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = [meta.pk]
    [(sql, params)] = compiler.as_sql()
    return sql, list(params)


def saved_as(instance: models.Model, pk: int) -> None:
    """Mark an instance written by such a statement as saved, with its new primary key."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias
