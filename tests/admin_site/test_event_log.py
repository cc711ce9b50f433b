"""The pghistory event log in the admin, and the clinic's version of its admin class."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.template.response import TemplateResponse
from django.test import RequestFactory
from django.urls import resolve, reverse
from pghistory.models import MiddlewareEvents

from clinic.accounts.models import User
from clinic.audit.admin import ClinicEventsAdmin
from clinic.core.models import Organization, Specialty
from clinic.core.roles import Role
from tests.core.factories import OrganizationFactory, SpecialtyFactory

from .conftest import staff_login

pytestmark = pytest.mark.django_db


def changelist(user: User, params: dict[str, str]) -> TemplateResponse:
    """Render ``ClinicEventsAdmin``'s changelist as ``user`` (whatever the site registered)."""
    url = reverse("admin:pghistory_middlewareevents_changelist")
    request = RequestFactory().get(url, params)
    request.user = user
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    request.resolver_match = resolve(url)
    model_admin = ClinicEventsAdmin(MiddlewareEvents, admin.site)
    response = model_admin.changelist_view(request)
    assert isinstance(response, TemplateResponse)
    response.render()
    return response


def result_list(response: TemplateResponse) -> list[Any]:
    assert response.context_data is not None
    return list(response.context_data["cl"].result_list)


def test_event_log_shows_readable_changes(superuser: User) -> None:
    specialty = SpecialtyFactory.create(code="NEUR", name="Neurologist")
    Specialty.objects.filter(pk=specialty.pk).update(name="Neurologist <adult>")

    response = changelist(superuser, {"obj": f"core.Specialty:{specialty.pk}", "method": "tracks"})

    assert response.status_code == 200
    content = response.content.decode()
    assert (
        '<span class="history-before">Neurologist</span> → '
        '<span class="history-after">Neurologist &lt;adult&gt;</span>'
    ) in content
    labels = [event.pgh_label for event in result_list(response)]
    assert labels == ["update", "insert"]


def test_event_log_query_count_does_not_grow_with_events(
    superuser: User, django_assert_max_num_queries: Any
) -> None:
    organization = OrganizationFactory.create()
    for number in range(20):
        Organization.objects.filter(pk=organization.pk).update(short_name=f"Name {number}")
    with django_assert_max_num_queries(6):
        response = changelist(
            superuser, {"obj": f"core.Organization:{organization.pk}", "method": "tracks"}
        )
    assert len(result_list(response)) == 21


def test_event_log_is_open_to_roles_that_view_the_audit_log() -> None:
    _staff, administrator = staff_login(Role.ADMINISTRATOR)
    _staff, registrar = staff_login(Role.REGISTRAR)
    request = RequestFactory().get("/")
    model_admin = ClinicEventsAdmin(MiddlewareEvents, admin.site)

    request.user = administrator
    assert model_admin.has_view_permission(request)
    assert model_admin.has_module_permission(request)
    assert not model_admin.has_change_permission(request)
    request.user = registrar
    assert not model_admin.has_view_permission(request)


@pytest.mark.skipif(
    not getattr(settings, "PGHISTORY_ADMIN_CLASS", None),
    reason="PGHISTORY_ADMIN_CLASS is not set to clinic.audit.admin.ClinicEventsAdmin yet",
)
def test_site_registers_the_clinic_event_log() -> None:
    assert isinstance(admin.site._registry[MiddlewareEvents], ClinicEventsAdmin)
