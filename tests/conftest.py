"""Shared fixtures: the real database and Redis of the settings, and users per role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache

from clinic.core.models import Staff
from clinic.core.roles import Role

from .core.factories import staff_with_role

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _clear_cache() -> Any:
    """Each test starts with an empty cache (axes and sessions use it)."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_staff(db: Any) -> Callable[..., Staff]:
    def make(role: str = Role.REGISTRAR, **kwargs: Any) -> Staff:
        return staff_with_role(role, **kwargs)

    return make


@pytest.fixture
def password() -> str:
    return PASSWORD
