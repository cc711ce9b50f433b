"""Slot holds on the real Redis: all-or-nothing, owner-only release, expiry, Redis down."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
import redis

from clinic.core.roles import Role
from scheduling import holds
from scheduling.errors import SlotConflict
from scheduling.models import BookingChannel
from scheduling.services import BookingRequest, appointment_book
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import doctor, local, service_for, tomorrow, works

# A hold announces itself to the open grids (scheduling.live), which reads the resources.
pytestmark = pytest.mark.django_db

DOCTOR_ID = 990_001
OTHER_ID = 990_002


@pytest.fixture(autouse=True)
def _no_holds() -> Any:
    """Holds live in Redis across tests; each test starts with none."""
    client = holds._client()  # the real one, even if a test patches ``_client``

    def clear() -> None:
        keys = list(client.scan_iter(match="clinic:hold:*", count=1000))
        if keys:
            client.delete(*keys)

    clear()
    yield
    clear()


def at(hhmm: str) -> datetime.datetime:
    return local(tomorrow(), hhmm)


def unreachable() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)


def test_an_overlapping_hold_by_another_token_is_refused_naming_the_first_held_cell():
    holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    with pytest.raises(holds.SlotHeld) as caught:
        holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:20"), ends_at=at("10:50"))
    assert caught.value.resource_id == DOCTOR_ID
    assert caught.value.cell_start == at("10:20")


def test_a_refused_hold_takes_none_of_its_cells():
    """All or nothing: the free resource of a refused two-resource hold stays free."""
    holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    with pytest.raises(holds.SlotHeld):
        holds.slot_hold(
            resource_ids=[OTHER_ID, DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30")
        )
    assert holds.held_ranges([OTHER_ID], at("00:00"), at("23:00")) == {}


def test_adjacent_holds_do_not_clash():
    holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    second = holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:30"), ends_at=at("11:00"))
    assert second.starts_at == at("10:30")


def test_the_same_token_holds_again_and_extends():
    first = holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    again = holds.slot_hold(
        resource_ids=[DOCTOR_ID], starts_at=at("10:15"), ends_at=at("10:45"), token=first.token
    )
    assert again.token == first.token
    assert again.expires_at >= first.expires_at


def test_picking_another_slot_with_the_same_token_gives_up_the_first():
    first = holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    holds.slot_hold(
        resource_ids=[DOCTOR_ID], starts_at=at("10:15"), ends_at=at("10:45"), token=first.token
    )
    listed = holds.held_ranges([DOCTOR_ID], at("09:00"), at("12:00"))
    assert listed == {DOCTOR_ID: [(at("10:15"), at("10:45"))]}
    # 10:00-10:15 is free again for someone else; 10:15 onwards is still held.
    holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:15"))
    with pytest.raises(holds.SlotHeld):
        holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:15"), ends_at=at("10:30"))


def test_release_with_a_wrong_token_frees_nothing_and_the_owner_frees_everything():
    hold = holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    freed = holds.slot_release(
        token="not-mine", resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30")
    )
    assert freed == 0
    assert holds.held_ranges([DOCTOR_ID], at("09:00"), at("11:00")) == {
        DOCTOR_ID: [(at("10:00"), at("10:30"))]
    }
    freed = holds.slot_release(
        token=hold.token, resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30")
    )
    assert freed == 6  # six 5-minute cells
    assert holds.held_ranges([DOCTOR_ID], at("09:00"), at("11:00")) == {}
    other = holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    assert other.token != hold.token


def test_a_hold_expires_after_its_ttl_and_is_pruned_from_the_index():
    holds.slot_hold(
        resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"), ttl_seconds=1
    )
    assert holds.held_ranges([DOCTOR_ID], at("09:00"), at("11:00")) == {
        DOCTOR_ID: [(at("10:00"), at("10:30"))]
    }
    time.sleep(1.2)
    assert holds.held_ranges([DOCTOR_ID], at("09:00"), at("11:00")) == {}
    assert holds._client().zcard(holds._index_key(DOCTOR_ID)) == 0
    taken = holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    assert taken.token


def test_held_ranges_lists_only_overlapping_holds_except_the_given_token():
    mine = holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("15:00"), ends_at=at("15:20"))
    holds.slot_hold(resource_ids=[OTHER_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    assert holds.held_ranges([DOCTOR_ID, OTHER_ID], at("09:00"), at("12:00")) == {
        DOCTOR_ID: [(at("10:00"), at("10:30"))],
        OTHER_ID: [(at("10:00"), at("10:30"))],
    }
    assert holds.held_ranges([DOCTOR_ID], at("09:00"), at("16:00"), except_token=mine.token) == {
        DOCTOR_ID: [(at("15:00"), at("15:20"))]
    }
    assert (
        holds.held_by_other(
            resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"), token=mine.token
        )
        is False
    )


def test_with_redis_unreachable_holds_fail_loudly_and_reads_see_none(monkeypatch):
    monkeypatch.setattr(holds, "_client", unreachable)
    with pytest.raises(holds.HoldsUnavailable):
        holds.slot_hold(resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30"))
    assert holds.held_ranges([DOCTOR_ID], at("09:00"), at("11:00")) == {}
    assert (
        holds.slot_release(
            token="t", resource_ids=[DOCTOR_ID], starts_at=at("10:00"), ends_at=at("10:30")
        )
        == 0
    )


# --- holds and booking -------------------------------------------------------------------------


@pytest.fixture
def clinic(db: Any) -> dict[str, Any]:
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    therapist = doctor(branch, specialty=specialty, name="Dr Petrov")
    works(therapist)
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    return {
        "branch": branch,
        "doctor": therapist,
        "service": service_for(specialty, organization=branch.organization),
        "actor": registrar.user,
        "patient": PersonFactory(organization=branch.organization),
    }


def book(c: dict[str, Any], hhmm: str, hold_token: str | None = None) -> Any:
    return appointment_book(
        actor=c["actor"],
        request=BookingRequest(
            branch=c["branch"],
            services=[c["service"]],
            starts_at=at(hhmm),
            channel=BookingChannel.DESK,
            patient=c["patient"],
            doctor=c["doctor"],
            hold_token=hold_token,
        ),
    )


def test_booking_still_works_with_redis_unreachable(clinic, monkeypatch):
    monkeypatch.setattr(holds, "_client", unreachable)
    appointment = book(clinic, "10:00")
    assert appointment.starts_at == at("10:00")


def test_booking_over_someone_elses_hold_is_a_slot_held_conflict(clinic):
    holds.slot_hold(resource_ids=[clinic["doctor"].pk], starts_at=at("10:00"), ends_at=at("10:30"))
    with pytest.raises(SlotConflict) as caught:
        book(clinic, "10:15")
    assert caught.value.code == "slot_held"
    assert caught.value.status_code == 409


def test_booking_with_ones_own_hold_succeeds_and_releases_the_hold(clinic):
    hold = holds.slot_hold(
        resource_ids=[clinic["doctor"].pk], starts_at=at("10:00"), ends_at=at("10:30")
    )
    appointment = book(clinic, "10:00", hold_token=hold.token)
    assert appointment.starts_at == at("10:00")
    assert holds.held_ranges([clinic["doctor"].pk], at("09:00"), at("11:00")) == {}
    assert (
        holds._client().get(holds._cell_key(clinic["doctor"].pk, int(at("10:00").timestamp())))
        is None
    )
