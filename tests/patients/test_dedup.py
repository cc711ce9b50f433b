"""Finding likely duplicates (patients.dedup) and the duplicate gate of person_create."""

from __future__ import annotations

import datetime
from typing import Any

import pghistory.models
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic.audit.selectors import history_for_object
from clinic.core.models import Organization
from clinic.core.roles import Role
from patients.dedup import PersonFacts, duplicate_candidates
from patients.models import Contact, ContactKind, Person
from patients.normalizers import normalize_phone
from patients.services import ContactInput, DuplicatePersonError, PersonInput, person_create
from tests.core.factories import OrganizationFactory, staff_with_role

BIRTH_DATE = datetime.date(1980, 5, 17)
PHONE = "+79161234567"
SNILS = "11223344595"  # 112-233-445 95: the check number is right


def make_person(
    organization: Organization,
    last_name: str = "Иванов",
    first_name: str = "Иван",
    patronymic: str = "Иванович",
    **fields: Any,
) -> Person:
    person = Person(
        organization=organization,
        last_name=last_name,
        first_name=first_name,
        patronymic=patronymic,
        **fields,
    )
    person.refresh_name_key()
    person.full_clean()
    person.save()
    return person


def add_phone(person: Person, value: str = PHONE) -> Contact:
    return Contact.objects.create(
        person=person, kind=ContactKind.MOBILE, value=value, digits=value.lstrip("+")
    )


def facts(**values: Any) -> PersonFacts:
    values.setdefault("last_name", "Петров")
    values.setdefault("first_name", "Олег")
    return PersonFacts(**values)


def found(candidates: list[Any]) -> list[tuple[int, list[str]]]:
    return [(candidate.person.pk, candidate.reasons) for candidate in candidates]


@pytest.fixture
def organization(db: Any) -> Organization:
    return OrganizationFactory()


@pytest.fixture
def registrar(organization: Organization) -> Any:
    return staff_with_role(Role.REGISTRAR, organization=organization).user


@pytest.fixture
def head(organization: Organization) -> Any:
    return staff_with_role(Role.HEAD_OF_REGISTRY, organization=organization).user


# --- phone numbers typed in different ways ------------------------------------------------


@pytest.fixture
def phone_owner(organization: Organization, registrar: Any) -> Person:
    """A person registered with the number typed "8 916 123-45-67"."""
    return person_create(
        actor=registrar,
        organization=organization,
        data=PersonInput(
            "Иванов", "Иван", contacts=[ContactInput(ContactKind.MOBILE, "8 916 123-45-67")]
        ),
    )


@st.composite
def typed_forms_of_one_number(draw: st.DrawFn) -> str:
    """+7 916 123-45-67 as people type it: 8 or +7, brackets, spaces, dashes, stray blanks."""
    prefix = draw(st.sampled_from(["+7", "8", "+ 7", "7"]))
    area = draw(st.sampled_from(["916", "(916)"]))
    groups = draw(st.sampled_from([["123", "45", "67"], ["123", "4567"], ["1234567"]]))
    separators = draw(st.lists(st.sampled_from(["", " ", "-"]), min_size=4, max_size=4))
    if area.startswith("(") or separators[0] == "-":
        separators[0] = draw(st.sampled_from(["", " "]))
    parts = [prefix, area, *groups]
    typed = parts[0]
    for separator, part in zip(separators, parts[1:], strict=False):
        typed += separator + part
    padding = draw(st.sampled_from(["", " ", "  "]))
    return f"{padding}{typed}{padding}"


@given(typed=typed_forms_of_one_number())
def test_every_typed_form_of_a_number_normalises_to_the_same_e164(typed: str) -> None:
    assert normalize_phone(typed) == PHONE


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(typed=typed_forms_of_one_number())
def test_a_number_typed_differently_finds_the_same_person(
    organization: Organization, registrar: Any, phone_owner: Person, typed: str
) -> None:
    with pytest.raises(DuplicatePersonError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput("Петров", "Олег", contacts=[ContactInput(ContactKind.MOBILE, typed)]),
        )

    assert found(caught.value.candidates) == [(phone_owner.pk, ["phone"])]
    assert Person.objects.filter(organization=organization).count() == 1


def test_phone_typed_with_8_and_with_plus_7_is_one_number(
    organization: Organization, registrar: Any, phone_owner: Person
) -> None:
    existing = phone_owner
    assert list(existing.contacts.values_list("value", "digits")) == [(PHONE, "79161234567")]

    with pytest.raises(DuplicatePersonError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput(
                "Петров",
                "Олег",
                contacts=[ContactInput(ContactKind.WHATSAPP, "+7 (916) 123 45 67")],
            ),
        )

    assert found(caught.value.candidates) == [(existing.pk, ["phone"])]


# --- duplicate_candidates -----------------------------------------------------------------


def test_same_phone_is_a_candidate(organization: Organization) -> None:
    person = make_person(organization)
    add_phone(person)
    add_phone(make_person(organization, "Сидоров"), "+79160000000")

    candidates = duplicate_candidates(organization=organization, facts=facts(phones=(PHONE,)))

    assert found(candidates) == [(person.pk, ["phone"])]


def test_same_snils_is_a_candidate(organization: Organization) -> None:
    person = make_person(organization, snils=SNILS)

    candidates = duplicate_candidates(organization=organization, facts=facts(snils=SNILS))

    assert found(candidates) == [(person.pk, ["snils"])]


def test_same_oms_policy_is_a_candidate(organization: Organization) -> None:
    person = make_person(organization, oms_policy="7700000000000001")
    make_person(organization, "Сидоров", oms_policy="7700000000000002")

    candidates = duplicate_candidates(
        organization=organization, facts=facts(oms_policy="7700000000000001")
    )

    assert found(candidates) == [(person.pk, ["oms_policy"])]


@pytest.mark.parametrize(
    ("stored", "typed", "similarity"),
    [
        (("Семенов", "Петр", "Ильич"), ("Семёнов", "Пётр", "Ильич"), 1.0),
        (("Семёнова", "Пётр", "Ильич"), ("Семенов", "Петр", "Ильич"), 0.857),
        (("Иванова", "Анна", "Сергеевна"), ("Иваноа", "Анна", "Сергевна"), 0.68),
        (("Кузнецова", "Мария", "Павловна"), ("Кузнецова", "Мариа", "Павловна"), 0.852),
    ],
    ids=["yo-as-ye", "yo-and-ending", "two-typos", "one-typo"],
)
def test_similar_name_with_the_same_birth_date_is_a_candidate(
    organization: Organization,
    stored: tuple[str, str, str],
    typed: tuple[str, str, str],
    similarity: float,
) -> None:
    person = make_person(organization, *stored, birth_date=BIRTH_DATE)

    candidates = duplicate_candidates(
        organization=organization,
        facts=PersonFacts(*typed, birth_date=BIRTH_DATE),
    )

    assert found(candidates) == [(person.pk, ["name_birth_date"])]
    assert candidates[0].name_similarity == pytest.approx(similarity, abs=0.001)


def test_the_same_name_born_on_another_day_is_not_a_candidate(
    organization: Organization,
) -> None:
    make_person(organization, birth_date=BIRTH_DATE)

    for birth_date in (BIRTH_DATE + datetime.timedelta(days=1), None):
        candidates = duplicate_candidates(
            organization=organization,
            facts=PersonFacts("Иванов", "Иван", "Иванович", birth_date=birth_date),
        )
        assert candidates == []


def test_an_unlike_name_born_the_same_day_is_not_a_candidate(organization: Organization) -> None:
    make_person(organization, birth_date=BIRTH_DATE)

    candidates = duplicate_candidates(
        organization=organization,
        facts=PersonFacts("Смирнова", "Ольга", "Петровна", birth_date=BIRTH_DATE),
    )

    assert candidates == []


def test_candidates_are_ranked_by_the_number_of_reasons_then_name_similarity(
    organization: Organization,
) -> None:
    by_oms = make_person(organization, "Сидоров", "Олег", oms_policy="7700000000000001")
    by_name = make_person(organization, "Иванов", "Иван", "Иваныч", birth_date=BIRTH_DATE)
    by_everything = make_person(organization, "Иванов", "Иван", snils=SNILS, birth_date=BIRTH_DATE)
    add_phone(by_everything)

    candidates = duplicate_candidates(
        organization=organization,
        facts=PersonFacts(
            "Иванов",
            "Иван",
            "Иванович",
            birth_date=BIRTH_DATE,
            phones=(PHONE,),
            snils=SNILS,
            oms_policy="7700000000000001",
        ),
    )

    assert found(candidates) == [
        (by_everything.pk, ["phone", "snils", "name_birth_date"]),
        (by_name.pk, ["name_birth_date"]),
        (by_oms.pk, ["oms_policy"]),
    ]
    assert [round(candidate.score, 2) for candidate in candidates] == sorted(
        (round(candidate.score, 2) for candidate in candidates), reverse=True
    )
    assert candidates[2].name_similarity < candidates[1].name_similarity


def test_tombstones_other_organizations_and_excluded_people_are_not_candidates(
    organization: Organization,
) -> None:
    survivor = make_person(organization, "Сидоров")
    make_person(organization, snils=SNILS, merged_into=survivor)
    make_person(OrganizationFactory(), snils=SNILS)
    excluded = make_person(organization, snils=SNILS)

    candidates = duplicate_candidates(
        organization=organization, facts=facts(snils=SNILS), exclude=[excluded.pk]
    )

    assert candidates == []


# --- person_create's duplicate gate -------------------------------------------------------


def test_person_create_refuses_a_likely_duplicate_listing_the_candidates(
    organization: Organization, registrar: Any
) -> None:
    existing = make_person(organization, snils=SNILS, birth_date=BIRTH_DATE)

    with pytest.raises(DuplicatePersonError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput(
                "иванов",
                "иван",
                "иванович",
                birth_date=BIRTH_DATE,
                snils="112-233-445 95",
                contacts=[ContactInput(ContactKind.MOBILE, "8 916 123-45-67")],
            ),
        )

    assert found(caught.value.candidates) == [(existing.pk, ["snils", "name_birth_date"])]
    assert list(Person.objects.values_list("pk", flat=True)) == [existing.pk]
    assert not Contact.objects.exists()


def test_a_head_of_registry_may_create_despite_duplicates_and_the_reason_is_in_the_history(
    organization: Organization, head: Any
) -> None:
    existing = make_person(organization, snils=SNILS)
    reason = "Twins: checked the birth certificates"

    person = person_create(
        actor=head,
        organization=organization,
        data=PersonInput(
            "Петров",
            "Олег",
            snils=SNILS,
            contacts=[ContactInput(ContactKind.MOBILE, "+7 916 123 45 67")],
        ),
        force_reason=f"  {reason} ",
    )

    assert set(Person.objects.values_list("pk", flat=True)) == {existing.pk, person.pk}
    assert (person.last_name, person.snils, person.created_by) == ("Петров", SNILS, head)
    [event] = history_for_object(person)
    assert event.pgh_label == "insert"
    context = pghistory.models.Context.objects.get(pk=event.pgh_context_id)
    assert context.metadata["duplicate_override_reason"] == reason
    [contact_event] = history_for_object(person.contacts.get())
    assert contact_event.pgh_context_id == context.pk


@pytest.mark.parametrize("force_reason", ["", "   "])
def test_a_blank_force_reason_does_not_override(
    organization: Organization, head: Any, force_reason: str
) -> None:
    make_person(organization, snils=SNILS)

    with pytest.raises(DuplicatePersonError):
        person_create(
            actor=head,
            organization=organization,
            data=PersonInput("Петров", "Олег", snils=SNILS),
            force_reason=force_reason,
        )

    assert Person.objects.count() == 1


def test_a_registrar_may_not_override_duplicates_and_nothing_is_saved(
    organization: Organization, registrar: Any
) -> None:
    existing = make_person(organization, snils=SNILS)

    with pytest.raises(PermissionDenied):
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput(
                "Петров", "Олег", snils=SNILS, contacts=[ContactInput(ContactKind.MOBILE, PHONE)]
            ),
            force_reason="I am sure",
        )

    assert list(Person.objects.values_list("pk", flat=True)) == [existing.pk]
    assert not Contact.objects.exists()
    assert not pghistory.models.Context.objects.filter(
        metadata__duplicate_override_reason="I am sure"
    ).exists()


def test_person_create_without_duplicates_saves_normalised_data(
    organization: Organization, registrar: Any
) -> None:
    person = person_create(
        actor=registrar,
        organization=organization,
        data=PersonInput(
            "  семёнова ",
            "анна-мария",
            "петровна",
            birth_date=BIRTH_DATE,
            snils="112-233-445 95",
            oms_policy="7700 0000 0000 0001",
            contacts=[
                ContactInput(ContactKind.MOBILE, "8 (916) 123-45-67"),
                ContactInput(ContactKind.EMAIL, " Anna@Example.ORG "),
            ],
        ),
    )

    person.refresh_from_db()
    assert (person.last_name, person.first_name, person.patronymic) == (
        "Семёнова",
        "Анна-Мария",
        "Петровна",
    )
    assert (person.snils, person.oms_policy, person.sex) == (SNILS, "7700000000000001", "female")
    assert person.name_key == "семенова анна-мария петровна"
    assert sorted(person.contacts.values_list("kind", "value")) == [
        (ContactKind.EMAIL, "anna@example.org"),
        (ContactKind.MOBILE, PHONE),
    ]


# --- invalid input: ValidationError naming the field and what was typed, nothing saved ------


def test_an_invalid_snils_is_refused_naming_the_field_and_value(
    organization: Organization, registrar: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput("Петров", "Олег", snils="112-233-445 96"),
        )

    assert list(caught.value.message_dict) == ["snils"]
    assert "112-233-445 96" in caught.value.message_dict["snils"][0]
    assert caught.value.error_dict["snils"][0].code == "invalid_snils"
    assert not Person.objects.exists()


def test_an_unreadable_phone_is_refused_naming_the_field_and_value(
    organization: Organization, registrar: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput(
                "Петров", "Олег", contacts=[ContactInput(ContactKind.MOBILE, "8 916 12")]
            ),
        )

    assert list(caught.value.message_dict) == ["contacts"]
    assert "8 916 12" in caught.value.message_dict["contacts"][0]
    assert caught.value.error_dict["contacts"][0].code == "phone_invalid"
    assert not Person.objects.exists()
    assert not Contact.objects.exists()


def test_a_future_birth_date_is_refused_naming_the_field_and_value(
    organization: Organization, registrar: Any
) -> None:
    future = datetime.date.today() + datetime.timedelta(days=1)

    with pytest.raises(ValidationError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput("Петров", "Олег", birth_date=future),
        )

    assert not Person.objects.exists()
    assert list(caught.value.message_dict) == ["birth_date"]
    assert future.strftime("%d.%m.%Y") in caught.value.message_dict["birth_date"][0]


def test_a_future_birth_date_is_refused_and_nothing_is_saved(
    organization: Organization, registrar: Any
) -> None:
    future = datetime.date.today() + datetime.timedelta(days=1)

    with pytest.raises(ValidationError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput("Петров", "Олег", birth_date=future),
        )

    errors = caught.value.error_dict
    codes = [error.code for error in [*errors.get("birth_date", []), *errors.get("__all__", [])]]
    assert codes == ["birth_date_future"]
    assert future.strftime("%d.%m.%Y") in caught.value.messages[0]
    assert not Person.objects.exists()


def test_a_snils_with_a_letter_is_refused(organization: Organization, registrar: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput("Петров", "Олег", snils="112-233-445 95a"),
        )

    assert list(caught.value.message_dict) == ["snils"]


def test_invalid_data_is_reported_even_when_it_resembles_someone(
    organization: Organization, registrar: Any
) -> None:
    add_phone(make_person(organization))

    with pytest.raises(ValidationError) as caught:
        person_create(
            actor=registrar,
            organization=organization,
            data=PersonInput(
                "Петров",
                "Олег",
                snils="112-233-445 96",
                contacts=[ContactInput(ContactKind.MOBILE, PHONE)],
            ),
        )

    assert list(caught.value.message_dict) == ["snils"]


def test_the_same_number_typed_twice_is_stored_once(
    organization: Organization, registrar: Any
) -> None:
    person = person_create(
        actor=registrar,
        organization=organization,
        data=PersonInput(
            "Петров",
            "Олег",
            contacts=[
                ContactInput(ContactKind.MOBILE, "8 916 123-45-67"),
                ContactInput(ContactKind.MOBILE, "+7 (916) 123 45 67"),
            ],
        ),
    )

    assert list(person.contacts.values_list("value", flat=True)) == [PHONE]
