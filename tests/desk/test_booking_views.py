"""Booking and changing appointments from the grid's dialogs: hold on click, book a registered
or a new patient, refusals that change nothing, status, move, resize, copy, cancel, restore
(where it was or where it was dropped), the waitlist and the trash panels."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from clinic.core.roles import Role
from scheduling import holds
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    BookingChannel,
    CancelReason,
    WaitlistEntry,
    WaitlistState,
)
from scheduling.services import BookingRequest, appointment_book
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(client: Client) -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    specialty = SpecialtyFactory(name="Therapy")
    first = doctor(branch, specialty=specialty, name="Dr Avdeev", grid_step_minutes=30)
    second = doctor(branch, specialty=specialty, name="Dr Belova", grid_step_minutes=30)
    works(first)
    works(second)
    service = service_for(specialty, organization=branch.organization, name="Therapist visit")
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    client.force_login(registrar.user)
    patient = PersonFactory(
        organization=branch.organization, last_name="Smirnova", first_name="Anna"
    )
    ContactFactory(person=patient, value="+79161234567")
    return {
        "branch": branch,
        "first": first,
        "second": second,
        "service": service,
        "actor": registrar.user,
        "client": client,
        "patient": patient,
    }


def at(hhmm: str, day: datetime.date | None = None) -> str:
    return local(day or tomorrow(), hhmm).isoformat()


def slot_form(c: dict[str, Any], client: Client | None = None, hhmm: str = "10:00") -> Any:
    return (client or c["client"]).get(
        reverse("desk:slot_form"),
        {"doctor": str(c["first"].public_id), "starts": at(hhmm)},
        HTTP_ACCEPT_LANGUAGE="en",
    )


def book(c: dict[str, Any], hhmm: str = "10:00", **fields: Any) -> Any:
    data = {
        "doctor": str(c["first"].public_id),
        "starts": at(hhmm),
        "services": [c["service"].code],
        "payer_kind": "self_pay",
        **fields,
    }
    return c["client"].post(reverse("desk:slot_book"), data, HTTP_ACCEPT_LANGUAGE="en")


def booked(c: dict[str, Any], hhmm: str, resource: Any = None) -> Appointment:
    return appointment_book(
        actor=c["actor"],
        request=BookingRequest(
            branch=c["branch"],
            services=[c["service"]],
            starts_at=local(tomorrow(), hhmm),
            channel=BookingChannel.DESK,
            patient=c["patient"],
            doctor=resource or c["first"],
        ),
    )


def test_a_click_holds_the_slot_for_everyone_else_and_opens_the_form(desk):
    response = slot_form(desk)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Therapist visit" in html and "data-booking-form" in html
    assert response["HX-Trigger"] == "schedule-changed"
    held = holds.held_ranges(
        [desk["first"].pk], local(tomorrow(), "10:00"), local(tomorrow(), "10:30")
    )
    assert held[desk["first"].pk] == [(local(tomorrow(), "10:00"), local(tomorrow(), "10:30"))]
    # A second operator clicking the same slot is told it is held.
    other = Client()
    colleague = staff_with_role(
        Role.REGISTRAR, organization=desk["branch"].organization, branches=[desk["branch"]]
    )
    other.force_login(colleague.user)
    refused = slot_form(desk, client=other)
    assert refused.status_code == 409
    assert "Another operator is holding this time" in refused.content.decode()


def test_booking_a_registered_patient_releases_the_hold(desk):
    slot_form(desk)
    response = book(desk, patient=str(desk["patient"].public_id), note="first visit")
    assert response.status_code == 200, response.content.decode()
    appointment = Appointment.objects.get()
    assert appointment.patient == desk["patient"]
    assert appointment.note == "first visit"
    assert appointment.channel == BookingChannel.DESK
    assert "data-booked" in response.content.decode()
    assert response["HX-Trigger"] == "schedule-changed"
    assert (
        holds.held_ranges(
            [desk["first"].pk], local(tomorrow(), "10:00"), local(tomorrow(), "10:30")
        )
        == {}
    )


def test_booking_a_new_patient_by_name_and_phone(desk):
    response = book(desk, last_name="Orlov", first_name="Ivan", phone="8 916 765-43-21")
    assert response.status_code == 200, response.content.decode()
    appointment = Appointment.objects.get()
    assert appointment.patient is None and appointment.needs_completion
    assert appointment.primary_phone == "+79167654321"


def test_refusals_name_the_problem_and_save_nothing(desk):
    response = book(desk)
    assert response.status_code == 400
    assert "Choose a patient, or give the new patient" in response.content.decode()
    response = book(desk, last_name="Orlov", phone="12")
    assert response.status_code == 400
    assert "“12” is not a" in response.content.decode()
    booked(desk, "10:00")
    response = book(desk, patient=str(desk["patient"].public_id))
    assert response.status_code == 409
    assert Appointment.objects.count() == 1
    response = book(desk, "13:00", patient=str(desk["patient"].public_id))
    assert response.status_code == 400  # the schedule's break
    assert Appointment.objects.count() == 1


def test_the_patient_picker_finds_by_phone_and_warns_of_duplicates(desk):
    client = desk["client"]
    found = client.get(reverse("desk:patient_picker"), {"q": "916 123 45 67"})
    assert "Smirnova Anna" in found.content.decode()
    duplicates = client.get(
        reverse("desk:patient_picker"), {"last_name": "Smirnova", "phone": "+7 916 123-45-67"}
    )
    html = duplicates.content.decode()
    assert "data-picker-duplicates" in html and "Smirnova Anna" in html


def test_the_appointment_dialog_offers_its_actions(desk):
    appointment = booked(desk, "11:00")
    response = desk["client"].get(
        reverse("desk:appointment", args=[appointment.public_id]), HTTP_ACCEPT_LANGUAGE="en"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "https://wa.me/79161234567" in html
    assert 'data-copy-text="+79161234567"' in html
    assert reverse("desk:appointment_slip", args=[appointment.public_id]) in html
    assert reverse("patients:detail", args=[desk["patient"].public_id]) in html
    assert "data-history-row" in html


def test_status_move_resize_and_copy(desk):
    appointment = booked(desk, "11:00")
    client = desk["client"]
    response = client.post(
        reverse("desk:appointment_status", args=[appointment.public_id]), {"status": "arrived"}
    )
    assert response.status_code == 200
    appointment.refresh_from_db()
    assert appointment.status.code == AppointmentStatus.ARRIVED
    bad = client.post(
        reverse("desk:appointment_status", args=[appointment.public_id]),
        {"status": "teleported"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert bad.status_code == 400 and "teleported" in bad.content.decode()

    second = booked(desk, "12:00")
    moved = client.post(
        reverse("desk:appointment_move", args=[second.public_id]),
        {"starts_at": at("15:00"), "doctor": str(desk["second"].public_id)},
    )
    assert moved.status_code == 200, moved.content.decode()
    second.refresh_from_db()
    assert (second.starts_at, second.doctor_id) == (local(tomorrow(), "15:00"), desk["second"].pk)
    resized = client.post(
        reverse("desk:appointment_move", args=[second.public_id]), {"duration_minutes": "60"}
    )
    assert resized.status_code == 200
    second.refresh_from_db()
    assert second.ends_at - second.starts_at == datetime.timedelta(minutes=60)
    # A typed time is the branch's local time.
    typed = client.post(
        reverse("desk:appointment_move", args=[second.public_id]),
        {"starts_at": f"{tomorrow():%Y-%m-%d}T16:00"},
    )
    assert typed.status_code == 200
    second.refresh_from_db()
    assert second.starts_at == local(tomorrow(), "16:00")
    # Into the break: refused, nothing moves.
    refused = client.post(
        reverse("desk:appointment_move", args=[second.public_id]),
        {"starts_at": at("13:00")},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert refused.status_code == 400
    second.refresh_from_db()
    assert second.starts_at == local(tomorrow(), "16:00")

    copied = client.post(
        reverse("desk:appointment_copy", args=[second.public_id]),
        {"starts_at": at("09:00"), "doctor": str(desk["first"].public_id)},
    )
    assert copied.status_code == 200, copied.content.decode()
    copy = Appointment.objects.get(copied_from=second)
    assert (copy.doctor_id, copy.starts_at) == (desk["first"].pk, local(tomorrow(), "09:00"))


def test_cancel_then_restore_from_the_trash_where_it_is_dropped(desk):
    appointment = booked(desk, "11:00")
    client = desk["client"]
    reason = CancelReason.objects.get(code="patient_request")
    response = client.post(
        reverse("desk:appointment_cancel", args=[appointment.public_id]), {"reason": reason.pk}
    )
    assert response.status_code == 200
    trash = client.get(reverse("desk:trash"), {"branch": str(desk["branch"].public_id)})
    assert str(appointment.public_id) in trash.content.decode()
    booked(desk, "11:00")  # someone takes its old time
    in_place = client.post(reverse("desk:appointment_restore", args=[appointment.public_id]))
    assert in_place.status_code == 409
    dropped = client.post(
        reverse("desk:appointment_restore", args=[appointment.public_id]),
        {"starts_at": at("14:30"), "doctor": str(desk["second"].public_id)},
    )
    assert dropped.status_code == 200, dropped.content.decode()
    appointment.refresh_from_db()
    assert appointment.status.code == AppointmentStatus.BOOKED
    assert (appointment.starts_at, appointment.doctor_id) == (
        local(tomorrow(), "14:30"),
        desk["second"].pk,
    )
    assert appointment.occupancies.filter(is_active=True).count() == 1


def test_a_waitlist_entry_is_added_and_booked_from_the_grid(desk):
    client = desk["client"]
    branch = str(desk["branch"].public_id)
    added = client.post(
        reverse("desk:waitlist_add"),
        {
            "branch": branch,
            "patient": str(desk["patient"].public_id),
            "service": desk["service"].pk,
            "note": "mornings",
        },
    )
    assert added.status_code == 200, added.content.decode()
    entry = WaitlistEntry.objects.get()
    panel = client.get(reverse("desk:waitlist"), {"branch": branch})
    assert str(entry.public_id) in panel.content.decode()
    form = client.get(
        reverse("desk:slot_form"),
        {
            "doctor": str(desk["first"].public_id),
            "starts": at("09:30"),
            "waitlist": entry.public_id,
        },
    )
    assert "data-from-waitlist" in form.content.decode()
    response = book(
        desk, "09:30", patient=str(desk["patient"].public_id), waitlist=str(entry.public_id)
    )
    assert response.status_code == 200, response.content.decode()
    entry.refresh_from_db()
    assert entry.state == WaitlistState.BOOKED
    assert entry.appointment is not None and entry.appointment.starts_at == local(
        tomorrow(), "09:30"
    )


def test_closing_the_form_releases_the_hold(desk):
    slot_form(desk)
    response = desk["client"].post(
        reverse("desk:slot_release"),
        {"doctor": str(desk["first"].public_id), "starts": at("10:00")},
    )
    assert response.status_code == 204
    assert (
        holds.held_ranges(
            [desk["first"].pk], local(tomorrow(), "10:00"), local(tomorrow(), "10:30")
        )
        == {}
    )


def test_a_cashier_cannot_book_from_the_grid(client):
    cashier = staff_with_role(Role.CASHIER)
    client.force_login(cashier.user)
    assert client.get(reverse("desk:slot_form")).status_code == 403
    assert client.post(reverse("desk:slot_book")).status_code == 403


def test_the_note_source_and_payer_are_edited_from_the_dialog(desk):
    appointment = booked(desk, "11:00")
    response = desk["client"].post(
        reverse("desk:appointment_details", args=[appointment.public_id]),
        {"note": "  bring the X-ray  ", "payer_kind": "dms"},
    )
    assert response.status_code == 200
    appointment.refresh_from_db()
    assert (appointment.note, appointment.payer_kind) == ("bring the X-ray", "dms")
    bad = desk["client"].post(
        reverse("desk:appointment_details", args=[appointment.public_id]),
        {"note": "x", "payer_kind": "barter"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert bad.status_code == 400 and "barter" in bad.content.decode()
    appointment.refresh_from_db()
    assert appointment.note == "bring the X-ray"


def test_a_service_its_lab_cannot_perform_is_refused_with_the_labs_note(desk):
    from billing.models import ServiceBilling

    ServiceBilling.objects.create(
        service=desk["service"], lab_unavailable=True, lab_unavailable_note="Until 5 December."
    )
    response = book(desk, patient=str(desk["patient"].public_id))
    assert response.status_code == 400
    text = response.content.decode()
    assert "The lab cannot perform" in text and "Therapist visit" in text
    assert "Until 5 December." in text
    assert Appointment.objects.count() == 0


def test_the_dialog_leads_to_the_cash_desk_for_those_who_take_payments(desk, client):
    from tests.core.factories import StaffFactory, UserFactory

    appointment = booked(desk, "11:00")
    url = reverse("desk:appointment", args=[appointment.public_id])
    html = desk["client"].get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "data-to-cash-desk" not in html  # a registrar takes no payments
    both = UserFactory(roles=[Role.REGISTRAR, Role.CASHIER])
    StaffFactory(user=both, organization=desk["branch"].organization, branches=[desk["branch"]])
    client.force_login(both)
    html = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert (
        f"{reverse('pos:page')}?branch={desk['branch'].public_id}&amp;"
        f"patient={desk['patient'].public_id}"
    ) in html
