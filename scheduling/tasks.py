"""Periodic scheduling work, claimed from the database by beat-driven tasks."""

from __future__ import annotations

from celery import shared_task

from .waitlist import waitlist_expire_offers


@shared_task(name="scheduling.expire_waitlist_offers", ignore_result=True)
def expire_waitlist_offers() -> int:
    """Offers nobody accepted in time lapse and their patients wait again; returns how many."""
    return waitlist_expire_offers()
