"""The patients API: registration with the duplicate gate (409), details scoped by card grants,
cards, consents and the paper archive."""

from __future__ import annotations

from typing import Any

import pytest
from guardian.shortcuts import assign_perm
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinic.audit.models import AccessLog
from clinic.core.roles import Role
from patients.models import CardType, MedicalCard, Person

from ..core.factories import BranchFactory, OrganizationFactory, RoomFactory, staff_with_role

pytestmark = pytest.mark.django_db

PATIENT = {
    "last_name": "петров",
    "first_name": "сергей",
    "patronymic": "иванович",
    "birth_date": "1979-06-01",
    "contacts": [{"kind": "mobile", "value": "8 (903) 111-22-33"}],
}


@pytest.fixture
def setup() -> dict[str, Any]:
    organization = OrganizationFactory()
    branch = BranchFactory(organization=organization)
    outpatient = CardType.objects.get(code="outpatient", organization=None)
    venereology = CardType.objects.get(code="venereology", organization=None)
    clients = {}
    for role in (Role.REGISTRAR, Role.HEAD_OF_REGISTRY, Role.DOCTOR, Role.CASHIER):
        staff = staff_with_role(role, organization=organization, branches=[branch])
        assign_perm("patients.open_cardtype", staff.user, outpatient)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff.user).key}")
        clients[role] = (client, staff)
    return {
        "clients": clients,
        "branch": branch,
        "outpatient": outpatient,
        "venereology": venereology,
    }


def client_for(setup: dict[str, Any], role: str) -> APIClient:
    return setup["clients"][role][0]


def test_register_then_duplicate_is_409_with_candidates(setup: dict[str, Any]) -> None:
    registrar = client_for(setup, Role.REGISTRAR)
    created = registrar.post("/api/v1/patients/", PATIENT, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["full_name"] == "Петров Сергей Иванович"
    assert body["sex"] == "male"
    assert body["contacts"][0]["value"] == "+79031112233"

    again = {
        **PATIENT,
        "last_name": "Петроф",
        "contacts": [{"kind": "mobile", "value": "+7 903 111 22 33"}],
    }
    conflict = registrar.post("/api/v1/patients/", again, format="json")
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert error["code"] == "duplicate_person"
    [candidate] = error["candidates"]
    assert candidate["id"] == body["id"]
    assert set(candidate["reasons"]) == {"phone", "name_birth_date"}
    assert Person.objects.count() == 1


def test_forcing_a_duplicate_needs_the_role_and_a_reason(setup: dict[str, Any]) -> None:
    client_for(setup, Role.REGISTRAR).post("/api/v1/patients/", PATIENT, format="json")
    forced = {**PATIENT, "force_reason": "Однофамилец, другой человек"}
    denied = client_for(setup, Role.REGISTRAR).post("/api/v1/patients/", forced, format="json")
    assert denied.status_code == 403
    assert Person.objects.count() == 1
    allowed = client_for(setup, Role.HEAD_OF_REGISTRY).post(
        "/api/v1/patients/", forced, format="json"
    )
    assert allowed.status_code == 201
    assert Person.objects.count() == 2


def test_validation_errors_name_field_and_value(setup: dict[str, Any]) -> None:
    response = client_for(setup, Role.REGISTRAR).post(
        "/api/v1/patients/",
        {**PATIENT, "snils": "123-456-789 01", "contacts": [{"kind": "mobile", "value": "12x"}]},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "contacts" in error["fields"]
    assert "12x" in str(error["fields"]["contacts"])
    assert Person.objects.count() == 0


def test_roles_without_registration_are_refused(setup: dict[str, Any]) -> None:
    for role in (Role.DOCTOR, Role.CASHIER):
        response = client_for(setup, role).post("/api/v1/patients/", PATIENT, format="json")
        assert response.status_code == 403, role
    assert Person.objects.count() == 0


def test_detail_shows_only_cards_of_granted_types(setup: dict[str, Any]) -> None:
    registrar = client_for(setup, Role.REGISTRAR)
    person_id = registrar.post("/api/v1/patients/", PATIENT, format="json").json()["id"]
    assign_perm(
        "patients.open_cardtype", setup["clients"][Role.REGISTRAR][1].user, setup["venereology"]
    )
    branch = str(setup["branch"].public_id)
    for code in ("outpatient", "venereology"):
        response = registrar.post(
            f"/api/v1/patients/{person_id}/cards/",
            {"card_type": code, "branch": branch},
            format="json",
        )
        assert response.status_code == 201, response.json()
    doctor = client_for(setup, Role.DOCTOR)
    detail = doctor.get(f"/api/v1/patients/{person_id}/").json()
    assert [card["card_type"] for card in detail["cards"]] == ["outpatient"]
    venereology = MedicalCard.objects.get(card_type=setup["venereology"])
    assert doctor.get(f"/api/v1/cards/{venereology.public_id}/").status_code == 404
    outpatient = MedicalCard.objects.get(card_type=setup["outpatient"])
    assert doctor.get(f"/api/v1/cards/{outpatient.public_id}/").status_code == 200
    assert AccessLog.objects.filter(object_id=str(outpatient.public_id)).count() == 1


def test_unknown_card_type_is_a_field_error(setup: dict[str, Any]) -> None:
    registrar = client_for(setup, Role.REGISTRAR)
    person_id = registrar.post("/api/v1/patients/", PATIENT, format="json").json()["id"]
    response = registrar.post(
        f"/api/v1/patients/{person_id}/cards/",
        {"card_type": "astrology", "branch": str(setup["branch"].public_id)},
        format="json",
    )
    assert response.status_code == 400
    assert "astrology" in response.json()["error"]["fields"]["card_type"][0]


def test_consents_and_contacts(setup: dict[str, Any]) -> None:
    registrar = client_for(setup, Role.REGISTRAR)
    person_id = registrar.post("/api/v1/patients/", PATIENT, format="json").json()["id"]
    consent = registrar.post(
        f"/api/v1/patients/{person_id}/consents/",
        {
            "kind": "communication",
            "channel": "whatsapp",
            "given_on": "2026-11-01",
            "source": "paper",
        },
        format="json",
    )
    assert consent.status_code == 201
    revoked = registrar.post(
        f"/api/v1/patients/{person_id}/consents/{consent.json()['id']}/revoke/",
        {"revoked_on": "2026-11-20", "revocation_source": "portal"},
        format="json",
    )
    assert revoked.json()["revoked_on"] == "2026-11-20"
    email = registrar.post(
        f"/api/v1/patients/{person_id}/contacts/",
        {"kind": "email", "value": "Petrov@Example.org"},
        format="json",
    )
    assert email.json()["value"] == "petrov@example.org"


def test_paper_card_issue_and_return_over_the_api(setup: dict[str, Any]) -> None:
    registrar = client_for(setup, Role.REGISTRAR)
    person_id = registrar.post("/api/v1/patients/", PATIENT, format="json").json()["id"]
    card = registrar.post(
        f"/api/v1/patients/{person_id}/cards/",
        {"card_type": "outpatient", "branch": str(setup["branch"].public_id)},
        format="json",
    ).json()
    room = RoomFactory(branch=setup["branch"])
    issued = registrar.post(
        f"/api/v1/cards/{card['id']}/issue/", {"to_room": str(room.public_id)}, format="json"
    )
    assert issued.json()["paper_location"] == "issued"
    returned = registrar.post(f"/api/v1/cards/{card['id']}/return/")
    assert returned.json()["paper_location"] == "archive"


def test_update_and_other_organizations(setup: dict[str, Any]) -> None:
    registrar = client_for(setup, Role.REGISTRAR)
    person_id = registrar.post("/api/v1/patients/", PATIENT, format="json").json()["id"]
    updated = registrar.patch(
        f"/api/v1/patients/{person_id}/",
        {"oms_policy": "7700000000000001", "is_vip": True},
        format="json",
    )
    assert (updated.json()["oms_policy"], updated.json()["is_vip"]) == ("7700000000000001", True)
    outsider = staff_with_role(Role.REGISTRAR, organization=OrganizationFactory())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=outsider.user).key}")
    assert client.get(f"/api/v1/patients/{person_id}/").status_code == 404
    assert (
        client.patch(f"/api/v1/patients/{person_id}/", {"is_vip": False}, format="json").status_code
        == 404
    )
