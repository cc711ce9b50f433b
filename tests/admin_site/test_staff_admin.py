"""Staff in the admin: search by names/SNILS/FRMR id, filters, and the "Dismiss" action."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import pytest
from django.contrib import messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from clinic.accounts.models import User
from clinic.core.models import Staff, StaffStatus
from tests.core.factories import (
    BranchFactory,
    OrganizationFactory,
    SpecialtyFactory,
    StaffFactory,
)

from .conftest import login_verified

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:core_staff_changelist"


def listed(client: Client, params: dict[str, Any]) -> set[int]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {staff.pk for staff in response.context["cl"].result_list}


def dismiss(client: Client, staff: list[Staff]) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": "dismiss", "_selected_action": [str(s.pk) for s in staff], "index": "0"},
        follow=True,
    )


def test_dismiss_action_sets_status_and_deactivates_the_login(
    admin_client_verified: Client,
) -> None:
    organization = OrganizationFactory.create(time_zone="Asia/Vladivostok")
    staff = StaffFactory.create(organization=organization, last_name="Kuznetsov")
    colleague = StaffFactory.create(organization=organization)

    response = dismiss(admin_client_verified, [staff])

    assert response.status_code == 200
    staff.refresh_from_db()
    assert staff.status == StaffStatus.DISMISSED
    assert staff.dismissed_on == timezone.localdate(timezone=zoneinfo.ZoneInfo("Asia/Vladivostok"))
    assert User.objects.get(pk=staff.user_id).is_active is False
    colleague.refresh_from_db()
    assert colleague.status == StaffStatus.ACTIVE
    assert User.objects.get(pk=colleague.user_id).is_active is True
    assert [m.level for m in response.context["messages"]] == [messages.SUCCESS]


def test_dismiss_action_skips_the_already_dismissed(admin_client_verified: Client) -> None:
    staff = StaffFactory.create(
        status=StaffStatus.DISMISSED, dismissed_on=datetime.date(2025, 5, 1)
    )

    response = dismiss(admin_client_verified, [staff])

    staff.refresh_from_db()
    assert staff.dismissed_on == datetime.date(2025, 5, 1)
    assert [m.level for m in response.context["messages"]] == [messages.WARNING]


def test_dismiss_action_refuses_to_dismiss_yourself(client: Client) -> None:
    me = StaffFactory.create()
    User.objects.filter(pk=me.user_id).update(is_superuser=True, is_staff=True)
    login_verified(client, User.objects.get(pk=me.user_id))

    response = dismiss(client, [me])

    me.refresh_from_db()
    assert me.status == StaffStatus.ACTIVE
    assert User.objects.get(pk=me.user_id).is_active is True
    assert [m.level for m in response.context["messages"]] == [messages.ERROR]


def test_status_cannot_be_changed_through_the_form(admin_client_verified: Client) -> None:
    """The form shows status read-only: dismissal must go through staff_dismiss."""
    staff = StaffFactory.create(last_name="Orlov", position="Nurse")
    branch = staff.branches.get()
    url = reverse("admin:core_staff_change", args=[staff.pk])

    response = admin_client_verified.post(
        url,
        {
            "last_name": "Orlov",
            "first_name": "Oleg",
            "patronymic": "",
            "user": staff.user_id,
            "organization": staff.organization_id,
            "branches": [branch.pk],
            "position": "Head nurse",
            "specialty": "",
            "snils": "",
            "frmr_id": "",
            "status": StaffStatus.DISMISSED,
            "dismissed_on": "2026-01-01",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    staff.refresh_from_db()
    assert (staff.first_name, staff.position) == ("Oleg", "Head nurse")
    assert staff.status == StaffStatus.ACTIVE
    assert staff.dismissed_on is None


def test_staff_added_in_the_admin_records_its_author(
    admin_client_verified: Client, superuser: User
) -> None:
    organization = OrganizationFactory.create()
    branch = BranchFactory.create(organization=organization)

    response = admin_client_verified.post(
        reverse("admin:core_staff_add"),
        {
            "last_name": "Novikova",
            "first_name": "Elena",
            "patronymic": "",
            "user": "",
            "organization": organization.pk,
            "branches": [branch.pk],
            "position": "Registrar",
            "specialty": "",
            "snils": "112-233-445 95",
            "frmr_id": "",
        },
    )

    assert response.status_code == 302
    staff = Staff.objects.get(last_name="Novikova")
    assert staff.created_by == superuser
    assert list(staff.branches.all()) == [branch]
    assert staff.status == StaffStatus.ACTIVE


def test_search_by_names_snils_and_frmr_id(admin_client_verified: Client) -> None:
    organization = OrganizationFactory.create()
    formatted = StaffFactory.create(
        organization=organization, last_name="Belova", snils="112-233-445 95", frmr_id="F-1"
    )
    digits_only = StaffFactory.create(
        organization=organization, last_name="Volkov", snils="08765430300", frmr_id="frmr-777"
    )

    assert listed(admin_client_verified, {"q": "Belova"}) == {formatted.pk}
    assert listed(admin_client_verified, {"q": "Ivan Volkov"}) == {digits_only.pk}
    assert listed(admin_client_verified, {"q": "11223344595"}) == {formatted.pk}
    assert listed(admin_client_verified, {"q": "112-233-445 95"}) == {formatted.pk}
    assert listed(admin_client_verified, {"q": "087-654-303 00"}) == {digits_only.pk}
    assert listed(admin_client_verified, {"q": "frmr-777"}) == {digits_only.pk}


def test_filters_by_status_specialty_organization_and_branch(
    admin_client_verified: Client,
) -> None:
    first_org, second_org = OrganizationFactory.create(), OrganizationFactory.create()
    branch = BranchFactory.create(organization=first_org)
    cardiology = SpecialtyFactory.create(code="CARD")
    doctor = StaffFactory.create(organization=first_org, branches=[branch], specialty=cardiology)
    other = StaffFactory.create(
        organization=second_org, status=StaffStatus.DISMISSED, dismissed_on="2025-01-01"
    )

    assert doctor.pk in listed(admin_client_verified, {"status__exact": "active"})
    assert other.pk not in listed(admin_client_verified, {"status__exact": "active"})
    assert other.pk in listed(admin_client_verified, {"status__exact": "dismissed"})
    assert listed(admin_client_verified, {"specialty__id__exact": cardiology.pk}) == {doctor.pk}
    assert listed(admin_client_verified, {"organization__id__exact": second_org.pk}) == {other.pk}
    assert listed(admin_client_verified, {"branches__id__exact": branch.pk}) == {doctor.pk}


def test_staff_cannot_be_deleted(admin_client_verified: Client) -> None:
    staff = StaffFactory.create()
    url = reverse("admin:core_staff_delete", args=[staff.pk])
    assert admin_client_verified.post(url, {"post": "yes"}).status_code == 403
    assert Staff.objects.filter(pk=staff.pk).exists()


def test_changelist_query_count_does_not_grow_with_rows(
    admin_client_verified: Client, django_assert_max_num_queries: Any
) -> None:
    organization = OrganizationFactory.create()
    for number in range(25):
        StaffFactory.create(
            organization=organization,
            branches=[BranchFactory.create(organization=organization)],
            specialty=SpecialtyFactory.create(code=f"SP{number}"),
        )
    with django_assert_max_num_queries(18):
        response = admin_client_verified.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= 25
