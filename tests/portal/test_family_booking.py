"""A parent books for a child as the child's legal representative: the code goes to the parent's
phone, the child is matched only through a legal-representative link to that phone (or the
child's own phone), a new child is booked as a primary patient with the parent noted for the
desk, the link is recorded when both are registered, and who the doctor and the service see
is respected."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone

from clinic.outbox.models import OutboxMessage
from patients.models import ContactKind, Person, PersonRelation, Relation, Sex
from portal import booking as portal_booking
from portal.codes import CODE_CHANNEL
from portal.models import DoctorOnlineSettings
from scheduling.models import Appointment
from tests.patients.factories import ContactFactory, PersonFactory
from tests.scheduling.factories import local, tomorrow

from .test_booking import fresh_redis as fresh_redis
from .test_booking import redis_cleared, sent_code, slot_at
from .test_pages import Clinic, clinic_build
from .test_pages import urlpatterns as urlpatterns

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PARENT_PHONE = "+79165550011"
TODAY = timezone.localdate()
CHILD_BORN = datetime.date(TODAY.year - 8, 5, 4)
PARENT_BORN = datetime.date(1985, 2, 10)
FOR_CHILD = {
    "patient": "child",
    "last_name": "Смирнова",
    "first_name": "Анна",
    "patronymic": "Сергеевна",
    "birth_date": CHILD_BORN.isoformat(),
    "phone": PARENT_PHONE,
    "rep_last_name": "Смирнова",
    "rep_first_name": "Ольга",
    "rep_patronymic": "Ивановна",
    "rep_birth_date": PARENT_BORN.isoformat(),
    "rep_relation": Relation.MOTHER.value,
}


@pytest.fixture
def site(settings: Any) -> Clinic:
    clinic = clinic_build(settings)
    DoctorOnlineSettings.objects.create(doctor=clinic.doctor, for_children=True, for_adults=True)
    return clinic


def book_for_child(client: Client, site: Clinic, at: str = "10:00", **changes: str) -> Any:
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), at))})
    sent = client.post("/portal/book/details/", {**FOR_CHILD, **changes})
    assert sent.status_code == 302, sent.content.decode()
    return client.post("/portal/book/code/", {"code": sent_code()})


def registered(
    last_name: str, first_name: str, patronymic: str, born: datetime.date, site: Clinic
) -> Person:
    person: Person = PersonFactory(
        organization=site.branch.organization,
        last_name=last_name,
        first_name=first_name,
        patronymic=patronymic,
        birth_date=born,
        sex=Sex.FEMALE,
    )
    return person


def child_and_parent(site: Clinic) -> tuple[Person, Person]:
    child = registered("Смирнова", "Анна", "Сергеевна", CHILD_BORN, site)
    parent = registered("Смирнова", "Ольга", "Ивановна", PARENT_BORN, site)
    ContactFactory(person=parent, kind=ContactKind.MOBILE, value=PARENT_PHONE)
    return child, parent


def test_a_new_child_is_booked_as_a_primary_patient_with_the_parent_noted(
    client: Client, site: Clinic
) -> None:
    booked = book_for_child(client, site)
    assert booked.status_code == 302 and booked["Location"] == "/portal/book/done/"
    assert OutboxMessage.objects.get(channel=CODE_CHANNEL).payload["to"] == PARENT_PHONE
    appointment = Appointment.objects.get()
    assert appointment.patient is None
    assert (appointment.primary_last_name, appointment.primary_first_name) == ("Смирнова", "Анна")
    assert appointment.primary_patronymic == "Сергеевна"
    assert appointment.primary_birth_date == CHILD_BORN
    assert appointment.primary_phone == PARENT_PHONE
    assert "Смирнова Ольга Ивановна" in appointment.note and PARENT_PHONE in appointment.note
    assert not PersonRelation.objects.exists()


def test_the_child_is_matched_through_the_legal_representatives_phone(
    client: Client, site: Clinic
) -> None:
    child, parent = child_and_parent(site)
    PersonRelation.objects.create(
        person=child,
        relative=parent,
        relation=Relation.MOTHER,
        is_legal_representative=True,
        authorising_document="Birth certificate",
    )
    assert book_for_child(client, site).status_code == 302
    assert Appointment.objects.get().patient == child
    assert PersonRelation.objects.count() == 1


@pytest.mark.parametrize("link", ["plain_relative", "expired", "other_phone", "none"])
def test_a_name_and_birth_date_without_a_valid_representative_link_do_not_match(
    client: Client, site: Clinic, link: str
) -> None:
    child, parent = child_and_parent(site)
    if link == "other_phone":
        parent.contacts.update(value="+79160000099")
    if link != "none":
        PersonRelation.objects.create(
            person=child,
            relative=parent,
            relation=Relation.MOTHER,
            is_legal_representative=link != "plain_relative",
            authorising_document="Birth certificate",
            valid_until=TODAY - datetime.timedelta(days=1) if link == "expired" else None,
        )
    assert book_for_child(client, site).status_code == 302
    appointment = Appointment.objects.get()
    assert appointment.patient is None and appointment.primary_first_name == "Анна"


def test_a_child_with_the_phone_is_matched_and_linked_to_the_registered_parent(
    client: Client, site: Clinic
) -> None:
    child, parent = child_and_parent(site)
    ContactFactory(person=child, kind=ContactKind.MOBILE, value=PARENT_PHONE)
    assert book_for_child(client, site).status_code == 302
    assert Appointment.objects.get().patient == child
    link = PersonRelation.objects.get()
    assert (link.person, link.relative, link.relation) == (child, parent, Relation.MOTHER)
    assert link.is_legal_representative and link.authorising_document
    events = apps.get_model("patients", "PersonRelationEvent").objects
    assert events.filter(pgh_obj_id=link.pk, pgh_label="insert").count() == 1

    # Booked again: the link exists and is not made twice.
    redis_cleared()
    assert book_for_child(Client(), site, at="11:00").status_code == 302
    assert PersonRelation.objects.count() == 1


def test_a_registered_parent_of_an_unknown_child_gets_no_link(client: Client, site: Clinic) -> None:
    parent = registered("Смирнова", "Ольга", "Ивановна", PARENT_BORN, site)
    ContactFactory(person=parent, kind=ContactKind.MOBILE, value=PARENT_PHONE)
    assert book_for_child(client, site).status_code == 302
    assert Appointment.objects.get().patient is None
    assert not PersonRelation.objects.exists()


def test_the_representatives_details_are_required_and_the_child_is_under_18(
    client: Client, site: Clinic
) -> None:
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), "10:00"))})
    without = {k: v for k, v in FOR_CHILD.items() if not k.startswith("rep_")}
    refused = client.post("/portal/book/details/", without)
    assert refused.status_code == 400
    page = refused.content.decode()
    for field in ("rep_last_name", "rep_first_name", "rep_birth_date", "rep_relation"):
        assert f'data-field-errors="{field}"' in page
    grown_up = {**FOR_CHILD, "birth_date": "1990-01-01"}
    refused = client.post("/portal/book/details/", grown_up)
    assert (
        refused.status_code == 400 and 'data-field-errors="birth_date"' in refused.content.decode()
    )
    assert not OutboxMessage.objects.exists()

    # The representative's fields are ignored for one's own booking.
    own = {**FOR_CHILD, "patient": "self", "birth_date": "1990-01-01", "rep_birth_date": ""}
    assert client.post("/portal/book/details/", own).status_code == 302


def test_who_the_doctor_sees_is_checked_before_any_code(client: Client, site: Clinic) -> None:
    DoctorOnlineSettings.objects.filter(doctor=site.doctor).update(for_children=False)
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), "10:00"))})
    refused = client.post("/portal/book/details/", FOR_CHILD)
    assert (
        refused.status_code == 400 and 'data-field-errors="birth_date"' in refused.content.decode()
    )
    assert not OutboxMessage.objects.exists()

    DoctorOnlineSettings.objects.filter(doctor=site.doctor).update(
        for_children=True, for_adults=False
    )
    adult = {**FOR_CHILD, "patient": "self", "birth_date": "1990-01-01"}
    refused = client.post("/portal/book/details/", adult)
    assert (
        refused.status_code == 400 and 'data-field-errors="birth_date"' in refused.content.decode()
    )
    assert client.post("/portal/book/details/", FOR_CHILD).status_code == 302


def test_the_services_age_limits_refuse_early_and_the_engine_refuses_at_booking(
    client: Client, site: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.service.min_age = 18
    site.service.save()
    client.post("/portal/book/hold/", {"slot": slot_at(site, local(tomorrow(), "10:00"))})
    refused = client.post("/portal/book/details/", FOR_CHILD)
    assert (
        refused.status_code == 400 and 'data-field-errors="birth_date"' in refused.content.decode()
    )
    assert not OutboxMessage.objects.exists()

    site.service.min_age = None
    site.service.save()
    assert client.post("/portal/book/details/", FOR_CHILD).status_code == 302
    site.service.min_age = 18
    site.service.save()
    # Without the portal's own check the engine still refuses the child.
    monkeypatch.setattr(portal_booking, "patient_refusal", lambda *_args: None)
    booked = client.post("/portal/book/code/", {"code": sent_code()})
    assert booked.status_code == 400 and "data-form-errors" in booked.content.decode()
    assert not Appointment.objects.exists()
