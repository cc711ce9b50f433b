"""The desk's printouts: the patient's appointment slip and a doctor's day list (PDF).

No PDF text extractor is installed, so the content is checked on the HTML the PDF is printed
from (``*_html``), and the PDF itself on its structure and the response's headers.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation
from guardian.shortcuts import assign_perm

from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.core.roles import Role
from desk.prints import (
    appointment_slip_html,
    appointment_slip_pdf,
    doctor_day_list_html,
    doctor_day_list_pdf,
    public_id_short,
)
from patients.models import CardStatus
from scheduling.models import BookingChannel, CancelReason
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book, appointment_cancel
from tests.core.factories import BranchFactory, RoomFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import (
    CardTypeFactory,
    ContactFactory,
    MedicalCardFactory,
    PersonFactory,
)
from tests.scheduling.factories import doctor, local, room, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic() -> dict[str, Any]:
    branch = BranchFactory(name="Central", address="Lenina St 5", phone="+74951234567")
    organization = branch.organization
    doctors = {}
    services = {}
    for name, number in (("Dr Petrov", "101"), ("Dr Ivanova", "202")):
        specialty = SpecialtyFactory()
        resource = doctor(branch, specialty=specialty, name=name)
        works(resource, room=RoomFactory(branch=branch, number=number))
        doctors[name] = resource
        services[name] = service_for(specialty, organization=organization, name=f"Visit to {name}")
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    card_type = CardTypeFactory(organization=organization, name="Outpatient")
    assign_perm("patients.open_cardtype", registrar.user, card_type)
    patient = PersonFactory(
        organization=organization,
        last_name="Smirnova",
        first_name="Anna",
        patronymic="",
        birth_date=datetime.date(tomorrow().year - 40, 1, 1),
    )
    ContactFactory(person=patient, value="+79161234567")
    MedicalCardFactory(person=patient, card_type=card_type, branch=branch, number="A-17")
    return {
        "branch": branch,
        "organization": organization,
        "doctors": doctors,
        "services": services,
        "card_type": card_type,
        "registrar": registrar,
        "actor": registrar.user,
        "patient": patient,
    }


def book(c: dict[str, Any], name: str, hhmm: str, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "branch": c["branch"],
        "services": [c["services"][name]],
        "starts_at": local(tomorrow(), hhmm),
        "channel": BookingChannel.DESK,
        "patient": c["patient"],
        "doctor": c["doctors"][name],
    }
    values.update(changes)
    return appointment_book(actor=c["actor"], request=BookingRequest(**values))


def cancel(c: dict[str, Any], appointment: Any) -> None:
    appointment_cancel(
        actor=c["actor"],
        appointment=appointment,
        reason=CancelReason.objects.get(code="patient_request"),
    )


def text(html: str) -> str:
    """The HTML's text, tags stripped and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def rows(html: str) -> list[list[str]]:
    """The cells of each visit row of the day list, tags stripped and whitespace collapsed."""
    found = []
    for row in re.findall(r'<tr class="visit">(.*?)</tr>', html, flags=re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        found.append([" ".join(re.sub(r"<[^>]+>", "", cell).split()) for cell in cells])
    return found


def slip_url(appointment: Any) -> str:
    return reverse("desk:appointment_slip", kwargs={"public_id": appointment.public_id})


def day_list_url(resource: Any, day: Any) -> str:
    return reverse("desk:doctor_day_list", kwargs={"public_id": resource.public_id, "day": day})


def logged_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


# ---- the appointment slip -----------------------------------------------------------------------


def test_the_slip_shows_clinic_patient_time_doctor_room_services_and_number(
    clinic: dict[str, Any],
) -> None:
    appointment = book(clinic, "Dr Petrov", "09:30", note="Bring the ECG from March")
    with translation.override("en"):
        html = appointment_slip_html(actor=clinic["actor"], appointment=appointment)
    assert '<html lang="en">' in html
    shown = text(html)
    assert clinic["organization"].short_name in shown
    assert "Central" in shown
    assert "Lenina St 5" in shown
    assert "Phone: +74951234567" in shown
    assert "Patient Smirnova Anna" in shown
    assert f"Date and time {tomorrow():%d.%m.%Y}, 09:30–10:00" in shown
    assert "Doctor Dr Petrov" in shown
    assert "Room 101" in shown
    assert "Services Visit to Dr Petrov" in shown
    assert "Status Booked" in shown
    assert "Note Bring the ECG from March" in shown
    assert f"Appointment slip №{appointment.public_id.hex[:8].upper()}" in shown
    assert public_id_short(appointment) == appointment.public_id.hex[:8].upper()
    assert "identity document" in shown
    assert "This appointment has been cancelled." not in shown


def test_the_slip_shows_the_branchs_local_time_not_the_servers() -> None:
    """A Novosibirsk branch (UTC+7): 07:00 in Moscow (the server's zone) is 11:00 there."""
    branch = BranchFactory(name="Novosibirsk", time_zone="Asia/Novosibirsk")
    specialty = SpecialtyFactory()
    resource = doctor(branch, specialty=specialty, name="Dr Orlov")
    works(resource)  # 09:00–17:00 in the branch's own time
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    appointment = appointment_book(
        actor=registrar.user,
        request=BookingRequest(
            branch=branch,
            services=[service_for(specialty, organization=branch.organization)],
            starts_at=local(tomorrow(), "07:00"),
            channel=BookingChannel.DESK,
            patient=PersonFactory(organization=branch.organization),
            doctor=resource,
        ),
    )
    with translation.override("en"):
        html = appointment_slip_html(actor=registrar.user, appointment=appointment)
    assert f"Date and time {tomorrow():%d.%m.%Y}, 11:00–11:30" in text(html)


def test_a_primary_patients_slip_names_them_and_asks_for_the_identity_document(
    clinic: dict[str, Any],
) -> None:
    appointment = book(
        clinic,
        "Dr Ivanova",
        "11:00",
        patient=None,
        primary=PrimaryPatient(last_name="Sidorov", first_name="Oleg", phone="+79160000001"),
    )
    with translation.override("en"):
        shown = text(appointment_slip_html(actor=clinic["actor"], appointment=appointment))
    assert "Patient Sidorov Oleg" in shown
    assert "This is your first visit" in shown


def test_a_cancelled_appointments_slip_says_so(clinic: dict[str, Any]) -> None:
    appointment = book(clinic, "Dr Petrov", "10:00")
    cancel(clinic, appointment)
    with translation.override("en"):
        shown = text(appointment_slip_html(actor=clinic["actor"], appointment=appointment))
    assert "This appointment has been cancelled." in shown
    assert "Status Cancelled" in shown


def test_the_russian_slip_is_marked_russian_and_keeps_the_data(clinic: dict[str, Any]) -> None:
    appointment = book(clinic, "Dr Petrov", "09:30")
    with translation.override("ru"):
        html = appointment_slip_html(actor=clinic["actor"], appointment=appointment)
        pdf = appointment_slip_pdf(actor=clinic["actor"], appointment=appointment)
    assert '<html lang="ru">' in html
    shown = text(html)
    assert "Smirnova Anna" in shown
    assert f"{tomorrow():%d.%m.%Y}, 09:30–10:00" in shown
    assert "Dr Petrov" in shown
    assert pdf.startswith(b"%PDF-")


def test_the_slip_view_answers_with_an_inline_pdf(client: Client, clinic: dict[str, Any]) -> None:
    appointment = book(clinic, "Dr Petrov", "09:30")
    response = logged_in(client, clinic["actor"]).get(slip_url(appointment))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert response.content.rstrip().endswith(b"%%EOF")
    assert response["Content-Disposition"] == (
        f'inline; filename="appointment-{public_id_short(appointment)}-'
        f'{tomorrow().isoformat()}.pdf"'
    )


def test_a_registrar_of_another_branch_may_not_print_the_slip(
    client: Client, clinic: dict[str, Any]
) -> None:
    appointment = book(clinic, "Dr Petrov", "09:30")
    other_branch = BranchFactory(organization=clinic["organization"])
    stranger = staff_with_role(
        Role.REGISTRAR, organization=clinic["organization"], branches=[other_branch]
    )
    response = logged_in(client, stranger.user).get(slip_url(appointment))
    assert response.status_code == 403
    denial = SecurityEvent.objects.get(user=stranger.user, kind=SecurityEventKind.ACCESS_DENIED)
    assert denial.detail == "print appointment slip"


def test_a_lab_technician_may_not_print_the_slip(client: Client, clinic: dict[str, Any]) -> None:
    appointment = book(clinic, "Dr Petrov", "09:30")
    technician = staff_with_role(
        Role.LAB_TECHNICIAN, organization=clinic["organization"], branches=[clinic["branch"]]
    )
    assert logged_in(client, technician.user).get(slip_url(appointment)).status_code == 403


def test_another_organizations_appointment_and_an_unknown_id_are_404(
    client: Client, clinic: dict[str, Any]
) -> None:
    appointment = book(clinic, "Dr Petrov", "09:30")
    outsider_branch = BranchFactory()  # another organization
    outsider = staff_with_role(
        Role.REGISTRAR, organization=outsider_branch.organization, branches=[outsider_branch]
    )
    assert logged_in(client, outsider.user).get(slip_url(appointment)).status_code == 404
    client.force_login(clinic["actor"])
    unknown = reverse(
        "desk:appointment_slip", kwargs={"public_id": "00000000-0000-4000-8000-000000000000"}
    )
    assert client.get(unknown).status_code == 404


def test_an_anonymous_visitor_is_sent_to_log_in(client: Client, clinic: dict[str, Any]) -> None:
    appointment = book(clinic, "Dr Petrov", "09:30")
    response = client.get(slip_url(appointment))
    assert response.status_code == 302
    assert "login" in response["Location"]


# ---- a doctor's day list ------------------------------------------------------------------------


@pytest.fixture
def petrovs_day(clinic: dict[str, Any]) -> dict[str, Any]:
    """Dr Petrov tomorrow: three live visits (one of a primary patient), one cancelled; plus a
    visit the day after and one of Dr Ivanova's, which are not on his list."""
    book(clinic, "Dr Petrov", "14:00", note="Wheelchair")
    book(clinic, "Dr Petrov", "09:30")
    book(
        clinic,
        "Dr Petrov",
        "11:00",
        patient=None,
        primary=PrimaryPatient(
            last_name="Sidorov",
            first_name="Oleg",
            phone="+79160000001",
            birth_date=datetime.date(2015, 1, 1),
        ),
    )
    cancel(clinic, book(clinic, "Dr Petrov", "12:00"))
    book(
        clinic,
        "Dr Petrov",
        "10:00",
        starts_at=local(tomorrow() + datetime.timedelta(days=1), "10:00"),
    )
    book(clinic, "Dr Ivanova", "09:30")
    return clinic


def test_the_day_list_has_the_doctors_live_visits_of_the_day_in_time_order(
    petrovs_day: dict[str, Any],
) -> None:
    c = petrovs_day
    day = tomorrow()
    with translation.override("en"):
        html = doctor_day_list_html(actor=c["actor"], doctor=c["doctors"]["Dr Petrov"], day=day)
    assert '<html lang="en">' in html
    shown = text(html)
    assert "Doctor: Dr Petrov" in shown
    assert f"Date: {day:%d.%m.%Y}" in shown
    assert "Branch: Central" in shown
    sidorov_age = day.year - 2015 - ((day.month, day.day) < (1, 1))
    visit = "Visit to Dr Petrov"
    assert rows(html) == [
        ["09:30–10:00", "Smirnova Anna", "40", "A-17", "+79161234567", visit, "Booked", ""],
        ["11:00–11:30", "Sidorov Oleg", str(sidorov_age), "—", "+79160000001", visit, "Booked", ""],
        [
            "14:00–14:30",
            "Smirnova Anna",
            "40",
            "A-17",
            "+79161234567",
            visit,
            "Booked",
            "Wheelchair",
        ],
    ]
    assert "3 appointments" in shown


def test_the_day_list_shows_only_cards_the_actor_may_open_and_only_open_ones(
    petrovs_day: dict[str, Any],
) -> None:
    c = petrovs_day
    secret = CardTypeFactory(organization=c["organization"], name="Venereology")
    MedicalCardFactory(person=c["patient"], card_type=secret, branch=c["branch"], number="V-9")
    MedicalCardFactory(
        person=c["patient"],
        card_type=c["card_type"],
        branch=c["branch"],
        number="A-3",
        status=CardStatus.CLOSED,
        closed_on=datetime.date(2020, 1, 1),
    )
    with translation.override("en"):
        html = doctor_day_list_html(
            actor=c["actor"], doctor=c["doctors"]["Dr Petrov"], day=tomorrow()
        )
    assert [row[3] for row in rows(html)] == ["A-17", "—", "A-17"]


def test_an_empty_day_says_so_and_counts_zero(clinic: dict[str, Any]) -> None:
    with translation.override("en"):
        html = doctor_day_list_html(
            actor=clinic["actor"], doctor=clinic["doctors"]["Dr Ivanova"], day=tomorrow()
        )
    assert rows(html) == []
    shown = text(html)
    assert "No visits are booked for this day." in shown
    assert "0 appointments" in shown


def test_the_russian_day_list_is_marked_russian_and_keeps_the_data(
    petrovs_day: dict[str, Any],
) -> None:
    c = petrovs_day
    with translation.override("ru"):
        html = doctor_day_list_html(
            actor=c["actor"], doctor=c["doctors"]["Dr Petrov"], day=tomorrow()
        )
    assert '<html lang="ru">' in html
    assert [row[:2] for row in rows(html)] == [
        ["09:30–10:00", "Smirnova Anna"],
        ["11:00–11:30", "Sidorov Oleg"],
        ["14:00–14:30", "Smirnova Anna"],
    ]


def test_the_day_list_costs_the_same_queries_for_two_or_eight_visits(
    clinic: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    """Each visit has its own patient with a phone and a card, so nothing is shared."""
    resource = clinic["doctors"]["Dr Ivanova"]

    def visit(hhmm: str) -> None:
        patient = PersonFactory(organization=clinic["organization"])
        ContactFactory(person=patient)
        MedicalCardFactory(person=patient, card_type=clinic["card_type"], branch=clinic["branch"])
        book(clinic, "Dr Ivanova", hhmm, patient=patient)

    for hhmm in ("09:00", "09:30"):
        visit(hhmm)
    # Warm the per-user permission caches, so both measured runs count the same lookups.
    doctor_day_list_html(actor=clinic["actor"], doctor=resource, day=tomorrow())
    with CaptureQueriesContext(connection) as few:
        html = doctor_day_list_html(actor=clinic["actor"], doctor=resource, day=tomorrow())
    assert len(rows(html)) == 2
    for hhmm in ("10:00", "10:30", "11:00", "11:30", "12:00", "12:30"):
        visit(hhmm)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = doctor_day_list_html(actor=clinic["actor"], doctor=resource, day=tomorrow())
    assert len(rows(html)) == 8


def test_the_day_list_pdf_is_a_real_pdf(petrovs_day: dict[str, Any]) -> None:
    c = petrovs_day
    pdf = doctor_day_list_pdf(actor=c["actor"], doctor=c["doctors"]["Dr Petrov"], day=tomorrow())
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")


def test_the_day_list_view_answers_with_an_inline_pdf(
    client: Client, petrovs_day: dict[str, Any]
) -> None:
    c = petrovs_day
    day = tomorrow().isoformat()
    response = logged_in(client, c["actor"]).get(day_list_url(c["doctors"]["Dr Petrov"], day))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert response["Content-Disposition"] == f'inline; filename="day-list-{day}.pdf"'


def test_a_registrar_of_another_branch_may_not_print_the_day_list(
    client: Client, clinic: dict[str, Any]
) -> None:
    other_branch = BranchFactory(organization=clinic["organization"])
    stranger = staff_with_role(
        Role.REGISTRAR, organization=clinic["organization"], branches=[other_branch]
    )
    url = day_list_url(clinic["doctors"]["Dr Petrov"], tomorrow().isoformat())
    response = logged_in(client, stranger.user).get(url)
    assert response.status_code == 403
    denial = SecurityEvent.objects.get(user=stranger.user, kind=SecurityEventKind.ACCESS_DENIED)
    assert denial.detail == "print doctor day list"


def test_a_registrar_of_a_branch_the_doctor_also_works_in_may_print_the_day_list(
    client: Client, clinic: dict[str, Any]
) -> None:
    second_branch = BranchFactory(organization=clinic["organization"], name="North")
    resource = clinic["doctors"]["Dr Petrov"]
    works(resource, branch=second_branch, weekdays=[])
    registrar = staff_with_role(
        Role.REGISTRAR, organization=clinic["organization"], branches=[second_branch]
    )
    url = day_list_url(resource, tomorrow().isoformat())
    assert logged_in(client, registrar.user).get(url).status_code == 200


def test_an_unknown_or_foreign_doctor_is_404(client: Client, clinic: dict[str, Any]) -> None:
    client.force_login(clinic["actor"])
    day = tomorrow().isoformat()
    unknown = reverse(
        "desk:doctor_day_list",
        kwargs={"public_id": "00000000-0000-4000-8000-000000000000", "day": day},
    )
    assert client.get(unknown).status_code == 404
    foreign = doctor(BranchFactory(), name="Dr Foreign")  # another organization
    assert client.get(day_list_url(foreign, day)).status_code == 404
    a_room = room(clinic["branch"])  # a resource, but not a doctor
    assert client.get(day_list_url(a_room, day)).status_code == 404


@pytest.mark.parametrize("bad_day", ["31.12.2026", "2026-02-30", "20261231", "tomorrow"])
def test_a_bad_day_is_400_naming_the_value(
    client: Client, clinic: dict[str, Any], bad_day: str
) -> None:
    client.force_login(clinic["actor"])
    response = client.get(
        day_list_url(clinic["doctors"]["Dr Petrov"], bad_day), HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == f"“{bad_day}” is not a date in the form YYYY-MM-DD."
