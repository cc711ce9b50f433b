"""The desk's lists: appointments found by each filter (scoped to the actor's branches, at a
fixed query count), their Excel export, and tomorrow's call list with the call results."""

from __future__ import annotations

import datetime
import io
from typing import Any

import openpyxl
import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from clinic.audit.selectors import history_for_object
from clinic.core.roles import Role
from desk.exports import appointments_xlsx
from desk.lists import (
    AppointmentFilters,
    appointment_search,
    communication_status_record,
    tomorrow_call_list,
)
from scheduling.errors import SchedulingError
from scheduling.models import (
    AppointmentStatus,
    BookingChannel,
    BookingType,
    CancelReason,
    CommunicationStatus,
)
from scheduling.services import (
    BookingRequest,
    PrimaryPatient,
    appointment_book,
    appointment_cancel,
)
from tests.core.factories import BranchFactory, RoomFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import (
    CardTypeFactory,
    ContactFactory,
    MedicalCardFactory,
    PersonFactory,
)
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def day_after() -> datetime.date:
    return tomorrow() + datetime.timedelta(days=1)


@pytest.fixture
def clinic(client: Any) -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    organization = branch.organization
    specialty = SpecialtyFactory(name="Therapy")
    doctors = {}
    for name, number in (("Dr Avdeev", "101"), ("Dr Belova", "202")):
        resource = doctor(branch, specialty=specialty, name=name)
        works(resource, room=RoomFactory(branch=branch, number=number))
        doctors[name] = resource
    service = service_for(specialty, organization=organization, name="Therapist visit")
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    card_type = CardTypeFactory(organization=organization, name="Outpatient", number_prefix="К")
    assign_perm("patients.open_cardtype", registrar.user, card_type)
    smirnova = PersonFactory(
        organization=organization, last_name="Smirnova", first_name="Anna", patronymic=""
    )
    ContactFactory(person=smirnova, value="+79161234567")
    MedicalCardFactory(person=smirnova, card_type=card_type, branch=branch, number="К1001")
    orlov = PersonFactory(
        organization=organization, last_name="Orlov", first_name="Ivan", patronymic=""
    )
    ContactFactory(person=orlov, value="+79037654321")
    client.force_login(registrar.user)
    return {
        "branch": branch,
        "organization": organization,
        "specialty": specialty,
        "doctors": doctors,
        "service": service,
        "actor": registrar.user,
        "card_type": card_type,
        "smirnova": smirnova,
        "orlov": orlov,
        "client": client,
    }


def book(c: dict[str, Any], name: str, day: datetime.date, hhmm: str, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "branch": c["branch"],
        "services": [c["service"]],
        "starts_at": local(day, hhmm),
        "channel": BookingChannel.DESK,
        "doctor": c["doctors"][name],
    }
    values.update(changes)
    return appointment_book(actor=c["actor"], request=BookingRequest(**values))


@pytest.fixture
def booked(clinic: dict[str, Any]) -> dict[str, Any]:
    """Smirnova tomorrow at 10:00 and a cancelled 12:00, Orlov (urgent) tomorrow at 11:00, a
    not-yet-registered Kuznetsov the day after at 09:00."""
    c = clinic
    c["a_smirnova"] = book(c, "Dr Avdeev", tomorrow(), "10:00", patient=c["smirnova"])
    c["a_orlov"] = book(
        c, "Dr Belova", tomorrow(), "11:00", patient=c["orlov"], booking_type=BookingType.URGENT
    )
    c["a_kuznetsov"] = book(
        c,
        "Dr Avdeev",
        day_after(),
        "09:00",
        primary=PrimaryPatient(
            last_name="Kuznetsov", first_name="Pyotr", phone="8 (926) 555-44-33"
        ),
    )
    cancelled = book(c, "Dr Belova", tomorrow(), "12:00", patient=c["smirnova"])
    c["a_cancelled"] = appointment_cancel(
        actor=c["actor"],
        appointment=cancelled,
        reason=CancelReason.objects.get(code="patient_request"),
    )
    return c


def found(c: dict[str, Any], **filters: Any) -> list[Any]:
    """The public ids of the appointments the registrar finds, in the list's order."""
    return [
        a.public_id
        for a in appointment_search(actor=c["actor"], filters=AppointmentFilters(**filters))
    ]


def ids(c: dict[str, Any], *names: str) -> list[Any]:
    return [c[name].public_id for name in names]


# ---- the selector, filter by filter -------------------------------------------------------------


def test_without_filters_every_appointment_of_the_actor_s_branches_is_listed_in_time_order(booked):
    assert found(booked) == ids(booked, "a_smirnova", "a_orlov", "a_cancelled", "a_kuznetsov")


@pytest.mark.parametrize("typed", ["К1001", "к1001", "1001", "K1001", "№ К1001"])
def test_search_by_card_number_as_typed(booked, typed):
    assert found(booked, card_number=typed) == ids(booked, "a_smirnova", "a_cancelled")


def test_a_card_of_a_type_the_actor_may_not_open_is_not_searched(booked):
    hidden_type = CardTypeFactory(organization=booked["organization"])
    MedicalCardFactory(
        person=booked["orlov"], card_type=hidden_type, branch=booked["branch"], number="777"
    )
    assert found(booked, card_number="777") == []


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("smirnova", ["a_smirnova", "a_cancelled"]),
        ("Smirn An", ["a_smirnova", "a_cancelled"]),
        ("anna smirnova", ["a_smirnova", "a_cancelled"]),
        ("ivan", ["a_orlov"]),
        ("kuzn", ["a_kuznetsov"]),
        ("pyotr kuznetsov", ["a_kuznetsov"]),
        ("anna orlov", []),
    ],
)
def test_search_by_name_of_a_registered_or_a_primary_patient(booked, typed, expected):
    assert found(booked, name=typed) == ids(booked, *expected)


@pytest.mark.parametrize(
    "typed",
    ["+7 916 123-45-67", "8 (916) 123 45 67", "89161234567", "9161234567", "123-45-67", "4567"],
)
def test_search_by_phone_in_any_format(booked, typed):
    assert found(booked, phone=typed) == ids(booked, "a_smirnova", "a_cancelled")


@pytest.mark.parametrize("typed", ["+7 926 555 44 33", "89265554433", "555-44-33"])
def test_search_by_the_phone_of_a_not_yet_registered_patient(booked, typed):
    assert found(booked, phone=typed) == ids(booked, "a_kuznetsov")


def test_search_by_period_in_branch_local_dates(booked):
    assert found(booked, date_from=tomorrow(), date_to=tomorrow()) == ids(
        booked, "a_smirnova", "a_orlov", "a_cancelled"
    )
    assert found(booked, date_from=day_after()) == ids(booked, "a_kuznetsov")
    assert found(booked, date_to=tomorrow() - datetime.timedelta(days=1)) == []


def test_the_period_follows_the_branch_s_time_zone_not_the_server_s(clinic):
    """00:30 in Yekaterinburg is still the day before in Moscow (the server's zone)."""
    far = BranchFactory(organization=clinic["organization"], time_zone="Asia/Yekaterinburg")
    resource = doctor(far, specialty=clinic["specialty"], name="Dr Uralov")
    works(resource, start="00:00", end="23:00", break_from=None, break_to=None)
    clinic["actor"].staff.branches.add(far)
    clinic["doctors"]["Dr Uralov"] = resource
    appointment = book(
        clinic,
        "Dr Uralov",
        tomorrow(),
        "22:30",  # Moscow time: 00:30 of the day after in Yekaterinburg
        branch=far,
        patient=clinic["orlov"],
    )
    assert found(clinic, branch=far, date_from=day_after(), date_to=day_after()) == [
        appointment.public_id
    ]
    assert found(clinic, branch=far, date_from=tomorrow(), date_to=tomorrow()) == []


def test_search_by_doctor_room_status_booking_type_and_branch(booked):
    c = booked
    assert found(c, doctor=c["doctors"]["Dr Belova"]) == ids(c, "a_orlov", "a_cancelled")
    assert found(c, room=c["a_smirnova"].room) == ids(c, "a_smirnova", "a_kuznetsov")
    cancelled = AppointmentStatus.objects.get(code=AppointmentStatus.CANCELLED)
    assert found(c, status=cancelled) == ids(c, "a_cancelled")
    assert found(c, booking_type=BookingType.URGENT) == ids(c, "a_orlov")
    assert found(c, branch=c["branch"], name="smirnova", date_from=tomorrow()) == ids(
        c, "a_smirnova", "a_cancelled"
    )


@pytest.mark.parametrize(
    ("filters", "field", "value"),
    [
        ({"booking_type": "someday"}, "booking_type", "someday"),
        ({"phone": "12"}, "phone", "12"),
        ({"name": "12345"}, "name", "12345"),
        ({"card_number": "--"}, "card_number", "--"),
    ],
)
def test_a_filter_that_cannot_be_read_is_refused_naming_the_field_and_value(
    booked, filters, field, value
):
    with pytest.raises(SchedulingError) as refused:
        found(booked, **filters)
    assert refused.value.field == field
    assert value in str(refused.value.message)


def test_a_reversed_period_is_refused(booked):
    with pytest.raises(SchedulingError) as refused:
        found(booked, date_from=day_after(), date_to=tomorrow())
    assert refused.value.field == "date_to"


def test_another_branch_s_appointments_are_not_found(booked):
    other = BranchFactory(organization=booked["organization"], name="North")
    other_doctor = doctor(other, specialty=booked["specialty"], name="Dr North")
    works(other_doctor)
    other_registrar = staff_with_role(
        Role.REGISTRAR, organization=booked["organization"], branches=[other]
    )
    theirs = appointment_book(
        actor=other_registrar.user,
        request=BookingRequest(
            branch=other,
            services=[booked["service"]],
            starts_at=local(tomorrow(), "10:00"),
            channel=BookingChannel.DESK,
            doctor=other_doctor,
            patient=booked["smirnova"],
        ),
    )
    assert theirs.public_id not in found(booked, name="smirnova")
    assert found(booked, branch=other) == []
    assert theirs.public_id not in found(booked, phone="9161234567")
    # The other branch's registrar sees theirs and not ours.
    assert [
        a.public_id
        for a in appointment_search(actor=other_registrar.user, filters=AppointmentFilters())
    ] == [theirs.public_id]


# ---- the list page ------------------------------------------------------------------------------


def list_page(c: dict[str, Any], **params: Any) -> Any:
    return c["client"].get(reverse("desk:appointment_list"), params, **EN)


def test_the_list_page_shows_the_found_appointments_with_local_times_and_phones(booked):
    response = list_page(booked, phone="8 916 123 45 67", date_from=tomorrow().isoformat())
    html = response.content.decode()
    assert response.status_code == 200, html[:2000]
    assert html.count('data-appointment="') == 2
    assert f'data-appointment="{booked["a_smirnova"].public_id}"' in html
    assert "10:00–10:30" in html
    assert "+79161234567" in html
    assert "№К1001" in html
    assert "2 appointments found" in html
    assert reverse("desk:appointment_export") + "?" in html


def test_an_empty_query_string_lists_today(booked):
    """Tomorrow's appointments are not in the list the page opens on; its dates are today's."""
    response = list_page(booked)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-appointment="' not in html
    assert "0 appointments found" in html
    assert html.count(f'value="{timezone.localdate().isoformat()}"') == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"date_from": "31.02.2031"}, "From “31.02.2031”"),
        ({"doctor": "not-a-doctor"}, "Doctor “not-a-doctor”"),
        ({"branch": "00000000-0000-0000-0000-000000000000"}, "Branch “00000000-"),
        ({"status": "lost"}, "Status “lost”"),
        ({"booking_type": "someday"}, "Booking type “someday”"),
        ({"phone": "12"}, "Phone: “12”"),
    ],
)
def test_a_bad_filter_value_is_named_on_the_form_with_400(booked, params, expected):
    response = list_page(booked, **params)
    html = response.content.decode()
    assert response.status_code == 400
    assert expected in html
    assert "data-filter-problems" in html
    assert 'data-appointment="' not in html


def test_another_branch_s_doctor_is_an_unknown_value(booked):
    other = BranchFactory(organization=booked["organization"], name="North")
    other_doctor = doctor(other, specialty=booked["specialty"], name="Dr North")
    response = list_page(booked, doctor=str(other_doctor.public_id))
    assert response.status_code == 400
    assert f"Doctor “{other_doctor.public_id}”" in response.content.decode()


def count_queries(c: dict[str, Any], **params: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = list_page(c, **params)
    assert response.status_code == 200
    return len(queries)


def test_the_list_costs_the_same_number_of_queries_for_2_and_12_appointments(
    clinic, django_assert_max_num_queries
):
    c = clinic
    people = [PersonFactory(organization=c["organization"]) for _ in range(12)]
    for person in people:
        ContactFactory(person=person)
        MedicalCardFactory(person=person, card_type=c["card_type"], branch=c["branch"])
    hours = ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]
    for person, hhmm in zip(people[:2], hours, strict=False):
        book(c, "Dr Avdeev", tomorrow(), hhmm, patient=person)
    params = {"date_from": tomorrow().isoformat(), "name": "иванова"}
    few = count_queries(c, **params)
    for index, person in enumerate(people[2:]):
        name = "Dr Avdeev" if index < 4 else "Dr Belova"
        book(c, name, tomorrow(), hours[(index + 2) % 6], patient=person)
    with django_assert_max_num_queries(few):
        response = list_page(c, **params)
    assert response.content.decode().count('data-appointment="') == 12
    assert count_queries(c, **params) == few


def test_the_list_pages_by_50(clinic):
    c = clinic
    day = tomorrow()
    for index in range(51):
        start = local(day + datetime.timedelta(days=index // 14), "09:00")
        hhmm = [
            "09:00",
            "09:30",
            "10:00",
            "10:30",
            "11:00",
            "11:30",
            "12:00",
            "12:30",
            "14:00",
            "14:30",
            "15:00",
            "15:30",
            "16:00",
            "16:30",
        ][index % 14]
        book(
            c,
            "Dr Avdeev",
            start.date(),
            hhmm,
            primary=PrimaryPatient(last_name=f"Patient{index}", phone="+79990000000"),
        )
    first = list_page(c, date_from=day.isoformat()).content.decode()
    assert first.count('data-appointment="') == 50
    assert "Page 1 of 2" in first
    second = list_page(c, date_from=day.isoformat(), page="2").content.decode()
    assert second.count('data-appointment="') == 1


# ---- the export ---------------------------------------------------------------------------------


def test_the_export_is_an_xlsx_with_the_header_and_local_times(booked):
    response = booked["client"].get(
        reverse("desk:appointment_export"),
        {"date_from": tomorrow().isoformat(), "date_to": tomorrow().isoformat()},
        **EN,
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert response["Content-Disposition"] == (
        f'attachment; filename="appointments-{tomorrow().isoformat()}.xlsx"'
    )
    workbook = openpyxl.load_workbook(io.BytesIO(response.content))
    sheet = workbook.active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == (
        "Date",
        "Time",
        "Doctor",
        "Room",
        "Patient",
        "Card number",
        "Phone",
        "Services",
        "Status",
        "Booking type",
        "Communication status",
        "Note",
    )
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["E"].width == 36
    day = datetime.datetime.combine(tomorrow(), datetime.time())
    # 10:00 Moscow is 07:00 UTC: the file holds the branch's local time.
    assert rows[1:] == [
        (
            day,
            datetime.time(10, 0),
            "Dr Avdeev",
            "101",
            "Smirnova Anna",
            "К1001",
            "+79161234567",
            "Therapist visit",
            "Booked",
            "Planned",
            "Not contacted",
            None,
        ),
        (
            day,
            datetime.time(11, 0),
            "Dr Belova",
            "202",
            "Orlov Ivan",
            None,
            "+79037654321",
            "Therapist visit",
            "Booked",
            "Urgent",
            "Not contacted",
            None,
        ),
        (
            day,
            datetime.time(12, 0),
            "Dr Belova",
            "202",
            "Smirnova Anna",
            "К1001",
            "+79161234567",
            "Therapist visit",
            "Cancelled",
            "Planned",
            "Not contacted",
            None,
        ),
    ]


def test_the_export_is_written_in_the_language_asked_for(booked):
    appointments = appointment_search(
        actor=booked["actor"], filters=AppointmentFilters(name="kuznetsov")
    )
    content = appointments_xlsx(appointments, language="ru")
    rows = list(openpyxl.load_workbook(io.BytesIO(content)).active.iter_rows(values_only=True))
    assert rows[0][0] == "Дата"
    assert rows[1][4:8] == ("Kuznetsov Pyotr", None, "8 (926) 555-44-33", "Therapist visit")
    assert rows[1][9:11] == ("Плановая", "Не оповещён")


def test_the_export_is_cut_at_the_limit_with_a_message(booked, monkeypatch):
    monkeypatch.setattr("desk.list_views.EXPORT_LIMIT", 2)
    response = booked["client"].get(reverse("desk:appointment_export"), {"date_from": ""}, **EN)
    assert response.status_code == 200
    rows = list(
        openpyxl.load_workbook(io.BytesIO(response.content)).active.iter_rows(values_only=True)
    )
    assert len(rows) == 1 + 2 + 2
    assert rows[-1][0].startswith("Only the first 2 appointments are exported")


def test_an_export_with_a_bad_filter_is_refused_with_400(booked):
    response = booked["client"].get(reverse("desk:appointment_export"), {"phone": "1"}, **EN)
    assert response.status_code == 400
    assert "Phone: “1”" in response.content.decode()


# ---- the call list ------------------------------------------------------------------------------


def test_the_call_list_holds_tomorrow_s_active_appointments_with_phones_in_time_order(booked):
    c = booked
    appointments = tomorrow_call_list(actor=c["actor"], branch=c["branch"], day=tomorrow())
    assert [a.public_id for a in appointments] == ids(c, "a_smirnova", "a_orlov")
    assert [p.value for p in appointments[0].patient.phone_contacts] == ["+79161234567"]


def test_the_call_list_page_opens_on_tomorrow(booked):
    response = booked["client"].get(reverse("desk:call_list"), **EN)
    html = response.content.decode()
    assert response.status_code == 200, html[:2000]
    assert html.count('data-call="') == 2
    assert f'data-call="{booked["a_smirnova"].public_id}"' in html
    assert f'data-call="{booked["a_cancelled"].public_id}"' not in html
    assert "+79161234567" in html and "+79037654321" in html
    assert html.count("data-call-result-form") == 2


def test_the_call_list_page_takes_another_date(booked):
    response = booked["client"].get(
        reverse("desk:call_list"), {"date": day_after().isoformat()}, **EN
    )
    html = response.content.decode()
    assert html.count('data-call="') == 1
    assert "8 (926) 555-44-33" in html


def test_a_bad_call_list_date_is_named_with_400(booked):
    response = booked["client"].get(reverse("desk:call_list"), {"date": "tomorrow"}, **EN)
    assert response.status_code == 400
    assert "The date “tomorrow” is not a date" in response.content.decode()


def test_another_branch_s_call_list_is_an_unknown_branch(booked):
    other = BranchFactory(organization=booked["organization"], name="North")
    response = booked["client"].get(reverse("desk:call_list"), {"branch": str(other.public_id)})
    assert response.status_code == 400
    assert tomorrow_call_list(actor=booked["actor"], branch=other, day=tomorrow()) == []


def test_recording_a_call_result_updates_the_row_and_the_history(booked):
    c = booked
    appointment = c["a_smirnova"]
    response = c["client"].post(
        reverse("desk:call_result", args=[appointment.public_id]),
        {"communication_status": CommunicationStatus.CONFIRMED, "note": "Will come by car"},
        HTTP_HX_REQUEST="true",
        **EN,
    )
    html = response.content.decode()
    assert response.status_code == 200, html
    assert html.strip().startswith(f'<tr data-call="{appointment.public_id}"')
    assert 'data-communication-status="confirmed"' in html
    assert "Will come by car" in html
    appointment.refresh_from_db()
    assert appointment.communication_status == CommunicationStatus.CONFIRMED
    assert appointment.note == "Will come by car"
    event = list(history_for_object(appointment))[-1]
    assert event.pgh_label == "update"
    assert event.pgh_diff["communication_status"] == ["not_contacted", "confirmed"]
    assert event.user == c["actor"]
    assert event.pgh_context["call_result"] == "confirmed"
    assert event.pgh_context["call_note"] == "Will come by car"
    assert event.pgh_context["change_reason"] == "Confirmation call: Confirmed. Will come by car"


def test_a_plain_post_returns_to_the_call_list(booked):
    c = booked
    response = c["client"].post(
        reverse("desk:call_result", args=[c["a_orlov"].public_id]),
        {"communication_status": CommunicationStatus.NO_ANSWER},
        **EN,
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("desk:call_list") + "?branch=")
    c["a_orlov"].refresh_from_db()
    assert c["a_orlov"].communication_status == CommunicationStatus.NO_ANSWER
    assert c["a_orlov"].note == ""


def test_a_bad_call_result_is_refused_with_400_and_nothing_changes(booked):
    c = booked
    appointment = c["a_smirnova"]
    response = c["client"].post(
        reverse("desk:call_result", args=[appointment.public_id]),
        {"communication_status": "maybe", "note": "?"},
        HTTP_HX_REQUEST="true",
        **EN,
    )
    assert response.status_code == 400
    assert "Unknown communication status “maybe”." in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.communication_status == CommunicationStatus.NOT_CONTACTED
    assert appointment.note == ""


def test_the_service_refuses_an_unknown_status_naming_it(booked):
    with pytest.raises(SchedulingError) as refused:
        communication_status_record(
            actor=booked["actor"], appointment=booked["a_smirnova"], status="perhaps"
        )
    assert refused.value.field == "communication_status"
    assert "perhaps" in str(refused.value.message)


def test_a_closed_appointment_takes_no_call_result(booked):
    with pytest.raises(SchedulingError) as refused:
        communication_status_record(
            actor=booked["actor"],
            appointment=booked["a_cancelled"],
            status=CommunicationStatus.CONFIRMED,
        )
    assert refused.value.code == "appointment_closed"


def test_another_branch_s_appointment_is_not_found_for_a_call_result(booked):
    other = BranchFactory(organization=booked["organization"], name="North")
    other_registrar = staff_with_role(
        Role.REGISTRAR, organization=booked["organization"], branches=[other]
    )
    booked["client"].force_login(other_registrar.user)
    response = booked["client"].post(
        reverse("desk:call_result", args=[booked["a_smirnova"].public_id]),
        {"communication_status": CommunicationStatus.CONFIRMED},
    )
    assert response.status_code == 404
    booked["a_smirnova"].refresh_from_db()
    assert booked["a_smirnova"].communication_status == CommunicationStatus.NOT_CONTACTED


# ---- access -------------------------------------------------------------------------------------


def test_a_cashier_gets_403_everywhere_and_changes_nothing(booked):
    c = booked
    cashier = staff_with_role(Role.CASHIER, organization=c["organization"], branches=[c["branch"]])
    c["client"].force_login(cashier.user)
    for url in (
        reverse("desk:appointment_list"),
        reverse("desk:appointment_export"),
        reverse("desk:call_list"),
    ):
        assert c["client"].get(url).status_code == 403, url
    response = c["client"].post(
        reverse("desk:call_result", args=[c["a_smirnova"].public_id]),
        {"communication_status": CommunicationStatus.CONFIRMED},
    )
    assert response.status_code == 403
    c["a_smirnova"].refresh_from_db()
    assert c["a_smirnova"].communication_status == CommunicationStatus.NOT_CONTACTED
    with pytest.raises(PermissionDenied):
        communication_status_record(
            actor=cashier.user, appointment=c["a_smirnova"], status=CommunicationStatus.CONFIRMED
        )


def test_an_anonymous_visitor_is_sent_to_log_in(booked):
    booked["client"].logout()
    response = booked["client"].get(reverse("desk:appointment_list"))
    assert response.status_code == 302


def test_the_call_list_query_count_does_not_grow(booked, django_assert_max_num_queries):
    with CaptureQueriesContext(connection) as queries:
        booked["client"].get(reverse("desk:call_list"), **EN)
    few = len(queries)
    for hhmm in ("14:00", "14:30", "15:00"):
        book(
            booked,
            "Dr Avdeev",
            tomorrow(),
            hhmm,
            patient=PersonFactory(organization=booked["organization"]),
        )
    with django_assert_max_num_queries(few):
        response = booked["client"].get(reverse("desk:call_list"), **EN)
    assert response.content.decode().count('data-call="') == 5
