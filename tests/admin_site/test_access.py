"""Who gets into the admin and what they may do there: two-factor, read-only audit logs,
roles' capabilities, and the user admin for the custom user model."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from clinic.accounts.models import User
from clinic.audit.models import AccessLog, SecurityEvent, SecurityEventKind
from clinic.core.models import Organization, Staff
from clinic.core.roles import Role
from tests.core.factories import OrganizationFactory, StaffFactory, UserFactory

from .conftest import MODEL_BACKEND, login_verified, staff_login

pytestmark = pytest.mark.django_db


def test_unverified_superuser_is_sent_to_two_factor(client: Client, superuser: User) -> None:
    client.force_login(superuser, backend=MODEL_BACKEND)

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/two-factor/?next=/admin/"


def test_verified_superuser_opens_the_admin_index(admin_client_verified: Client) -> None:
    response = admin_client_verified.get("/admin/")
    assert response.status_code == 200
    labels = {app["app_label"] for app in response.context["app_list"]}
    assert {"core", "accounts", "audit", "outbox", "pghistory"} <= labels


@pytest.mark.parametrize("model", [AccessLog, SecurityEvent])
def test_audit_logs_cannot_be_added_changed_or_deleted(
    admin_client_verified: Client, model: Any
) -> None:
    row: AccessLog | SecurityEvent
    if model is AccessLog:
        row = AccessLog.objects.create(object_type="patients.Patient", object_id="p-1")
    else:
        row = SecurityEvent.objects.create(kind=SecurityEventKind.LOGIN, username="someone")
    name = f"admin:audit_{model._meta.model_name}"

    assert admin_client_verified.get(reverse(f"{name}_add")).status_code == 403
    assert admin_client_verified.post(reverse(f"{name}_add"), {}).status_code == 403

    change_url = reverse(f"{name}_change", args=[row.pk])
    page = admin_client_verified.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client_verified.post(change_url, {"object_id": "x"}).status_code == 403

    delete_url = reverse(f"{name}_delete", args=[row.pk])
    assert admin_client_verified.post(delete_url, {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()


def test_security_events_filter_by_kind_and_search_by_ip(admin_client_verified: Client) -> None:
    failed = SecurityEvent.objects.create(
        kind=SecurityEventKind.LOGIN_FAILED, username="ivanov", ip_address="192.0.2.15"
    )
    login = SecurityEvent.objects.create(
        kind=SecurityEventKind.LOGIN, username="ivanov", ip_address="192.0.2.99"
    )
    url = reverse("admin:audit_securityevent_changelist")

    def listed(params: dict[str, str]) -> set[int]:
        response = admin_client_verified.get(url, params)
        assert response.status_code == 200
        return {event.pk for event in response.context["cl"].result_list}

    assert listed({"kind__exact": "login_failed", "q": "ivanov"}) == {failed.pk}
    assert listed({"q": "192.0.2.99"}) == {login.pk}


def test_access_log_searches_by_username(admin_client_verified: Client) -> None:
    reader = UserFactory.create(username="dr-smirnov")
    row = AccessLog.objects.create(
        user=reader, object_type="patients.MedicalCard", object_id="c-9", ip_address="10.0.0.9"
    )
    AccessLog.objects.create(object_type="patients.MedicalCard", object_id="c-10")

    response = admin_client_verified.get(
        reverse("admin:audit_accesslog_changelist"), {"q": "dr-smirnov"}
    )

    assert [log.pk for log in response.context["cl"].result_list] == [row.pk]


def test_user_admin_adds_and_edits_the_custom_user(admin_client_verified: Client) -> None:
    response = admin_client_verified.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "new.registrar",
            "usable_password": "true",
            "password1": "a-long-and-unusual-pass-42",
            "password2": "a-long-and-unusual-pass-42",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(username="new.registrar")
    assert user.check_password("a-long-and-unusual-pass-42")

    response = admin_client_verified.post(
        reverse("admin:accounts_user_change", args=[user.pk]),
        {
            "username": "new.registrar",
            "first_name": "Olga",
            "last_name": "Smirnova",
            "email": "olga@example.org",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "09:00:00",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert (user.first_name, user.email) == ("Olga", "olga@example.org")


def test_user_admin_rejects_a_username_differing_only_in_case(
    admin_client_verified: Client,
) -> None:
    UserFactory.create(username="Petrov")
    response = admin_client_verified.post(
        reverse("admin:accounts_user_add"),
        {"username": "petrov", "usable_password": "false"},
    )
    assert response.status_code == 200
    assert "username" in response.context["adminform"].form.errors


def test_user_page_shows_the_linked_staff_member(admin_client_verified: Client) -> None:
    staff = StaffFactory.create(last_name="Fedorov", first_name="Pavel", patronymic="")
    response = admin_client_verified.get(
        reverse("admin:accounts_user_change", args=[staff.user_id])
    )
    staff_url = reverse("admin:core_staff_change", args=[staff.pk])
    assert f'<a href="{staff_url}">Fedorov Pavel</a>' in response.content.decode()

    listing = admin_client_verified.get(
        reverse("admin:accounts_user_changelist"), {"has_staff": "yes", "q": "Fedorov"}
    )
    assert [user.pk for user in listing.context["cl"].result_list] == [staff.user_id]


def administrator_client(client: Client) -> tuple[Client, Staff]:
    staff, user = staff_login(Role.ADMINISTRATOR)
    return login_verified(client, user), staff


def test_administrator_role_manages_reference_data_without_model_permissions(
    client: Client,
) -> None:
    admin_client, _staff = administrator_client(client)
    organization = OrganizationFactory.create(short_name="Before")

    index = admin_client.get("/admin/")
    assert index.status_code == 200
    labels = {app["app_label"] for app in index.context["app_list"]}
    assert {"core", "accounts", "audit", "outbox"} <= labels

    response = admin_client.post(
        reverse("admin:core_organization_change", args=[organization.pk]),
        {
            "name": organization.name,
            "short_name": "After",
            "is_active": "on",
            "inn": organization.inn,
            "kpp": organization.kpp,
            "ogrn": organization.ogrn,
            "frmo_oid": "",
            "address": "",
            "time_zone": "Europe/Moscow",
            "currency": "RUB",
            "phone_region": "RU",
            "branches-TOTAL_FORMS": "0",
            "branches-INITIAL_FORMS": "0",
            "branches-MIN_NUM_FORMS": "0",
            "branches-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Organization.objects.get(pk=organization.pk).short_name == "After"
    assert admin_client.get(reverse("admin:outbox_outboxmessage_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:audit_securityevent_changelist")).status_code == 200


def test_administrator_cannot_grant_superuser_or_edit_a_superuser(
    client: Client, superuser: User
) -> None:
    admin_client, _staff = administrator_client(client)
    colleague = UserFactory.create(username="colleague")

    page = admin_client.get(reverse("admin:accounts_user_change", args=[colleague.pk]))
    assert page.status_code == 200
    form_fields = page.context["adminform"].form.fields
    assert "is_superuser" not in form_fields
    assert "user_permissions" not in form_fields
    assert "groups" in form_fields

    superuser_page = admin_client.get(reverse("admin:accounts_user_change", args=[superuser.pk]))
    assert superuser_page.status_code == 200
    assert 'name="_save"' not in superuser_page.content.decode()
    password_url = reverse("admin:auth_user_password_change", args=[superuser.pk])
    assert admin_client.get(password_url).status_code == 403


def test_registrar_with_staff_flag_sees_nothing_of_the_clinic(client: Client) -> None:
    _registrar, user = staff_login(Role.REGISTRAR)
    login_verified(client, user)

    for url in (
        reverse("admin:core_organization_changelist"),
        reverse("admin:outbox_outboxmessage_changelist"),
        reverse("admin:audit_accesslog_changelist"),
        "/admin/",
    ):
        # The admin site itself is closed to the role: sent to the admin login, which refuses.
        response = client.get(url, follow=True)
        assert response.status_code == 403, url
        assert response.redirect_chain[0][0].startswith("/admin/login/")
