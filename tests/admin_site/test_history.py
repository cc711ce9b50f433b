"""The "Change history" section of the change pages (HistoryAdminMixin)."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from clinic.accounts.models import User
from clinic.audit.admin import HISTORY_FIELD, HistoryAdminMixin
from clinic.core.models import Organization, Room, Specialty, Staff, StaffStatus
from tests.core.factories import OrganizationFactory, RoomFactory, SpecialtyFactory, StaffFactory

pytestmark = pytest.mark.django_db


def history_html(content: str) -> str:
    """The history table of a change page (the section the mixin adds)."""
    match = re.search(r'<table class="clinic-history">.*?</table>', content, re.S)
    assert match, "no change history table on the page"
    return match.group(0)


def test_history_is_on_every_core_model_and_the_user() -> None:
    tracked = {Organization, Room, Specialty, Staff, User}
    for model in tracked:
        assert isinstance(admin.site._registry[model], HistoryAdminMixin), model
    for model_admin in admin.site._registry.values():
        if model_admin.model._meta.app_label == "core":
            assert isinstance(model_admin, HistoryAdminMixin), model_admin


def test_history_shows_before_and_after_of_a_bulk_update(admin_client_verified: Client) -> None:
    organization = OrganizationFactory.create(short_name="Old name", currency="RUB")
    Organization.objects.filter(pk=organization.pk).update(
        short_name="New <b>name</b>", currency="KZT"
    )

    response = admin_client_verified.get(
        reverse("admin:core_organization_change", args=[organization.pk])
    )

    assert response.status_code == 200
    table = history_html(response.content.decode())
    rows = re.findall(r"<tr>.*?</tr>", table.split("<tbody>")[1], re.S)
    assert len(rows) == 2  # the update (newest first), then the insert
    update, insert = rows
    assert (
        '<span class="history-before">Old name</span> → '
        '<span class="history-after">New &lt;b&gt;name&lt;/b&gt;</span>'
    ) in update
    assert (
        '<span class="history-before">RUB</span> → <span class="history-after">KZT</span>'
    ) in update
    assert "<b>name</b>" not in table
    assert "history-before" not in insert


def test_history_names_the_user_who_changed_through_the_admin(
    admin_client_verified: Client, superuser: User
) -> None:
    specialty = SpecialtyFactory.create(code="CARD", name="Cardiologist")
    url = reverse("admin:core_specialty_change", args=[specialty.pk])

    response = admin_client_verified.post(url, {"code": "CARD", "name": "Cardiologist (adult)"})
    assert response.status_code == 302

    table = history_html(admin_client_verified.get(url).content.decode())
    update_row = re.findall(r"<tr>.*?</tr>", table.split("<tbody>")[1], re.S)[0]
    assert f"<td>{superuser.username}</td>" in update_row
    assert (
        '<span class="history-before">Cardiologist</span> → '
        '<span class="history-after">Cardiologist (adult)</span>'
    ) in update_row


def test_history_shows_choice_labels_and_related_names(admin_client_verified: Client) -> None:
    staff = StaffFactory.create(last_name="Sidorov")
    other = OrganizationFactory.create(short_name="Second clinic")
    Staff.objects.filter(pk=staff.pk).update(
        status=StaffStatus.DISMISSED, dismissed_on="2026-01-31", organization=other
    )

    table = history_html(
        admin_client_verified.get(
            reverse("admin:core_staff_change", args=[staff.pk]),
            HTTP_ACCEPT_LANGUAGE="en",
        ).content.decode()
    )

    assert (
        '<span class="history-before">Active</span> → <span class="history-after">Dismissed</span>'
    ) in table
    assert (
        f'<span class="history-before">{staff.organization.short_name}</span> → '
        '<span class="history-after">Second clinic</span>'
    ) in table


def test_add_page_has_no_history_section(admin_client_verified: Client) -> None:
    response = admin_client_verified.get(reverse("admin:core_room_add"))
    assert response.status_code == 200
    assert 'class="clinic-history"' not in response.content.decode()
    assert HISTORY_FIELD not in response.context["adminform"].form.fields


def test_history_links_to_the_event_log_of_the_record(admin_client_verified: Client) -> None:
    room = RoomFactory.create(number="7")
    response = admin_client_verified.get(reverse("admin:core_room_change", args=[room.pk]))
    link = reverse("admin:pghistory_middlewareevents_changelist") + (
        f"?obj=core.Room%3A{room.pk}&amp;method=tracks"
    )
    assert f'href="{link}"' in response.content.decode()
