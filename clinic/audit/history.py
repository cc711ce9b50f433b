"""The one way a model gets change history: ``@track_history()`` on its class.

Triggers (django-pghistory) write an event row for every insert, update and delete, including
bulk ``QuerySet.update`` and raw SQL, with the user and URL of the request that caused it
(``pghistory.middleware.HistoryMiddleware``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pghistory

ModelT = TypeVar("ModelT")


def track_history(*, exclude: tuple[str, ...] = ()) -> Callable[[ModelT], ModelT]:
    trackers = (pghistory.InsertEvent(), pghistory.UpdateEvent(), pghistory.DeleteEvent())
    options: dict[str, Any] = {}
    if exclude:
        options["exclude"] = list(exclude)
    return pghistory.track(*trackers, **options)
