"""The schedule grid: columns of doctors, rows of time, appointments, breaks, absences, free and
held time, the toolbar's filters and toggles, and a query count that does not grow with the
number of doctors."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.core.roles import Role
from scheduling import holds
from scheduling.models import BookingChannel, ExceptionKind, ScheduleBreak, ScheduleException
from scheduling.services import BookingRequest, PrimaryPatient, appointment_book
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import doctor, local, room, service_for, tomorrow, works

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic(client: Any) -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    specialty = SpecialtyFactory(name="Therapy")
    doctors = []
    for name in ("Dr Avdeev", "Dr Belova", "Dr Chernov"):
        resource = doctor(branch, specialty=specialty, name=name, grid_step_minutes=30)
        works(resource)
        doctors.append(resource)
    service = service_for(specialty, organization=branch.organization, name="Therapist visit")
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    client.force_login(registrar.user)
    return {
        "branch": branch,
        "doctors": doctors,
        "service": service,
        "actor": registrar.user,
        "client": client,
    }


def book(c: dict[str, Any], resource: Any, hhmm: str, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "branch": c["branch"],
        "services": [c["service"]],
        "starts_at": local(tomorrow(), hhmm),
        "channel": BookingChannel.DESK,
        "doctor": resource,
    }
    values.update(changes)
    return appointment_book(actor=c["actor"], request=BookingRequest(**values))


def grid_html(c: dict[str, Any], **params: Any) -> str:
    query = {"date": tomorrow().isoformat(), "branch": str(c["branch"].public_id), **params}
    response = c["client"].get(reverse("desk:grid"), query, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200, response.content.decode()[:2000]
    return str(response.content.decode())


def cells(html: str, kind: str) -> list[str]:
    return re.findall(rf'<td [^>]*class="slot slot--{kind}[^"]*"[^>]*>', html)


def test_the_day_grid_shows_each_doctor_with_appointments_breaks_and_free_time(clinic):
    patient = PersonFactory(
        organization=clinic["branch"].organization,
        last_name="Smirnova",
        first_name="Anna",
        birth_date=datetime.date(2015, 5, 1),
        is_vip=True,
    )
    book(clinic, clinic["doctors"][0], "10:00", patient=patient)
    book(
        clinic,
        clinic["doctors"][1],
        "09:00",
        primary=PrimaryPatient(
            last_name="Orlov", first_name="Ivan", phone="+79161234567", birth_date=None
        ),
    )
    html = grid_html(clinic)
    heads = re.findall(r'schedule-grid__doctor">([^<]+)<', html)
    assert heads == ["Dr Avdeev", "Dr Belova", "Dr Chernov"]
    # 09:00-17:00 with a 13:00-14:00 break at a 30-minute step: 16 rows.
    assert len(re.findall(r'<th scope="row" class="schedule-grid__time">', html)) == 16
    booked = cells(html, "booked")
    assert len(booked) == 2
    assert "Smirnova Anna" in html and "Orlov Ivan" in html
    assert 'data-marker="minor"' in html and 'data-marker="vip"' in html
    assert 'data-marker="primary"' in html
    assert len(cells(html, "break")) == 3
    # 14 half-hour starts a day per doctor, minus the two booked.
    assert len(cells(html, "free")) == 3 * 14 - 2
    # The rowspans of every column add up to the rows shown.
    spans = [int(s) for s in re.findall(r'<td rowspan="(\d+)"', html)]
    assert sum(spans) == 3 * 16


def test_an_absence_fills_the_doctor_s_day_but_keeps_its_appointments(clinic):
    absent = clinic["doctors"][2]
    appointment = book(
        clinic,
        absent,
        "11:00",
        patient=PersonFactory(organization=clinic["branch"].organization, last_name="Kuznetsov"),
    )
    ScheduleException.objects.create(
        resource=absent, kind=ExceptionKind.SICK_LEAVE, date_from=tomorrow(), date_to=tomorrow()
    )
    html = grid_html(clinic)
    assert str(appointment.public_id) in html
    assert "Sick leave" in html
    assert len(cells(html, "absent")) >= 1
    assert len(cells(html, "free")) == 2 * 14


def test_a_held_slot_shows_as_held_to_other_operators(clinic):
    resource = clinic["doctors"][0]
    holds.slot_hold(
        token="someone-else",
        resource_ids=[resource.pk],
        starts_at=local(tomorrow(), "15:00"),
        ends_at=local(tomorrow(), "15:30"),
    )
    html = grid_html(clinic)
    assert len(cells(html, "held")) == 1


def test_filters_and_toggles(clinic):
    html = grid_html(clinic, doctor=[clinic["doctors"][1].pk])
    heads = re.findall(r'schedule-grid__doctor">([^<]+)<', html)
    assert heads == ["Dr Belova"]
    other = SpecialtyFactory(name="Cardiology")
    html = grid_html(clinic, specialty=other.pk)
    assert "No doctor matches these filters" in html
    # The whole day from 08:00 to 20:00 at 30 minutes: 24 rows.
    html = grid_html(clinic, hours="all")
    assert len(re.findall(r'class="schedule-grid__time"', html)) == 24
    # Hiding booked time: the rows where nobody is free disappear.
    for resource in clinic["doctors"]:
        book(clinic, resource, "09:00", patient=PersonFactory(organization=resource.organization))
    html = grid_html(clinic, hide_booked="1")
    assert ">09:00</th>" not in html
    assert ">09:30</th>" in html
    week = grid_html(clinic, view="week", doctor=[clinic["doctors"][0].pk])
    assert len(re.findall(r'class="schedule-grid__head"', week)) == 7


def test_the_grid_s_queries_do_not_grow_with_the_number_of_doctors(clinic):
    for resource in clinic["doctors"]:
        book(
            clinic,
            resource,
            "10:00",
            patient=PersonFactory(organization=clinic["branch"].organization),
        )
    ScheduleBreak.objects.create(
        resource=clinic["doctors"][0],
        starts_at=local(tomorrow(), "15:00"),
        ends_at=local(tomorrow(), "15:30"),
    )

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            grid_html(clinic)
        return len(captured.captured_queries)

    few = count()
    for number in range(7):
        resource = doctor(
            clinic["branch"],
            specialty=clinic["doctors"][0].staff.specialty,
            name=f"Dr Extra{number}",
            grid_step_minutes=15,
        )
        works(resource)
        book(
            clinic,
            resource,
            "11:00",
            patient=PersonFactory(organization=clinic["branch"].organization),
        )
    many = count()
    assert many == few


def test_bad_toolbar_values_are_named_and_the_grid_still_shows(clinic):
    response = clinic["client"].get(
        reverse("desk:grid"),
        {"date": "31.12.2026", "view": "month", "branch": str(clinic["branch"].public_id)},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "31.12.2026" in html and "month" in html
    assert "Dr Avdeev" in html


def test_a_cashier_cannot_open_the_grid(client):
    cashier = staff_with_role(Role.CASHIER)
    client.force_login(cashier.user)
    assert client.get(reverse("desk:grid")).status_code == 403


def test_a_rooms_grid_shows_what_occupies_each_room(clinic):
    consulting = room(clinic["branch"])
    patient = PersonFactory(organization=clinic["branch"].organization, last_name="Zaitseva")
    appointment = book(clinic, clinic["doctors"][0], "10:00", patient=patient, room=consulting)
    html = grid_html(clinic, kind="room")
    heads = re.findall(r'schedule-grid__doctor">([^<]+)<', html)
    assert heads == [consulting.name]
    assert str(appointment.public_id) in html
    # A room's free time is shown, not booked from the grid (bookings start from a doctor).
    assert cells(html, "free") == []
    assert len(cells(html, "vacant")) > 0
    bad = clinic["client"].get(
        reverse("desk:grid"), {"kind": "spaceship"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert bad.status_code == 400 and "spaceship" in bad.content.decode()


def test_the_patients_debt_and_advance_show_as_markers(clinic):
    from billing.models import PatientAccount

    debtor = PersonFactory(organization=clinic["branch"].organization, last_name="Debtova")
    payer = PersonFactory(organization=clinic["branch"].organization, last_name="Avansov")
    settled = PersonFactory(organization=clinic["branch"].organization, last_name="Rovnova")
    book(clinic, clinic["doctors"][0], "10:00", patient=debtor)
    book(clinic, clinic["doctors"][1], "10:00", patient=payer)
    book(clinic, clinic["doctors"][2], "10:00", patient=settled)
    organization = clinic["branch"].organization
    PatientAccount.objects.create(organization=organization, patient=debtor, debt="1500.00")
    PatientAccount.objects.create(organization=organization, patient=payer, advance="300.00")
    PatientAccount.objects.create(organization=organization, patient=settled)
    html = grid_html(clinic)
    cells_by_patient = {
        name: re.search(rf"<td [^>]*>(?:(?!</td>).)*{name}(?:(?!</td>).)*</td>", html, re.S)
        for name in ("Debtova", "Avansov", "Rovnova")
    }
    assert all(cells_by_patient.values()), html[:2000]
    debtor_cell = cells_by_patient["Debtova"].group(0)  # type: ignore[union-attr]
    payer_cell = cells_by_patient["Avansov"].group(0)  # type: ignore[union-attr]
    settled_cell = cells_by_patient["Rovnova"].group(0)  # type: ignore[union-attr]
    assert 'data-marker="debt"' in debtor_cell and 'data-marker="advance"' not in debtor_cell
    assert 'data-marker="advance"' in payer_cell and 'data-marker="debt"' not in payer_cell
    assert "data-marker=" not in settled_cell.replace('data-marker="processed"', "")
