"""The PBX webhook: token, body checks, the call's states, repeats, and raw bodies kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.audit.selectors import history_for_object
from clinic.core.models import Organization
from telephony.errors import TelephonyError
from telephony.models import Call, CallState, RawEventStatus, RawTelephonyEvent
from telephony.selectors import organization_for_token, token_hash
from telephony.services import call_event_parse, call_event_receive
from tests.core.factories import BranchFactory, OrganizationFactory
from tests.patients.factories import ContactFactory, PersonFactory

from .factories import TOKEN, appointment, connect, line

pytestmark = pytest.mark.django_db

URL = "/api/v1/telephony/webhook/"


@pytest.fixture
def organization() -> Organization:
    organization: Organization = OrganizationFactory()
    connect(organization)
    return organization


def post(client: Client, body: Any, *, token: str | None = TOKEN, raw: bool = False) -> Any:
    headers = {"HTTP_ACCEPT_LANGUAGE": "en"}
    if token is not None:
        headers["HTTP_X_TELEPHONY_TOKEN"] = token
    data = body if raw else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **headers)


def event(name: str = "ringing", **changes: Any) -> dict[str, Any]:
    body = {
        "call_id": "pbx-42",
        "event": name,
        "caller": "+79161234567",
        "called": "+74951234567",
        "timestamp": "2026-03-02T10:15:00+03:00",
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "typed", ["+79161234567", "89161234567", "8 (916) 123-45-67", "9161234567", "+7 916 123 45 67"]
)
def test_ringing_creates_the_call_and_matches_the_patient_by_phone_in_any_format(
    client: Client, organization: Organization, typed: str
) -> None:
    branch = BranchFactory(organization=organization)
    line(organization, "+74951234567", branch)
    person = PersonFactory(organization=organization, last_name="Smirnova")
    ContactFactory(person=person, value="+79161234567")
    appointment(person, branch, in_days=2)

    response = post(client, event(caller=typed))

    assert response.status_code == 200, response.content
    call = Call.objects.get()
    assert response.json() == {
        "id": str(call.public_id),
        "call_id": "pbx-42",
        "state": "ringing",
        "matches": 1,
    }
    assert call.organization == organization
    assert call.branch == branch
    assert call.caller_number == "+79161234567"
    assert call.called_line == "+74951234567"
    assert call.state == CallState.RINGING
    assert call.started_at.isoformat() == "2026-03-02T07:15:00+00:00"
    raw = RawTelephonyEvent.objects.get()
    assert (raw.status, raw.call, raw.error) == (RawEventStatus.PROCESSED, call, "")
    assert json.loads(raw.body)["caller"] == typed


def test_answered_then_ended_update_the_call(client: Client, organization: Organization) -> None:
    post(client, event("ringing"))
    post(client, event("answered", timestamp="2026-03-02T10:15:20+03:00", operator_extension="7"))
    call = Call.objects.get()
    assert call.state == CallState.ANSWERED
    assert call.answered_at is not None and call.answered_at.isoformat().startswith(
        "2026-03-02T07:15:20"
    )
    assert call.operator_extension == "7"

    response = post(client, event("ended", timestamp="2026-03-02T10:18:20+03:00"))

    assert response.json()["state"] == "ended"
    call.refresh_from_db()
    assert call.state == CallState.ENDED
    assert call.duration_seconds == 180


def test_ended_without_answer_is_a_missed_call(client: Client, organization: Organization) -> None:
    post(client, event("ringing"))
    post(client, event("ended", timestamp="2026-03-02T10:15:30+03:00"))
    call = Call.objects.get()
    assert (call.state, call.answered_at) == (CallState.MISSED, None)
    assert call.ended_at is not None


def test_replayed_events_are_idempotent(client: Client, organization: Organization) -> None:
    for name in ("ringing", "answered", "ended"):
        first = post(client, event(name))
        again = post(client, event(name))
        assert again.status_code == 200
        assert again.json() == first.json()
    # A late ringing after the end does not move the call back.
    late = post(client, event("ringing"))

    assert late.status_code == 200
    call = Call.objects.get()
    assert call.state == CallState.ENDED
    statuses = list(RawTelephonyEvent.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == [
        RawEventStatus.PROCESSED,
        RawEventStatus.DUPLICATE,
        RawEventStatus.PROCESSED,
        RawEventStatus.DUPLICATE,
        RawEventStatus.PROCESSED,
        RawEventStatus.DUPLICATE,
        RawEventStatus.DUPLICATE,
    ]
    assert history_for_object(call).count() == 3  # created, answered, ended


def test_same_call_id_in_two_organizations_is_two_calls(
    client: Client, organization: Organization
) -> None:
    other = OrganizationFactory()
    connect(other, token="another-organizations-secret-000")
    post(client, event())
    post(client, event(), token="another-organizations-secret-000")
    assert sorted(Call.objects.values_list("organization_id", flat=True)) == sorted(
        [organization.pk, other.pk]
    )


def test_wrong_token_is_403_and_nothing_is_kept(client: Client, organization: Organization) -> None:
    response = post(client, event(), token="not-the-token-of-anyone-at-all")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_token"
    assert Call.objects.count() == 0
    assert RawTelephonyEvent.objects.count() == 0
    assert SecurityEvent.objects.filter(kind=SecurityEventKind.ACCESS_DENIED).count() == 1


def test_missing_token_is_401(client: Client, organization: Organization) -> None:
    response = post(client, event(), token=None)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "not_authenticated",
        "message": "The header X-Telephony-Token is missing.",
        "fields": {},
    }


def test_inactive_connection_is_403(client: Client, organization: Organization) -> None:
    organization.telephony_settings.is_active = False
    organization.telephony_settings.save()
    assert post(client, event()).status_code == 403


def test_token_is_stored_hashed(organization: Organization) -> None:
    stored = organization.telephony_settings.token_hash
    assert stored == token_hash(TOKEN)
    assert TOKEN not in stored
    assert organization_for_token(TOKEN) == organization


def test_bad_json_is_400_and_the_raw_body_is_kept(
    client: Client, organization: Organization
) -> None:
    response = post(client, '{"call_id": "pbx-42", "event": ', raw=True)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["message"].startswith("The body is not valid JSON: ")
    raw = RawTelephonyEvent.objects.get()
    assert raw.body == '{"call_id": "pbx-42", "event": '
    assert (raw.status, raw.error_code, raw.organization) == (
        RawEventStatus.FAILED,
        "invalid_json",
        organization,
    )
    assert raw.error == error["message"]
    assert Call.objects.count() == 0


@pytest.mark.parametrize(
    ("changes", "code", "field", "message"),
    [
        ({"event": "on_hold"}, "invalid_event", "event", "Unknown event “on_hold”"),
        (
            {"caller": "12"},
            "invalid_phone",
            "caller",
            "The field “caller” is not a valid phone number: “12”.",
        ),
        ({"call_id": ""}, "missing_field", "call_id", "The field “call_id” is required."),
        (
            {"timestamp": "yesterday"},
            "invalid_timestamp",
            "timestamp",
            "The field “timestamp” is not an ISO-8601 date and time: “yesterday”.",
        ),
        (
            {"direction": "sideways"},
            "invalid_direction",
            "direction",
            "Unknown direction “sideways”",
        ),
    ],
)
def test_bad_fields_are_400_naming_field_and_value_and_the_body_is_kept(
    client: Client,
    organization: Organization,
    changes: dict[str, Any],
    code: str,
    field: str,
    message: str,
) -> None:
    response = post(client, event(**changes))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(message)
    assert error["fields"] == {field: [error["message"]]}
    raw = RawTelephonyEvent.objects.get()
    assert (raw.status, raw.error_code, raw.error) == (
        RawEventStatus.FAILED,
        code,
        error["message"],
    )
    assert json.loads(raw.body) == event(**changes)
    assert Call.objects.count() == 0


def test_body_that_is_not_an_object_is_400(client: Client, organization: Organization) -> None:
    response = post(client, ["ringing"])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert RawTelephonyEvent.objects.get().status == RawEventStatus.FAILED


def test_outbound_call_matches_the_called_number(
    client: Client, organization: Organization
) -> None:
    person = PersonFactory(organization=organization)
    ContactFactory(person=person, value="+79161112233")
    response = post(client, event(direction="outbound", caller="101", called="8 916 111-22-33"))
    assert response.status_code == 200, response.content
    assert response.json()["matches"] == 1
    call = Call.objects.get()
    assert (call.caller_number, call.called_line, call.outside_number) == (
        "101",
        "+79161112233",
        "+79161112233",
    )


def test_service_refusal_keeps_the_raw_event(organization: Organization) -> None:
    with pytest.raises(TelephonyError) as refused:
        call_event_receive(organization=organization, payload=event(caller="not a number"))
    assert refused.value.field == "caller"
    raw = RawTelephonyEvent.objects.get()
    assert raw.status == RawEventStatus.FAILED
    assert json.loads(raw.body)["caller"] == "not a number"


def test_schema_documents_the_webhook(client: Client, make_staff: Any) -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"][URL]["post"]
    assert operation["operationId"] == "telephony_webhook"
    assert any(p["name"] == "X-Telephony-Token" for p in operation["parameters"])
    body = schema["components"]["schemas"]["CallEventRequest"]
    assert set(body["required"]) == {"call_id", "event", "caller", "called"}


@settings(max_examples=200, deadline=None)
@given(
    caller=st.one_of(st.text(max_size=40), st.integers(), st.none(), st.booleans()),
    called=st.one_of(st.text(max_size=40), st.none()),
)
def test_parse_reads_any_caller_or_refuses_it_with_a_telephony_error(
    caller: Any, called: Any
) -> None:
    """Whatever the PBX sends as numbers, the parser answers with E.164 or a TelephonyError."""
    organization = Organization(phone_region="RU")
    try:
        parsed = call_event_parse(
            organization=organization, payload=event(caller=caller, called=called)
        )
    except TelephonyError as error:
        assert error.field in {"caller", "called"}
    else:
        assert parsed.caller.startswith("+")
        assert parsed.caller[1:].isdigit()
