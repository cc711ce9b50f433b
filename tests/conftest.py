"""Shared fixtures: the real database and Redis of the settings, and users per role."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.core.cache import cache

from clinic.core.models import Staff
from clinic.core.roles import Role
from clinic.core.services import roles_sync
from patients.models import CardType
from scheduling.models import AppointmentStatus

from .core.factories import staff_with_role

STANDARD_CARD_TYPES = importlib.import_module("patients.migrations.0002_standard_card_types")
SCHEDULING_REFERENCE = importlib.import_module("scheduling.migrations.0002_reference_data")

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _clear_cache() -> Any:
    """Each test starts with an empty cache (axes and sessions use it), and no FHIR answer or
    schedule list stored in the process by an earlier test."""
    from integrations.website import slot_cache

    cache.clear()
    slot_cache.forget_all()
    yield
    cache.clear()
    slot_cache.forget_all()


@pytest.fixture(autouse=True)
def _role_groups(request: pytest.FixtureRequest, django_db_blocker: Any) -> None:
    """Role groups, standard card types and scheduling reference data come from migrations; a
    transactional test's flush removes them, so restore them.

    Runs before the test's own transaction, so the groups are committed like migration data.
    """
    uses_db = {"db", "transactional_db", "live_server"} & set(request.fixturenames)
    if not uses_db and request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("django_db_setup")
    with django_db_blocker.unblock():
        if not Group.objects.filter(name=Role.ADMINISTRATOR).exists():
            roles_sync()
        if not CardType.objects.filter(organization=None, code="outpatient").exists():
            STANDARD_CARD_TYPES.add_standard_card_types(django_apps, None)
        if not AppointmentStatus.objects.filter(code=AppointmentStatus.CANCELLED).exists():
            SCHEDULING_REFERENCE.forward(django_apps, None)


@pytest.fixture
def make_staff(db: Any) -> Callable[..., Staff]:
    def make(role: str = Role.REGISTRAR, **kwargs: Any) -> Staff:
        return staff_with_role(role, **kwargs)

    return make


@pytest.fixture
def password() -> str:
    return PASSWORD
