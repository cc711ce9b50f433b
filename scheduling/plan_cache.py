"""A per-process cache of working-time plans, never stale by construction.

Turning work schedules, exceptions and the production calendar into the working intervals of
fifty doctors over two weeks costs tens of milliseconds of Python, while the rules change a few
times a day. The cache keys every plan by a *version*: the newest history event id of each table
the plan is computed from. History triggers (clinic.audit.history) write an event for every
insert, update and delete, bulk updates and raw SQL included, and event ids come from a sequence
that never reuses a number, so any change gives a new version and a plan computed before it is
simply never looked up again. A rolled-back change returns the data and the version together to
an earlier state, for which the cached plan is right again. Reading the version is one query.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from django.apps import apps
from django.db import connection

T = TypeVar("T")

# Models whose rows decide which doctors are candidates and when they work.
PLAN_SOURCES = (
    ("scheduling", "WorkSchedule"),
    ("scheduling", "ScheduleException"),
    ("scheduling", "CalendarDay"),
    ("scheduling", "Resource"),
    ("scheduling", "Service"),
    ("scheduling", "ServiceRequirement"),
    ("core", "Staff"),
    ("core", "Branch"),
)


def _event_tables() -> list[str]:
    tables = []
    for app_label, model_name in PLAN_SOURCES:
        model = apps.get_model(app_label, model_name)
        event_model = model.pgh_event_model
        tables.append(event_model._meta.db_table)
    return tables


class PlanCache:
    """Least-recently-used plans of this process, keyed by (database, version, request)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._plans: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._version_sql = ""
        self._version_selects: list[str] = []

    def version_selects(self) -> list[str]:
        """The scalar subselects of the version, one per source table, in a fixed order, for
        a caller that reads the version inside a larger statement (see ``version_of``)."""
        if not self._version_selects:
            quote = connection.ops.quote_name
            # Table names come from the models, never from input.
            self._version_selects = [
                f"(SELECT max(pgh_id) FROM {quote(t)})"  # noqa: S608
                for t in _event_tables()
            ]
        return list(self._version_selects)

    def version_sql(self) -> str:
        """One statement reading the newest history event id of every source table."""
        if not self._version_sql:
            self._version_sql = "SELECT " + ", ".join(self.version_selects())
        return self._version_sql

    def version_of(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """The version made of the values of ``version_selects`` read by the caller."""
        return (connection.settings_dict["NAME"], *values)

    def version(self) -> tuple[Any, ...]:
        with connection.cursor() as cursor:
            cursor.execute(self.version_sql())
            row = cursor.fetchone()
        return self.version_of(row or ())

    def get_or_compute(
        self, key: Hashable, compute: Callable[[], T], *, version: tuple[Any, ...] | None = None
    ) -> T:
        """The cached plan for ``key``, computed on a miss.

        ``version`` is one the caller has just read with ``version_selects`` (in the same
        transaction, after the locks that make it current); without it, it is read here.
        """
        full_key = (version if version is not None else self.version(), key)
        with self._lock:
            if full_key in self._plans:
                self._plans.move_to_end(full_key)
                return self._plans[full_key]
        value = compute()
        with self._lock:
            self._plans[full_key] = value
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()


plan_cache = PlanCache()
