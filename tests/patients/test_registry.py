"""Registry services: registration, contacts, consents, cards and their numbering, card-type access,
the paper archive and representatives."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import Http404
from guardian.shortcuts import assign_perm

from clinic.audit.models import AccessLog
from clinic.core.roles import Role
from patients import selectors, services
from patients.models import (
    CardType,
    Consent,
    ConsentKind,
    ConsentSource,
    ContactKind,
    MedicalCard,
    PaperLocation,
    Person,
    Relation,
)
from patients.services import ContactInput, PersonInput

from ..core.factories import BranchFactory, OrganizationFactory, RoomFactory, staff_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic() -> dict[str, Any]:
    organization = OrganizationFactory()
    branch = BranchFactory(organization=organization)
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    doctor = staff_with_role(Role.DOCTOR, organization=organization, branches=[branch])
    outpatient = CardType.objects.get(code="outpatient", organization=None)
    venereology = CardType.objects.get(code="venereology", organization=None)
    for user in (registrar.user, doctor.user):
        assign_perm("patients.open_cardtype", user, outpatient)
    return {
        "organization": organization,
        "branch": branch,
        "registrar": registrar.user,
        "doctor": doctor.user,
        "outpatient": outpatient,
        "venereology": venereology,
    }


def register(clinic: dict[str, Any], **kwargs: Any) -> Person:
    data = PersonInput(
        last_name=kwargs.pop("last_name", "Смирнова"),
        first_name=kwargs.pop("first_name", "Ольга"),
        patronymic=kwargs.pop("patronymic", "Петровна"),
        birth_date=kwargs.pop("birth_date", datetime.date(1985, 3, 14)),
        contacts=kwargs.pop("contacts", []),
        **kwargs,
    )
    return services.person_create(
        actor=clinic["registrar"], organization=clinic["organization"], data=data
    )


def test_registration_normalises_and_infers_sex(clinic: dict[str, Any]) -> None:
    person = register(
        clinic,
        last_name="  смирнова ",
        first_name="ольга",
        patronymic="петровна",
        snils="112-233-445 95",
        contacts=[ContactInput(ContactKind.MOBILE, "8 (916) 555-44-33")],
    )
    assert (person.last_name, person.first_name, person.patronymic) == (
        "Смирнова",
        "Ольга",
        "Петровна",
    )
    assert person.sex == "female"
    assert person.snils == "11223344595"
    assert person.name_key == "смирнова ольга петровна"
    assert list(person.contacts.values_list("value", "digits")) == [("+79165554433", "79165554433")]


def test_bad_input_names_the_field_and_value_and_saves_nothing(clinic: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as raised:
        register(clinic, contacts=[ContactInput(ContactKind.MOBILE, "12ab")])
    assert "12ab" in str(raised.value)
    with pytest.raises(ValidationError) as raised:
        register(clinic, snils="123-456-789 00")
    assert "snils" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        register(clinic, birth_date=datetime.date(2999, 1, 1))
    assert "01.01.2999" in str(raised.value)
    assert Person.objects.count() == 0


def test_roles_without_registration_cannot_register(clinic: dict[str, Any]) -> None:
    with pytest.raises(PermissionDenied):
        services.person_create(
            actor=clinic["doctor"],
            organization=clinic["organization"],
            data=PersonInput(last_name="А", first_name="Б"),
        )
    assert Person.objects.count() == 0


def test_cards_are_numbered_per_organization_and_type(clinic: dict[str, Any]) -> None:
    first, second = register(clinic), register(clinic, first_name="Мария", birth_date=None)
    numbers = [
        services.card_open(
            actor=clinic["registrar"],
            person=person,
            card_type=clinic["outpatient"],
            branch=clinic["branch"],
        ).number
        for person in (first, second)
    ]
    assert numbers == ["А1", "А2"]
    other_org = OrganizationFactory()
    other_branch = BranchFactory(organization=other_org)
    other_registrar = staff_with_role(Role.REGISTRAR, organization=other_org).user
    assign_perm("patients.open_cardtype", other_registrar, clinic["outpatient"])
    stranger = services.person_create(
        actor=other_registrar,
        organization=other_org,
        data=PersonInput(last_name="Орлов", first_name="Игорь"),
    )
    card = services.card_open(
        actor=other_registrar, person=stranger, card_type=clinic["outpatient"], branch=other_branch
    )
    assert card.number == "А1"


def test_a_number_typed_by_hand_is_skipped_by_the_sequence(clinic: dict[str, Any]) -> None:
    person = register(clinic)
    services.card_open(
        actor=clinic["registrar"],
        person=person,
        card_type=clinic["outpatient"],
        branch=clinic["branch"],
        number="А1",
    )
    card = services.card_open(
        actor=clinic["registrar"],
        person=register(clinic, first_name="Вера", birth_date=None),
        card_type=clinic["outpatient"],
        branch=clinic["branch"],
    )
    assert card.number == "А2"


@pytest.mark.django_db(transaction=True)
def test_concurrent_card_openings_get_distinct_numbers(clinic: dict[str, Any]) -> None:
    people = [register(clinic, first_name=f"Пациент{index}", birth_date=None) for index in range(8)]
    numbers: list[str] = []
    errors: list[BaseException] = []

    def open_card(person: Person) -> None:
        try:
            numbers.append(
                services.card_open(
                    actor=clinic["registrar"],
                    person=person,
                    card_type=clinic["outpatient"],
                    branch=clinic["branch"],
                ).number
            )
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_card, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers, key=lambda number: int(number[1:])) == [f"А{n}" for n in range(1, 9)]


def test_card_types_hide_cards_without_the_grant(clinic: dict[str, Any]) -> None:
    person = register(clinic)
    assign_perm("patients.open_cardtype", clinic["registrar"], clinic["venereology"])
    outpatient = services.card_open(
        actor=clinic["registrar"],
        person=person,
        card_type=clinic["outpatient"],
        branch=clinic["branch"],
    )
    venereology = services.card_open(
        actor=clinic["registrar"],
        person=person,
        card_type=clinic["venereology"],
        branch=clinic["branch"],
    )
    doctor = clinic["doctor"]
    assert list(selectors.card_list(actor=doctor, person=person)) == [outpatient]
    with pytest.raises(Http404):
        selectors.card_get_for_actor(actor=doctor, public_id=venereology.public_id)
    assert not AccessLog.objects.filter(object_id=str(venereology.public_id)).exists()
    opened = selectors.card_get_for_actor(actor=doctor, public_id=outpatient.public_id)
    assert opened == outpatient
    [log] = AccessLog.objects.filter(object_id=str(outpatient.public_id))
    assert (log.user_id, log.object_type) == (doctor.pk, "patients.MedicalCard")
    assign_perm("patients.open_cardtype", doctor, clinic["venereology"])
    assert set(selectors.card_list(actor=doctor, person=person)) == {outpatient, venereology}


def test_a_card_of_an_ungranted_type_cannot_be_opened(clinic: dict[str, Any]) -> None:
    person = register(clinic)
    with pytest.raises(PermissionDenied):
        services.card_open(
            actor=clinic["registrar"],
            person=person,
            card_type=clinic["venereology"],
            branch=clinic["branch"],
        )
    assert not MedicalCard.objects.exists()


def test_granting_card_types_is_for_administrators(clinic: dict[str, Any]) -> None:
    administrator = staff_with_role(Role.ADMINISTRATOR, organization=clinic["organization"]).user
    doctor_staff = clinic["doctor"].staff
    with pytest.raises(PermissionDenied):
        services.card_type_grant(
            actor=clinic["registrar"], staff=doctor_staff, card_type=clinic["venereology"]
        )
    services.card_type_grant(
        actor=administrator, staff=doctor_staff, card_type=clinic["venereology"]
    )
    assert clinic["doctor"].has_perm("patients.open_cardtype", clinic["venereology"])
    services.card_type_revoke(
        actor=administrator, staff=doctor_staff, card_type=clinic["venereology"]
    )
    doctor = type(clinic["doctor"]).objects.get(pk=clinic["doctor"].pk)
    assert not doctor.has_perm("patients.open_cardtype", clinic["venereology"])


def test_consent_selector_needs_personal_data_and_channel(clinic: dict[str, Any]) -> None:
    person = register(clinic)
    today = datetime.date(2026, 11, 1)
    assert not selectors.consent_allows(person=person, channel="whatsapp")
    services.consent_give(
        actor=clinic["registrar"],
        person=person,
        kind=ConsentKind.COMMUNICATION,
        channel="whatsapp",
        source=ConsentSource.PAPER,
        given_on=today,
    )
    assert not selectors.consent_allows(person=person, channel="whatsapp")
    services.consent_give(
        actor=clinic["registrar"],
        person=person,
        kind=ConsentKind.PERSONAL_DATA,
        source=ConsentSource.VERBAL,
        given_on=today,
    )
    assert selectors.consent_allows(person=person, channel="whatsapp")
    assert not selectors.consent_allows(person=person, channel="sms")
    whatsapp = Consent.objects.get(person=person, channel="whatsapp")
    services.consent_revoke(
        actor=clinic["registrar"], consent=whatsapp, revoked_on=today, source=ConsentSource.PORTAL
    )
    assert not selectors.consent_allows(person=person, channel="whatsapp")
    verbal = Consent.objects.get(person=person, kind=ConsentKind.PERSONAL_DATA)
    assert verbal.recorded_by == clinic["registrar"]


def test_communication_consent_needs_a_channel(clinic: dict[str, Any]) -> None:
    person = register(clinic)
    with pytest.raises(ValidationError) as raised:
        services.consent_give(
            actor=clinic["registrar"],
            person=person,
            kind=ConsentKind.COMMUNICATION,
            source=ConsentSource.PAPER,
            given_on=datetime.date(2026, 1, 1),
        )
    assert "channel" in raised.value.message_dict


def test_paper_card_issue_and_return(clinic: dict[str, Any]) -> None:
    person = register(clinic)
    card = services.card_open(
        actor=clinic["registrar"],
        person=person,
        card_type=clinic["outpatient"],
        branch=clinic["branch"],
    )
    room = RoomFactory(branch=clinic["branch"], number="305")
    issued = services.paper_card_issue(actor=clinic["registrar"], card=card, to_room=room)
    assert issued.paper_location == PaperLocation.ISSUED
    assert list(selectors.cards_out_of_archive(actor=clinic["registrar"])) == [issued]
    with pytest.raises(ValidationError):
        services.paper_card_issue(actor=clinic["registrar"], card=card, to_room=room)
    returned = services.paper_card_return(actor=clinic["registrar"], card=card)
    assert returned.paper_location == PaperLocation.ARCHIVE
    assert list(selectors.cards_out_of_archive(actor=clinic["registrar"])) == []
    assert [m.action for m in card.movements.order_by("occurred_at", "pk")] == [
        "issued",
        "returned",
    ]
    with pytest.raises(PermissionDenied):
        services.paper_card_issue(actor=clinic["doctor"], card=card, to_room=room)


def test_legal_representative_needs_a_document_and_minor_is_marked(
    clinic: dict[str, Any],
) -> None:
    child = register(clinic, first_name="Дима", patronymic="", birth_date=datetime.date(2018, 5, 1))
    mother = register(clinic, first_name="Анна", birth_date=datetime.date(1990, 2, 2))
    assert child.is_minor and not mother.is_minor
    with pytest.raises(ValidationError) as raised:
        services.relation_add(
            actor=clinic["registrar"],
            person=child,
            relative=mother,
            relation=Relation.MOTHER,
            is_legal_representative=True,
        )
    assert "authorising_document" in raised.value.message_dict
    link = services.relation_add(
        actor=clinic["registrar"],
        person=child,
        relative=mother,
        relation=Relation.MOTHER,
        is_legal_representative=True,
        authorising_document="Свидетельство о рождении II-МЮ 123456",
    )
    assert link.is_legal_representative


def test_people_of_other_organizations_are_not_found(clinic: dict[str, Any]) -> None:
    person = register(clinic)
    outsider = staff_with_role(Role.REGISTRAR).user
    with pytest.raises(Http404):
        selectors.person_get_for_actor(actor=outsider, public_id=person.public_id)
    assert (
        selectors.person_get_for_actor(actor=clinic["registrar"], public_id=person.public_id)
        == person
    )
