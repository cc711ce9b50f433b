"""The desk's patient pages in headless Chromium (Debian's), against a live server.

A registrar registers a patient who is already registered (the phone typed differently), is
warned with the existing patient and opens them instead; the search box shows results as one
types, without submitting. Every page is checked for Content-Security-Policy violations and
script errors, which the test client cannot see.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from clinic.core.models import Staff
from clinic.core.roles import Role
from patients import services
from patients.models import ContactKind, Person
from patients.services import ContactInput, PersonInput
from tests.core.factories import staff_with_role

# The browser and its pages (CSP violations and script errors recorded) are the login flow's.
from .test_login_flow import CHROMIUM, PASSWORD, browser, log_in, open_browser, user_of

__all__ = ["browser", "open_browser"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed (/usr/bin/chromium); apt-get install chromium",
    ),
]


def register_existing(registrar: Staff) -> Person:
    return services.person_create(
        actor=registrar.user,
        organization=registrar.organization,
        data=PersonInput(
            last_name="Смирнова",
            first_name="Ольга",
            patronymic="Петровна",
            birth_date=datetime.date(1985, 3, 14),
            contacts=[ContactInput(ContactKind.MOBILE, "+79161234567")],
        ),
    )


def test_registrar_is_warned_of_the_duplicate_and_opens_the_existing_patient(
    open_browser: Any,
) -> None:
    registrar: Staff = staff_with_role(Role.REGISTRAR)
    existing = register_existing(registrar)
    browser_page = open_browser()
    page = browser_page.page

    log_in(page, user_of(registrar).username, PASSWORD)
    page.wait_for_url("**/desk/")
    page.click("[data-desk-patients] >> text=Register a patient")
    page.wait_for_url("**/desk/patients/new/")
    assert page.locator("h1").inner_text() == "Register a patient"

    page.fill("input[name=last_name]", "смирнова")
    page.fill("input[name=first_name]", "Ольга")
    page.fill("input[name=birth_date]", "1985-03-14")
    page.fill("input[name=phone]", "8 (916) 123-45-67")
    page.check("input[name=consent_personal_data]")
    page.click("button[data-register]")

    warning = page.locator("[data-duplicates]")
    warning.wait_for()
    assert page.url.endswith("/desk/patients/new/")
    assert warning.locator("h2").inner_text() == "This person may already be registered"
    assert warning.locator("[data-candidate-name]").all_inner_texts() == ["Смирнова Ольга Петровна"]
    assert warning.locator("[data-candidate-reasons] li").all_inner_texts() == [
        "same phone",
        "similar name, same birth date",
    ]
    # A registrar may not force the registration; the page says what to do instead.
    assert page.locator("[data-force]").count() == 0
    assert page.locator("[data-force-explanation]").is_visible()
    # What was typed is still there, to be corrected.
    assert page.input_value("input[name=phone]") == "8 (916) 123-45-67"
    assert Person.objects.count() == 1

    warning.locator("[data-open-candidate]").click()
    page.wait_for_url(f"**/desk/patients/{existing.public_id}/")
    assert page.locator("h1").inner_text() == "Смирнова Ольга Петровна"
    assert page.locator("[data-contacts]").inner_text().endswith("+79161234567")
    assert Person.objects.count() == 1
    assert browser_page.problems == []


def test_search_shows_results_as_one_types(open_browser: Any) -> None:
    registrar: Staff = staff_with_role(Role.REGISTRAR)
    existing = register_existing(registrar)
    browser_page = open_browser()
    page = browser_page.page
    log_in(page, user_of(registrar).username, PASSWORD)
    page.wait_for_url("**/desk/")

    page.goto("/desk/patients/")
    assert page.locator("[data-search-hint]").inner_text() == "Results appear as you type."
    # A marker on the window shows that the page is not reloaded while typing.
    page.evaluate("() => { window.stillTheSamePage = true; }")
    page.locator("[data-search-input]").press_sequentially("Смирн", delay=50)

    result = page.locator(f'[data-search-result="{existing.public_id}"]')
    result.wait_for()
    assert result.locator("[data-person-link]").inner_text() == "Смирнова Ольга Петровна"
    assert "+79161234567" in result.inner_text()
    assert page.evaluate("() => window.stillTheSamePage") is True
    assert page.input_value("[data-search-input]") == "Смирн"
    # The address follows the box, so Back from the patient page returns to these results.
    page.wait_for_url(re.compile(r"/desk/patients/\?q=%D0%A1%D0%BC%D0%B8%D1%80%D0%BD$"))

    result.locator("[data-person-link]").click()
    page.wait_for_url(f"**/desk/patients/{existing.public_id}/")
    page.go_back()
    page.locator(f'[data-search-result="{existing.public_id}"]').wait_for()
    assert page.input_value("[data-search-input]") == "Смирн"

    # Nothing found: the list says so, still without a submit.
    page.evaluate("() => { window.stillTheSamePage = true; }")
    page.locator("[data-search-input]").fill("Nobody-at-all")
    page.locator("[data-no-results]").wait_for()
    assert page.locator("[data-search-result]").count() == 0
    assert page.evaluate("() => window.stillTheSamePage") is True
    assert browser_page.problems == []
