"""The API: token and session auth, OpenAPI, one error format, policies and actor scoping."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.test import Client
from django.utils import translation
from rest_framework import exceptions
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.api.errors import api_exception_handler
from clinic.audit.models import SecurityEvent, SecurityEventKind
from clinic.core.roles import Role
from clinic.outbox.models import OutboxMessage, OutboxState

from ..core.factories import BranchFactory, OrganizationFactory, StaffFactory, staff_with_role

pytestmark = pytest.mark.django_db


def token_client(role: str, **staff_kwargs: Any) -> tuple[APIClient, Any]:
    staff = staff_with_role(role, **staff_kwargs)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff.user).key}")
    return client, staff


def dead_message() -> OutboxMessage:
    return OutboxMessage.objects.create(
        channel="sms",
        payload={"to": "+79990000000"},
        idempotency_key="key-1",
        state=OutboxState.DEAD,
        attempts=8,
        last_error="Timeout",
    )


def test_me_with_token_lists_roles_and_workplaces() -> None:
    client, staff = token_client(Role.DOCTOR)
    response = client.get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json() == {
        "username": staff.user.username,
        "full_name": staff.full_name,
        "roles": ["doctor"],
        "workplaces": ["doctor"],
    }


def test_me_with_session() -> None:
    staff = staff_with_role(Role.CASHIER)
    client = Client()
    client.force_login(staff.user)
    assert client.get("/api/v1/me/").json()["workplaces"] == ["pos"]


def test_unauthenticated_gets_401_in_the_error_format() -> None:
    response = APIClient().get("/api/v1/me/")
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["code"] == "not_authenticated"
    assert body["error"]["fields"] == {}
    assert body["error"]["message"]


def test_bad_token_gets_401() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_denied_call_is_403_changes_nothing_and_is_recorded() -> None:
    message = dead_message()
    client, staff = token_client(Role.REGISTRAR)
    response = client.post(f"/api/v1/outbox/{message.public_id}/requeue/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    message.refresh_from_db()
    assert (message.state, message.attempts) == (OutboxState.DEAD, 8)
    [denied] = SecurityEvent.objects.filter(kind=SecurityEventKind.ACCESS_DENIED)
    assert denied.user_id == staff.user.pk
    assert client.get("/api/v1/outbox/").status_code == 403


def test_administrator_requeues_a_dead_message_with_the_same_key() -> None:
    message = dead_message()
    client, _staff = token_client(Role.ADMINISTRATOR)
    listed = client.get("/api/v1/outbox/?state=dead").json()
    assert [item["id"] for item in listed["results"]] == [str(message.public_id)]
    response = client.post(f"/api/v1/outbox/{message.public_id}/requeue/")
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["attempts"], body["idempotency_key"]) == ("pending", 0, "key-1")


def test_unknown_record_is_404_in_the_error_format() -> None:
    client, _staff = token_client(Role.ADMINISTRATOR)
    response = client.post("/api/v1/outbox/00000000-0000-0000-0000-000000000000/requeue/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_branches_are_scoped_to_the_actor(django_assert_max_num_queries: Any) -> None:
    organization = OrganizationFactory()
    mine, other = BranchFactory(organization=organization), BranchFactory(organization=organization)
    client, _staff = token_client(Role.REGISTRAR, organization=organization, branches=[mine])
    with django_assert_max_num_queries(6):
        response = client.get("/api/v1/branches/")
    assert [item["id"] for item in response.json()["results"]] == [str(mine.public_id)]
    assert str(other.public_id) not in response.content.decode()


def test_staff_list_costs_a_fixed_number_of_queries(django_assert_max_num_queries: Any) -> None:
    organization = OrganizationFactory()
    branch = BranchFactory(organization=organization)
    for _index in range(15):
        StaffFactory(organization=organization, branches=[branch])
    client, _staff = token_client(Role.REGISTRAR, organization=organization, branches=[branch])
    with django_assert_max_num_queries(8):
        response = client.get("/api/v1/staff/")
    assert response.json()["count"] == 16


def test_openapi_schema_and_offline_swagger_ui() -> None:
    client, _staff = token_client(Role.REGISTRAR)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/me/", "/api/v1/branches/", "/api/v1/outbox/{public_id}/requeue/"} <= set(paths)
    docs = client.get("/api/docs/")
    html = docs.content.decode()
    assert docs.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()


def test_session_user_who_owes_the_second_factor_gets_json_403() -> None:
    staff = staff_with_role(Role.ADMINISTRATOR)
    client = Client()
    client.force_login(staff.user)
    response = client.get("/api/v1/me/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "two_factor_required"


@translation.override("en")
def test_validation_errors_share_the_format() -> None:
    drf = api_exception_handler(exceptions.ValidationError({"inn": ["INN “1” is invalid"]}), {})
    assert drf is not None
    assert drf.status_code == 400
    assert drf.data == {
        "error": {
            "code": "validation_error",
            "message": "The request has invalid fields.",
            "fields": {"inn": ["INN “1” is invalid"]},
        }
    }
    django = api_exception_handler(DjangoValidationError({"snils": ["SNILS “2” is invalid"]}), {})
    assert django is not None
    assert django.data["error"]["fields"] == {"snils": ["SNILS “2” is invalid"]}
