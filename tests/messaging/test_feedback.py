"""Visit ratings: the signed link sent in a message opens the rating page of a completed visit,
which records one rating (a second answer is refused politely); a reply of one digit to a
rating request is recorded, while a confirmation request keeps its yes/no meaning; a low rating
opens the branch manager's task, which the reviews list shows and closes with a note; the
database refuses impossible ratings and tasks."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import IntegrityError, transaction
from django.forms import modelform_factory
from django.test import Client
from django.urls import URLPattern, URLResolver, include, path, reverse
from django.utils import timezone, translation
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic import urls as root_urls
from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.core.roles import Role
from integrations.messaging.fake_twilio import FakeTwilio
from messaging import inbound, sender
from messaging.feedback import (
    appointment_for_feedback,
    can_review_feedback,
    feedback_record,
    feedback_task_close,
    feedback_token,
    rating_from_reply,
)
from messaging.models import (
    BranchSender,
    Conversation,
    Direction,
    Feedback,
    FeedbackSource,
    FeedbackTaskState,
    Message,
    MessageChannel,
    MessageState,
    MessageTemplate,
    ReminderRule,
    RuleEvent,
)
from portal.links import appointment_token
from scheduling.models import Appointment, AppointmentStatus
from tests.core.factories import BranchFactory, staff_with_role
from tests.e2e.test_login_flow import CHROMIUM, browser
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
SITE = "http://127.0.0.1:9"


@pytest.fixture
def twilio(settings: Any) -> Iterator[FakeTwilio]:
    fake = FakeTwilio.start(port=0)
    config = {
        "provider": "twilio",
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "sms_from": "+15005550006",
        "whatsapp_from": "+14155238886",
        "base_url": fake.url,
        "timeout": 5,
    }
    settings.MESSAGING_PROVIDERS = {"sms": config, "whatsapp": config}
    settings.SITE_URL = SITE
    yield fake
    fake.stop()


def in_days(days: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=days)


def completed(clinic: Clinic, days: int = 2, at: str = "10:00") -> Appointment:
    """A visit whose status the desk has set to completed."""
    visit = clinic.book(in_days(days), at)
    Appointment.objects.filter(pk=visit.pk).update(
        status=AppointmentStatus.objects.get(code=AppointmentStatus.COMPLETED)
    )
    visit.refresh_from_db()
    return visit


def rating_rule(clinic: Clinic) -> ReminderRule:
    return clinic.rule(
        RuleEvent.AFTER_STATUS,
        status_code=AppointmentStatus.COMPLETED,
        template_code="feedback",
        asks_for_rating=True,
    )


def confirm_rule(clinic: Clinic) -> ReminderRule:
    return clinic.rule(RuleEvent.DAYS_BEFORE, template_code="reminder", asks_to_confirm=True)


def sent(rule: ReminderRule, visit: Appointment, *, hours_ago: int) -> Message:
    """A message of ``rule`` about ``visit`` that reached the patient ``hours_ago``."""
    at = timezone.now() - datetime.timedelta(hours=hours_ago)
    return Message.objects.create(
        organization_id=visit.organization_id,
        branch_id=visit.branch_id,
        patient_id=visit.patient_id,
        appointment=visit,
        rule=rule,
        channel=MessageChannel.SMS,
        to=PHONE,
        body="…",
        state=MessageState.DELIVERED,
        due_at=at,
        sent_at=at,
        state_changed_at=at,
    )


def reply(clinic: Clinic, text: str, channel: str = MessageChannel.SMS) -> Message:
    """The patient's message filed in their conversation, as the webhook files it."""
    conversation, _created = Conversation.objects.get_or_create(
        organization=clinic.organization,
        channel=channel,
        address=PHONE,
        defaults={"patient": clinic.patient},
    )
    return Message.objects.create(
        organization=clinic.organization,
        patient=clinic.patient,
        conversation=conversation,
        direction=Direction.INBOUND,
        channel=channel,
        to="+15005550006",
        body=text,
        state=MessageState.RECEIVED,
        due_at=timezone.now(),
    )


def verified(user: Any) -> Client:
    """A client logged in as ``user`` with a confirmed second factor (managers need one)."""
    client = Client(**EN)
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def rate_url(visit: Appointment) -> str:
    return reverse("messaging_feedback:rate", args=[feedback_token(visit)])


# ---- the link and the page ------------------------------------------------------------------


def test_the_sent_message_carries_a_feedback_link_that_opens_the_rating_page(
    clinic: Clinic, twilio: FakeTwilio
) -> None:
    visit = completed(clinic)
    # No quiet hours: the message goes out whatever the time of the run.
    BranchSender.objects.filter(branch=clinic.branch).update(
        quiet_from=datetime.time(0, 0), quiet_to=datetime.time(0, 0)
    )
    MessageTemplate.objects.create(
        organization=clinic.organization,
        code="feedback",
        name="feedback",
        channel=MessageChannel.SMS,
        language="ru",
        body="Оцените визит от 1 до 5 ответом или по ссылке {feedback_link}",
    )
    message = Message.objects.create(
        organization=clinic.organization,
        branch=clinic.branch,
        patient=clinic.patient,
        appointment=visit,
        rule=rating_rule(clinic),
        due_at=timezone.now(),
    )
    assert sender.send_due() == 1
    message.refresh_from_db()
    assert message.state == MessageState.QUEUED
    link = re.search(r"http\S+", message.body)
    assert link is not None
    parts = urlsplit(link.group(0))
    assert f"{parts.scheme}://{parts.netloc}" == SITE
    assert parts.path.startswith("/portal/feedback/")
    token = parts.path.removeprefix("/portal/feedback/").rstrip("/")
    found = appointment_for_feedback(token)
    assert found is not None and found.pk == visit.pk
    response = Client(**EN).get(parts.path)
    assert response.status_code == 200
    assert b"data-feedback-form" in response.content
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cache-Control"] == "no-store"


def test_a_completed_visit_is_rated_once_and_a_second_answer_is_refused_politely(
    clinic: Clinic,
) -> None:
    visit = completed(clinic)
    client = Client(**EN)
    response = client.post(rate_url(visit), {"rating": "5", "comment": "  Very kind doctor  "})
    assert response.status_code == 200
    assert b'data-feedback-thanks="5"' in response.content
    feedback = Feedback.objects.get(appointment=visit)
    assert feedback.rating == 5
    assert feedback.comment == "Very kind doctor"
    assert feedback.source == FeedbackSource.PORTAL
    assert feedback.task_state == ""
    assert feedback.branch_id == clinic.branch.pk
    assert feedback.patient_id == clinic.patient.pk

    again = client.post(rate_url(visit), {"rating": "1", "comment": "changed my mind"})
    assert again.status_code == 409
    assert b"This visit has already been rated. Thank you!" in again.content
    assert client.get(rate_url(visit)).status_code == 200
    assert b"data-feedback-again" in client.get(rate_url(visit)).content
    feedback.refresh_from_db()
    assert (feedback.rating, feedback.comment) == (5, "Very kind doctor")
    assert Feedback.objects.count() == 1


def test_a_visit_not_completed_cannot_be_rated(clinic: Clinic) -> None:
    visit = clinic.book(in_days(2), "10:00")
    client = Client(**EN)
    page = client.get(rate_url(visit))
    assert page.status_code == 200
    assert b"data-feedback-not-yet" in page.content
    assert b"data-feedback-form" not in page.content
    assert client.post(rate_url(visit), {"rating": "4"}).status_code == 409
    Appointment.objects.filter(pk=visit.pk).update(
        status=AppointmentStatus.objects.get(code=AppointmentStatus.NO_SHOW)
    )
    missed = client.get(rate_url(visit))
    assert "This visit did not take place, so it cannot be rated." in missed.content.decode()
    assert client.post(rate_url(visit), {"rating": "1"}).status_code == 409
    assert not Feedback.objects.exists()


def test_forged_links_and_the_appointment_link_do_not_open_the_rating_page(
    clinic: Clinic,
) -> None:
    visit = completed(clinic)
    client = Client(**EN)
    forged = feedback_token(visit)[:-2] + "xx"
    for token in (forged, appointment_token(visit), "nonsense"):
        url = reverse("messaging_feedback:rate", args=[token])
        response = client.post(url, {"rating": "1"})
        assert response.status_code == 404, token
        assert b"data-link-invalid" in response.content
    assert not Feedback.objects.exists()


@pytest.mark.parametrize(
    ("data", "field_message"),
    [
        ({"rating": "7"}, "Your rating: choose from 1 to 5."),
        ({"rating": ""}, "Your rating: choose from 1 to 5."),
        ({"rating": "4", "comment": "x" * 2001}, "Comment: at most 2000 characters (it has 2001)."),
    ],
)
def test_a_bad_answer_is_named_and_nothing_is_recorded(
    clinic: Clinic, data: dict[str, str], field_message: str
) -> None:
    visit = completed(clinic)
    response = Client(**EN).post(rate_url(visit), data)
    assert response.status_code == 400
    assert field_message in response.content.decode()
    assert not Feedback.objects.exists()


def test_a_low_rating_opens_a_task_for_the_branch_manager(clinic: Clinic) -> None:
    manager = staff_with_role(
        Role.HEAD_OF_REGISTRY, organization=clinic.organization, branches=[clinic.branch]
    ).user
    BranchSender.objects.filter(branch=clinic.branch).update(feedback_manager=manager)
    visit = completed(clinic)
    response = Client(**EN).post(rate_url(visit), {"rating": "2", "comment": "Waited an hour"})
    assert response.status_code == 200
    assert b"data-feedback-sorry" in response.content
    feedback = Feedback.objects.get(appointment=visit)
    assert feedback.task_state == FeedbackTaskState.OPEN
    assert feedback.manager == manager
    assert feedback.comment == "Waited an hour"


def test_without_a_manager_the_task_is_open_and_unassigned(clinic: Clinic) -> None:
    feedback = feedback_record(
        appointment=completed(clinic), rating=3, source=FeedbackSource.PORTAL
    )
    assert feedback.task_state == FeedbackTaskState.OPEN
    assert feedback.manager is None


# ---- the database's rules -------------------------------------------------------------------


def _feedback(clinic: Clinic, **fields: Any) -> Feedback:
    visit = completed(clinic)
    values: dict[str, Any] = {
        "organization": clinic.organization,
        "branch": clinic.branch,
        "appointment": visit,
        "rating": 5,
        "source": FeedbackSource.PORTAL,
        **fields,
    }
    return Feedback.objects.create(**values)


@pytest.mark.parametrize(
    "fields",
    [
        {"rating": 0},
        {"rating": 6},
        {"rating": 2, "task_state": ""},
        {"rating": 5, "task_state": FeedbackTaskState.OPEN},
        {"rating": 1, "task_state": FeedbackTaskState.DONE, "resolved_at": None},
    ],
)
def test_the_database_refuses_impossible_ratings_and_tasks(
    clinic: Clinic, fields: dict[str, Any]
) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        _feedback(clinic, **fields)


def test_one_rating_per_visit_is_kept_by_the_database(clinic: Clinic) -> None:
    first = _feedback(clinic)
    with pytest.raises(IntegrityError), transaction.atomic():
        Feedback.objects.create(
            organization=clinic.organization,
            branch=clinic.branch,
            appointment=first.appointment,
            rating=4,
            source=FeedbackSource.SMS,
        )


def test_a_rule_cannot_ask_to_confirm_and_to_rate_at_once(clinic: Clinic) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        clinic.rule(RuleEvent.DAYS_BEFORE, asks_to_confirm=True, asks_for_rating=True)


def test_the_rule_form_names_the_two_questions_instead_of_failing(clinic: Clinic) -> None:
    form_class = modelform_factory(
        ReminderRule,
        fields=[
            "organization",
            "name",
            "event",
            "template_code",
            "channels",
            "day_type",
            "asks_to_confirm",
            "asks_for_rating",
        ],
    )
    data = {
        "organization": clinic.organization.pk,
        "name": "Both",
        "event": RuleEvent.DAYS_BEFORE,
        "template_code": "both",
        "channels": MessageChannel.SMS,
        "day_type": "any",
        "asks_to_confirm": "on",
        "asks_for_rating": "on",
    }
    with translation.override("en"):
        form = form_class(data)
        assert not form.is_valid()
        assert form.non_field_errors() == [
            "A rule asks either to confirm the visit or to rate it, not both."
        ]
    assert not ReminderRule.objects.exists()


# ---- replies by SMS and WhatsApp ------------------------------------------------------------


def test_a_digit_replied_to_a_rating_request_is_the_visit_s_rating(clinic: Clinic) -> None:
    visit = completed(clinic)
    sent(rating_rule(clinic), visit, hours_ago=2)
    message = reply(clinic, " 4 ", channel=MessageChannel.WHATSAPP)
    assert rating_from_reply(message, message.body) is True
    feedback = Feedback.objects.get(appointment=visit)
    assert (feedback.rating, feedback.source, feedback.message) == (
        4,
        FeedbackSource.WHATSAPP,
        message,
    )
    message.refresh_from_db()
    assert message.appointment == visit
    answer = Message.objects.get(direction=Direction.OUTBOUND, rule__isnull=True)
    assert answer.to == PHONE
    assert answer.channel == MessageChannel.WHATSAPP
    assert answer.conversation == message.conversation
    assert answer.state == MessageState.PLANNED
    assert answer.appointment == visit


def test_a_second_digit_is_answered_and_changes_nothing(clinic: Clinic) -> None:
    visit = completed(clinic)
    sent(rating_rule(clinic), visit, hours_ago=2)
    first = reply(clinic, "5")
    assert rating_from_reply(first, "5") is True
    second = reply(clinic, "1")
    assert rating_from_reply(second, "1") is True
    assert Feedback.objects.get().rating == 5
    answers = Message.objects.filter(direction=Direction.OUTBOUND, rule__isnull=True)
    assert answers.count() == 2


@pytest.mark.parametrize("text", ["5 stars", "10", "0", "6", "", "отлично", "4, 5"])
def test_other_texts_are_not_ratings(clinic: Clinic, text: str) -> None:
    visit = completed(clinic)
    sent(rating_rule(clinic), visit, hours_ago=2)
    message = reply(clinic, text)
    assert rating_from_reply(message, text) is False
    assert not Feedback.objects.exists()


def test_after_a_confirmation_request_1_and_2_are_left_to_the_confirmation(
    clinic: Clinic,
) -> None:
    rated = completed(clinic, days=2, at="10:00")
    upcoming = clinic.book(in_days(3), "11:00")
    sent(rating_rule(clinic), rated, hours_ago=5)
    sent(confirm_rule(clinic), upcoming, hours_ago=1)  # the latest question
    message = reply(clinic, "2")
    assert rating_from_reply(message, "2") is False
    assert not Feedback.objects.exists()


def test_after_a_rating_request_2_is_a_rating_even_with_an_earlier_reminder(
    clinic: Clinic,
) -> None:
    upcoming = clinic.book(in_days(3), "11:00")
    rated = completed(clinic, days=2, at="10:00")
    sent(confirm_rule(clinic), upcoming, hours_ago=5)
    sent(rating_rule(clinic), rated, hours_ago=1)  # the latest question
    message = reply(clinic, "2")
    assert rating_from_reply(message, "2") is True
    feedback = Feedback.objects.get()
    assert (feedback.appointment, feedback.rating) == (rated, 2)
    assert feedback.task_state == FeedbackTaskState.OPEN
    upcoming.refresh_from_db()
    assert upcoming.status.code == AppointmentStatus.BOOKED


def test_a_request_that_never_reached_the_patient_is_not_answered(clinic: Clinic) -> None:
    visit = completed(clinic)
    request = sent(rating_rule(clinic), visit, hours_ago=2)
    Message.objects.filter(pk=request.pk).update(state=MessageState.UNDELIVERED)
    message = reply(clinic, "3")
    assert rating_from_reply(message, "3") is False
    assert not Feedback.objects.exists()


def test_a_request_older_than_the_reply_window_is_not_answered(clinic: Clinic) -> None:
    visit = completed(clinic)
    sent(rating_rule(clinic), visit, hours_ago=24 * 8)
    message = reply(clinic, "3")
    assert rating_from_reply(message, "3") is False


def _twilio_inbound(client: Client, fake: FakeTwilio, body: str) -> Any:
    from twilio.request_validator import RequestValidator

    params = {
        "AccountSid": fake.account_sid,
        "MessageSid": f"SM{abs(hash((body, timezone.now()))) % 10**30:030d}",
        "From": PHONE,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }
    url = f"{SITE}/messaging/twilio/inbound/"
    signature = RequestValidator(fake.auth_token).compute_signature(url, params)
    return client.post("/messaging/twilio/inbound/", data=params, HTTP_X_TWILIO_SIGNATURE=signature)


@pytest.mark.skipif(
    not hasattr(inbound, "rating_from_reply"),
    reason="messaging/inbound.py does not hand replies to rating_from_reply yet",
)
def test_through_the_webhook_2_rates_the_visit_and_does_not_cancel_the_next_one(
    clinic: Clinic, twilio: FakeTwilio, settings: Any
) -> None:
    settings.WEBSITE_BOOKING_USERNAME = clinic.registrar.username
    upcoming = clinic.book(in_days(3), "11:00")
    rated = completed(clinic, days=2, at="10:00")
    sent(confirm_rule(clinic), upcoming, hours_ago=5)
    sent(rating_rule(clinic), rated, hours_ago=1)
    assert _twilio_inbound(Client(), twilio, "2").status_code == 200
    assert Feedback.objects.get().rating == 2
    upcoming.refresh_from_db()
    assert upcoming.status.code == AppointmentStatus.BOOKED
    assert not Conversation.objects.get(address=PHONE).needs_answer
    assert _twilio_inbound(Client(), twilio, "Да").status_code == 200
    upcoming.refresh_from_db()
    assert upcoming.status.code == AppointmentStatus.CONFIRMED


# ---- the reviews list -----------------------------------------------------------------------


@pytest.fixture
def reviewed(clinic: Clinic) -> dict[str, Any]:
    """Ratings 5, 3 and 1 in the clinic's branch and a 1 in another branch."""
    head = staff_with_role(
        Role.HEAD_OF_REGISTRY, organization=clinic.organization, branches=[clinic.branch]
    ).user
    good = feedback_record(
        appointment=completed(clinic, at="10:00"), rating=5, source=FeedbackSource.PORTAL
    )
    so_so = feedback_record(
        appointment=completed(clinic, at="11:00"),
        rating=3,
        comment="Long wait",
        source=FeedbackSource.SMS,
    )
    bad = feedback_record(
        appointment=completed(clinic, at="12:00"),
        rating=1,
        comment="Rude",
        source=FeedbackSource.PORTAL,
    )
    north = BranchFactory(organization=clinic.organization, name="North")
    stranger = PersonFactory(organization=clinic.organization)
    north_visit = completed(clinic, at="16:00")
    Appointment.objects.filter(pk=north_visit.pk).update(branch=north, patient=stranger)
    elsewhere = feedback_record(appointment=north_visit, rating=1, source=FeedbackSource.PORTAL)
    client = verified(head)
    return {
        "head": head,
        "client": client,
        "good": good,
        "so_so": so_so,
        "bad": bad,
        "elsewhere": elsewhere,
        "north": north,
    }


def _listed(response: Any) -> list[str]:
    return re.findall(r'data-feedback="([0-9a-f-]+)"', response.content.decode())


def test_the_reviews_list_shows_the_branch_s_ratings_with_filters(
    reviewed: dict[str, Any], clinic: Clinic, django_assert_max_num_queries: Any
) -> None:
    client = reviewed["client"]
    url = reverse("messaging_desk:reviews")
    with django_assert_max_num_queries(12):
        response = client.get(url)
    assert response.status_code == 200
    ours = [str(reviewed[name].public_id) for name in ("bad", "so_so", "good")]
    assert _listed(response) == ours
    assert str(reviewed["elsewhere"].public_id) not in response.content.decode()
    low = client.get(url, {"low": "on"})
    assert _listed(low) == ours[:2]
    branch = client.get(url, {"branch": str(clinic.branch.public_id), "open": "on"})
    assert _listed(branch) == ours[:2]
    other = client.get(url, {"branch": str(reviewed["north"].public_id)})
    assert other.status_code == 400
    assert "Branch" in other.content.decode()
    assert "Not one of your branches." in other.content.decode()


def test_the_list_costs_the_same_queries_for_more_ratings(
    reviewed: dict[str, Any], clinic: Clinic, django_assert_num_queries: Any
) -> None:
    client = reviewed["client"]
    url = reverse("messaging_desk:reviews")
    client.get(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as before:
        client.get(url)
    for at in ("13:00", "14:00", "15:00"):
        feedback_record(appointment=completed(clinic, at=at), rating=2, source="portal")
    with django_assert_num_queries(len(before.captured_queries)):
        assert len(_listed(client.get(url))) == 6


def test_a_task_is_closed_with_a_note_and_the_filters_are_kept(
    reviewed: dict[str, Any],
) -> None:
    client = reviewed["client"]
    bad = reviewed["bad"]
    close = reverse("messaging_desk:feedback_close", args=[bad.public_id])
    empty = client.post(close, {"resolution_note": "   ", "filters": "open=on"})
    assert empty.status_code == 400
    assert "What was done: write a note to close the task." in empty.content.decode()
    bad.refresh_from_db()
    assert bad.task_state == FeedbackTaskState.OPEN
    done = client.post(close, {"resolution_note": "Called, apologised", "filters": "open=on"})
    assert done.status_code == 302
    assert done["Location"] == reverse("messaging_desk:reviews") + "?open=on"
    bad.refresh_from_db()
    assert bad.task_state == FeedbackTaskState.DONE
    assert bad.resolution_note == "Called, apologised"
    assert bad.resolved_by == reviewed["head"]
    assert bad.resolved_at is not None
    again = client.post(close, {"resolution_note": "Twice"})
    assert again.status_code == 400
    assert "This task is already closed." in again.content.decode()
    bad.refresh_from_db()
    assert bad.resolution_note == "Called, apologised"
    listed = client.get(reverse("messaging_desk:reviews"), {"open": "on"})
    assert _listed(listed) == [str(reviewed["so_so"].public_id)]


def test_another_branch_s_task_is_not_found(reviewed: dict[str, Any]) -> None:
    elsewhere = reviewed["elsewhere"]
    url = reverse("messaging_desk:feedback_close", args=[elsewhere.public_id])
    assert reviewed["client"].post(url, {"resolution_note": "x"}).status_code == 404
    elsewhere.refresh_from_db()
    assert elsewhere.task_state == FeedbackTaskState.OPEN


def test_a_registrar_may_not_read_ratings_and_the_attempt_is_recorded(
    reviewed: dict[str, Any], clinic: Clinic
) -> None:
    registrar = staff_with_role(
        Role.REGISTRAR, organization=clinic.organization, branches=[clinic.branch]
    ).user
    client = Client(**EN)
    client.force_login(registrar)
    assert client.get(reverse("messaging_desk:reviews")).status_code == 403
    close = reverse("messaging_desk:feedback_close", args=[reviewed["bad"].public_id])
    assert client.post(close, {"resolution_note": "x"}).status_code == 403
    reviewed["bad"].refresh_from_db()
    assert reviewed["bad"].task_state == FeedbackTaskState.OPEN
    denials = SecurityEvent.objects.filter(user=registrar, kind=SecurityEventKind.ACCESS_DENIED)
    assert denials.count() == 2
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        feedback_task_close(actor=registrar, feedback=reviewed["bad"], note="x")


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.HEAD_OF_REGISTRY, True),
        (Role.ADMINISTRATOR, True),
        (Role.REGISTRAR, False),
        (Role.CALL_CENTRE, False),
        (Role.DOCTOR, False),
        (Role.CASHIER, False),
        (Role.ACCOUNTANT, False),
    ],
)
def test_who_reads_ratings(clinic: Clinic, role: str, allowed: bool) -> None:
    user = staff_with_role(role, organization=clinic.organization, branches=[clinic.branch]).user
    assert can_review_feedback(user) is allowed


def test_a_branch_s_feedback_manager_sees_the_ratings_whatever_the_role(
    reviewed: dict[str, Any], clinic: Clinic
) -> None:
    manager = staff_with_role(
        Role.REGISTRAR, organization=clinic.organization, branches=[clinic.branch]
    ).user
    BranchSender.objects.filter(branch=clinic.branch).update(feedback_manager=manager)
    client = Client(**EN)
    client.force_login(manager)
    response = client.get(reverse("messaging_desk:reviews"), {"open": "on"})
    assert response.status_code == 200
    assert _listed(response) == [
        str(reviewed["bad"].public_id),
        str(reviewed["so_so"].public_id),
    ]


# ---- in a browser ---------------------------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "messaging"
PHONE_SCREEN = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed")
def test_a_patient_rates_a_visit_on_a_phone(browser: Any, live_server: Any, clinic: Clinic) -> None:
    """Tapping 2, writing a comment and sending: one rating with a task, no CSP violation or
    script error, nothing wider than the screen."""
    visit = completed(clinic)
    context = browser.new_context(base_url=live_server.url, locale="en-US", **PHONE_SCREEN)
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(rate_url(visit))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "rate-phone-1-form.png"), full_page=True)
        wide = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert wide <= 0
        two = page.locator(".rating__option", has_text="2")
        box = two.bounding_box()
        assert box is not None and box["height"] >= 44 and box["width"] >= 44  # a finger's size
        two.tap()
        assert page.locator("input[name=rating][value='2']").is_checked()
        page.fill("textarea[name=comment]", "The doctor was late")
        page.locator("[data-feedback-submit]").tap()
        page.wait_for_selector("[data-feedback-thanks='2']")
        page.screenshot(path=str(ARTIFACTS / "rate-phone-2-thanks.png"), full_page=True)
    finally:
        context.close()
    assert problems == []
    feedback = Feedback.objects.get(appointment=visit)
    assert (feedback.rating, feedback.comment) == (2, "The doctor was late")
    assert feedback.task_state == FeedbackTaskState.OPEN


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed")
def test_a_manager_closes_a_task_from_the_reviews_list_in_a_browser(
    browser: Any, live_server: Any, reviewed: dict[str, Any]
) -> None:
    """Filter to open tasks, close the worst one with a note: it leaves the filtered list."""
    from django.conf import settings

    session = reviewed["client"].cookies[settings.SESSION_COOKIE_NAME].value
    context = browser.new_context(base_url=live_server.url, locale="en-US")
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    bad = reviewed["bad"]
    try:
        page.goto(reverse("messaging_desk:reviews"))
        page.check("input[name=open]")
        page.click("[data-review-filters] button[type=submit]")
        page.wait_for_url("**open=on**")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "reviews-1-open.png"), full_page=True)
        row = page.locator(f"[data-feedback='{bad.public_id}']")
        row.locator("textarea[name=resolution_note]").fill("Called the patient, apologised")
        row.locator("button[type=submit]").click()
        page.wait_for_selector(".message--success")
        assert page.locator(f"[data-feedback='{bad.public_id}']").count() == 0
        assert page.locator("input[name=open]").is_checked()
    finally:
        context.close()
    assert problems == []
    bad.refresh_from_db()
    assert bad.task_state == FeedbackTaskState.DONE
    assert bad.resolution_note == "Called the patient, apologised"
