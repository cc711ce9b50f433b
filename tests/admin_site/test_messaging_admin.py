"""The message template admin: the text is shown filled with sample values before saving, an
unknown parameter is named, and such a template cannot be saved."""

from __future__ import annotations

from typing import Any

from django.test import Client

from clinic.core.roles import Role
from messaging.models import MessageTemplate

from .conftest import login_verified, staff_login


def administrator(client: Client) -> Client:
    _staff, user = staff_login(Role.ADMINISTRATOR)
    return login_verified(client, user)


def test_the_preview_fills_the_text_and_names_unknown_parameters(client: Client, db: Any) -> None:
    admin = administrator(client)
    answer = admin.post(
        "/admin/messaging/messagetemplate/preview/",
        {"body": "{first_name}, ждём вас в {time}. {unknown}"},
    ).json()
    assert answer["text"].startswith("Мария, ждём вас в 10:30.")
    assert answer["unknown"] == ["{unknown}"]
    page = admin.get("/admin/messaging/messagetemplate/add/").content.decode()
    assert "data-preview-url" in page and "template_preview.js" in page


def test_a_template_with_an_unknown_parameter_is_refused(client: Client, db: Any) -> None:
    admin = administrator(client)
    from tests.core.factories import OrganizationFactory

    organization = OrganizationFactory()
    response = admin.post(
        "/admin/messaging/messagetemplate/add/",
        {
            "organization": organization.pk,
            "code": "reminder",
            "name": "Reminder",
            "channel": "sms",
            "language": "ru",
            "body": "Hello {nmae}",
            "is_active": "on",
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    assert "{nmae}" in response.content.decode()
    assert not MessageTemplate.objects.exists()
