"""Free slots: every rule the booking enforces, so that what is offered can be booked."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
import redis
from django.utils import timezone, translation
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.core.roles import Role
from scheduling import holds
from scheduling.availability import FREE, HELD, Slot, free_slots, nearest_free
from scheduling.errors import SchedulingError
from scheduling.models import (
    BookingChannel,
    CalendarDay,
    CalendarDayType,
    ChannelRule,
    ExceptionKind,
    Quota,
    QuotaPeriod,
    QuotaScope,
    Rotation,
    ScheduleBreak,
    ScheduleException,
)
from scheduling.services import BookingRequest, appointment_book
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


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


@pytest.fixture
def clinic() -> dict[str, Any]:
    branch = BranchFactory()
    specialty = SpecialtyFactory()
    therapist = doctor(branch, specialty=specialty, name="Dr Petrov")
    works(therapist)
    service = service_for(specialty, organization=branch.organization)
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    return {
        "branch": branch,
        "specialty": specialty,
        "doctor": therapist,
        "service": service,
        "actor": registrar.user,
        "patient": PersonFactory(organization=branch.organization),
    }


def slots_of(c: dict[str, Any], day: datetime.date | None = None, **changes: Any) -> list[Slot]:
    day = day or tomorrow()
    values: dict[str, Any] = {
        "organization_id": c["branch"].organization_id,
        "services": [c["service"]],
        "branch": c["branch"],
        "date_from": day,
        "date_to": day,
        "channel": BookingChannel.DESK,
    }
    values.update(changes)
    return free_slots(**values)


def times(slots: list[Slot]) -> list[str]:
    return [timezone.localtime(slot.starts_at).strftime("%H:%M") for slot in slots]


def grid(first: str, last: str, step: int = 15) -> list[str]:
    start = datetime.datetime.combine(datetime.date(2000, 1, 1), datetime.time.fromisoformat(first))
    end = datetime.datetime.combine(datetime.date(2000, 1, 1), datetime.time.fromisoformat(last))
    out = []
    while start <= end:
        out.append(start.strftime("%H:%M"))
        start += datetime.timedelta(minutes=step)
    return out


def book(c: dict[str, Any], starts_at: datetime.datetime, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "branch": c["branch"],
        "services": [c["service"]],
        "starts_at": starts_at,
        "channel": BookingChannel.DESK,
        "patient": c["patient"],
        "doctor": c["doctor"],
    }
    values.update(changes)
    return appointment_book(actor=c["actor"], request=BookingRequest(**values))


# --- schedule, breaks, buffer, appointments ----------------------------------------------------


def test_slots_lie_on_the_grid_inside_working_time_around_the_lunch_break(clinic):
    slots = slots_of(clinic)
    assert times(slots) == grid("09:00", "12:30") + grid("14:00", "16:30")
    assert {slot.state for slot in slots} == {FREE}
    first = slots[0]
    assert first.doctor_id == clinic["doctor"].pk
    assert first.doctor_public_id == clinic["doctor"].public_id
    assert first.doctor_name == "Dr Petrov"
    assert first.ends_at - first.starts_at == datetime.timedelta(minutes=30)


def test_grid_step_counts_from_the_start_of_each_working_interval(clinic):
    clinic["doctor"].grid_step_minutes = 20
    clinic["doctor"].save(update_fields=["grid_step_minutes"])
    assert times(slots_of(clinic)) == grid("09:00", "12:20", 20) + grid("14:00", "16:20", 20)


def test_several_services_take_the_sum_of_their_durations(clinic):
    second = service_for(
        clinic["specialty"], organization=clinic["branch"].organization, duration_minutes=15
    )
    slots = slots_of(clinic, services=[clinic["service"], second])
    assert times(slots) == grid("09:00", "12:15") + grid("14:00", "16:15")
    assert slots[0].ends_at - slots[0].starts_at == datetime.timedelta(minutes=45)


def test_an_ad_hoc_break_removes_the_slots_that_touch_it(clinic):
    ScheduleBreak.objects.create(
        resource=clinic["doctor"],
        starts_at=local(tomorrow(), "10:00"),
        ends_at=local(tomorrow(), "11:00"),
    )
    offered = times(slots_of(clinic))
    assert "09:30" in offered
    assert [t for t in ("09:45", "10:00", "10:30", "10:45") if t in offered] == []
    assert "11:00" in offered


def test_an_appointment_removes_the_overlapping_slots(clinic):
    book(clinic, local(tomorrow(), "10:00"))
    offered = times(slots_of(clinic))
    assert offered == grid("09:00", "09:30") + grid("10:30", "12:30") + grid("14:00", "16:30")


def test_appointments_and_a_break_back_to_back_leave_only_the_start_that_fits_exactly(clinic):
    book(clinic, local(tomorrow(), "10:00"))  # 10:00–10:30
    ScheduleBreak.objects.create(
        resource=clinic["doctor"],
        starts_at=local(tomorrow(), "10:30"),
        ends_at=local(tomorrow(), "11:00"),
    )
    book(clinic, local(tomorrow(), "11:30"))  # 11:30–12:00
    offered = times(slots_of(clinic))
    before_lunch = [*grid("09:00", "09:30"), "11:00", *grid("12:00", "12:30")]
    assert offered == before_lunch + grid("14:00", "16:30")


def test_the_buffer_after_must_be_free_too(clinic):
    clinic["service"].buffer_after_minutes = 15
    clinic["service"].save(update_fields=["buffer_after_minutes"])
    book(clinic, local(tomorrow(), "11:00"))  # occupies 11:00–11:45
    offered = times(slots_of(clinic))
    assert "10:15" in offered  # 10:15–10:45 plus buffer ends exactly at 11:00
    assert "10:30" not in offered
    assert "11:30" not in offered
    assert "11:45" in offered
    assert "12:30" in offered  # the buffer may run into the lunch break, as the booking allows


def test_a_cancelled_appointment_frees_its_slots_again(clinic):
    from scheduling.models import CancelReason
    from scheduling.services import appointment_cancel

    appointment = book(clinic, local(tomorrow(), "10:00"))
    reason = CancelReason.objects.first() or CancelReason.objects.create(code="x", name="x")
    appointment_cancel(actor=clinic["actor"], appointment=appointment, reason=reason)
    assert times(slots_of(clinic)) == grid("09:00", "12:30") + grid("14:00", "16:30")


def test_work_in_another_branch_is_not_offered_in_this_one(clinic):
    other = BranchFactory(organization=clinic["branch"].organization)
    assert slots_of(clinic, branch=other) == []


# --- holds -------------------------------------------------------------------------------------


def test_a_slot_held_by_someone_else_shows_as_held_and_ones_own_as_free(clinic):
    hold = holds.slot_hold(
        resource_ids=[clinic["doctor"].pk],
        starts_at=local(tomorrow(), "10:00"),
        ends_at=local(tomorrow(), "10:30"),
    )
    others = {times([s])[0]: s.state for s in slots_of(clinic)}
    assert [t for t, state in others.items() if state == HELD] == ["09:45", "10:00", "10:15"]
    own = slots_of(clinic, hold_token=hold.token)
    assert {slot.state for slot in own} == {FREE}
    assert len(own) == len(others)


def test_with_redis_down_there_are_simply_no_held_slots(clinic, monkeypatch):
    holds.slot_hold(
        resource_ids=[clinic["doctor"].pk],
        starts_at=local(tomorrow(), "10:00"),
        ends_at=local(tomorrow(), "10:30"),
    )
    monkeypatch.setattr(
        holds,
        "_client",
        lambda: redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2),
    )
    slots = slots_of(clinic)
    assert len(slots) == 26
    assert {slot.state for slot in slots} == {FREE}


# --- days: exceptions, calendar, rotations -----------------------------------------------------


def test_sick_leave_removes_the_day(clinic):
    day_after = tomorrow() + datetime.timedelta(days=1)
    ScheduleException.objects.create(
        resource=clinic["doctor"],
        kind=ExceptionKind.SICK_LEAVE,
        date_from=tomorrow(),
        date_to=tomorrow(),
    )
    slots = slots_of(clinic, date_to=day_after)
    assert {timezone.localtime(s.starts_at).date() for s in slots} == {day_after}
    assert len(slots) == 26


def test_a_calendar_holiday_removes_the_day_of_a_schedule_that_follows_the_calendar(clinic):
    branch = clinic["branch"]
    follower = doctor(branch, specialty=clinic["specialty"], name="Dr Follower")
    works(follower, follows_calendar=True)
    ignorer = doctor(branch, specialty=clinic["specialty"], name="Dr Ignorer")
    works(ignorer, follows_calendar=False)
    CalendarDay.objects.create(
        organization=branch.organization, date=tomorrow(), day_type=CalendarDayType.HOLIDAY
    )
    slots = slots_of(clinic, doctors=[follower, ignorer])
    assert {slot.doctor_name for slot in slots} == {"Dr Ignorer"}


def test_a_two_on_two_off_rotation_offers_days_one_two_five_six(clinic):
    cyclist = doctor(clinic["branch"], specialty=clinic["specialty"], name="Dr Cycle")
    works(cyclist, date_from=tomorrow(), rotation=Rotation.CYCLE, days_on=2, days_off=2)
    slots = slots_of(clinic, doctors=[cyclist], date_to=tomorrow() + datetime.timedelta(days=5))
    offsets = sorted({(timezone.localtime(s.starts_at).date() - tomorrow()).days for s in slots})
    assert offsets == [0, 1, 4, 5]


@pytest.mark.parametrize(
    ("rotation", "remainder"), [(Rotation.ODD_DAYS, 1), (Rotation.EVEN_DAYS, 0)]
)
def test_odd_and_even_day_rotations_offer_only_those_days(clinic, rotation, remainder):
    worker = doctor(clinic["branch"], specialty=clinic["specialty"], name="Dr Parity")
    works(worker, date_from=tomorrow(), rotation=rotation)
    last = tomorrow() + datetime.timedelta(days=3)
    slots = slots_of(clinic, doctors=[worker], date_to=last)
    days = {timezone.localtime(s.starts_at).date() for s in slots}
    expected = {
        tomorrow() + datetime.timedelta(days=n)
        for n in range(4)
        if (tomorrow() + datetime.timedelta(days=n)).day % 2 == remainder
    }
    assert days == expected


# --- channel, notice, horizon, age, quotas -----------------------------------------------------


def test_minimum_notice_hides_the_slots_that_start_too_soon(clinic):
    minutes = math.ceil((local(tomorrow(), "10:59") - timezone.now()).total_seconds() / 60)
    ChannelRule.objects.create(
        organization=clinic["branch"].organization,
        channel=BookingChannel.DESK,
        min_notice_minutes=minutes,
        horizon_days=30,
    )
    assert times(slots_of(clinic)) == grid("11:00", "12:30") + grid("14:00", "16:30")


def test_the_horizon_hides_the_slots_too_far_ahead(clinic):
    last = tomorrow() + datetime.timedelta(days=3)
    unrestricted = slots_of(clinic, date_to=last)
    ChannelRule.objects.create(
        organization=clinic["branch"].organization,
        channel=BookingChannel.DESK,
        min_notice_minutes=0,
        horizon_days=3,
    )
    limit = timezone.now() + datetime.timedelta(days=3)
    restricted = slots_of(clinic, date_to=last)
    assert restricted == [slot for slot in unrestricted if slot.starts_at <= limit]
    assert timezone.localtime(restricted[-1].starts_at).date() < last
    assert len(restricted) < len(unrestricted)


def test_a_service_not_offered_through_the_channel_is_refused(clinic):
    clinic["service"].channels = [BookingChannel.DESK]
    clinic["service"].save(update_fields=["channels"])
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        slots_of(clinic, channel=BookingChannel.PORTAL)
    assert caught.value.code == "channel_not_allowed"
    assert caught.value.field == "channel"


def test_an_unknown_channel_is_refused_naming_the_value(clinic):
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        slots_of(clinic, channel="telepathy")
    assert caught.value.code == "unknown_channel"
    assert caught.value.field == "channel"
    assert str(caught.value.message) == "Unknown booking channel “telepathy”."


def test_age_limits_of_the_doctor_and_of_the_service(clinic):
    paediatrician = doctor(
        clinic["branch"], specialty=clinic["specialty"], name="Dr Child", max_patient_age=17
    )
    works(paediatrician)
    assert {s.doctor_name for s in slots_of(clinic, patient_age=30)} == {"Dr Petrov"}
    assert {s.doctor_name for s in slots_of(clinic, patient_age=10)} == {"Dr Child", "Dr Petrov"}
    clinic["service"].min_age = 18
    clinic["service"].save(update_fields=["min_age"])
    assert slots_of(clinic, patient_age=10) == []
    assert len(slots_of(clinic, patient_age=18)) == 26


def test_a_doctor_who_does_not_perform_the_service_is_not_offered(clinic):
    surgeon = doctor(clinic["branch"], name="Dr Surgeon")
    works(surgeon)
    assert slots_of(clinic, doctors=[surgeon]) == []
    assert {s.doctor_name for s in slots_of(clinic)} == {"Dr Petrov"}


def test_specialty_narrows_the_candidate_doctors(clinic):
    assert slots_of(clinic, specialty="no-such-specialty") == []
    assert len(slots_of(clinic, specialty=clinic["specialty"].code)) == 26


def test_a_used_up_daily_doctor_quota_offers_nothing_that_day(clinic):
    Quota.objects.create(
        organization=clinic["branch"].organization,
        scope=QuotaScope.DOCTOR,
        resource=clinic["doctor"],
        period=QuotaPeriod.DAY,
        limit=1,
    )
    day_after = tomorrow() + datetime.timedelta(days=1)
    assert len(slots_of(clinic)) == 26
    book(clinic, local(tomorrow(), "10:00"))
    slots = slots_of(clinic, date_to=day_after)
    assert {timezone.localtime(s.starts_at).date() for s in slots} == {day_after}


def test_a_used_up_service_quota_offers_nothing_that_day(clinic):
    Quota.objects.create(
        organization=clinic["branch"].organization,
        scope=QuotaScope.SERVICE,
        service=clinic["service"],
        period=QuotaPeriod.DAY,
        limit=2,
    )
    book(clinic, local(tomorrow(), "10:00"))
    assert len(slots_of(clinic)) == 23
    book(clinic, local(tomorrow(), "11:00"))
    assert slots_of(clinic) == []


# --- what is offered can be booked -------------------------------------------------------------


def test_every_offered_slot_of_a_day_can_be_booked_and_then_none_remain(clinic):
    clinic["doctor"].grid_step_minutes = 30
    clinic["doctor"].save(update_fields=["grid_step_minutes"])
    offered = slots_of(clinic)
    assert len(offered) == 14
    for slot in offered:
        appointment = book(clinic, slot.starts_at)
        assert appointment.ends_at == slot.ends_at
    assert slots_of(clinic) == []


def test_booking_the_first_offered_slot_again_and_again_always_succeeds(clinic):
    clinic["service"].buffer_after_minutes = 10
    clinic["service"].save(update_fields=["buffer_after_minutes"])
    booked = []
    while offered := slots_of(clinic):
        booked.append(book(clinic, offered[0].starts_at).starts_at)
        assert len(booked) < 30
    stamps = [int(t.timestamp()) for t in booked]
    assert times([Slot(0, clinic["doctor"].public_id, "", t, t, FREE) for t in stamps]) == [
        "09:00",
        "09:45",
        "10:30",
        "11:15",
        "12:00",
        "14:00",
        "14:45",
        "15:30",
        "16:15",
    ]


# --- nearest free time -------------------------------------------------------------------------


def test_nearest_free_time_across_two_doctors(clinic):
    branch = clinic["branch"]
    clinic["doctor"].schedules.all().delete()
    works(clinic["doctor"], date_from=tomorrow(), date_to=tomorrow(), start="14:00", end="17:00")
    early = doctor(branch, specialty=clinic["specialty"], name="Dr Early")
    works(early, date_from=tomorrow(), date_to=tomorrow(), start="09:00", end="12:00")

    def nearest(limit: int) -> list[Slot]:
        return nearest_free(
            organization_id=branch.organization_id,
            services=[clinic["service"]],
            branch=branch,
            channel=BookingChannel.DESK,
            from_date=timezone.localdate(),
            limit=limit,
        )

    assert [(s.doctor_name, t) for s, t in zip(nearest(3), times(nearest(3)), strict=True)] == [
        ("Dr Early", "09:00"),
        ("Dr Early", "09:15"),
        ("Dr Early", "09:30"),
    ]
    book(clinic, local(tomorrow(), "09:00"), doctor=early)
    assert times(nearest(2)) == ["09:30", "09:45"]
    everything = nearest(100)
    assert {s.doctor_name for s in everything} == {"Dr Early", "Dr Petrov"}
    assert len(everything) == 9 + 11


def test_nearest_free_leaves_out_held_slots(clinic):
    holds.slot_hold(
        resource_ids=[clinic["doctor"].pk],
        starts_at=local(tomorrow(), "09:00"),
        ends_at=local(tomorrow(), "09:30"),
    )
    found = nearest_free(
        organization_id=clinic["branch"].organization_id,
        services=[clinic["service"]],
        branch=clinic["branch"],
        channel=BookingChannel.DESK,
        from_date=tomorrow(),
        limit=2,
    )
    assert times(found) == ["09:30", "09:45"]


# --- query count -------------------------------------------------------------------------------


def test_the_number_of_queries_does_not_grow_with_doctors_and_days(
    clinic, django_assert_max_num_queries
):
    Quota.objects.create(
        organization=clinic["branch"].organization,
        scope=QuotaScope.DOCTOR,
        resource=clinic["doctor"],
        period=QuotaPeriod.WEEK,
        limit=100,
    )
    Quota.objects.create(
        organization=clinic["branch"].organization,
        scope=QuotaScope.SERVICE,
        service=clinic["service"],
        period=QuotaPeriod.MONTH,
        limit=100,
    )
    book(clinic, local(tomorrow(), "10:00"))
    for n in range(5):
        works(doctor(clinic["branch"], specialty=clinic["specialty"], name=f"Dr {n}"))
    with django_assert_max_num_queries(11):
        one = slots_of(clinic, doctors=[clinic["doctor"]])
    with django_assert_max_num_queries(11):
        many = slots_of(clinic, date_to=tomorrow() + datetime.timedelta(days=13))
    assert len(one) == 23
    assert len(many) == 23 + 26 * 13 + 5 * 26 * 14


# --- the API -----------------------------------------------------------------------------------


def client_of(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_api_lists_slots_with_iso_times(clinic, django_assert_max_num_queries):
    client = client_of(clinic["actor"])
    day = tomorrow().isoformat()
    url = (
        f"/api/v1/scheduling/availability/?branch={clinic['branch'].public_id}"
        f"&services={clinic['service'].code}&date_from={day}&date_to={day}&channel=desk"
        f"&doctor={clinic['doctor'].public_id}&patient={clinic['patient'].public_id}"
    )
    with django_assert_max_num_queries(20):
        response = client.get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    assert len(body) == 26
    assert body[0] == {
        "doctor": str(clinic["doctor"].public_id),
        "doctor_name": "Dr Petrov",
        "starts_at": timezone.localtime(local(tomorrow(), "09:00")).isoformat(),
        "ends_at": timezone.localtime(local(tomorrow(), "09:30")).isoformat(),
        "state": "free",
    }


def test_api_nearest_free_time(clinic):
    client = client_of(clinic["actor"])
    response = client.get(
        f"/api/v1/scheduling/availability/nearest/?branch={clinic['branch'].public_id}"
        f"&services={clinic['service'].public_id}&channel=desk&limit=2"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert len(body) == 2
    assert all(slot["state"] == "free" for slot in body)
    assert body[0]["starts_at"] < body[1]["starts_at"]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("services=NOPE-1", "services", "Unknown or inactive service “NOPE-1”."),
        (
            "services={code}&date_from={day}&date_to=2000-01-01",
            "date_to",
            "The end date 2000-01-01 is before the start date.",
        ),
        ("services={code}&channel=pigeon", "channel", "Unknown booking channel “pigeon”."),
        ("services={code}&date_from=31.12.2026", "date_from", "“31.12.2026” is not a date"),
        (
            "services={code}&date_from={day}&date_to=2099-01-01",
            "date_to",
            "Ask for at most 31 days at once, not up to 2099-01-01.",
        ),
    ],
)
def test_api_bad_input_names_the_field_and_the_value(clinic, query, field, message):
    client = client_of(clinic["actor"])
    query = query.format(code=clinic["service"].code, day=tomorrow().isoformat())
    with translation.override("en"):
        response = client.get(
            f"/api/v1/scheduling/availability/?branch={clinic['branch'].public_id}&{query}",
            HTTP_ACCEPT_LANGUAGE="en",
        )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert list(error["fields"]) == [field]
    assert error["message"].startswith(message)


def test_api_refuses_staff_who_may_not_view_the_schedule(clinic):
    technician = staff_with_role(
        Role.LAB_TECHNICIAN, organization=clinic["branch"].organization, branches=[clinic["branch"]]
    )
    response = client_of(technician.user).get(
        f"/api/v1/scheduling/availability/?branch={clinic['branch'].public_id}"
        f"&services={clinic['service'].code}"
    )
    assert response.status_code == 403


def test_api_holds_take_conflict_and_release(clinic):
    colleague = staff_with_role(
        Role.REGISTRAR, organization=clinic["branch"].organization, branches=[clinic["branch"]]
    )
    first, second = client_of(clinic["actor"]), client_of(colleague.user)
    body = {
        "resources": [str(clinic["doctor"].public_id)],
        "starts_at": local(tomorrow(), "10:00").isoformat(),
        "ends_at": local(tomorrow(), "10:30").isoformat(),
    }
    taken = first.post("/api/v1/scheduling/holds/", body, format="json")
    assert taken.status_code == 201, taken.content
    token = taken.json()["token"]
    assert taken.json()["expires_at"]
    clash = second.post("/api/v1/scheduling/holds/", {**body, "token": "other"}, format="json")
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "slot_held"
    again = first.post("/api/v1/scheduling/holds/", {**body, "token": token}, format="json")
    assert again.status_code == 201
    assert again.json()["token"] == token
    wrong = second.delete("/api/v1/scheduling/holds/other/", body, format="json")
    assert wrong.status_code == 204
    assert (
        second.post("/api/v1/scheduling/holds/", {**body, "token": "x"}, format="json").status_code
        == 409
    )
    released = first.delete(f"/api/v1/scheduling/holds/{token}/", body, format="json")
    assert released.status_code == 204
    retaken = second.post("/api/v1/scheduling/holds/", {**body, "token": "other"}, format="json")
    assert retaken.status_code == 201


def test_api_holds_answer_503_when_redis_is_down(clinic, monkeypatch):
    monkeypatch.setattr(
        holds,
        "_client",
        lambda: redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2),
    )
    response = client_of(clinic["actor"]).post(
        "/api/v1/scheduling/holds/",
        {
            "resources": [str(clinic["doctor"].public_id)],
            "starts_at": local(tomorrow(), "10:00").isoformat(),
            "ends_at": local(tomorrow(), "10:30").isoformat(),
        },
        format="json",
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "holds_unavailable"


def test_api_hold_of_an_unknown_resource_names_it(clinic):
    missing = "00000000-0000-0000-0000-000000000001"
    with translation.override("en"):
        response = client_of(clinic["actor"]).post(
            "/api/v1/scheduling/holds/",
            {
                "resources": [missing],
                "starts_at": local(tomorrow(), "10:00").isoformat(),
                "ends_at": local(tomorrow(), "10:30").isoformat(),
            },
            format="json",
            HTTP_ACCEPT_LANGUAGE="en",
        )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "resources": [f"Unknown or inactive resource “{missing}”."]
    }
