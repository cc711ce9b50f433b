"""Row history (django-pghistory): every insert, update and delete, with before/after and who."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, transaction
from django.test import Client

from clinic.accounts.models import User
from clinic.audit.selectors import history_for_object
from clinic.core.models import Organization
from clinic.core.roles import Role
from tests.core.factories import OrganizationFactory, UserFactory, staff_with_role

pytestmark = pytest.mark.django_db


def _labels(obj: Any) -> list[str]:
    return [event.pgh_label for event in history_for_object(obj)]


def test_create_update_delete_each_write_an_event() -> None:
    organization = OrganizationFactory.create(name="Alpha Clinic LLC", short_name="Alpha")
    pk = organization.pk

    organization.short_name = "Alpha Medical"
    organization.save(update_fields=["short_name", "updated_at"])
    organization.delete()

    events = list(history_for_object(Organization(pk=pk)))
    assert [event.pgh_label for event in events] == ["insert", "update", "delete"]
    assert events[0].pgh_data["name"] == "Alpha Clinic LLC"
    assert events[0].pgh_data["short_name"] == "Alpha"
    assert events[0].pgh_diff is None
    assert events[1].pgh_diff["short_name"] == ["Alpha", "Alpha Medical"]
    assert set(events[1].pgh_diff) == {"short_name", "updated_at"}
    assert events[2].pgh_data["short_name"] == "Alpha Medical"
    assert {event.pgh_obj_id for event in events} == {str(pk)}
    assert {event.pgh_obj_model for event in events} == {"core.Organization"}


def test_save_without_changes_writes_no_event() -> None:
    organization = OrganizationFactory.create()
    Organization.objects.filter(pk=organization.pk).update(name=organization.name)
    assert _labels(organization) == ["insert"]


def test_bulk_update_is_captured_with_before_and_after() -> None:
    first = OrganizationFactory.create(name="First LLC")
    second = OrganizationFactory.create(name="Second LLC")
    untouched = OrganizationFactory.create(name="Third LLC")

    updated = Organization.objects.filter(pk__in=[first.pk, second.pk]).update(name="Merged LLC")

    assert updated == 2
    for organization, old_name in ((first, "First LLC"), (second, "Second LLC")):
        events = list(history_for_object(organization))
        assert [event.pgh_label for event in events] == ["insert", "update"]
        assert events[-1].pgh_diff == {"name": [old_name, "Merged LLC"]}
        assert events[-1].pgh_data["name"] == "Merged LLC"
        assert events[-1].user is None  # not made through a request
    assert _labels(untouched) == ["insert"]


def test_history_is_only_of_the_given_object_and_oldest_first() -> None:
    organization = OrganizationFactory.create(name="A")
    other = OrganizationFactory.create(name="Other")
    for name in ("B", "C", "D"):
        Organization.objects.filter(pk=organization.pk).update(name=name)
    Organization.objects.filter(pk=other.pk).update(name="Other 2")

    events = list(history_for_object(organization))
    assert [event.pgh_data["name"] for event in events] == ["A", "B", "C", "D"]
    assert [event.pgh_diff for event in events[1:]] == [
        {"name": ["A", "B"]},
        {"name": ["B", "C"]},
        {"name": ["C", "D"]},
    ]


def test_history_of_an_instance_without_primary_key_is_refused() -> None:
    organization = OrganizationFactory.create()
    organization.delete()  # Django clears the instance's pk
    with pytest.raises(ValueError, match="no primary key"):
        history_for_object(organization)


@pytest.mark.urls("tests.audit.urls")
def test_change_through_a_request_records_the_logged_in_user_and_url(client: Client) -> None:
    organization = OrganizationFactory.create(name="Before LLC")
    user = staff_with_role(Role.REGISTRAR).user
    client.force_login(user)
    url = f"/audit-test/organizations/{organization.pk}/rename/"

    response = client.post(url, {"name": "After LLC"})

    assert response.status_code == 204
    events = list(history_for_object(organization))
    assert [event.pgh_label for event in events] == ["insert", "update"]
    change = events[-1]
    assert change.pgh_diff == {"name": ["Before LLC", "After LLC"]}
    assert change.user == user
    assert change.url == url
    assert change.pgh_context["user"] == user.pk
    assert change.pgh_context["url"] == url
    assert events[0].user is None


@pytest.mark.urls("tests.audit.urls")
def test_change_through_an_anonymous_request_records_no_user(client: Client) -> None:
    organization = OrganizationFactory.create(name="Before LLC")
    url = f"/audit-test/organizations/{organization.pk}/rename/"

    assert client.post(url, {"name": "After LLC"}).status_code == 204

    change = list(history_for_object(organization))[-1]
    assert change.pgh_diff == {"name": ["Before LLC", "After LLC"]}
    assert change.user is None
    assert change.url == url


def test_user_history_never_contains_the_password_hash() -> None:
    user = UserFactory.create(username="ivanova", first_name="Anna")
    first_hash = User.objects.get(pk=user.pk).password
    assert first_hash.startswith("md5$")

    user.set_password("another-long-passphrase")
    user.save(update_fields=["password"])
    user.first_name = "Anya"
    user.save()
    User.objects.filter(pk=user.pk).update(password="md5$bulk$deadbeef", last_name="Ivanova")

    events = list(history_for_object(user))
    assert [event.pgh_label for event in events] == ["insert", "update", "update"]
    assert events[1].pgh_diff == {"first_name": ["Anna", "Anya"]}
    assert events[2].pgh_diff == {"last_name": ["", "Ivanova"]}
    hashes = {first_hash, User.objects.get(pk=user.pk).password, user.password}
    for event in events:
        data: dict[str, Any] = event.pgh_data
        assert "password" not in data
        assert "last_login" not in data
        serialized = json.dumps([event.pgh_data, event.pgh_diff])
        assert not any(password_hash in serialized for password_hash in hashes)
        assert "md5$" not in serialized
    user_event_model = apps.get_model("accounts", "UserEvent")
    event_model_fields = {field.name for field in user_event_model._meta.fields}
    assert "password" not in event_model_fields


def test_password_change_alone_writes_no_user_event() -> None:
    user = UserFactory.create()
    user.set_password("yet-another-passphrase")
    user.save(update_fields=["password"])
    assert _labels(user) == ["insert"]


@pytest.mark.django_db(transaction=True)
def test_history_follows_the_order_of_changes_not_transaction_start_times() -> None:
    """pgh_created_at is when the writing transaction began; a transaction that began first but
    changed the row last must still come last (and its diff start from the change before it)."""
    organization = OrganizationFactory.create(name="A")

    def change_in_another_connection() -> None:
        try:
            Organization.objects.filter(pk=organization.pk).update(name="B")
        finally:
            connection.close()

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")  # this transaction's timestamp is fixed from here
        other = threading.Thread(target=change_in_another_connection)
        other.start()
        other.join(timeout=30)
        Organization.objects.filter(pk=organization.pk).update(name="C")

    events = list(history_for_object(organization))
    assert [event.pgh_data["name"] for event in events] == ["A", "B", "C"]
    assert events[2].pgh_created_at < events[1].pgh_created_at
    assert [event.pgh_diff for event in events[1:]] == [{"name": ["A", "B"]}, {"name": ["B", "C"]}]
