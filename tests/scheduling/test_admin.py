"""The schedule in the admin: every page renders for an administrator, schedule rows are written
through the rostering services, and appointments cannot be added or changed there."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.db import models
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from clinic.audit.selectors import history_for_object
from clinic.core.roles import Role
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    CalendarDay,
    CalendarDayType,
    CancelReason,
    ChannelRule,
    ExceptionKind,
    InformationSource,
    Quota,
    QuotaPeriod,
    QuotaScope,
    ReferringAgent,
    ScheduleBreak,
    ScheduleException,
    ShiftTemplate,
    WaitlistEntry,
    WaitlistOffer,
    WorkSchedule,
)
from scheduling.services import BookingRequest, appointment_book
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory

from ..admin_site.conftest import login_verified
from .factories import device, doctor, kind, local, room, service_for, tomorrow, works

pytestmark = pytest.mark.django_db

SCHEDULING_MODELS = {
    "scheduling.resource",
    "scheduling.service",
    "scheduling.appointmentkind",
    "scheduling.workschedule",
    "scheduling.scheduleexception",
    "scheduling.schedulebreak",
    "scheduling.shifttemplate",
    "scheduling.calendarday",
    "scheduling.channelrule",
    "scheduling.appointmentstatus",
    "scheduling.cancelreason",
    "scheduling.informationsource",
    "scheduling.referringagent",
    "scheduling.quota",
    "scheduling.appointment",
    "scheduling.waitlistentry",
    "scheduling.waitlistoffer",
}


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


@pytest.fixture
def rows() -> dict[str, Any]:
    """A branch with an administrator, and one row of every scheduling model."""
    branch = BranchFactory(name="Central")
    organization = branch.organization
    administrator = staff_with_role(
        Role.ADMINISTRATOR, organization=organization, branches=[branch]
    )
    administrator.user.is_staff = True
    administrator.user.save(update_fields=["is_staff"])
    specialty = SpecialtyFactory(name="Therapist")
    therapist = doctor(branch, specialty=specialty, name="Dr Petrov")
    schedule = works(therapist)
    room(branch)
    scanner = device(branch)
    service = service_for(specialty, organization=organization, name="Therapist visit")
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    patient = PersonFactory(organization=organization, last_name="Smirnova")
    appointment = appointment_book(
        actor=registrar.user,
        request=BookingRequest(
            branch=branch,
            services=[service],
            starts_at=local(tomorrow(), "10:00"),
            channel="desk",
            patient=patient,
            doctor=therapist,
        ),
    )
    entry = WaitlistEntry.objects.create(
        organization=organization, branch=branch, patient=patient, service=service
    )
    now = timezone.now()
    created: list[models.Model] = [
        therapist,
        service,
        kind("primary"),
        schedule,
        ScheduleException.objects.create(
            resource=scanner,
            kind=ExceptionKind.TRAINING,
            date_from=datetime.date(2030, 1, 1),
            date_to=datetime.date(2030, 1, 2),
        ),
        ScheduleBreak.objects.create(
            resource=scanner, starts_at=now, ends_at=now + datetime.timedelta(hours=1)
        ),
        ShiftTemplate.objects.create(
            organization=organization,
            name="Day",
            start_time=datetime.time(9),
            end_time=datetime.time(18),
        ),
        CalendarDay.objects.create(
            organization=organization,
            date=datetime.date(2030, 1, 1),
            day_type=CalendarDayType.HOLIDAY,
            name="New Year",
        ),
        ChannelRule.objects.create(organization=organization, channel="portal"),
        AppointmentStatus.objects.get(code="booked"),
        CancelReason.objects.get(code="patient_request"),
        InformationSource.objects.get(code="website"),
        ReferringAgent.objects.create(organization=organization, name="City Hospital 1"),
        Quota.objects.create(
            organization=organization,
            scope=QuotaScope.SERVICE,
            service=service,
            period=QuotaPeriod.DAY,
            limit=10,
        ),
        appointment,
        entry,
        WaitlistOffer.objects.create(
            entry=entry,
            doctor=therapist,
            starts_at=now,
            ends_at=now + datetime.timedelta(minutes=30),
            expires_at=now + datetime.timedelta(minutes=15),
            freed_at=now,
        ),
    ]
    return {
        "by_model": {type(row): row for row in created},
        "administrator": administrator.user,
        "branch": branch,
        "doctor": therapist,
        "schedule": schedule,
        "appointment": appointment,
    }


@pytest.fixture
def admin_client(client: Client, rows: dict[str, Any]) -> Client:
    client.cookies["django_language"] = "en"
    return login_verified(client, rows["administrator"])


def scheduling_admins() -> list[tuple[type[models.Model], Any]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label == "scheduling"
    ]


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_scheduling_model_is_in_the_admin() -> None:
    assert {model._meta.label_lower for model, _ in scheduling_admins()} == SCHEDULING_MODELS


def test_changelist_and_change_page_of_every_model_render_for_an_administrator(
    admin_client: Client, rows: dict[str, Any]
) -> None:
    for model, _model_admin in scheduling_admins():
        row = rows["by_model"][model]
        response = admin_client.get(admin_url(model, "changelist"))
        assert response.status_code == 200, model
        assert row in list(response.context["cl"].result_list), model
        response = admin_client.get(admin_url(model, "change", row.pk))
        assert response.status_code == 200, model
        assert response.context["original"] == row, model


def test_add_page_renders_where_adding_is_allowed_and_is_403_elsewhere(
    admin_client: Client, rows: dict[str, Any]
) -> None:
    read_only = {"scheduling.appointment", "scheduling.waitlistentry", "scheduling.waitlistoffer"}
    for model, _model_admin in scheduling_admins():
        response = admin_client.get(admin_url(model, "add"))
        expected = 403 if model._meta.label_lower in read_only else 200
        assert response.status_code == expected, model


def test_search_finds_the_row(admin_client: Client, rows: dict[str, Any]) -> None:
    response = admin_client.get(admin_url(Appointment, "changelist"), {"q": "Smirnova"})
    assert list(response.context["cl"].result_list) == [rows["appointment"]]
    response = admin_client.get(admin_url(Appointment, "changelist"), {"q": "Nobody-xyzzy"})
    assert list(response.context["cl"].result_list) == []


def test_appointment_filters_by_branch_and_status(admin_client: Client, rows: dict[str, Any]):
    booked = AppointmentStatus.objects.get(code="booked")
    cancelled = AppointmentStatus.objects.get(code="cancelled")
    url = admin_url(Appointment, "changelist")
    by_branch = admin_client.get(url, {"branch__id__exact": rows["branch"].pk})
    assert list(by_branch.context["cl"].result_list) == [rows["appointment"]]
    by_status = admin_client.get(url, {"status__id__exact": booked.pk})
    assert list(by_status.context["cl"].result_list) == [rows["appointment"]]
    none = admin_client.get(url, {"status__id__exact": cancelled.pk})
    assert list(none.context["cl"].result_list) == []


def test_appointment_admin_does_not_allow_add_change_or_delete(
    admin_client: Client, rows: dict[str, Any]
) -> None:
    appointment = rows["appointment"]
    model_admin = admin.site._registry[Appointment]
    request = admin_client.get(admin_url(Appointment, "changelist")).wsgi_request
    assert model_admin.has_add_permission(request) is False
    assert model_admin.has_change_permission(request, appointment) is False
    assert model_admin.has_delete_permission(request, appointment) is False
    response = admin_client.post(
        admin_url(Appointment, "change", appointment.pk), {"note": "changed by hand"}
    )
    assert response.status_code == 403
    appointment.refresh_from_db()
    assert appointment.note == ""


def test_schedule_added_in_the_admin_goes_through_rostering(
    admin_client: Client, rows: dict[str, Any]
) -> None:
    response = admin_client.post(
        admin_url(WorkSchedule, "add"),
        {
            "resource": rows["doctor"].pk,
            "branch": rows["branch"].pk,
            "date_from": "2031-01-06",
            "rotation": "weekdays",
            "weekdays": "1,2,3",
            "days_on": 2,
            "days_off": 2,
            "start_time": "09:00",
            "end_time": "18:00",
            "break_start": "13:00",
            "break_end": "14:00",
            "follows_calendar": "on",
            "change_reason": "new rota",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = WorkSchedule.objects.get(date_from=datetime.date(2031, 1, 6))
    assert created.weekdays == [1, 2, 3]
    assert created.created_by == rows["administrator"]
    events = list(history_for_object(created))
    assert [(e.pgh_label, e.user) for e in events] == [("insert", rows["administrator"])]
    assert events[0].pgh_context["change_reason"] == "new rota"


def test_schedule_change_stranding_an_appointment_shows_the_refusal_on_the_form(
    admin_client: Client, rows: dict[str, Any]
) -> None:
    schedule = rows["schedule"]
    data = {
        "resource": rows["doctor"].pk,
        "branch": rows["branch"].pk,
        "date_from": schedule.date_from.isoformat(),
        "rotation": "weekdays",
        "weekdays": "1,2,3,4,5,6,7",
        "days_on": 2,
        "days_off": 2,
        "start_time": "12:00",
        "end_time": "17:00",
        "break_start": "13:00",
        "break_end": "14:00",
    }
    response = admin_client.post(admin_url(WorkSchedule, "change", schedule.pk), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert errors == [
        "1 active appointment would be left outside working time. "
        "Move or cancel it first, or confirm the change anyway."
    ]
    schedule.refresh_from_db()
    assert schedule.start_time == datetime.time(9, 0)
    forced = admin_client.post(
        admin_url(WorkSchedule, "change", schedule.pk), {**data, "force": "on"}
    )
    assert forced.status_code == 302
    schedule.refresh_from_db()
    assert schedule.start_time == datetime.time(12, 0)


def test_exception_is_removed_through_rostering_with_history(
    admin_client: Client, rows: dict[str, Any]
) -> None:
    exception = rows["by_model"][ScheduleException]
    pk = exception.pk
    response = admin_client.post(admin_url(ScheduleException, "delete", pk), {"post": "yes"})
    assert response.status_code == 302
    assert not ScheduleException.objects.filter(pk=pk).exists()
    events = list(history_for_object(ScheduleException(pk=pk)))
    assert [(e.pgh_label, e.user) for e in events][-1] == ("delete", rows["administrator"])


def test_schedules_cannot_be_deleted_only_ended(admin_client: Client, rows: dict[str, Any]):
    response = admin_client.post(
        admin_url(WorkSchedule, "delete", rows["schedule"].pk), {"post": "yes"}
    )
    assert response.status_code == 403
    assert WorkSchedule.objects.filter(pk=rows["schedule"].pk).exists()
