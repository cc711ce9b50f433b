"""The desk's call pages through the test client: who opens them, the pop-up fragment, the
call log with its classification form, and planned calls.

Text is asserted on pages requested in English (the ``en`` cookie).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.core.models import Staff
from clinic.core.roles import Role
from telephony.models import Call, CallOutcome, CallPurpose, PlannedCall, PlannedCallStatus
from tests.core.factories import BranchFactory, staff_with_role
from tests.patients.factories import ContactFactory, PersonFactory
from tests.web.test_pages import assert_csp_clean, log_in

from .factories import appointment, call

pytestmark = pytest.mark.django_db

NUMBER = "+79161234567"
OPERATORS = {Role.REGISTRAR, Role.CALL_CENTRE, Role.HEAD_OF_REGISTRY}


@pytest.fixture
def desk() -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    organization = branch.organization
    person = PersonFactory(
        organization=organization, last_name="Smirnova", first_name="Anna", patronymic=""
    )
    ContactFactory(person=person, value=NUMBER)
    return {
        "branch": branch,
        "organization": organization,
        "person": person,
        "registrar": staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch]),
    }


def english(client: Client, staff: Staff) -> Client:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    log_in(client, staff)
    return client


def pages(desk: dict[str, Any]) -> list[str]:
    ringing = call(desk["organization"])
    return [
        reverse("telephony:log"),
        reverse("telephony:planned"),
        reverse("telephony:popup", args=[ringing.public_id]),
    ]


@pytest.mark.parametrize("role", sorted(Role.values))
def test_pages_open_for_operators_and_are_403_for_others(
    client: Client, desk: dict[str, Any], role: str
) -> None:
    staff = staff_with_role(role, organization=desk["organization"], branches=[desk["branch"]])
    english(client, staff)
    for url in pages(desk):
        response = client.get(url)
        expected = 200 if role in OPERATORS else 403
        assert response.status_code == expected, (role, url)
        if expected == 200:
            assert_csp_clean(response.content)
    if role not in OPERATORS:
        assert SecurityEvent.objects.filter(kind=SecurityEventKind.ACCESS_DENIED).count() == 3


def test_cashier_cannot_classify_and_nothing_changes(client: Client, desk: dict[str, Any]) -> None:
    cashier = staff_with_role(Role.CASHIER, organization=desk["organization"])
    ringing = call(desk["organization"])
    english(client, cashier)
    response = client.post(
        reverse("telephony:classify", args=[ringing.public_id]),
        {"purpose": "booking", "outcome": "booked"},
    )
    assert response.status_code == 403
    assert Call.objects.get(pk=ringing.pk).purpose == ""


def test_anonymous_is_sent_to_login(client: Client, desk: dict[str, Any]) -> None:
    response = client.get(reverse("telephony:log"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_popup_shows_the_patient_and_next_appointments(
    client: Client, desk: dict[str, Any]
) -> None:
    visit = appointment(desk["person"], desk["branch"], in_days=2)
    ringing = call(desk["organization"])
    english(client, desk["registrar"])

    response = client.get(
        reverse("telephony:popup", args=[ringing.public_id]), HTTP_HX_REQUEST="true"
    )

    html = response.content.decode()
    assert "<html" not in html  # a fragment for htmx
    assert f"data-popup-number>{NUMBER}</a>" in html
    assert reverse("patients:detail", args=[desk["person"].public_id]) in html
    assert "Smirnova Anna" in html
    assert f'data-popup-appointment="{visit.public_id}"' in html
    assert "Central" in html
    assert "Unknown caller" not in html
    page = client.get(reverse("telephony:popup", args=[ringing.public_id])).content.decode()
    assert "<html" in page
    assert f'data-popup-appointment="{visit.public_id}"' in page


def test_popup_of_unknown_caller_links_to_registration(
    client: Client, desk: dict[str, Any]
) -> None:
    ringing = call(desk["organization"], number="+79990001122")
    english(client, desk["registrar"])
    html = client.get(reverse("telephony:popup", args=[ringing.public_id])).content.decode()
    assert "Unknown caller." in html
    assert f'href="{reverse("patients:register")}"' in html


def test_popup_of_another_organizations_call_is_404(client: Client, desk: dict[str, Any]) -> None:
    foreign = call(BranchFactory().organization)
    english(client, desk["registrar"])
    assert client.get(reverse("telephony:popup", args=[foreign.public_id])).status_code == 404


def test_call_log_lists_calls_with_people_in_fixed_queries(
    client: Client, desk: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    for index in range(3):
        call(desk["organization"], number=NUMBER if index else "+79990001122")
    english(client, desk["registrar"])
    client.get(reverse("telephony:log"))  # warm the session
    with django_assert_max_num_queries(14) as few:
        client.get(reverse("telephony:log"))
    for _index in range(20):
        call(desk["organization"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse("telephony:log"))
    html = response.content.decode()
    assert html.count("data-call=") == 23
    assert "Smirnova Anna" in html
    assert "Unknown caller" in html


def test_call_log_filters_and_reports_bad_period(client: Client, desk: dict[str, Any]) -> None:
    booked = call(desk["organization"], purpose=CallPurpose.BOOKING, outcome=CallOutcome.BOOKED)
    other = call(desk["organization"])
    english(client, desk["registrar"])
    html = client.get(reverse("telephony:log"), {"purpose": "booking"}).content.decode()
    assert f'data-call="{booked.public_id}"' in html
    assert f'data-call="{other.public_id}"' not in html
    html = client.get(
        reverse("telephony:log"), {"date_from": "2026-03-05", "date_to": "2026-03-01"}
    ).content.decode()
    assert "The end date 01.03.2026 is before the start date 05.03.2026." in html


def test_classify_from_the_log(client: Client, desk: dict[str, Any]) -> None:
    ringing = call(desk["organization"])
    english(client, desk["registrar"])
    response = client.post(
        reverse("telephony:classify", args=[ringing.public_id]),
        {
            "purpose": "question",
            "outcome": "answered",
            "note": "Asked about prices",
            "next": reverse("telephony:log") + "?state=ringing",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("telephony:log") + "?state=ringing"
    assert "The call is classified." in response.content.decode()
    stored = Call.objects.get(pk=ringing.pk)
    assert (stored.purpose, stored.outcome, stored.note, stored.operator) == (
        "question",
        "answered",
        "Asked about prices",
        desk["registrar"],
    )


def test_classify_with_missing_outcome_changes_nothing(
    client: Client, desk: dict[str, Any]
) -> None:
    ringing = call(desk["organization"])
    english(client, desk["registrar"])
    response = client.post(
        reverse("telephony:classify", args=[ringing.public_id]),
        {"purpose": "question", "outcome": ""},
        follow=True,
    )
    assert "This field is required." in response.content.decode()
    assert Call.objects.get(pk=ringing.pk).purpose == ""


def test_plan_a_call_by_phone_then_mark_it_done(client: Client, desk: dict[str, Any]) -> None:
    english(client, desk["registrar"])
    due = (timezone.localtime() + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        reverse("telephony:planned"),
        {
            "patient": "8 916 123-45-67",
            "reason": "Results are ready",
            "due_at": due,
            "assigned_to": str(desk["registrar"].public_id),
        },
        follow=True,
    )
    assert "A call to Smirnova Anna is planned." in response.content.decode()
    planned = PlannedCall.objects.get()
    assert (planned.patient, planned.phone, planned.assigned_to, planned.reason) == (
        desk["person"],
        NUMBER,
        desk["registrar"],
        "Results are ready",
    )
    assert f'data-planned-call="{planned.public_id}"' in response.content.decode()

    response = client.post(
        reverse("telephony:planned_done", args=[planned.public_id]),
        {"result_note": "Will come tomorrow"},
        follow=True,
    )
    assert "The call to Smirnova Anna is marked done." in response.content.decode()
    planned.refresh_from_db()
    assert (planned.status, planned.result_note) == (PlannedCallStatus.DONE, "Will come tomorrow")


def test_plan_a_call_for_an_unknown_phone_names_it(client: Client, desk: dict[str, Any]) -> None:
    english(client, desk["registrar"])
    response = client.post(
        reverse("telephony:planned"),
        {"patient": "+79990001122", "reason": "X", "due_at": "2026-03-02T10:00"},
    )
    assert response.status_code == 200
    assert "Nobody has the phone “+79990001122”." in response.content.decode()
    assert PlannedCall.objects.count() == 0


def test_plan_a_call_by_public_id_and_cancel_it(client: Client, desk: dict[str, Any]) -> None:
    english(client, desk["registrar"])
    form = client.get(reverse("telephony:planned"), {"patient": desk["person"].public_id})
    assert f'value="{desk["person"].public_id}"' in form.content.decode()
    client.post(
        reverse("telephony:planned"),
        {
            "patient": str(desk["person"].public_id),
            "reason": "Confirm",
            "due_at": "2026-03-02T10:00",
        },
    )
    planned = PlannedCall.objects.get()
    response = client.post(
        reverse("telephony:planned_cancel", args=[planned.public_id]), follow=True
    )
    assert "The call to Smirnova Anna is cancelled." in response.content.decode()
    assert PlannedCall.objects.get().status == PlannedCallStatus.CANCELLED
    html = client.get(reverse("telephony:planned"), {"status": "cancelled"}).content.decode()
    assert f'data-planned-call="{planned.public_id}"' in html


def test_pages_render_in_russian(client: Client, desk: dict[str, Any]) -> None:
    """The default language renders (the strings are translatable; Russian comes later)."""
    log_in(client, desk["registrar"])
    for url in pages(desk):
        assert client.get(url, HTTP_ACCEPT_LANGUAGE="ru").status_code == 200


TEMPLATES = Path(settings.BASE_DIR) / "templates" / "telephony"
_TRANSLATED = re.compile(
    r"{%\s*blocktranslate.*?{%\s*endblocktranslate\s*%}|{%.*?%}|{{.*?}}|{#.*?#}|<[^>]*>",
    re.DOTALL,
)


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_have_no_untranslated_text(name: str) -> None:
    """Every word a person reads comes from {% translate %}/{% blocktranslate %} or data."""
    text = _TRANSLATED.sub(" ", (TEMPLATES / name).read_text())
    leftovers = [word for word in re.findall(r"[A-Za-z]{2,}", text) if word != "nbsp"]
    assert leftovers == []
