"""The patient portal's booking wizard in headless Chromium (Debian's), against a live server,
on a desktop screen and on a phone (touch, mobile viewport).

A new patient books a time, confirms it with the code sent to the phone, opens the signed link
the confirmation page shows and cancels the visit; a returning patient's booking is linked to
the registered person; a time held by one browser cannot be taken by another until the first
gives it back. Every page is checked for Content-Security-Policy violations, script errors and
a layout wider than the screen, and every button pressed for lying within the screen, text that
stands out from its background and room for its text. Screenshots are kept under
``var/test-artifacts/portal/``.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from patients.models import ContactKind, Person
from scheduling.models import Appointment, AppointmentStatus, BookingChannel
from tests.patients.factories import ContactFactory, PersonFactory
from tests.portal.test_booking import fresh_redis, held_for_others, sent_code, slot_at
from tests.portal.test_pages import Clinic, clinic_build
from tests.scheduling.factories import local, tomorrow

from .test_login_flow import CHROMIUM, BrowserPage, browser

__all__ = ["browser", "fresh_redis"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("fresh_redis"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed (/usr/bin/chromium); apt-get install chromium",
    ),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "portal"


@dataclass(frozen=True)
class Device:
    """A screen the portal is used on: Playwright's context options and how a press is made."""

    name: str
    options: dict[str, Any]
    touch: bool = False


DESKTOP = Device("desktop", {"viewport": {"width": 1280, "height": 800}})
PHONE = Device(
    "phone",
    {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
    touch=True,
)


@dataclass(frozen=True)
class Patient:
    """What the patient types on the details step (the phone as people write it)."""

    last_name: str
    first_name: str
    phone: str
    birth_date: datetime.date
    patronymic: str = ""


NEW_PATIENT = Patient("Orlova", "Vera", "+7 916 555-12-34", datetime.date(1991, 4, 17))
RETURNING = Patient(
    "Иванова", "Мария", "8 (916) 555-43-21", datetime.date(1980, 12, 31), "Петровна"
)


class DevicePage(BrowserPage):
    """A ``BrowserPage`` whose context emulates the device: viewport, touch, mobile layout."""

    def __init__(self, browser: Any, base_url: str, device: Device, shots: Iterator[int]) -> None:
        self.device = device
        self.shots = shots  # shared by the test's pages, so the screenshots sort in order
        self.context = browser.new_context(base_url=base_url, locale="en-US", **device.options)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def press(self, target: Any) -> None:
        """Tap on a touch screen, click elsewhere, once the target is checked to be usable."""
        target.scroll_into_view_if_needed()
        self.check_usable(target)
        if self.device.touch:
            target.tap()
        else:
            target.click()

    def check_usable(self, target: Any) -> None:
        """The target lies within the screen's width and its text stands out (WCAG AA)."""
        box = target.bounding_box()
        label = target.evaluate(LABEL)
        where = f"{urlsplit(self.page.url).path} {label}"
        width = self.page.viewport_size["width"]
        if box is None or not box["width"] or not box["height"]:
            self.problems.append(f"usability: {where} is not shown")
            return
        if box["x"] < 0 or box["x"] + box["width"] > width:
            right = round(box["x"] + box["width"])
            self.problems.append(f"usability: {where} spans to {right}px on a {width}px screen")
        ratio = target.evaluate(CONTRAST)
        if ratio < MIN_CONTRAST:
            self.problems.append(f"usability: {where} has text contrast {ratio:.2f}:1")
        if target.evaluate(OVERFLOWS):
            self.problems.append(f"usability: {where} is too small for its text (cut off)")

    def shot(self, flow: str, step: str) -> None:
        """Keep a screenshot of the page and check that it does not scroll sideways."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = f"{flow}-{self.device.name}-{next(self.shots):02d}-{step}.png"
        # caret="initial": hiding the caret would inject a style sheet, which the CSP refuses.
        self.page.screenshot(path=str(ARTIFACTS / name), full_page=True, caret="initial")
        self.problems.extend(
            f"layout on {step}: {problem}" for problem in layout_problems(self.page)
        )


# How a problem names an element: its tag, classes and first line of text.
LABEL = """(element) => {
    const name = [element.tagName, ...element.classList].join(".").toLowerCase();
    return `${name} "${element.innerText.trim().split("\\n")[0].slice(0, 40)}"`;
}"""
# The element's content is taller or wider than the element itself.
OVERFLOWS = """(element) =>
    element.scrollHeight > element.clientHeight + 1 || element.scrollWidth > element.clientWidth + 1
"""
MIN_CONTRAST = 4.5
# The contrast ratio (WCAG 2) of an element's text colour to the first opaque background
# behind it.
CONTRAST = """(element) => {
    const rgba = (value) => value.match(/[\\d.]+/g).map(Number);
    const luminance = ([r, g, b]) => {
        const [R, G, B] = [r, g, b].map((v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * R + 0.7152 * G + 0.0722 * B;
    };
    let background = [255, 255, 255];
    for (let node = element; node; node = node.parentElement) {
        const colour = rgba(getComputedStyle(node).backgroundColor);
        if (colour.length < 4 || colour[3] > 0) {
            background = colour;
            break;
        }
    }
    const pair = [luminance(rgba(getComputedStyle(element).color)), luminance(background)];
    const [light, dark] = pair.sort((a, b) => b - a);
    return (light + 0.05) / (dark + 0.05);
}"""


def layout_problems(page: Any) -> list[str]:
    """The page is wider than the screen: the elements that stick out of it (not those that
    only stick out of a scrolling box, such as the phone's sliding navigation)."""
    found: list[str] = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const scroll = document.documentElement.scrollWidth;
            if (scroll <= width) return [];
            const out = [`the page scrolls sideways: ${scroll}px on a ${width}px screen`];
            const clipped = (element) => {
                for (let node = element.parentElement; node !== document.body;
                     node = node.parentElement) {
                    if (getComputedStyle(node).overflowX !== "visible") return true;
                }
                return false;
            };
            for (const element of document.body.querySelectorAll("*")) {
                const box = element.getBoundingClientRect();
                const style = getComputedStyle(element);
                if (!box.width || style.visibility === "hidden" || style.position === "absolute")
                    continue;
                if (box.right > width + 1 && !clipped(element)) {
                    const name = [element.tagName, ...element.classList].join(".").toLowerCase();
                    out.push(`${name} ends at ${Math.round(box.right)}px`);
                }
            }
            return out.slice(0, 8);
        }"""
    )
    return found


def assert_no_problems(*pages: DevicePage) -> None:
    problems = list(dict.fromkeys(problem for page in pages for problem in page.problems))
    assert not problems, "\n".join(problems)


@pytest.fixture(params=[DESKTOP, PHONE], ids=lambda device: device.name)
def device(request: pytest.FixtureRequest) -> Device:
    result: Device = request.param
    return result


@pytest.fixture
def open_device(
    browser: Any, live_server: Any, device: Device
) -> Iterator[Callable[[], DevicePage]]:
    """Fresh browser contexts (separate cookies, so separate wizards) on the test's device."""
    pages: list[DevicePage] = []
    shots = itertools.count(1)

    def make() -> DevicePage:
        browser_page = DevicePage(browser, live_server.url, device, shots)
        pages.append(browser_page)
        return browser_page

    yield make
    for browser_page in pages:
        browser_page.close()


@pytest.fixture
def site(settings: Any, live_server: Any) -> Clinic:
    return clinic_build(settings)


def search(patient_page: DevicePage, site: Clinic, *, flow: str = "") -> None:
    """Open the wizard, choose the service and tomorrow, and find a time."""
    page = patient_page.page
    page.goto("/portal/book/")
    if flow:
        patient_page.shot(flow, "search")
    page.select_option("#id_service", value=str(site.service.public_id))
    page.fill("#id_date", tomorrow().isoformat())
    patient_page.press(page.locator("form.portal-filter button[type=submit]"))
    page.locator("[data-slot], [data-no-slots]").first.wait_for()


def slot_button(page: Any, slot: str) -> Any:
    return page.locator(f'[data-slot="{slot}"]')


def pick(patient_page: DevicePage, slot: str) -> None:
    """Pick a time on the search page: it is held and the details step opens."""
    patient_page.press(slot_button(patient_page.page, slot))
    patient_page.page.wait_for_url("**/portal/book/details/")
    assert patient_page.page.locator(f'[data-chosen-slot="{slot}"]').count() == 1


def book(
    patient_page: DevicePage,
    site: Clinic,
    patient: Patient,
    starts_at: datetime.datetime,
    flow: str,
) -> str:
    """Book ``starts_at`` through the wizard; the page is left on the confirmation, and the
    signed link it shows is returned."""
    page = patient_page.page
    slot = slot_at(site, starts_at)
    search(patient_page, site, flow=flow)
    patient_page.shot(flow, "times")
    pick(patient_page, slot)

    page.fill("#id_last_name", patient.last_name)
    page.fill("#id_first_name", patient.first_name)
    page.fill("#id_patronymic", patient.patronymic)
    page.fill("#id_phone", patient.phone)
    page.fill("#id_birth_date", patient.birth_date.isoformat())
    patient_page.shot(flow, "details")
    patient_page.press(page.locator("form[action='/portal/book/details/'] button[type=submit]"))
    page.wait_for_url("**/portal/book/code/")

    page.fill("#id_code", sent_code())
    patient_page.shot(flow, "code")
    patient_page.press(page.locator("form[action='/portal/book/code/'] button[type=submit]"))
    page.wait_for_url("**/portal/book/done/")
    summary = page.locator("[data-appointment]").inner_text()
    assert site.doctor.name in summary and starts_at.strftime("%H:%M") in summary
    patient_page.shot(flow, "booked")
    link = page.locator("[data-cancel-link]")
    patient_page.check_usable(link)
    href = link.get_attribute("href")
    assert href is not None and href.startswith("/portal/a/")
    return href


def follow_link(patient_page: DevicePage, link: str, flow: str) -> None:
    """Open the signed link the confirmation page shows: the visit, with a cancel button."""
    page = patient_page.page
    patient_page.press(page.locator(f'[data-cancel-link][href="{link}"]'))
    page.wait_for_url(f"**{link}")
    page.locator("[data-cancel]").wait_for()
    patient_page.shot(flow, "appointment")


def cancel_by_link(patient_page: DevicePage, flow: str) -> None:
    """Cancel the visit on the signed link's page."""
    page = patient_page.page
    patient_page.press(page.locator("[data-cancel]"))
    page.locator("[data-cancelled]").wait_for()
    assert page.locator("[data-cancel]").count() == 0
    patient_page.shot(flow, "cancelled")


def log_in_to_the_account(patient_page: DevicePage, patient: Patient, flow: str) -> None:
    """From the menu to the account: the phone, then the code sent to it."""
    page = patient_page.page
    patient_page.press(page.locator("[data-account-link]"))
    page.wait_for_url("**/portal/account/login/**")
    page.fill("#id_phone", patient.phone)
    patient_page.shot(flow, "account-login")
    patient_page.press(page.locator("[data-account-login] button[type=submit]"))
    page.wait_for_url("**/portal/account/login/code/**")
    page.fill("#id_code", sent_code())
    patient_page.press(page.locator("[data-account-code] button[type=submit]"))
    page.wait_for_url("**/portal/account/")


def cancel_in_the_account(patient_page: DevicePage, appointment: Appointment, flow: str) -> None:
    page = patient_page.page
    visit = page.locator(f'[data-upcoming="{appointment.public_id}"]')
    visit.wait_for()
    patient_page.shot(flow, "account")
    patient_page.press(visit.locator("[data-cancel]"))
    page.locator(f'[data-past="{appointment.public_id}"]').wait_for()
    assert page.locator(f'[data-upcoming="{appointment.public_id}"]').count() == 0
    patient_page.shot(flow, "account-cancelled")


def test_a_new_patient_books_sees_the_visit_in_the_account_and_cancels_it(
    open_device: Callable[[], DevicePage], site: Clinic
) -> None:
    patient_page = open_device()
    starts_at = local(tomorrow(), "11:00")
    book(patient_page, site, NEW_PATIENT, starts_at, "account")
    appointment = Appointment.objects.get()
    log_in_to_the_account(patient_page, NEW_PATIENT, "account")
    cancel_in_the_account(patient_page, appointment, "account")
    appointment.refresh_from_db()
    assert appointment.status.code == AppointmentStatus.CANCELLED
    assert not held_for_others(site, starts_at)
    assert_no_problems(patient_page)


def test_a_new_patient_books_and_cancels_by_the_signed_link(
    open_device: Callable[[], DevicePage], site: Clinic
) -> None:
    patient_page = open_device()
    starts_at = local(tomorrow(), "10:00")

    link = book(patient_page, site, NEW_PATIENT, starts_at, "new")
    appointment = Appointment.objects.get()
    assert appointment.channel == BookingChannel.PORTAL
    assert appointment.starts_at == starts_at and appointment.doctor == site.doctor
    assert appointment.patient is None and appointment.needs_completion
    assert (appointment.primary_last_name, appointment.primary_phone) == (
        "Orlova",
        "+79165551234",
    )
    assert appointment.status.code == AppointmentStatus.BOOKED

    follow_link(patient_page, link, "new")
    cancel_by_link(patient_page, "new")
    appointment.refresh_from_db()
    assert appointment.status.code == AppointmentStatus.CANCELLED
    assert appointment.channel == BookingChannel.PORTAL
    assert not held_for_others(site, starts_at)
    assert_no_problems(patient_page)


def test_a_returning_patient_is_booked_as_the_registered_person(
    open_device: Callable[[], DevicePage], site: Clinic
) -> None:
    person = PersonFactory(
        organization=site.branch.organization,
        last_name=RETURNING.last_name,
        first_name=RETURNING.first_name,
        patronymic=RETURNING.patronymic,
        birth_date=RETURNING.birth_date,
    )
    ContactFactory(person=person, kind=ContactKind.MOBILE, value="+79165554321")
    patient_page = open_device()

    book(patient_page, site, RETURNING, local(tomorrow(), "11:00"), "returning")
    appointment = Appointment.objects.get()
    assert appointment.channel == BookingChannel.PORTAL
    assert appointment.patient == person and not appointment.needs_completion
    assert list(Person.objects.all()) == [person]
    assert_no_problems(patient_page)


def test_a_held_time_is_refused_to_another_browser_until_the_wizard_is_cancelled(
    open_device: Callable[[], DevicePage], site: Clinic
) -> None:
    starts_at = local(tomorrow(), "10:30")
    slot = slot_at(site, starts_at)
    first, second = open_device(), open_device()
    search(first, site)
    search(second, site)
    assert slot_button(second.page, slot).count() == 1

    pick(first, slot)
    first.shot("held", "first-holds")
    assert held_for_others(site, starts_at)

    # The second browser's page still shows the time: picking it is refused in words.
    with second.page.expect_response(lambda r: "/portal/book/hold/" in r.url) as answer:
        second.press(slot_button(second.page, slot))
    assert answer.value.status == 409
    refusal = second.page.locator("[data-error=slot_held]")
    refusal.wait_for()
    # Chromium logs the 409 page as a resource that failed to load; that is the refusal itself.
    second.problems[:] = [problem for problem in second.problems if "status of 409" not in problem]
    assert "Someone is booking this time right now" in refusal.inner_text()
    second.shot("held", "second-refused")
    # The refusal keeps the search: the other times are offered under the message at once.
    assert slot_button(second.page, slot).count() == 0
    assert slot_button(second.page, slot_at(site, local(tomorrow(), "11:00"))).count() == 1
    search(second, site)
    assert slot_button(second.page, slot).count() == 0
    assert slot_button(second.page, slot_at(site, local(tomorrow(), "11:00"))).count() == 1
    second.shot("held", "second-without-the-time")

    first.press(first.page.locator("[data-wizard-cancel]"))
    first.page.wait_for_url("**/portal/book/")
    assert not held_for_others(site, starts_at)

    search(second, site)
    pick(second, slot)
    second.shot("held", "second-holds")
    assert held_for_others(site, starts_at)
    assert not Appointment.objects.exists()
    assert_no_problems(first, second)
