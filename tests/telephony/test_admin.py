"""Telephony in the admin: an administrator connects the PBX (the token is hashed and shown
once), and every telephony list and change page renders; calls are read-only there."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from clinic.core.roles import Role
from telephony.models import (
    Call,
    OperatorExtension,
    PlannedCall,
    RawTelephonyEvent,
    TelephonyLine,
    TelephonySettings,
)
from telephony.selectors import organization_for_token, token_hash
from telephony.services import call_event_receive, planned_call_create
from tests.admin_site.conftest import login_verified, staff_login
from tests.core.factories import OrganizationFactory, staff_with_role
from tests.patients.factories import ContactFactory, PersonFactory

from .factories import TOKEN, connect, line

pytestmark = pytest.mark.django_db


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def admin_client(client: Client) -> Client:
    _staff, user = staff_login(Role.ADMINISTRATOR)
    client.cookies["django_language"] = "en"
    return login_verified(client, user)


def test_new_connection_gets_a_random_token_shown_once(admin_client: Client) -> None:
    organization = OrganizationFactory()
    response = admin_client.post(
        admin_url(TelephonySettings, "add"),
        {"organization": organization.pk, "is_active": "on", "new_token": ""},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "webhook token is" in str(m)]
    assert len(shown) == 1
    token = shown[0].split("webhook token is ")[1].split(". Copy")[0]
    assert organization_for_token(token) == organization
    assert TelephonySettings.objects.get().token_hash == token_hash(token)


def test_typed_token_replaces_the_old_one(admin_client: Client) -> None:
    organization = OrganizationFactory()
    connect(organization)
    row = TelephonySettings.objects.get()
    new_token = "a-brand-new-secret-for-the-pbx-1234"
    admin_client.post(
        admin_url(TelephonySettings, "change", row.pk),
        {"organization": organization.pk, "is_active": "on", "new_token": new_token},
    )
    assert organization_for_token(new_token) == organization
    assert organization_for_token(TOKEN) is None


def test_short_typed_token_is_refused_next_to_the_field(admin_client: Client) -> None:
    organization = OrganizationFactory()
    response = admin_client.post(
        admin_url(TelephonySettings, "add"),
        {"organization": organization.pk, "is_active": "on", "new_token": "short"},
    )
    assert response.status_code == 200
    assert "The token must be at least 24 characters long." in response.content.decode()
    assert TelephonySettings.objects.count() == 0


def test_every_telephony_page_renders_and_calls_are_read_only(admin_client: Client) -> None:
    organization = OrganizationFactory()
    connect(organization)
    line(organization, "+74951234567")
    operator = staff_with_role(Role.CALL_CENTRE, organization=organization)
    OperatorExtension.objects.create(organization=organization, extension="101", staff=operator)
    person = PersonFactory(organization=organization)
    ContactFactory(person=person, value="+79161234567")
    call = call_event_receive(
        organization=organization,
        payload={"call_id": "1", "event": "ringing", "caller": "+79161234567", "called": "101"},
    )
    planned_call_create(actor=operator.user, patient=person, reason="Remind", due_at=timezone.now())
    for model in (
        TelephonySettings,
        TelephonyLine,
        OperatorExtension,
        Call,
        PlannedCall,
        RawTelephonyEvent,
    ):
        assert admin_client.get(admin_url(model, "changelist")).status_code == 200, model
        row = model.objects.first()  # type: ignore[attr-defined]
        assert admin_client.get(admin_url(model, "change", row.pk)).status_code == 200, model
    assert admin_client.get(admin_url(Call, "add")).status_code == 403
    admin_client.post(admin_url(Call, "change", call.pk), {"purpose": "booking"})
    assert Call.objects.get(pk=call.pk).purpose == ""
