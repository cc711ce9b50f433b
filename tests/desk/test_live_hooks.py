"""Every change a grid shows is announced to the branch's open grids once it commits: a hold,
its release, a booking (with its channel, so the desk notices website bookings), a move, a
status, a cancel, a restore; a ringing call is announced with its id. And the free-time search
offers what booking would accept."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.urls import reverse

from clinic.core.roles import Role
from scheduling import holds
from scheduling.errors import SchedulingError
from scheduling.models import BookingChannel, CancelReason
from scheduling.services import (
    BookingRequest,
    appointment_book,
    appointment_cancel,
    appointment_move,
    appointment_restore,
    appointment_set_status,
)
from telephony.services import call_event_receive
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

from .test_live import _next_message, _subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic() -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    specialty = SpecialtyFactory()
    resource = doctor(branch, specialty=specialty, name="Dr Avdeev", grid_step_minutes=30)
    works(resource)
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    return {
        "branch": branch,
        "doctor": resource,
        "service": service_for(specialty, organization=branch.organization, name="Visit"),
        "actor": registrar.user,
        "patient": PersonFactory(organization=branch.organization),
    }


def test_each_change_is_announced_after_it_commits(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    pubsub = _subscribe(clinic["branch"].public_id)
    resource = clinic["doctor"]
    start = local(tomorrow(), "10:00")

    def kinds(action: Any) -> list[dict[str, Any]]:
        with django_capture_on_commit_callbacks(execute=True):
            action()
        messages = []
        while (message := _next_message(pubsub, seconds=0.5)) is not None:
            messages.append(message)
        return messages

    held = kinds(
        lambda: holds.slot_hold(
            token="t1",
            resource_ids=[resource.pk],
            starts_at=start,
            ends_at=start + datetime.timedelta(minutes=30),
        )
    )
    assert [m["kind"] for m in held] == ["hold"]
    assert held[0]["resources"] == [str(resource.public_id)]
    assert held[0]["days"] == [tomorrow().isoformat()]

    made: list[Any] = []
    booked = kinds(
        lambda: made.append(
            appointment_book(
                actor=clinic["actor"],
                request=BookingRequest(
                    branch=clinic["branch"],
                    services=[clinic["service"]],
                    starts_at=start,
                    channel=BookingChannel.PORTAL,
                    patient=clinic["patient"],
                    doctor=resource,
                    hold_token="t1",
                ),
            )
        )
    )
    appointment = made[0]
    assert sorted(m["kind"] for m in booked) == ["booked", "release"]
    booking = next(m for m in booked if m["kind"] == "booked")
    assert booking["channel"] == "portal"
    assert booking["appointment"] == str(appointment.public_id)

    moved = kinds(
        lambda: appointment_move(
            actor=clinic["actor"], appointment=appointment, starts_at=local(tomorrow(), "11:00")
        )
    )
    assert [m["kind"] for m in moved] == ["moved"]
    appointment.refresh_from_db()
    assert [
        m["kind"]
        for m in kinds(
            lambda: appointment_set_status(
                actor=clinic["actor"], appointment=appointment, code="confirmed"
            )
        )
    ] == ["status"]
    appointment.refresh_from_db()
    reason = CancelReason.objects.get(code="patient_request")
    assert [
        m["kind"]
        for m in kinds(
            lambda: appointment_cancel(
                actor=clinic["actor"], appointment=appointment, reason=reason
            )
        )
    ] == ["cancelled"]
    appointment.refresh_from_db()
    assert [
        m["kind"]
        for m in kinds(lambda: appointment_restore(actor=clinic["actor"], appointment=appointment))
    ] == ["restored"]


def test_nothing_is_announced_for_a_refused_booking(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    pubsub = _subscribe(clinic["branch"].public_id)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(SchedulingError):
        appointment_book(
            actor=clinic["actor"],
            request=BookingRequest(
                branch=clinic["branch"],
                services=[clinic["service"]],
                starts_at=local(tomorrow(), "13:00"),  # the break
                channel=BookingChannel.DESK,
                patient=clinic["patient"],
                doctor=clinic["doctor"],
            ),
        )
    assert _next_message(pubsub, seconds=0.5) is None


def test_a_ringing_call_is_announced_to_the_desks_with_its_id(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    pubsub = _subscribe(clinic["branch"].public_id)
    with django_capture_on_commit_callbacks(execute=True):
        call = call_event_receive(
            organization=clinic["branch"].organization,
            payload={
                "call_id": "pbx-1",
                "event": "ringing",
                "caller": "+79161234567",
                "called": "+74950000000",
            },
        )
    message = _next_message(pubsub)
    assert message is not None
    assert (message["kind"], message["call"]) == ("call", str(call.public_id))


def test_the_free_time_search_lists_the_nearest_free_slots(
    client: Any, clinic: dict[str, Any]
) -> None:
    client.force_login(clinic["actor"])
    appointment_book(
        actor=clinic["actor"],
        request=BookingRequest(
            branch=clinic["branch"],
            services=[clinic["service"]],
            starts_at=local(tomorrow(), "09:00"),
            channel=BookingChannel.DESK,
            patient=clinic["patient"],
            doctor=clinic["doctor"],
        ),
    )
    response = client.get(
        reverse("desk:free_time"),
        {"service": clinic["service"].pk, "date_from": tomorrow().isoformat(), "days": 1},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    html = response.content.decode()
    starts = [
        local(tomorrow(), hhmm).isoformat()
        for hhmm in ("09:30", "10:00", "10:30", "11:00", "11:30", "12:00", "12:30")
    ]
    for value in starts:
        assert f'data-starts="{value}"' in html
    assert f'data-starts="{local(tomorrow(), "09:00").isoformat()}"' not in html
    assert f'data-starts="{local(tomorrow(), "13:00").isoformat()}"' not in html
    bad = client.get(reverse("desk:free_time"), {"service": "x", "days": 1})
    assert bad.status_code == 400
