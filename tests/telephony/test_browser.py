"""The call pages in a real headless Chromium: a registrar classifies a call from the log,
opens the pop-up of a ringing call and plans a call, with no CSP violation or script error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinic.core.roles import Role
from telephony.models import Call, PlannedCall
from tests.core.factories import BranchFactory, staff_with_role
from tests.e2e.test_login_flow import CHROMIUM, PASSWORD, BrowserPage, log_in
from tests.patients.factories import ContactFactory, PersonFactory

from .factories import appointment, call

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed (/usr/bin/chromium); apt-get install chromium",
    ),
]

# Set to a folder to keep screenshots of the pages for a person to look at.
SCREENSHOTS = os.environ.get("TELEPHONY_SCREENSHOTS", "")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_login_flow import CHROMIUM_ARGS

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def test_registrar_classifies_a_call_sees_the_popup_and_plans_a_call(
    browser: Any, live_server: Any
) -> None:
    branch = BranchFactory(name="Central")
    organization = branch.organization
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    person = PersonFactory(
        organization=organization, last_name="Smirnova", first_name="Anna", patronymic=""
    )
    ContactFactory(person=person, value="+79161234567")
    appointment(person, branch, in_days=2)
    ringing = call(organization)
    call(organization, number="+79990001122", state="missed")

    tab = BrowserPage(browser, live_server.url, "en-US")
    try:
        page = tab.page
        assert registrar.user is not None
        log_in(page, registrar.user.username, PASSWORD)
        page.wait_for_url("**/desk/**")

        page.goto("/desk/calls/")
        row = page.locator(f"[data-call='{ringing.public_id}']")
        assert "Smirnova Anna" in row.inner_text()
        shot(page, "call_log")
        row.locator("select[name=purpose]").select_option("booking")
        row.locator("select[name=outcome]").select_option("booked")
        row.locator("input[name=note]").fill("Booked for Tuesday")
        row.locator("button[type=submit]").click()
        page.wait_for_selector("text=The call is classified.")
        stored = Call.objects.get(pk=ringing.pk)
        assert (stored.purpose, stored.outcome, stored.note) == (
            "booking",
            "booked",
            "Booked for Tuesday",
        )

        page.goto(f"/desk/calls/popup/{ringing.public_id}/")
        assert "Smirnova Anna" in page.inner_text("[data-call-popup]")
        shot(page, "popup")

        page.goto("/desk/calls/planned/")
        page.fill("input[name=patient]", "+7 916 123 45 67")
        page.fill("input[name=reason]", "Results are ready")
        page.fill("input[name=due_at]", "2030-01-15T10:30")
        page.click("[data-plan-form] button[type=submit]")
        page.wait_for_selector("text=A call to Smirnova Anna is planned.")
        shot(page, "planned_calls")
        assert PlannedCall.objects.get().reason == "Results are ready"
        assert tab.problems == []
    finally:
        tab.close()
