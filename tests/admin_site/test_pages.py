"""Every model of the clinic's own apps is in the admin, and its pages work with real rows."""

from __future__ import annotations

from functools import reduce
from typing import Any

import pytest
from django.contrib import admin
from django.db import models
from django.test import Client
from django.urls import reverse

OUR_APPS = ("core", "accounts", "audit", "outbox")

EXPECTED_MODELS = {
    "core.organization",
    "core.branch",
    "core.department",
    "core.room",
    "core.specialty",
    "core.staff",
    "accounts.user",
    "audit.accesslog",
    "audit.securityevent",
    "outbox.outboxmessage",
    "outbox.outboxattempt",
}

pytestmark = pytest.mark.django_db


def our_model_admins() -> list[tuple[type[models.Model], admin.ModelAdmin[Any]]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in OUR_APPS
    ]


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def search_term(model_admin: admin.ModelAdmin[Any], row: models.Model) -> str:
    """The row's value of the admin's first search field (following ``__`` relations)."""
    path = model_admin.search_fields[0].lstrip("^=@")
    value = reduce(getattr, path.split("__"), row)
    return str(value)


def test_every_model_of_our_apps_is_registered() -> None:
    registered = {model._meta.label_lower for model, _admin in our_model_admins()}
    assert registered == EXPECTED_MODELS


def test_changelist_and_change_page_of_every_model_render(
    admin_client_verified: Client, sample_rows: dict[type[models.Model], models.Model]
) -> None:
    for model, _model_admin in our_model_admins():
        row = sample_rows[model]
        response = admin_client_verified.get(admin_url(model, "changelist"))
        assert response.status_code == 200, model
        assert response.context["cl"].result_count >= 1, model

        response = admin_client_verified.get(admin_url(model, "change", row.pk))
        assert response.status_code == 200, model
        assert response.context["original"] == row


def test_search_finds_the_row_on_every_changelist(
    admin_client_verified: Client, sample_rows: dict[type[models.Model], models.Model]
) -> None:
    for model, model_admin in our_model_admins():
        assert model_admin.search_fields, f"{model} has no search"
        row = sample_rows[model]
        term = search_term(model_admin, row)
        response = admin_client_verified.get(admin_url(model, "changelist"), {"q": term})
        assert response.status_code == 200, model
        assert row in list(response.context["cl"].result_list), (model, term)


def test_no_search_finds_nothing_for_an_unknown_term(
    admin_client_verified: Client, sample_rows: dict[type[models.Model], models.Model]
) -> None:
    for model, _model_admin in our_model_admins():
        response = admin_client_verified.get(
            admin_url(model, "changelist"), {"q": "no-such-thing-xyzzy"}
        )
        assert response.status_code == 200, model
        assert list(response.context["cl"].result_list) == [], model


def test_every_filter_of_every_changelist_applies(
    admin_client_verified: Client, sample_rows: dict[type[models.Model], models.Model]
) -> None:
    """Each filter's own links work (no ``?e=1`` redirect), and one of them keeps the row.

    The search term narrows the list to the sample row (other tests may have left rows).
    """
    for model, model_admin in our_model_admins():
        row = sample_rows[model]
        url = admin_url(model, "changelist")
        changelist = admin_client_verified.get(url, {"q": search_term(model_admin, row)}).context[
            "cl"
        ]
        assert model_admin.list_filter, f"{model} has no filters"
        row_kept_by_a_filter = False
        for spec in changelist.filter_specs:
            choices = [c for c in spec.choices(changelist) if not c["selected"]][:4]
            assert choices, (model, spec.title)
            for choice in choices:
                response = admin_client_verified.get(url + choice["query_string"])
                assert response.status_code == 200, (model, spec.title, choice)
                if row in list(response.context["cl"].result_list):
                    row_kept_by_a_filter = True
        assert row_kept_by_a_filter, model


def test_add_page_renders_where_adding_is_allowed(
    admin_client_verified: Client, sample_rows: dict[type[models.Model], models.Model]
) -> None:
    addable = set()
    for model, _model_admin in our_model_admins():
        response = admin_client_verified.get(admin_url(model, "add"))
        if response.status_code == 200:
            addable.add(model._meta.label_lower)
        else:
            assert response.status_code == 403, model
    assert addable == {
        "core.organization",
        "core.branch",
        "core.department",
        "core.room",
        "core.specialty",
        "core.staff",
        "accounts.user",
    }


def test_pghistory_event_log_lists_and_filters_events(
    admin_client_verified: Client, sample_rows: dict[type[models.Model], models.Model]
) -> None:
    from clinic.core.models import Organization

    organization = sample_rows[Organization]
    url = reverse("admin:pghistory_middlewareevents_changelist")
    response = admin_client_verified.get(url)
    assert response.status_code == 200

    response = admin_client_verified.get(
        url, {"obj": f"core.Organization:{organization.pk}", "method": "tracks"}
    )
    assert response.status_code == 200
    events = list(response.context["cl"].result_list)
    assert [(e.pgh_obj_model, e.pgh_obj_id, e.pgh_label) for e in events] == [
        ("core.Organization", str(organization.pk), "insert")
    ]

    for params in (
        {"model": "core.Organization"},
        {"model": "accounts.User"},
        {"label": "insert"},
        {"event_model": "core.organizationevent"},
    ):
        response = admin_client_verified.get(url, params)
        assert response.status_code == 200, params
        assert response.context["cl"].result_count >= 1, params

    detail = admin_client_verified.get(
        reverse("admin:pghistory_middlewareevents_change", args=[events[0].pgh_slug])
    )
    assert detail.status_code == 200
