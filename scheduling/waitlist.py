"""Waitlist: offering freed slots to waiting patients (filled in by the waitlist work)."""

from __future__ import annotations

import datetime


def waitlist_offer_freed_slot(
    *,
    doctor_id: int,
    starts_at: datetime.datetime,
    ends_at: datetime.datetime,
    freed_at: datetime.datetime,
) -> list[int]:
    """Offer [starts_at, ends_at) of the doctor to matching waitlist entries, in order."""
    return []
