"""The schedule grid in headless Chromium (Debian's), against a live server.

A registrar books a new patient from the grid, moves an appointment by dragging it, cancels one
and restores it by dragging it from the trash onto the grid, and books a waitlist entry by
dragging it onto a free slot; a second operator's grid shows the first one's hold and then the
booking without a reload; a ringing call pops up with the caller and their next visit. Every
page is checked for Content-Security-Policy violations and script errors. Screenshots of the
grid are kept under ``var/test-artifacts/desk/``.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest

from clinic.core.roles import Role
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    BookingChannel,
    CancelReason,
    WaitlistEntry,
    WaitlistState,
)
from scheduling.services import BookingRequest, appointment_book
from scheduling.waitlist import waitlist_add
from telephony.services import call_event_receive
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

from .test_login_flow import CHROMIUM, PASSWORD, browser, log_in, open_browser, user_of

__all__ = ["browser", "open_browser"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed (/usr/bin/chromium); apt-get install chromium",
    ),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "desk"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # caret="initial": hiding the caret would inject a style sheet, which the page's CSP refuses.
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, caret="initial")


@pytest.fixture
def clinic() -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    specialty = SpecialtyFactory(name="Therapy")
    doctors = []
    for name in ("Dr Avdeev", "Dr Belova", "Dr Chernov"):
        resource = doctor(branch, specialty=specialty, name=name, grid_step_minutes=30)
        works(resource)
        doctors.append(resource)
    service = service_for(specialty, organization=branch.organization, name="Therapist visit")
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    patient = PersonFactory(
        organization=branch.organization, last_name="Smirnova", first_name="Anna"
    )
    ContactFactory(person=patient, value="+79161234567")
    return {
        "branch": branch,
        "doctors": doctors,
        "service": service,
        "registrar": registrar,
        "patient": patient,
    }


def book(c: dict[str, Any], resource: Any, hhmm: str) -> Appointment:
    return appointment_book(
        actor=user_of(c["registrar"]),
        request=BookingRequest(
            branch=c["branch"],
            services=[c["service"]],
            starts_at=local(tomorrow(), hhmm),
            channel=BookingChannel.DESK,
            patient=c["patient"],
            doctor=resource,
        ),
    )


def open_grid(open_browser: Any, c: dict[str, Any]) -> Any:
    browser_page = open_browser()
    page = browser_page.page
    page.set_viewport_size({"width": 1400, "height": 1000})
    log_in(page, user_of(c["registrar"]).username, PASSWORD)
    page.wait_for_url("**/desk/")
    page.goto(f"/desk/schedule/?branch={c['branch'].public_id}&date={tomorrow():%Y-%m-%d}")
    page.locator("[data-schedule-grid]").wait_for()
    return browser_page


def at(column: int, hhmm: str) -> str:
    """The selector of the grid cell of a column (0, 1, 2) that starts at ``hhmm`` tomorrow."""
    starts = local(tomorrow(), hhmm).isoformat(timespec="minutes")
    return f'td.slot[data-col="{column}"][data-starts="{starts}"]'


def cell(page: Any, column: int, hhmm: str) -> Any:
    return page.locator(at(column, hhmm))


def test_a_new_patient_is_booked_from_the_grid(open_browser: Any, clinic: dict[str, Any]) -> None:
    browser_page = open_grid(open_browser, clinic)
    page = browser_page.page
    shot(page, "01-empty-day")

    cell(page, 0, "10:00").click()
    form = page.locator("[data-booking-form]")
    form.wait_for()
    # Typing a name that is registered offers the patient (search as you type).
    page.fill("[data-booking-form] [data-patient-search]", "Smirn")
    page.locator("[data-booking-form] [data-pick-patient]").first.wait_for()
    page.click("[data-booking-form] summary")
    page.fill("#id_last_name", "Orlov")
    page.fill("#id_first_name", "Ivan")
    page.fill("#id_phone", "+7 916 765-43-21")
    page.check(f"input[name=services][value='{clinic['service'].code}']")
    shot(page, "02-booking-form")
    page.click("[data-booking-form] button[data-book]")
    page.locator("[data-booked]").wait_for()
    page.click("[data-booked] [data-dialog-close]")

    booked = page.locator(at(0, "10:00") + "[data-kind=booked]")
    booked.wait_for()
    assert "Orlov Ivan" in booked.inner_text()
    assert booked.locator("[data-marker=primary]").count() == 1
    appointment = Appointment.objects.get()
    assert appointment.primary_phone == "+79167654321" and appointment.needs_completion
    shot(page, "03-booked")
    assert browser_page.problems == []


def test_an_appointment_is_moved_by_dragging_it(open_browser: Any, clinic: dict[str, Any]) -> None:
    appointment = book(clinic, clinic["doctors"][0], "11:00")
    browser_page = open_grid(open_browser, clinic)
    page = browser_page.page

    page.drag_and_drop(
        f'td.slot[data-appointment="{appointment.public_id}"]',
        at(1, "15:00"),
    )
    page.locator("[data-appointment-dialog]").wait_for()
    page.click("[data-appointment-dialog] [data-dialog-close]")
    moved = page.locator(f'td.slot[data-appointment="{appointment.public_id}"][data-col="1"]')
    moved.wait_for()
    appointment.refresh_from_db()
    assert appointment.doctor_id == clinic["doctors"][1].pk
    assert appointment.starts_at == local(tomorrow(), "15:00")
    shot(page, "04-moved")
    assert browser_page.problems == []


def test_cancel_to_the_trash_and_restore_by_dragging(
    open_browser: Any, clinic: dict[str, Any]
) -> None:
    appointment = book(clinic, clinic["doctors"][2], "09:00")
    browser_page = open_grid(open_browser, clinic)
    page = browser_page.page

    page.dblclick(f'td.slot[data-appointment="{appointment.public_id}"]')
    page.locator("[data-appointment-dialog] [data-cancel-form]").wait_for()
    reason = CancelReason.objects.get(code="patient_request")
    page.select_option("[data-cancel-form] select", value=str(reason.pk))
    page.click("[data-cancel-form] button[type=submit]")
    page.locator("[data-appointment-dialog] [data-restore]").wait_for()
    page.click("[data-appointment-dialog] [data-dialog-close]")
    trashed = page.locator(f'[data-trash-appointment="{appointment.public_id}"]')
    trashed.wait_for()
    page.locator(f'td.slot[data-appointment="{appointment.public_id}"]').wait_for(state="detached")
    shot(page, "05-trash")

    page.drag_and_drop(
        f'[data-trash-appointment="{appointment.public_id}"]',
        at(0, "16:00"),
    )
    page.locator("[data-appointment-dialog]").wait_for()
    page.click("[data-appointment-dialog] [data-dialog-close]")
    page.locator(f'td.slot[data-appointment="{appointment.public_id}"]').wait_for()
    appointment.refresh_from_db()
    assert appointment.status.code == AppointmentStatus.BOOKED
    assert (appointment.doctor_id, appointment.starts_at) == (
        clinic["doctors"][0].pk,
        local(tomorrow(), "16:00"),
    )
    page.locator(f'[data-trash-appointment="{appointment.public_id}"]').wait_for(state="detached")
    assert browser_page.problems == []


def test_a_waitlist_entry_is_booked_by_dragging_it_onto_the_grid(
    open_browser: Any, clinic: dict[str, Any]
) -> None:
    entry = waitlist_add(
        actor=user_of(clinic["registrar"]),
        branch=clinic["branch"],
        patient=clinic["patient"],
        service=clinic["service"],
        date_from=tomorrow(),
        date_to=tomorrow() + datetime.timedelta(days=7),
        note="mornings only",
    )
    browser_page = open_grid(open_browser, clinic)
    page = browser_page.page
    page.locator(f'[data-waitlist-entry="{entry.public_id}"]').wait_for()
    shot(page, "06-waitlist")

    page.drag_and_drop(
        f'[data-waitlist-entry="{entry.public_id}"]',
        at(1, "09:30"),
    )
    page.locator("[data-booking-form] [data-from-waitlist]").wait_for()
    page.click("[data-booking-form] button[data-book]")
    page.locator("[data-booked]").wait_for()
    entry.refresh_from_db()
    assert entry.state == WaitlistState.BOOKED
    assert entry.appointment is not None
    assert entry.appointment.starts_at == local(tomorrow(), "09:30")
    assert WaitlistEntry.objects.filter(state=WaitlistState.WAITING).count() == 0
    assert browser_page.problems == []


def test_a_second_operator_sees_the_hold_and_then_the_booking_without_reloading(
    open_browser: Any, clinic: dict[str, Any]
) -> None:
    first = open_grid(open_browser, clinic)
    colleague = staff_with_role(
        Role.REGISTRAR, organization=clinic["branch"].organization, branches=[clinic["branch"]]
    )
    second = open_browser()
    other = second.page
    other.set_viewport_size({"width": 1400, "height": 1000})
    log_in(other, user_of(colleague).username, PASSWORD)
    other.wait_for_url("**/desk/")
    other.goto(f"/desk/schedule/?branch={clinic['branch'].public_id}&date={tomorrow():%Y-%m-%d}")
    other.locator("[data-schedule-grid]").wait_for()
    other.wait_for_timeout(500)  # the live stream connects

    page = first.page
    cell(page, 2, "14:00").click()
    page.locator("[data-booking-form]").wait_for()
    started = time.monotonic()
    other.locator(at(2, "14:00") + "[data-kind=held]").wait_for(timeout=5000)
    held_after = time.monotonic() - started
    shot(other, "07-second-operator-sees-the-hold")

    page.fill("[data-booking-form] [data-patient-search]", "Smirnova")
    page.locator("[data-booking-form] [data-pick-patient]").first.click()
    page.check(f"input[name=services][value='{clinic['service'].code}']")
    page.click("[data-booking-form] button[data-book]")
    page.locator("[data-booked]").wait_for()
    started = time.monotonic()
    other.locator(at(2, "14:00") + "[data-kind=booked]").wait_for(timeout=5000)
    booked_after = time.monotonic() - started
    assert "Smirnova Anna" in other.locator(at(2, "14:00")).inner_text()
    shot(other, "08-second-operator-sees-the-booking")
    print(f"\nsecond grid: hold seen after {held_after:.2f} s, booking after {booked_after:.2f} s")
    assert first.problems == [] and second.problems == []


def test_a_ringing_call_pops_up_with_the_caller(open_browser: Any, clinic: dict[str, Any]) -> None:
    appointment = book(clinic, clinic["doctors"][0], "12:00")
    browser_page = open_grid(open_browser, clinic)
    page = browser_page.page
    page.wait_for_timeout(500)  # the live stream connects

    call_event_receive(
        organization=clinic["branch"].organization,
        payload={
            "call_id": "pbx-77",
            "event": "ringing",
            "caller": "8 (916) 123-45-67",
            "called": "+74950000000",
        },
    )
    popup = page.locator("#desk-call:not([hidden])")
    popup.wait_for(timeout=5000)
    assert "Smirnova Anna" in popup.inner_text()
    assert appointment.starts_at.astimezone().strftime("%H:%M") in popup.inner_text()
    shot(page, "09-call-pop-up")
    page.click("[data-call-close]")
    assert page.locator("#desk-call").is_hidden()
    assert browser_page.problems == []
