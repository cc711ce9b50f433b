"""The managers' KPI dashboard: each metric over a small hand-made history with known answers
(bookings, moves, cancellations and status changes made through the scheduling services, their
moments then set), the comparison with the previous period, the hold time a desk booking
records, refused parameters, who may open the page and what it costs in queries."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import Any

import pgtrigger
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLResolver, include, path, reverse
from django.utils import timezone, translation
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

import clinic.urls
from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.core.roles import Role
from messaging import kpi
from messaging.kpi_views import format_change, format_duration, kpi_params_from, metric_card
from messaging.models import Direction, Message, MessageChannel, MessageState
from scheduling import holds
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    BookingChannel,
    CancelReason,
    CommunicationStatus,
    Resource,
)
from scheduling.services import (
    BookingRequest,
    appointment_book,
    appointment_cancel,
    appointment_move,
    appointment_set_status,
)
from telephony.models import Call, CallPurpose
from tests.core.factories import BranchFactory, OrganizationFactory, staff_with_role
from tests.scheduling.factories import doctor, local, works

from .conftest import Clinic


def _with_kpi_urls() -> list[Any]:
    """The project's URLs, with the dashboard mounted at /messaging/kpi/ if not yet there."""
    patterns = list(clinic.urls.urlpatterns)
    if not any(
        isinstance(pattern, URLResolver) and pattern.namespace == "messaging_kpi"
        for pattern in patterns
    ):
        patterns.insert(0, path("messaging/kpi/", include("messaging.kpi_urls")))
    return patterns


urlpatterns = _with_kpi_urls()

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PAGE = "/messaging/kpi/"
ENGLISH = {"Accept-Language": "en"}
ZONE = "Europe/Moscow"
HOUR = datetime.timedelta(hours=1)
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """Labels and figures are compared in the source language, whatever the default."""
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _no_holds() -> Iterator[None]:
    """Holds live in Redis across tests; each test starts with none."""
    client = holds._client()

    def clear() -> None:
        keys = list(client.scan_iter(match="clinic:hold:*", count=1000))
        if keys:
            client.delete(*keys)

    clear()
    yield
    clear()


# The period under test starts ten days ahead, so that its visits and those of the previous
# period (the seven days before) can all be booked through the services; the moments the
# history records are then set to the hand-made ones.
def first_day() -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=10)


def day(offset: int) -> datetime.date:
    return first_day() + datetime.timedelta(days=offset)


def at(offset: int, hhmm: str) -> datetime.datetime:
    return local(day(offset), hhmm)


def week() -> kpi.KpiPeriod:
    return kpi.KpiPeriod(day(0), day(6))


def scope_of(clinic: Clinic, period: kpi.KpiPeriod | None = None, **extra: Any) -> kpi.KpiScope:
    return kpi.KpiScope(
        organization_id=clinic.organization.pk,
        branch_ids=(clinic.branch.pk,),
        time_zone=ZONE,
        period=period or week(),
        **extra,
    )


def book(
    clinic: Clinic,
    when: datetime.datetime,
    *,
    channel: str = BookingChannel.DESK,
    on: Resource | None = None,
    hold_token: str | None = None,
) -> Appointment:
    return appointment_book(
        actor=clinic.registrar,
        request=BookingRequest(
            branch=clinic.branch,
            services=[clinic.service],
            starts_at=when,
            channel=channel,
            doctor=on or clinic.doctor,
            patient=clinic.patient,
            hold_token=hold_token,
        ),
    )


def set_status(clinic: Clinic, appointment: Appointment, *codes: str) -> None:
    for code in codes:
        appointment_set_status(actor=clinic.registrar, appointment=appointment, code=code)


def cancel(clinic: Clinic, appointment: Appointment) -> None:
    appointment_cancel(
        actor=clinic.registrar, appointment=appointment, reason=CancelReason.objects.first()
    )


def events_of(appointment: Appointment) -> list[tuple[int, str, str]]:
    """(pgh_id, label, status code) of the appointment's history, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.pgh_id, e.pgh_label, s.code FROM scheduling_appointmentevent e"
            " JOIN scheduling_appointmentstatus s ON s.id = e.status_id"
            " WHERE e.pgh_obj_id = %s ORDER BY e.pgh_id",
            [appointment.pk],
        )
        return list(cursor.fetchall())


def happened(appointment: Appointment, *moments: datetime.datetime) -> None:
    """Set when each of the appointment's history events happened, oldest first.

    Every event of one test carries the same time (the test's transaction), so the moments the
    metrics measure are set here.
    """
    events = events_of(appointment)
    assert len(events) == len(moments), events
    with connection.cursor() as cursor:
        for (pgh_id, _label, _code), moment in zip(events, moments, strict=True):
            cursor.execute(
                "UPDATE scheduling_appointmentevent SET pgh_created_at = %s WHERE pgh_id = %s",
                [moment, pgh_id],
            )


def created(appointment: Appointment, moment: datetime.datetime, **fields: Any) -> None:
    """Set when the appointment was booked (and other bookkeeping), without a history event."""
    with pgtrigger.ignore("scheduling.Appointment:update_update"):
        Appointment.objects.filter(pk=appointment.pk).update(created_at=moment, **fields)


def sent(
    appointment: Appointment,
    moment: datetime.datetime | None,
    state: str = MessageState.DELIVERED,
) -> Message:
    return Message.objects.create(
        organization=appointment.organization,
        branch=appointment.branch,
        patient=appointment.patient,
        appointment=appointment,
        direction=Direction.OUTBOUND,
        channel=MessageChannel.SMS,
        to="+79165557777",
        state=state,
        due_at=moment or at(-9, "09:00"),
        sent_at=moment,
    )


def call(
    clinic: Clinic, started: datetime.datetime, purpose: str = "", *, branch: Any = "same"
) -> Call:
    return Call.objects.create(
        organization=clinic.organization,
        branch=clinic.branch if branch == "same" else branch,
        call_id=f"call-{Call.objects.count() + 1}",
        caller_number="+79160000001",
        started_at=started,
        purpose=purpose,
    )


def signed_in(user: Any) -> Client:
    """A client logged in as ``user`` with a confirmed second factor (managers need one)."""
    client = Client()
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


# --- the metrics ---------------------------------------------------------------------------


def test_no_show_rate_counts_the_visits_of_the_period_that_ended(clinic: Clinic) -> None:
    """Current week: 1 no-show of 4 ended visits (a cancelled and a still booked one do not
    count); the week before: 1 of 2."""
    for hhmm in ("10:00", "10:30", "11:30"):
        set_status(clinic, book(clinic, at(0, hhmm)), "arrived", "completed")
    set_status(clinic, book(clinic, at(0, "11:00")), "no_show")
    cancel(clinic, book(clinic, at(1, "12:00")))
    book(clinic, at(1, "12:30"))
    set_status(clinic, book(clinic, at(-3, "10:00")), "no_show")
    set_status(clinic, book(clinic, at(-3, "10:30")), "arrived", "completed")
    set_status(clinic, book(clinic, at(7, "10:30")), "no_show")  # after the period

    metric = kpi.no_show_rate(scope_of(clinic))

    assert metric.current == kpi.Figure(0.25, 4, 1)
    assert metric.previous == kpi.Figure(0.5, 2, 1)
    assert metric.change == -0.25
    assert metric.current_series == [0.25, None, None, None, None, None, None]
    assert metric.previous_series == [None, None, None, None, 0.5, None, None]


def test_confirmed_within_24_hours_of_the_first_sent_message(clinic: Clinic) -> None:
    """Of six reminded visits two became confirmed within 24 h of their first message; the
    week before, one of two."""
    sent_at = at(-9, "10:00")

    quick = book(clinic, at(0, "10:00"))
    sent(quick, sent_at)
    set_status(clinic, quick, AppointmentStatus.CONFIRMED)
    happened(quick, sent_at - HOUR, sent_at + 2 * HOUR)

    by_reply = book(clinic, at(0, "11:00"))
    sent(by_reply, sent_at)
    Appointment.objects.filter(pk=by_reply.pk).update(
        communication_status=CommunicationStatus.CONFIRMED
    )
    happened(by_reply, sent_at - HOUR, sent_at + 23 * HOUR)

    late = book(clinic, at(1, "10:00"))
    sent(late, sent_at)
    set_status(clinic, late, AppointmentStatus.CONFIRMED)
    happened(late, sent_at - HOUR, sent_at + 25 * HOUR)

    silent = book(clinic, at(1, "11:00"))
    sent(silent, sent_at)

    already = book(clinic, at(2, "10:00"))  # confirmed before the message went out
    set_status(clinic, already, AppointmentStatus.CONFIRMED)
    sent(already, sent_at)
    happened(already, sent_at - 2 * HOUR, sent_at - HOUR)

    reminded_twice = book(clinic, at(2, "11:00"))  # the window runs from the first message
    sent(reminded_twice, sent_at)
    sent(reminded_twice, sent_at + 30 * HOUR)
    set_status(clinic, reminded_twice, AppointmentStatus.CONFIRMED)
    happened(reminded_twice, sent_at - HOUR, sent_at + 26 * HOUR)

    never_reminded = book(clinic, at(3, "10:00"))
    set_status(clinic, never_reminded, AppointmentStatus.CONFIRMED)
    failed = book(clinic, at(3, "11:00"))
    sent(failed, None, state=MessageState.FAILED)
    set_status(clinic, failed, AppointmentStatus.CONFIRMED)

    before_sent = at(-12, "10:00")
    earlier = book(clinic, at(-2, "10:00"))
    sent(earlier, before_sent)
    set_status(clinic, earlier, AppointmentStatus.CONFIRMED)
    happened(earlier, before_sent - HOUR, before_sent + HOUR)
    sent(book(clinic, at(-2, "11:00")), before_sent)

    metric = kpi.confirmed_within_24h(scope_of(clinic))

    assert metric.current == kpi.Figure(2 / 6, 6, 2)
    assert metric.previous == kpi.Figure(0.5, 2, 1)
    assert metric.current_series == [1.0, 0.0, 0.0, None, None, None, None]
    assert metric.previous_series == [None, None, None, None, None, 0.5, None]


def test_online_share_of_the_appointments_created_in_the_period(clinic: Clinic) -> None:
    """Created this week: 1 on the portal of 3; the week before: 1 of 2; later ones not."""
    made = [
        (book(clinic, at(20, "10:00"), channel=BookingChannel.PORTAL), at(0, "08:00")),
        (book(clinic, at(20, "11:00")), at(0, "09:00")),
        (book(clinic, at(20, "12:00"), channel=BookingChannel.CALL_CENTRE), at(6, "23:30")),
        (book(clinic, at(20, "13:00"), channel=BookingChannel.PORTAL), at(-1, "23:59")),
        (book(clinic, at(20, "14:00")), at(-7, "00:00")),
        (book(clinic, at(20, "15:00"), channel=BookingChannel.PORTAL), at(7, "00:00")),
    ]
    for appointment, moment in made:
        created(appointment, moment)

    metric = kpi.online_share(scope_of(clinic))

    assert metric.current == kpi.Figure(1 / 3, 3, 1)
    assert metric.previous == kpi.Figure(0.5, 2, 1)
    assert metric.current_series == [0.5, None, None, None, None, None, 0.0]
    assert metric.previous_series == [0.0, None, None, None, None, None, 1.0]


def test_a_desk_booking_made_with_a_hold_records_when_the_hold_was_taken(clinic: Clinic) -> None:
    start = at(20, "10:00")
    hold = holds.slot_hold(
        resource_ids=[clinic.doctor.pk], starts_at=start, ends_at=start + 15 * MINUTE
    )
    again = holds.slot_hold(
        resource_ids=[clinic.doctor.pk],
        starts_at=start,
        ends_at=start + 15 * MINUTE,
        token=hold.token,
    )
    assert again.taken_at == hold.taken_at  # extending a hold keeps when it was taken

    booked = book(clinic, start, hold_token=hold.token)

    booked.refresh_from_db()
    assert booked.held_at == hold.taken_at
    assert book(clinic, at(20, "11:00")).held_at is None
    other = holds.slot_hold(
        resource_ids=[clinic.doctor.pk],
        starts_at=at(20, "12:00"),
        ends_at=at(20, "12:15"),
    )
    elsewhere = book(clinic, at(20, "13:00"), hold_token=other.token)
    assert elsewhere.held_at is None  # the token's hold is for another time


def test_booking_from_the_desk_dialog_records_when_its_slot_was_held(clinic: Clinic) -> None:
    registrar = staff_with_role(
        Role.REGISTRAR, organization=clinic.organization, branches=[clinic.branch]
    ).user
    client = Client()
    client.force_login(registrar)
    starts = at(20, "10:00")
    slot = {"doctor": str(clinic.doctor.public_id), "starts": starts.isoformat()}
    assert client.get(reverse("desk:slot_form"), slot, headers=ENGLISH).status_code == 200
    taken_at = holds.hold_taken_at(
        token=client.session["slot_hold_token"],
        resource_ids=[clinic.doctor.pk],
        starts_at=starts,
    )

    response = client.post(
        reverse("desk:slot_book"),
        {
            **slot,
            "services": [clinic.service.code],
            "payer_kind": "self_pay",
            "patient": str(clinic.patient.public_id),
        },
        headers=ENGLISH,
    )

    assert response.status_code == 200
    appointment = Appointment.objects.get(doctor=clinic.doctor, starts_at=starts)
    assert taken_at is not None
    assert appointment.held_at == taken_at
    assert appointment.channel == BookingChannel.DESK


def test_hold_to_booking_is_the_median_for_desk_bookings_with_a_hold(clinic: Clinic) -> None:
    """This week: 30 s, 90 s and 600 s (median 90 s); the week before: 100 s and 200 s (150 s);
    a desk booking without a hold and a portal one with a hold time do not count."""

    def desk(slot: str, moment: datetime.datetime, seconds: int | None, **kw: Any) -> None:
        appointment = book(clinic, at(20, slot), **kw)
        held = moment - datetime.timedelta(seconds=seconds) if seconds is not None else None
        created(appointment, moment, held_at=held)

    desk("09:00", at(0, "10:00"), 90)
    desk("09:30", at(1, "10:00"), 30)
    desk("10:00", at(1, "11:00"), 600)
    desk("10:30", at(2, "10:00"), None)
    desk("11:00", at(2, "11:00"), 5, channel=BookingChannel.PORTAL)
    desk("11:30", at(-1, "10:00"), 100)
    desk("12:00", at(-1, "11:00"), 200)

    metric = kpi.hold_to_booking(scope_of(clinic))

    assert metric.current == kpi.Figure(90.0, 3)
    assert metric.previous == kpi.Figure(150.0, 2)
    assert metric.change == -60.0
    assert metric.current_series == [90.0, 315.0, None, None, None, None, None]
    assert metric.previous_series == [None, None, None, None, None, None, 150.0]


def test_cancellation_to_rebooking_is_the_median_time_to_the_first_overlapping_booking(
    clinic: Clinic,
) -> None:
    """This week four cancellations of the doctor's future time: rebooked after 2 h, 30 min
    (a partly overlapping visit) and 3 h, one never (only another doctor and an adjacent visit
    were booked), and a visit moved and then cancelled, never rebooked; a later edit of a
    cancelled visit is no new cancellation. The week before: one, rebooked after 10 min."""
    other_doctor = doctor(clinic.branch, specialty=clinic.doctor.staff.specialty)
    works(other_doctor, start="09:00", end="18:00", break_from=None, break_to=None)

    def cancelled(slot: str, moment: datetime.datetime) -> Appointment:
        appointment = book(clinic, at(20, slot))
        cancel(clinic, appointment)
        happened(appointment, at(-9, "09:00"), moment)
        return appointment

    def rebooked(slot: str, moment: datetime.datetime, on: Resource | None = None) -> None:
        created(book(clinic, at(20, slot), on=on), moment)

    first = cancelled("10:00", at(0, "09:00"))
    rebooked("10:00", at(0, "11:00"))
    rebooked("10:00", at(0, "12:00"), on=other_doctor)  # another doctor, earlier: ignored
    Appointment.objects.filter(pk=first.pk).update(
        communication_status=CommunicationStatus.DECLINED
    )
    happened(first, at(-9, "09:00"), at(0, "09:00"), at(1, "09:00"))

    cancelled("11:00", at(1, "12:00"))
    rebooked("11:15", at(1, "12:30"))

    cancelled("12:00", at(2, "08:00"))
    rebooked("12:00", at(2, "08:10"), on=other_doctor)
    rebooked("12:30", at(2, "08:20"))  # adjacent, not overlapping

    cancelled("13:00", at(3, "08:00"))
    rebooked("13:00", at(3, "11:00"))

    cancelled("15:00", at(-2, "10:00"))
    rebooked("15:00", at(-2, "10:10"))

    moved = book(clinic, at(20, "16:00"))
    appointment_move(actor=clinic.registrar, appointment=moved, starts_at=at(21, "16:00"))
    cancel(clinic, moved)
    happened(moved, at(-9, "09:00"), at(-9, "10:00"), at(4, "09:00"))

    metric = kpi.cancellation_to_rebooking(scope_of(clinic))

    assert metric.current == kpi.Figure(7200.0, 5, 3)
    assert metric.previous == kpi.Figure(600.0, 1, 1)
    assert metric.current_series == [7200.0, 1800.0, None, 10800.0, None, None, None]
    assert metric.previous_series == [None, None, None, None, None, 600.0, None]


def test_administrative_calls_by_purpose_and_day(clinic: Clinic) -> None:
    """This week 5 calls (one on a line without a branch), the week before 2; another
    organization's calls never count."""
    call(clinic, at(0, "09:00"), CallPurpose.BOOKING)
    call(clinic, at(0, "10:00"), CallPurpose.BOOKING)
    call(clinic, at(2, "10:00"), CallPurpose.CANCELLATION)
    call(clinic, at(6, "23:00"))
    call(clinic, at(3, "10:00"), CallPurpose.QUESTION, branch=None)
    call(clinic, at(-7, "00:10"), CallPurpose.QUESTION)
    call(clinic, at(-1, "12:00"), CallPurpose.BOOKING)
    Call.objects.create(
        organization=OrganizationFactory(),
        call_id="foreign",
        caller_number="+79160000002",
        started_at=at(0, "09:00"),
    )

    everything = kpi.administrative_calls(scope_of(clinic, calls_without_branch=True))
    branch_only = kpi.administrative_calls(scope_of(clinic))

    assert everything.current == kpi.Figure(5.0, 5)
    assert everything.previous == kpi.Figure(2.0, 2)
    assert everything.current_series == [2.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert everything.previous_series == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert [(row.key, row.current, row.previous) for row in everything.breakdown] == [
        ("booking", 2, 1),
        ("cancellation", 1, 0),
        ("question", 1, 1),
        ("unclassified", 1, 0),
    ]
    assert branch_only.current == kpi.Figure(4.0, 4)
    assert everything.relative_change == 1.5


def test_a_long_period_is_charted_by_week_against_the_same_weeks_before(clinic: Clinic) -> None:
    period = kpi.KpiPeriod(day(0), day(89))
    assert period.previous == kpi.KpiPeriod(day(-90), day(-1))
    call(clinic, at(0, "09:00"))
    call(clinic, at(8, "09:00"))
    call(clinic, at(89, "09:00"))
    call(clinic, at(-90, "09:00"))
    call(clinic, at(-1, "09:00"))

    metric = kpi.administrative_calls(scope_of(clinic, period))

    assert period.step_days == 7
    assert len(metric.current_series) == 13
    assert metric.current_series[:2] == [1.0, 1.0]
    assert metric.current_series[12] == 1.0
    assert metric.previous_series[0] == 1.0
    assert metric.previous_series[12] == 1.0
    assert sum(v or 0 for v in metric.current_series) == 3.0


def test_an_empty_period_has_no_value_and_no_change(clinic: Clinic) -> None:
    metrics = kpi.kpi_dashboard(scope_of(clinic))
    assert [metric.code for metric in metrics] == [
        "no_show_rate",
        "confirmed_within_24h",
        "online_share",
        "hold_to_booking",
        "cancellation_to_rebooking",
        "administrative_calls",
    ]
    for metric in metrics[:5]:
        assert metric.current.value is None
        assert metric.change is None
    assert metrics[5].current == kpi.Figure(0.0, 0)


def test_changes_are_shown_rounded_and_coloured_by_what_is_better(clinic: Clinic) -> None:
    def share(current: float, previous: float) -> kpi.Metric:
        return kpi.Metric(
            code=kpi.NO_SHOW,
            kind=kpi.SHARE,
            lower_is_better=True,
            current=kpi.Figure(current, 100, 0),
            previous=kpi.Figure(previous, 100, 0),
            current_series=[current],
            previous_series=[previous],
        )

    tiny = share(0.1004, 0.1)
    assert format_change(tiny) == "0.0 pp"
    assert metric_card(tiny, kpi.KpiPeriod(day(0), day(0)))["verdict"] == "same"
    better = share(0.08, 0.1)
    assert format_change(better) == "−2.0 pp"
    assert metric_card(better, kpi.KpiPeriod(day(0), day(0)))["verdict"] == "better"
    assert format_duration(45) == "45 s"
    assert format_duration(3 * 60 + 5) == "3 min 5 s"
    assert format_duration(2 * 3600 + 15 * 60) == "2 h 15 min"
    assert format_duration(2 * 86400 + 7 * 3600 + 59) == "2 d 7 h"


# --- parameters ----------------------------------------------------------------------------


def test_the_default_period_is_the_last_30_days_in_the_branchs_zone(clinic: Clinic) -> None:
    branch = clinic.branch
    params = kpi_params_from(
        data={},
        visible=[branch],
        now=datetime.datetime(2026, 3, 31, 21, 30, tzinfo=datetime.UTC),  # 1 April in Moscow
    )
    assert params.period == kpi.KpiPeriod(datetime.date(2026, 3, 3), datetime.date(2026, 4, 1))
    assert params.period.previous == kpi.KpiPeriod(
        datetime.date(2026, 2, 1), datetime.date(2026, 3, 2)
    )
    assert params.scope().calls_without_branch is True


@pytest.mark.parametrize(
    ("query", "field", "fragment"),
    [
        ({"from": "2026-13-01"}, "from", "“from”: “2026-13-01” is not a date"),
        ({"to": "yesterday"}, "to", "“to”: “yesterday” is not a date"),
        ({"from": "2026-03-10", "to": "2026-03-01"}, "to", "“to” (2026-03-01) is before"),
        ({"from": "2025-01-01", "to": "2026-03-01"}, "to", "longer than 366 days"),
        ({"branch": "no-such-branch"}, "branch", "unknown branch “no-such-branch”"),
    ],
)
def test_a_bad_parameter_is_refused_naming_it_and_nothing_is_computed(
    clinic: Clinic, query: dict[str, str], field: str, fragment: str
) -> None:
    client = signed_in(clinic.registrar)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(PAGE, query, headers=ENGLISH)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'data-kpi-error="{field}"' in html
    assert re.search(rf'class="field field--error">\s*<label for="kpi-{field}">', html)
    assert fragment in html
    assert not any("GROUPING SETS" in query["sql"] for query in queries.captured_queries)
    assert "data-kpi=" not in html


# --- the page ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.REGISTRAR, Role.DOCTOR, Role.CASHIER])
def test_staff_other_than_managers_are_refused_and_the_attempt_is_logged(
    clinic: Clinic, role: str
) -> None:
    user = staff_with_role(role, organization=clinic.organization, branches=[clinic.branch]).user
    client = signed_in(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(PAGE, headers=ENGLISH)
    assert response.status_code == 403
    assert not any("GROUPING SETS" in query["sql"] for query in queries.captured_queries)
    denial = SecurityEvent.objects.get(kind=SecurityEventKind.ACCESS_DENIED, user=user)
    assert denial.detail == "page kpi_page"


def test_an_anonymous_visitor_is_sent_to_the_login(clinic: Clinic) -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("role", [Role.HEAD_OF_REGISTRY, Role.ADMINISTRATOR, Role.ACCOUNTANT])
def test_managers_see_every_metric_with_the_previous_period(
    clinic: Clinic, role: str, django_assert_max_num_queries: Any
) -> None:
    set_status(clinic, book(clinic, at(0, "10:00")), "arrived", "completed")
    set_status(clinic, book(clinic, at(0, "10:30")), "no_show")
    set_status(clinic, book(clinic, at(-1, "10:00")), "arrived", "completed")
    set_status(clinic, book(clinic, at(-1, "10:30")), "arrived", "completed")
    call(clinic, at(1, "09:00"), CallPurpose.COMPLAINT)
    manager = staff_with_role(role, organization=clinic.organization, branches=[clinic.branch]).user
    client = signed_in(manager)
    query = {"from": day(0).isoformat(), "to": day(6).isoformat()}

    with django_assert_max_num_queries(16):
        response = client.get(PAGE, query, headers=ENGLISH)

    assert response.status_code == 200
    html = response.content.decode()
    for code in (
        "no_show_rate",
        "confirmed_within_24h",
        "online_share",
        "hold_to_booking",
        "cancellation_to_rebooking",
        "administrative_calls",
    ):
        assert f'data-kpi="{code}"' in html
    no_show = html.split('data-kpi="no_show_rate"')[1].split("</section>")[0]
    assert '<p class="kpi-card__value" data-kpi-value>50.0 %</p>' in no_show
    assert "<dd data-kpi-previous>0.0 %</dd>" in no_show
    assert 'data-kpi-change="worse">+50.0 pp</dd>' in no_show
    assert "1 no-shows of 2 ended visits" in no_show
    assert '<svg class="kpi-chart"' in no_show
    assert no_show.count('<rect class="kpi-chart__bar"') == 1
    calls = html.split('data-kpi="administrative_calls"')[1].split("</section>")[0]
    assert '<tr data-purpose="complaint">' in calls
    assert "Calls in the call log that started in the period" in calls
    assert "style=" not in html.split("<main")[1]


def test_the_page_for_one_branch_counts_only_its_calls(clinic: Clinic) -> None:
    second = BranchFactory(organization=clinic.organization, name="North")
    manager = staff_with_role(
        Role.HEAD_OF_REGISTRY, organization=clinic.organization, branches=[clinic.branch, second]
    ).user
    call(clinic, at(1, "09:00"), CallPurpose.BOOKING)
    call(clinic, at(1, "10:00"), CallPurpose.BOOKING, branch=second)
    call(clinic, at(1, "11:00"), CallPurpose.BOOKING, branch=None)
    client = signed_in(manager)
    query = {"from": day(0).isoformat(), "to": day(6).isoformat()}

    everything = client.get(PAGE, query, headers=ENGLISH).content.decode()
    north = client.get(
        PAGE, {**query, "branch": str(second.public_id)}, headers=ENGLISH
    ).content.decode()

    def calls(html: str) -> str:
        card = html.split('data-kpi="administrative_calls"')[1]
        return card.split("data-kpi-value>")[1].split("<")[0]

    assert calls(everything) == "3"
    assert calls(north) == "1"
