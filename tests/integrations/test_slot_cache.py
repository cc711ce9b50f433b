"""The free-slot answers' cache: a repeated search costs no query, a committed change to the
branch's schedule is seen by the next search, anything else at most ``SLOT_CACHE_SECONDS``
late, and without Redis nothing is cached."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from integrations.website import slot_cache
from scheduling import live
from scheduling.models import BookingChannel, ExceptionKind, ScheduleException
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.scheduling.factories import local, tomorrow

from .conftest import Website
from .test_fhir import slot_search

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    slot_cache.forget_all()


def starts(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["start"] for entry in bundle.get("entry", [])]


def test_a_repeated_search_is_answered_without_a_query(
    client: Client, website: Website, django_assert_num_queries: Any
) -> None:
    first = slot_search(client, website, tomorrow())
    with django_assert_num_queries(0):
        again = slot_search(client, website, tomorrow())
    assert again == first


def test_a_committed_booking_is_seen_by_the_next_search(
    client: Client, website: Website, django_capture_on_commit_callbacks: Any
) -> None:
    before = starts(slot_search(client, website, tomorrow()))
    with django_capture_on_commit_callbacks(execute=True):
        appointment_book(
            actor=website.account,
            request=BookingRequest(
                branch=website.branch,
                services=[website.service],
                starts_at=local(tomorrow(), "10:00"),
                channel=BookingChannel.DESK,
                doctor=website.doctor,
                primary=PrimaryPatient(last_name="Other", phone="+79160000000"),
            ),
        )
    after = starts(slot_search(client, website, tomorrow()))
    assert len(after) < len(before)


def test_a_change_that_bumps_no_version_shows_after_the_time_to_live(
    client: Client, website: Website, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = starts(slot_search(client, website, tomorrow()))
    ScheduleException.objects.create(
        resource=website.doctor,
        kind=ExceptionKind.DAY_OFF,
        date_from=tomorrow(),
        date_to=tomorrow(),
    )
    assert starts(slot_search(client, website, tomorrow())) == before  # within the TTL
    monkeypatch.setattr(slot_cache, "SLOT_CACHE_SECONDS", 0.0)
    assert starts(slot_search(client, website, tomorrow())) == []


def test_without_redis_every_search_is_computed(
    client: Client, website: Website, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(branch_public_id: Any) -> int:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(live, "schedule_version", unreachable)
    slot_search(client, website, tomorrow())
    with CaptureQueriesContext(connection) as queries:
        slot_search(client, website, tomorrow())
    assert len(queries) > 0
