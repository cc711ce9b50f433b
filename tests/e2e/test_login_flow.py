"""Logging in through the real login page in headless Chromium (Debian's), against a live server.

Besides where each role lands, every page opened here is checked for what a unit test cannot
see: the browser reported no Content-Security-Policy violation and no script error, and htmx
loaded with its configuration and sends the CSRF token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinic.accounts.models import User
from clinic.core.models import Staff
from clinic.core.roles import Role
from tests.core.factories import BranchFactory, staff_with_role

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed (/usr/bin/chromium); apt-get install chromium",
    ),
]

PASSWORD = "correct-horse-battery"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module.

    Playwright's sync API keeps an asyncio loop running in this thread, which makes Django refuse
    the test's own (plain synchronous) ORM calls and the database flush after each test; the
    permission is given for this module only.
    """
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class BrowserPage:
    """A page in a fresh browser context that records CSP violations and script errors."""

    def __init__(self, browser: Any, base_url: str, locale: str) -> None:
        self.context = browser.new_context(base_url=base_url, locale=locale)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _on_console(self, message: Any) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_browser(browser: Any, live_server: Any) -> Iterator[Any]:
    pages: list[BrowserPage] = []

    def make(locale: str = "en-US") -> BrowserPage:
        browser_page = BrowserPage(browser, live_server.url, locale)
        pages.append(browser_page)
        return browser_page

    yield make
    for browser_page in pages:
        browser_page.close()


def user_of(staff: Staff) -> User:
    """The staff member's login (the factories always create one)."""
    assert staff.user is not None
    return staff.user


def log_in(page: Any, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form[action='/accounts/login/'] button[type=submit]")


def html_lang(page: Any) -> str:
    return str(page.locator("html").get_attribute("lang"))


def test_doctor_logs_in_and_lands_in_the_doctors_workplace(open_browser: Any) -> None:
    doctor: Staff = staff_with_role(Role.DOCTOR, position="Therapist")
    browser_page = open_browser()
    page = browser_page.page

    log_in(page, user_of(doctor).username, PASSWORD)

    page.wait_for_url("**/doctor/")
    assert page.locator("h1").inner_text() == "Doctor's workplace"
    assert page.locator("[data-staff-name]").inner_text() == doctor.full_name
    assert page.locator("[data-user-name]").inner_text() == doctor.short_name
    assert page.locator("nav a").all_inner_texts() == ["Doctor's workplace"]
    assert page.locator("nav a[aria-current=page]").get_attribute("href") == "/doctor/"
    branch_name = doctor.branches.get().name
    assert page.locator("[data-branches] tbody th").all_inner_texts() == [branch_name]
    assert page.locator("[data-capabilities] li").count() == 4
    # htmx is loaded with the configuration of the page's meta tag (no inline styles, no
    # history kept in browser storage).
    assert page.evaluate("() => [typeof htmx, htmx.config.includeIndicatorStyles]") == [
        "object",
        False,
    ]
    assert page.evaluate("() => htmx.config.historyCacheSize") == 0
    assert browser_page.problems == []


def test_cashier_logs_in_and_lands_at_the_pos(open_browser: Any) -> None:
    cashier: Staff = staff_with_role(Role.CASHIER)
    browser_page = open_browser()
    page = browser_page.page

    log_in(page, user_of(cashier).username, PASSWORD)

    page.wait_for_url("**/pos/")
    assert page.locator("h1").inner_text() == "Cash desk"
    assert page.locator("nav a").all_inner_texts() == ["Cashier's desk"]

    page.click("form[action='/accounts/logout/'] button[type=submit]")
    page.wait_for_url("**/accounts/login/")
    page.goto("/pos/")
    page.wait_for_url(re.compile(r"/accounts/login/\?next=/pos/$"))
    assert browser_page.problems == []


def test_wrong_password_shows_the_error_and_keeps_the_user_name(open_browser: Any) -> None:
    doctor: Staff = staff_with_role(Role.DOCTOR)
    browser_page = open_browser()
    page = browser_page.page

    log_in(page, user_of(doctor).username, "not-the-password")

    error = page.locator("[data-form-errors]")
    error.wait_for()
    assert error.inner_text().startswith("Please enter a correct username and password.")
    assert page.url.endswith("/accounts/login/")
    assert page.input_value("input[name=username]") == user_of(doctor).username
    assert page.input_value("input[name=password]") == ""
    assert browser_page.problems == []


def test_language_switcher_changes_the_page_language(open_browser: Any) -> None:
    browser_page = open_browser(locale="ru-RU")
    page = browser_page.page
    page.goto("/accounts/login/")
    assert html_lang(page) == "ru"
    assert page.locator("button[name=language][value=ru]").get_attribute("aria-pressed") == "true"

    with page.expect_navigation():
        page.click("button[name=language][value=en]")

    assert page.url.endswith("/accounts/login/")
    assert html_lang(page) == "en"
    assert page.locator("h1").inner_text() == "Staff login"
    assert page.locator("button[name=language][value=en]").get_attribute("aria-pressed") == "true"
    # The choice is kept (in a cookie) for the pages that follow.
    page.goto("/portal/")
    assert html_lang(page) == "en"
    assert browser_page.problems == []


def test_portal_for_anonymous_visitor_links_to_staff_login(open_browser: Any) -> None:
    BranchFactory(name="Central clinic", address="Moscow, Arbat 10")
    browser_page = open_browser()
    page = browser_page.page
    page.goto("/portal/")

    assert page.locator("nav[aria-label=Workplaces]").count() == 0  # no staff navigation
    assert page.locator("[data-branches] h3").all_inner_texts() == ["Central clinic"]
    page.click("header >> text=Staff login")
    page.wait_for_url("**/accounts/login/")
    assert browser_page.problems == []


def test_htmx_requests_carry_the_csrf_token(open_browser: Any) -> None:
    """A POST made by htmx passes Django's CSRF check thanks to the body's hx-headers."""
    browser_page = open_browser(locale="ru-RU")
    page = browser_page.page
    page.goto("/portal/")
    assert html_lang(page) == "ru"

    status = page.evaluate(
        """() => new Promise((resolve) => {
            document.body.addEventListener("htmx:afterRequest",
                (event) => resolve(event.detail.xhr.status), {once: true});
            htmx.ajax("POST", "/i18n/setlang/",
                {source: document.body, values: {language: "en"}, swap: "none"});
        })"""
    )

    assert status == 200  # the redirect to the start page, followed by the browser
    page.reload()
    assert html_lang(page) == "en"
    assert browser_page.problems == []
