"""The conversations inbox: patients' messages wait for the desk of the branch they wrote to, a
conversation shows the thread with delivery states and failures, a reply goes out as a message
on the conversation's channel (and reaches the fake Twilio), bad replies are named; a patient's
and an appointment's messages are listed with failures marked."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, include, path, reverse
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic import urls as root_urls
from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.core.roles import Role
from integrations.messaging.fake_twilio import FakeTwilio
from messaging import conversations, sender
from messaging.conversations import ConversationError, conversation_reply
from messaging.models import (
    BranchSender,
    Conversation,
    Direction,
    Message,
    MessageChannel,
    MessageState,
    RuleEvent,
)
from tests.core.factories import BranchFactory, staff_with_role
from tests.e2e.test_login_flow import CHROMIUM, BrowserPage, browser, log_in
from tests.patients.factories import PersonFactory

from .conftest import PHONE, Clinic


def _missing(prefix: str, module: str, namespace: str) -> list[URLPattern | URLResolver]:
    """The include, unless the project's URLs already have it."""
    if any(getattr(p, "namespace", None) == namespace for p in root_urls.urlpatterns):
        return []
    return [path(prefix, include(module))]


urlpatterns = [
    *_missing("portal/feedback/", "messaging.portal_urls", "messaging_feedback"),
    *_missing("desk/messages/", "messaging.staff_urls", "messaging_desk"),
    *root_urls.urlpatterns,
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

__all__ = ["browser"]

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}
OUR_SMS = "+15005550006"
NORTH_SMS = "+15005550009"


def login(user: Any) -> Client:
    """A client logged in as ``user``, with a confirmed second factor for the roles that need
    one."""
    client = Client(**EN)
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def written(
    clinic: Clinic,
    text: str,
    *,
    address: str = PHONE,
    to: str = OUR_SMS,
    channel: str = MessageChannel.SMS,
    patient: Any = "clinic",
) -> Message:
    """A patient's message filed as the webhook files it: the conversation waits for an
    answer."""
    person = clinic.patient if patient == "clinic" else patient
    now = timezone.now()
    conversation, _created = Conversation.objects.get_or_create(
        organization=clinic.organization,
        channel=channel,
        address=address,
        defaults={"patient": person},
    )
    message = Message.objects.create(
        organization=clinic.organization,
        patient=person,
        conversation=conversation,
        direction=Direction.INBOUND,
        channel=channel,
        to=to,
        body=text,
        state=MessageState.RECEIVED,
        due_at=now,
        state_changed_at=now,
    )
    conversation.last_inbound_at = now
    conversation.needs_answer = True
    conversation.save(update_fields=["last_inbound_at", "needs_answer"])
    return message


def listed(response: Any) -> list[str]:
    return re.findall(r'data-conversation="([0-9a-f-]+)"', response.content.decode())


@pytest.fixture
def north(clinic: Clinic) -> dict[str, Any]:
    """A second branch with its own number and a registrar who works only there."""
    branch = BranchFactory(organization=clinic.organization, name="North")
    BranchSender.objects.create(branch=branch, sms_from=NORTH_SMS)
    registrar = staff_with_role(
        Role.REGISTRAR, organization=clinic.organization, branches=[branch]
    ).user
    return {"branch": branch, "registrar": registrar}


# ---- the inbox ------------------------------------------------------------------------------


def test_a_waiting_conversation_shows_to_the_desk_of_the_branch_written_to(
    clinic: Clinic, north: dict[str, Any]
) -> None:
    message = written(clinic, "Можно перенести на вечер?")
    conversation = message.conversation
    assert conversation is not None
    ours = login(clinic.registrar).get(reverse("messaging_desk:inbox"))
    assert ours.status_code == 200
    assert listed(ours) == [str(conversation.public_id)]
    assert "Можно перенести на вечер?" in ours.content.decode()
    theirs = login(north["registrar"])
    assert listed(theirs.get(reverse("messaging_desk:inbox"))) == []
    page = reverse("messaging_desk:conversation", args=[conversation.public_id])
    assert theirs.get(page).status_code == 404
    reply = reverse("messaging_desk:conversation_reply", args=[conversation.public_id])
    assert theirs.post(reply, {"body": "Hi"}).status_code == 404
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()


def test_a_number_no_branch_sends_from_shows_to_the_whole_organization(
    clinic: Clinic, north: dict[str, Any]
) -> None:
    stranger = written(
        clinic, "Who is this?", address="+79990001122", to="+10000000000", patient=None
    )
    conversation = stranger.conversation
    assert conversation is not None
    for user in (clinic.registrar, north["registrar"]):
        assert listed(login(user).get(reverse("messaging_desk:inbox"))) == [
            str(conversation.public_id)
        ]
    narrowed = login(clinic.registrar).get(
        reverse("messaging_desk:inbox"), {"branch": str(clinic.branch.public_id)}
    )
    assert listed(narrowed) == []


def test_a_message_sent_for_a_branch_puts_the_conversation_in_its_inbox(
    clinic: Clinic, north: dict[str, Any]
) -> None:
    """The patient answered on a number both branches share; the reminder was the North's."""
    shared = "+15005550777"
    message = written(clinic, "Буду позже", to=shared)
    Message.objects.create(
        organization=clinic.organization,
        branch=north["branch"],
        patient=clinic.patient,
        conversation=message.conversation,
        channel=MessageChannel.SMS,
        to=PHONE,
        body="Напоминание",
        state=MessageState.DELIVERED,
        due_at=timezone.now(),
    )
    assert len(listed(login(north["registrar"]).get(reverse("messaging_desk:inbox")))) == 1
    assert listed(login(clinic.registrar).get(reverse("messaging_desk:inbox"))) == []


def test_answered_conversations_show_on_request_and_bad_filters_are_named(
    clinic: Clinic, north: dict[str, Any]
) -> None:
    message = written(clinic, "Спасибо")
    Conversation.objects.filter(pk=message.conversation_id).update(needs_answer=False)
    client = login(clinic.registrar)
    url = reverse("messaging_desk:inbox")
    assert listed(client.get(url)) == []
    assert len(listed(client.get(url, {"everything": "on"}))) == 1
    refused = client.get(url, {"branch": str(north["branch"].public_id)})
    assert refused.status_code == 400
    assert "Branch “" in refused.content.decode()
    assert "Not one of your branches." in refused.content.decode()


def test_the_inbox_costs_the_same_queries_for_more_conversations(
    clinic: Clinic, django_assert_num_queries: Any
) -> None:
    client = login(clinic.registrar)
    url = reverse("messaging_desk:inbox")
    written(clinic, "first")
    from django.db import connection

    with CaptureQueriesContext(connection) as one:
        assert len(listed(client.get(url))) == 1
    for number in range(4):
        someone = PersonFactory(organization=clinic.organization)
        written(clinic, f"text {number}", address=f"+7916000000{number}", patient=someone)
    with django_assert_num_queries(len(one.captured_queries)):
        assert len(listed(client.get(url))) == 5


def test_a_cashier_may_not_open_the_inbox_and_the_attempt_is_recorded(clinic: Clinic) -> None:
    message = written(clinic, "Hello")
    cashier = staff_with_role(
        Role.CASHIER, organization=clinic.organization, branches=[clinic.branch]
    ).user
    client = login(cashier)
    assert client.get(reverse("messaging_desk:inbox")).status_code == 403
    assert message.conversation is not None
    reply = reverse("messaging_desk:conversation_reply", args=[message.conversation.public_id])
    assert client.post(reply, {"body": "Hi"}).status_code == 403
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()
    denials = SecurityEvent.objects.filter(user=cashier, kind=SecurityEventKind.ACCESS_DENIED)
    assert denials.count() == 2
    conversation = Conversation.objects.get()
    assert conversation.needs_answer
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        conversation_reply(actor=cashier, conversation=conversation, body="Hi")


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.REGISTRAR, True),
        (Role.CALL_CENTRE, True),
        (Role.HEAD_OF_REGISTRY, True),
        (Role.DOCTOR, False),
        (Role.CASHIER, False),
        (Role.ADMINISTRATOR, False),
    ],
)
def test_who_answers_patients(clinic: Clinic, role: str, allowed: bool) -> None:
    user = staff_with_role(role, organization=clinic.organization, branches=[clinic.branch]).user
    assert conversations.can_answer_conversations(user) is allowed


# ---- a conversation -------------------------------------------------------------------------


def test_the_thread_shows_both_directions_with_states_and_failures(clinic: Clinic) -> None:
    reminder_rule = clinic.rule(RuleEvent.DAYS_BEFORE, template_code="reminder")
    earlier = timezone.now() - datetime.timedelta(hours=3)
    delivered = Message.objects.create(
        organization=clinic.organization,
        branch=clinic.branch,
        patient=clinic.patient,
        rule=reminder_rule,
        channel=MessageChannel.SMS,
        to=PHONE,
        body="Ждём вас завтра в 10:00",
        state=MessageState.DELIVERED,
        due_at=earlier,
        sent_at=earlier,
    )
    question = written(clinic, "Можно перенести?")
    failed = Message.objects.create(
        organization=clinic.organization,
        branch=clinic.branch,
        patient=clinic.patient,
        conversation=question.conversation,
        channel=MessageChannel.SMS,
        to=PHONE,
        body="Да, позвоните нам",
        state=MessageState.UNDELIVERED,
        skip_reason="Unreachable destination handset",
        error_code="30003",
        due_at=timezone.now(),
        sent_by=clinic.registrar,
    )
    assert question.conversation is not None
    page = login(clinic.registrar).get(
        reverse("messaging_desk:conversation", args=[question.conversation.public_id])
    )
    assert page.status_code == 200
    html = page.content.decode()
    order = re.findall(r'data-message="(\d+)" data-direction="(\w+)"', html)
    assert order == [
        (str(delivered.pk), "out"),
        (str(question.pk), "in"),
        (str(failed.pk), "out"),
    ]
    failed_item = re.search(rf'data-message="{failed.pk}"[^>]*data-failed', html)
    assert failed_item is not None
    assert "Unreachable destination handset" in html
    assert "provider&#x27;s code 30003" in html or "provider's code 30003" in html
    assert 'data-state="delivered"' in html
    assert 'data-state="undelivered"' in html


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilio]:
    fake = FakeTwilio.start(port=0)
    config = {
        "provider": "twilio",
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "sms_from": OUR_SMS,
        "whatsapp_from": "+14155238886",
        "base_url": fake.url,
        "timeout": 5,
    }
    settings.MESSAGING_PROVIDERS = {"sms": config, "whatsapp": config}
    settings.SITE_URL = "http://127.0.0.1:9"
    yield fake
    fake.stop()


def test_a_reply_is_a_message_on_the_conversation_s_channel_and_reaches_the_patient(
    clinic: Clinic,
    twilio: FakeTwilio,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    question = written(clinic, "Можно перенести?")
    conversation = question.conversation
    assert conversation is not None
    queued: list[str] = []
    monkeypatch.setattr("messaging.tasks.send.delay", lambda: queued.append("send"))
    client = login(clinic.registrar)
    url = reverse("messaging_desk:conversation_reply", args=[conversation.public_id])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"body": "  Да, на 18:00 есть время.  "})
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "messaging_desk:conversation", args=[conversation.public_id]
    )
    assert queued == ["send"]
    answer = Message.objects.get(direction=Direction.OUTBOUND)
    assert answer.rule is None
    assert answer.channel == MessageChannel.SMS
    assert answer.to == PHONE
    assert answer.body == "Да, на 18:00 есть время."
    assert answer.sent_by == clinic.registrar
    assert answer.conversation == conversation
    assert answer.patient == clinic.patient
    assert answer.branch == clinic.branch
    assert answer.state == MessageState.PLANNED
    assert answer.due_at <= timezone.now()
    conversation.refresh_from_db()
    assert not conversation.needs_answer
    assert listed(client.get(reverse("messaging_desk:inbox"))) == []

    assert sender.send_due() == 1
    answer.refresh_from_db()
    assert answer.state == MessageState.QUEUED
    posts = [r for r in twilio.sent if r["method"] == "POST"]
    assert len(posts) == 1
    assert posts[0]["form"]["To"] == PHONE
    assert posts[0]["form"]["Body"] == "Да, на 18:00 есть время."


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("   ", "Reply: write the text of the message."),
        ("x" * 1601, "Reply: the text is 1601 characters long; at most 1600 can be sent."),
    ],
)
def test_a_bad_reply_is_named_and_nothing_is_sent(clinic: Clinic, body: str, problem: str) -> None:
    question = written(clinic, "Можно перенести?")
    conversation = question.conversation
    assert conversation is not None
    url = reverse("messaging_desk:conversation_reply", args=[conversation.public_id])
    response = login(clinic.registrar).post(url, {"body": body})
    assert response.status_code == 400
    assert problem in response.content.decode()
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()
    conversation.refresh_from_db()
    assert conversation.needs_answer


def test_the_service_refuses_an_empty_reply_with_the_field(clinic: Clinic) -> None:
    conversation = written(clinic, "?").conversation
    with pytest.raises(ConversationError) as refused:
        conversation_reply(actor=clinic.registrar, conversation=conversation, body="")
    assert refused.value.field == "body"
    assert refused.value.code == "reply_empty"


def test_a_whatsapp_conversation_silent_for_a_day_warns_before_replying(clinic: Clinic) -> None:
    message = written(clinic, "Привет", channel=MessageChannel.WHATSAPP)
    Conversation.objects.filter(pk=message.conversation_id).update(
        last_inbound_at=timezone.now() - datetime.timedelta(hours=25)
    )
    assert message.conversation is not None
    page = login(clinic.registrar).get(
        reverse("messaging_desk:conversation", args=[message.conversation.public_id])
    )
    assert "data-window-closed" in page.content.decode()


def test_a_conversation_needing_no_answer_leaves_the_inbox(clinic: Clinic) -> None:
    message = written(clinic, "Спасибо!")
    assert message.conversation is not None
    client = login(clinic.registrar)
    url = reverse("messaging_desk:conversation_dismiss", args=[message.conversation.public_id])
    assert client.post(url).status_code == 302
    assert not Conversation.objects.get().needs_answer
    assert not Message.objects.filter(direction=Direction.OUTBOUND).exists()


# ---- a patient's and an appointment's messages ----------------------------------------------


def test_the_patient_s_messages_mark_failures_as_a_fragment_and_a_page(clinic: Clinic) -> None:
    visit = clinic.book(timezone.localdate() + datetime.timedelta(days=2), "10:00")
    failed = Message.objects.create(
        organization=clinic.organization,
        branch=clinic.branch,
        patient=clinic.patient,
        appointment=visit,
        rule=clinic.rule(RuleEvent.DAYS_BEFORE, template_code="reminder"),
        channel=MessageChannel.SMS,
        to=PHONE,
        body="Напоминание",
        state=MessageState.FAILED,
        skip_reason="No provider is configured for SMS.",
        due_at=timezone.now(),
    )
    written(clinic, "Ок")
    client = login(clinic.registrar)
    url = reverse("messaging_desk:patient", args=[clinic.patient.public_id])
    fragment = client.get(url, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert "<html" not in html
    assert re.search(rf'data-message="{failed.pk}"[^>]*data-failed', html)
    assert "No provider is configured for SMS." in html
    assert "data-conversation-link" in html
    page = client.get(url)
    assert page.status_code == 200
    assert "<html" in page.content.decode()
    cashier = staff_with_role(
        Role.CASHIER, organization=clinic.organization, branches=[clinic.branch]
    ).user
    assert login(cashier).get(url).status_code == 403


def test_another_organization_s_patient_is_not_found(clinic: Clinic) -> None:
    stranger = PersonFactory()
    url = reverse("messaging_desk:patient", args=[stranger.public_id])
    assert login(clinic.registrar).get(url).status_code == 404


def test_the_appointment_s_messages_list_its_reminders_for_the_branch_desk_only(
    clinic: Clinic, north: dict[str, Any]
) -> None:
    visit = clinic.book(timezone.localdate() + datetime.timedelta(days=2), "10:00")
    reminder = Message.objects.create(
        organization=clinic.organization,
        branch=clinic.branch,
        patient=clinic.patient,
        appointment=visit,
        rule=clinic.rule(RuleEvent.DAYS_BEFORE, template_code="reminder"),
        channel=MessageChannel.SMS,
        to=PHONE,
        body="Ждём вас",
        state=MessageState.SKIPPED,
        skip_reason="no consent to WhatsApp",
        due_at=timezone.now(),
    )
    url = reverse("messaging_desk:appointment", args=[visit.public_id])
    page = login(clinic.registrar).get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-message="{reminder.pk}"' in html
    assert "no consent to WhatsApp" in html
    assert login(north["registrar"]).get(url).status_code == 404


# ---- in a browser ---------------------------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "messaging"


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed")
def test_a_receptionist_answers_from_the_inbox_in_a_browser(
    browser: Any, live_server: Any, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Log in, open the waiting conversation, send an empty reply (refused, named), then a
    reply: the conversation leaves the inbox; no CSP violation or script error on the way."""
    monkeypatch.setattr("messaging.tasks.send.delay", lambda: None)
    question = written(clinic, "Можно перенести на вечер?")
    Message.objects.create(
        organization=clinic.organization,
        branch=clinic.branch,
        patient=clinic.patient,
        conversation=question.conversation,
        channel=MessageChannel.SMS,
        to=PHONE,
        body="Ждём вас завтра",
        state=MessageState.FAILED,
        skip_reason="The provider did not answer; the message was not sent again.",
        due_at=timezone.now() - datetime.timedelta(hours=1),
    )
    registrar = staff_with_role(
        Role.REGISTRAR, organization=clinic.organization, branches=[clinic.branch]
    ).user
    page = BrowserPage(browser, live_server.url, "en-US")
    try:
        log_in(page.page, registrar.username, "correct-horse-battery")
        page.page.wait_for_load_state()
        page.page.goto(reverse("messaging_desk:inbox"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(ARTIFACTS / "inbox-1-list.png"), full_page=True)
        page.page.click("[data-inbox] a")
        page.page.wait_for_selector("[data-thread]")
        assert page.page.locator("[data-thread] [data-failed]").count() == 1
        page.page.click("[data-reply-send]")
        page.page.wait_for_selector("[data-reply-errors]")
        assert "Reply: write the text of the message." in page.page.inner_text(
            "[data-reply-errors]"
        )
        page.page.fill("textarea[name=body]", "Да, на 18:00 есть время.")
        page.page.screenshot(path=str(ARTIFACTS / "inbox-2-conversation.png"), full_page=True)
        page.page.click("[data-reply-send]")
        page.page.wait_for_selector("[data-thread] [data-state='planned']")
        page.page.goto(reverse("messaging_desk:inbox"))
        page.page.wait_for_selector("[data-inbox-empty]")
        page.page.goto(reverse("messaging_desk:patient", args=[clinic.patient.public_id]))
        assert page.page.locator("[data-messages-table] [data-failed]").count() == 1
        page.page.screenshot(path=str(ARTIFACTS / "inbox-3-patient.png"), full_page=True)
    finally:
        page.close()
    refused = "the server responded with a status of 400 (Bad Request)"  # the empty reply
    assert [problem for problem in page.problems if refused not in problem] == []
    answer = Message.objects.get(sent_by=registrar)
    assert answer.body == "Да, на 18:00 есть время."
    assert not Conversation.objects.get().needs_answer


def test_an_administrator_follows_a_rating_to_its_visit_s_messages(clinic: Clinic) -> None:
    visit = clinic.book(timezone.localdate() + datetime.timedelta(days=2), "10:00")
    written(clinic, "Ок")
    administrator = staff_with_role(
        Role.ADMINISTRATOR, organization=clinic.organization, branches=[clinic.branch]
    ).user
    page = login(administrator).get(reverse("messaging_desk:appointment", args=[visit.public_id]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "data-conversations" in html
    assert "data-conversation-link" not in html  # answering is the desk's work


def test_the_patient_page_card_loads_the_list_when_shown(clinic: Clinic) -> None:
    """The card the patient page includes asks for the fragment as soon as it is shown."""
    html = render_to_string("messaging/_patient_messages_card.html", {"person": clinic.patient})
    url = reverse("messaging_desk:patient", args=[clinic.patient.public_id])
    assert f'hx-get="{url}"' in html
    assert 'hx-trigger="load"' in html
    assert f'href="{url}"' in html  # without scripts, a link to the same list
