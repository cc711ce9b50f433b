"""The waitlist: freed time is offered to matching entries in order; the first accept books it."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone, translation
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.core.roles import Role
from clinic.outbox.models import OutboxMessage
from scheduling.errors import SchedulingError, SlotConflict
from scheduling.models import (
    AppointmentStatus,
    BookingChannel,
    CancelReason,
    OfferState,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistState,
)
from scheduling.services import BookingRequest, appointment_book, appointment_cancel
from scheduling.waitlist import (
    OFFER_CHANNEL,
    waitlist_add,
    waitlist_cancel,
    waitlist_expire_offers,
    waitlist_offer_accept,
    waitlist_offer_decline,
    waitlist_offer_freed_slot,
)
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from .factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_relay_kick(monkeypatch: Any) -> None:
    """Committed outbox rows would signal a Celery relay; the tests read the rows instead."""
    monkeypatch.setattr("clinic.outbox.services._kick_relay", lambda channel: None)


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
    }


def person(c: dict[str, Any], last_name: str) -> Any:
    return PersonFactory(organization=c["branch"].organization, last_name=last_name)


def book(c: dict[str, Any], hhmm: str = "10:00", **changes: Any) -> Any:
    values: dict[str, Any] = {
        "branch": c["branch"],
        "services": [c["service"]],
        "starts_at": local(tomorrow(), hhmm),
        "channel": BookingChannel.DESK,
        "patient": person(c, "Booked"),
        "doctor": c["doctor"],
    }
    values.update(changes)
    return appointment_book(actor=c["actor"], request=BookingRequest(**values))


def add(c: dict[str, Any], last_name: str, **fields: Any) -> WaitlistEntry:
    values: dict[str, Any] = {
        "actor": c["actor"],
        "branch": c["branch"],
        "patient": person(c, last_name),
        "service": c["service"],
    }
    values.update(fields)
    return waitlist_add(**values)


def cancel(c: dict[str, Any], appointment: Any, capture: Any) -> None:
    reason = CancelReason.objects.get(code="patient_request")
    with capture(execute=True):
        appointment_cancel(actor=c["actor"], appointment=appointment, reason=reason)


def test_cancel_offers_the_freed_time_to_matching_entries_in_created_order(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    appointment = book(clinic)
    parse = datetime.time.fromisoformat
    anyone = add(clinic, "Anyone")
    for_petrov = add(
        clinic, "Morning", doctor=clinic["doctor"], time_from=parse("09:00"), time_to=parse("11:00")
    )
    afternoon = add(clinic, "Afternoon", time_from=parse("14:00"), time_to=parse("16:00"))
    too_late_window = add(clinic, "Later", time_to=parse("10:15"))
    next_week = add(clinic, "NextWeek", date_from=tomorrow() + datetime.timedelta(days=7))
    other_doctor = doctor(clinic["branch"], specialty=clinic["specialty"], name="Dr Other")
    for_other = add(clinic, "OtherDoctor", doctor=other_doctor)
    foreign_service = add(
        clinic,
        "Cardio",
        service=service_for(SpecialtyFactory(), organization=clinic["branch"].organization),
    )
    long_service = add(
        clinic,
        "Long",
        service=service_for(
            clinic["specialty"], organization=clinic["branch"].organization, duration_minutes=60
        ),
    )
    other_branch = BranchFactory(organization=clinic["branch"].organization)
    clinic["actor"].staff.branches.add(other_branch)
    elsewhere = add(clinic, "Elsewhere", branch=other_branch)

    cancel(clinic, appointment, django_capture_on_commit_callbacks)

    offers = list(WaitlistOffer.objects.order_by("id"))
    assert [offer.entry_id for offer in offers] == [anyone.pk, for_petrov.pk]
    for offer in offers:
        assert offer.state == OfferState.OFFERED
        assert offer.doctor == clinic["doctor"]
        assert offer.starts_at == local(tomorrow(), "10:00")
        assert offer.ends_at == local(tomorrow(), "10:30")
        # The slot starts tomorrow, so the two-hour answer window is the earlier limit.
        expected_expiry = offer.created_at + datetime.timedelta(hours=2)
        assert abs(offer.expires_at - expected_expiry) < datetime.timedelta(seconds=5)
        message = offer.outbox_message
        assert message is not None
        assert message.channel == OFFER_CHANNEL
        assert message.idempotency_key == f"waitlist-offer:{offer.public_id}"
        assert message.payload["offer"] == str(offer.public_id)
        assert message.payload["patient"] == str(offer.entry.patient.public_id)
        assert message.payload["doctor"] == "Dr Petrov"
        assert message.payload["starts_at"] == local(tomorrow(), "10:00").isoformat()
    assert OutboxMessage.objects.filter(channel=OFFER_CHANNEL).count() == 2
    states = dict(WaitlistEntry.objects.values_list("pk", "state"))
    assert states[anyone.pk] == WaitlistState.OFFERED
    assert states[for_petrov.pk] == WaitlistState.OFFERED
    for untouched in (
        afternoon,
        too_late_window,
        next_week,
        for_other,
        foreign_service,
        long_service,
        elsewhere,
    ):
        assert states[untouched.pk] == WaitlistState.WAITING
        assert not WaitlistOffer.objects.filter(entry=untouched).exists()


def test_time_already_booked_again_is_not_offered(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    add(clinic, "Waiting")
    rebooked = book(clinic)
    offered = waitlist_offer_freed_slot(
        doctor_id=clinic["doctor"].pk,
        starts_at=rebooked.starts_at,
        ends_at=rebooked.ends_at,
        freed_at=timezone.now(),
    )
    assert offered == []
    assert not OutboxMessage.objects.exists()


def test_time_outside_the_doctors_working_hours_is_not_offered(clinic: dict[str, Any]) -> None:
    add(clinic, "Waiting")
    offered = waitlist_offer_freed_slot(
        doctor_id=clinic["doctor"].pk,
        starts_at=local(tomorrow(), "18:00"),
        ends_at=local(tomorrow(), "19:00"),
        freed_at=timezone.now(),
    )
    assert offered == []


def test_the_first_accept_books_and_the_second_is_a_conflict(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    appointment = book(clinic)
    first = add(clinic, "First")
    second = add(clinic, "Second")
    cancel(clinic, appointment, django_capture_on_commit_callbacks)
    offer_one, offer_two = WaitlistOffer.objects.order_by("id")

    booked = waitlist_offer_accept(actor=clinic["actor"], offer=offer_two)
    assert booked.patient == second.patient
    assert booked.doctor == clinic["doctor"]
    assert booked.starts_at == local(tomorrow(), "10:00")
    assert booked.status.code == AppointmentStatus.BOOKED
    assert booked.idempotency_key == f"waitlist-offer:{offer_two.public_id}"
    second.refresh_from_db()
    assert second.state == WaitlistState.BOOKED
    assert second.appointment == booked
    offer_one.refresh_from_db()
    assert offer_one.state == OfferState.TAKEN
    first.refresh_from_db()
    assert first.state == WaitlistState.WAITING

    with translation.override("en"), pytest.raises(SlotConflict) as caught:
        waitlist_offer_accept(actor=clinic["actor"], offer=offer_one)
    assert caught.value.code == "slot_taken"
    assert caught.value.status_code == 409

    again = waitlist_offer_accept(actor=clinic["actor"], offer=offer_two)
    assert again.pk == booked.pk


def test_an_offer_whose_time_was_booked_directly_becomes_taken(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    appointment = book(clinic)
    entry = add(clinic, "Waiting")
    cancel(clinic, appointment, django_capture_on_commit_callbacks)
    offer = WaitlistOffer.objects.get()
    book(clinic, patient=person(clinic, "WalkIn"))
    with pytest.raises(SlotConflict) as caught:
        waitlist_offer_accept(actor=clinic["actor"], offer=offer)
    assert caught.value.code == "slot_taken"
    offer.refresh_from_db()
    assert offer.state == OfferState.TAKEN
    entry.refresh_from_db()
    assert entry.state == WaitlistState.WAITING


def test_decline_and_expiry_put_the_entry_back_in_the_queue(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    first_slot = book(clinic)
    second_slot = book(clinic, "11:00")
    declining = add(clinic, "Declining")
    cancel(clinic, first_slot, django_capture_on_commit_callbacks)
    offer = WaitlistOffer.objects.get(entry=declining)
    waitlist_offer_decline(actor=clinic["actor"], offer=offer)
    offer.refresh_from_db()
    declining.refresh_from_db()
    assert offer.state == OfferState.DECLINED
    assert declining.state == WaitlistState.WAITING
    with pytest.raises(SchedulingError) as caught:
        waitlist_offer_decline(actor=clinic["actor"], offer=offer)
    assert caught.value.code == "offer_closed"

    cancel(clinic, second_slot, django_capture_on_commit_callbacks)
    late = WaitlistOffer.objects.get(entry=declining, state=OfferState.OFFERED)
    assert waitlist_expire_offers(now=late.expires_at + datetime.timedelta(seconds=1)) == 1
    late.refresh_from_db()
    declining.refresh_from_db()
    assert late.state == OfferState.EXPIRED
    assert declining.state == WaitlistState.WAITING
    with pytest.raises(SchedulingError) as caught:
        waitlist_offer_accept(actor=clinic["actor"], offer=late)
    assert caught.value.code == "offer_closed"


def test_cancelling_an_entry_withdraws_its_offers(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    appointment = book(clinic)
    entry = add(clinic, "Leaving")
    cancel(clinic, appointment, django_capture_on_commit_callbacks)
    cancelled = waitlist_cancel(actor=clinic["actor"], entry=entry)
    assert cancelled.state == WaitlistState.CANCELLED
    assert WaitlistOffer.objects.get(entry=entry).state == OfferState.DECLINED
    with pytest.raises(SchedulingError) as caught:
        waitlist_cancel(actor=clinic["actor"], entry=entry)
    assert caught.value.code == "waitlist_closed"


def test_add_refuses_a_backwards_window_naming_the_field(clinic: dict[str, Any]) -> None:
    with translation.override("en"), pytest.raises(SchedulingError) as caught:
        add(
            clinic,
            "Backwards",
            date_from=tomorrow() + datetime.timedelta(days=3),
            date_to=tomorrow(),
        )
    assert caught.value.code == "invalid_window"
    assert caught.value.field == "date_to"
    assert str(caught.value.message) == (
        f"The end date {tomorrow().isoformat()} is before the start date "
        f"{(tomorrow() + datetime.timedelta(days=3)).isoformat()}."
    )
    assert not WaitlistEntry.objects.exists()


def test_add_refuses_a_doctor_who_does_not_perform_the_service(clinic: dict[str, Any]) -> None:
    cardio = service_for(SpecialtyFactory(), organization=clinic["branch"].organization)
    with pytest.raises(SchedulingError) as caught:
        add(clinic, "Wrong", service=cardio, doctor=clinic["doctor"])
    assert caught.value.code == "service_not_performed"
    assert not WaitlistEntry.objects.exists()


def test_a_cashier_may_not_add_to_the_waitlist(clinic: dict[str, Any]) -> None:
    cashier = staff_with_role(
        Role.CASHIER, organization=clinic["branch"].organization, branches=[clinic["branch"]]
    )
    with pytest.raises(PermissionDenied):
        add(clinic, "Nobody", actor=cashier.user)
    assert not WaitlistEntry.objects.exists()


# --- API -----------------------------------------------------------------------------------------


def api_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_api_add_list_and_cancel(
    clinic: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    client = api_client(clinic["actor"])
    patient = person(clinic, "Api")
    created = client.post(
        "/api/v1/scheduling/waitlist/",
        {
            "branch": str(clinic["branch"].public_id),
            "patient": str(patient.public_id),
            "service": clinic["service"].code,
            "doctor": str(clinic["doctor"].public_id),
            "time_from": "09:00",
            "time_to": "12:00",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["patient"] == str(patient.public_id)
    assert body["doctor_name"] == "Dr Petrov"
    assert body["state"] == "waiting"
    assert body["time_from"] == "09:00:00"
    for index in range(4):
        add(clinic, f"More{index}")
    other_branch_entry = WaitlistEntry.objects.create(
        organization=clinic["branch"].organization,
        branch=BranchFactory(organization=clinic["branch"].organization),
        patient=person(clinic, "Hidden"),
        service=clinic["service"],
    )
    with django_assert_max_num_queries(6):
        listed = client.get("/api/v1/scheduling/waitlist/")
    assert listed.status_code == 200
    ids = [row["id"] for row in listed.json()]
    assert len(ids) == 5
    assert ids[0] == body["id"]
    assert str(other_branch_entry.public_id) not in ids

    cancelled = client.post(f"/api/v1/scheduling/waitlist/{body['id']}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    waiting = client.get("/api/v1/scheduling/waitlist/?state=waiting")
    assert len(waiting.json()) == 4


def test_api_add_with_an_unknown_service_names_the_field(clinic: dict[str, Any]) -> None:
    client = api_client(clinic["actor"])
    with translation.override("en"):
        response = client.post(
            "/api/v1/scheduling/waitlist/",
            {
                "branch": str(clinic["branch"].public_id),
                "patient": str(person(clinic, "X").public_id),
                "service": "NOPE",
            },
            format="json",
            HTTP_ACCEPT_LANGUAGE="en",
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_service"
    assert "service" in error["fields"]


def test_api_accept_then_second_accept_is_409(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    appointment = book(clinic)
    add(clinic, "First")
    add(clinic, "Second")
    cancel(clinic, appointment, django_capture_on_commit_callbacks)
    offer_one, offer_two = WaitlistOffer.objects.order_by("id")
    client = api_client(clinic["actor"])
    accepted = client.post(f"/api/v1/scheduling/waitlist/offers/{offer_one.public_id}/accept/")
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["patient"] == str(offer_one.entry.patient.public_id)
    assert accepted.json()["doctor_name"] == "Dr Petrov"
    refused = client.post(f"/api/v1/scheduling/waitlist/offers/{offer_two.public_id}/accept/")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "slot_taken"


def test_api_cashier_cannot_add_or_accept_and_nothing_changes(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    appointment = book(clinic)
    add(clinic, "Waiting")
    cancel(clinic, appointment, django_capture_on_commit_callbacks)
    offer = WaitlistOffer.objects.get()
    cashier = staff_with_role(
        Role.CASHIER, organization=clinic["branch"].organization, branches=[clinic["branch"]]
    )
    client = api_client(cashier.user)
    added = client.post(
        "/api/v1/scheduling/waitlist/",
        {
            "branch": str(clinic["branch"].public_id),
            "patient": str(person(clinic, "Cash").public_id),
            "service": clinic["service"].code,
        },
        format="json",
    )
    assert added.status_code == 403
    accepted = client.post(f"/api/v1/scheduling/waitlist/offers/{offer.public_id}/accept/")
    assert accepted.status_code == 403
    assert WaitlistEntry.objects.count() == 1
    offer.refresh_from_db()
    assert offer.state == OfferState.OFFERED
