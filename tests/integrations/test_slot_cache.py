"""The free-slot answers' cache: a repeated search costs no query, a committed change to the
branch's schedule is seen by the next search, anything else once its time to live is over (one
stale answer while a single request refreshes it after sending its own, never past the stale
limit), and without Redis nothing is cached."""

from __future__ import annotations

import uuid
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


@pytest.mark.parametrize("expired", [False, True], ids=["fresh", "expired"])
def test_a_committed_booking_is_seen_by_the_next_search(
    client: Client,
    website: Website,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    expired: bool,
) -> None:
    """Whether the stored answer is fresh or could be served stale, a booking is never hidden."""
    before = starts(slot_search(client, website, tomorrow()))
    if expired:
        monkeypatch.setattr(slot_cache, "SLOT_CACHE_SECONDS", 0.0)
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


def day_off(website: Website) -> None:
    ScheduleException.objects.create(
        resource=website.doctor,
        kind=ExceptionKind.DAY_OFF,
        date_from=tomorrow(),
        date_to=tomorrow(),
    )


def test_a_change_that_bumps_no_version_shows_once_the_stale_answer_was_refreshed(
    client: Client,
    website: Website,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: Any,
) -> None:
    before = starts(slot_search(client, website, tomorrow()))
    day_off(website)
    assert starts(slot_search(client, website, tomorrow())) == before  # within the TTL
    monkeypatch.setattr(slot_cache, "SLOT_CACHE_SECONDS", 0.0)
    # Expired but within the stale limit: served as it was, and recomputed once it was sent.
    assert starts(slot_search(client, website, tomorrow())) == before
    monkeypatch.setattr(slot_cache, "SLOT_CACHE_SECONDS", 2.0)
    with django_assert_num_queries(0):
        assert starts(slot_search(client, website, tomorrow())) == []


def test_an_answer_past_the_stale_limit_is_computed_before_answering(
    client: Client, website: Website, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert starts(slot_search(client, website, tomorrow()))
    day_off(website)
    monkeypatch.setattr(slot_cache, "SLOT_CACHE_SECONDS", 0.0)
    monkeypatch.setattr(slot_cache, "STALE_SECONDS", 0.0)
    assert starts(slot_search(client, website, tomorrow())) == []


def test_one_refresh_at_a_time_in_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    branch = uuid.uuid4()
    for request_key in ("first", "second"):
        slot_cache.remember(slot_cache.lookup(branch, request_key), b"old " + request_key.encode())
    monkeypatch.setattr(slot_cache, "SLOT_CACHE_SECONDS", 0.0)
    claimed = slot_cache.lookup(branch, "first")
    assert claimed.body == b"old first" and claimed.refresh_claimed
    # While it is refreshed, every expired answer is served as it is, none claims another.
    for request_key in ("first", "second"):
        waiting = slot_cache.lookup(branch, request_key)
        assert waiting.body == b"old " + request_key.encode() and not waiting.refresh_claimed
    slot_cache.refresh(claimed, lambda: b"new first")
    again = slot_cache.lookup(branch, "first")
    assert again.body == b"new first" and again.refresh_claimed


def test_a_failed_refresh_drops_the_answer_and_frees_the_claim(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    branch = uuid.uuid4()
    slot_cache.remember(slot_cache.lookup(branch, "search"), b"old")
    monkeypatch.setattr(slot_cache, "SLOT_CACHE_SECONDS", 0.0)
    claimed = slot_cache.lookup(branch, "search")
    assert claimed.refresh_claimed

    def broken() -> bytes:
        raise RuntimeError("database gone")

    slot_cache.refresh(claimed, broken)  # the answer was sent already: nothing is raised
    assert "Refreshing the free-slot answer search failed" in caplog.text
    assert slot_cache.lookup(branch, "search").body is None
    slot_cache.remember(slot_cache.lookup(branch, "other"), b"old other")
    assert slot_cache.lookup(branch, "other").refresh_claimed


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
