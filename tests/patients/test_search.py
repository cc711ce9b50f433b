"""The registry's search box: parsing of typed queries, what each kind of query finds, the ranking,
the scoping (organizations, tombstones, card-type grants) and the number of queries."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection, transaction
from guardian.shortcuts import assign_perm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic.accounts.models import User
from clinic.core.models import Branch, Organization
from clinic.core.roles import Role
from patients.models import CardType, Contact, ContactKind, MedicalCard, Person
from patients.normalizers import phone_digits, search_key
from patients.search import NumberGroup, SearchHit, name_word, parse_query, person_search

from ..core.factories import BranchFactory, OrganizationFactory, staff_with_role

pytestmark = pytest.mark.django_db

VALID_SNILS = "11223344595"
OTHER_VALID_SNILS = "11223344696"


@dataclass
class Clinic:
    organization: Organization
    branch: Branch
    actor: User
    outpatient: CardType
    venereology: CardType


@pytest.fixture
def clinic() -> Clinic:
    organization = OrganizationFactory()
    branch = BranchFactory(organization=organization)
    staff = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    outpatient = CardType.objects.get(organization=None, code="outpatient")
    venereology = CardType.objects.get(organization=None, code="venereology")
    assign_perm("patients.open_cardtype", staff.user, outpatient)
    return Clinic(organization, branch, staff.user, outpatient, venereology)


def make_person(
    organization: Organization,
    full_name: str,
    *,
    birth_date: datetime.date | None = None,
    snils: str = "",
    oms_policy: str = "",
    phones: tuple[str, ...] = (),
    merged_into: Person | None = None,
) -> Person:
    last_name, first_name, *rest = full_name.split()
    person = Person(
        organization=organization,
        last_name=last_name,
        first_name=first_name,
        patronymic=" ".join(rest),
        birth_date=birth_date,
        snils=snils,
        oms_policy=oms_policy,
        merged_into=merged_into,
    )
    person.refresh_name_key()
    person.save()
    for phone in phones:
        Contact.objects.create(
            person=person, kind=ContactKind.MOBILE, value=phone, digits=phone_digits(phone)
        )
    return person


def make_card(clinic: Clinic, person: Person, card_type: CardType, number: str) -> MedicalCard:
    return MedicalCard.objects.create(
        person=person,
        organization=person.organization,
        card_type=card_type,
        branch=clinic.branch,
        number=number,
    )


def names(hits: list[SearchHit]) -> list[str]:
    return [hit.person.full_name for hit in hits]


# --- reading the query ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "words", "dates", "digit_groups", "cards"),
    [
        ("Иванов 31.12.1980", ("иванов",), {datetime.date(1980, 12, 31)}, [], []),
        ("1980-12-31  ФЁДОРОВ", ("федоров",), {datetime.date(1980, 12, 31)}, [], []),
        ("Иванов И.И.", ("иванов", "и", "и"), set(), [], []),
        ("+7 916 123-45-67", (), set(), ["79161234567"], []),
        ("8 (916) 123-45-67 Петров", ("петров",), set(), ["89161234567"], []),
        ("112-233-445 95", (), set(), ["11223344595"], []),
        ("А-123 №77", (), set(), [], ["А-123", "77"]),
        ("05.03.45", (), {datetime.date(1945, 3, 5)}, [], []),
        ("Анна-Мария О'Нил", ("анна-мария", "о'нил"), set(), [], []),
        ("Ивaнов", ("иванов",), set(), [], []),
        ("%%% !!! ---", (), set(), [], []),
    ],
)
def test_query_is_read_into_names_dates_digit_groups_and_card_numbers(
    typed: str, words: tuple[str, ...], dates: set[Any], digit_groups: list[str], cards: list[str]
) -> None:
    parsed = parse_query(typed)
    assert parsed.name_words == words
    assert parsed.birth_dates == dates
    assert [group.digits for group in parsed.numbers] == digit_groups
    assert list(parsed.card_numbers) == cards


def test_digit_groups_are_read_as_the_identifiers_they_can_be() -> None:
    snils_typed = NumberGroup(typed="112-233-445 95", digits=VALID_SNILS)
    assert (snils_typed.may_be_snils, snils_typed.phone_variants) == (True, ())
    assert not snils_typed.may_be_card_number
    phone_or_snils = NumberGroup(typed=VALID_SNILS, digits=VALID_SNILS)
    assert (phone_or_snils.may_be_snils, phone_or_snils.phone_variants) == (True, (VALID_SNILS,))
    eight = NumberGroup(typed="89161234567", digits="89161234567")
    assert (eight.may_be_snils, eight.phone_variants) == (False, ("79161234567",))
    policy = NumberGroup(typed="7700000012345678", digits="7700000012345678")
    assert (policy.may_be_oms_policy, policy.phone_variants) == (True, ())
    short = NumberGroup(typed="123", digits="123")
    assert (short.phone_variants, short.may_be_card_number) == ((), True)


# --- names ---------------------------------------------------------------------------------


@pytest.fixture
def ivanovs(clinic: Clinic) -> dict[str, Person]:
    organization = clinic.organization
    return {
        key: make_person(organization, full_name)
        for key, full_name in {
            "ivan": "Иванов Иван Иванович",
            "ivanova": "Иванова Ивонна Петровна",
            "ivanovsky": "Ивановский Иван Сергеевич",
            "smirnov": "Смирнов Иван Петрович",
            "petrov": "Петров Сергей Андреевич",
            "petr": "Сидоров Пётр Ильич",
            "fedorov": "Фёдоров Семён Ильич",
        }.items()
    }


def test_exact_name_ranks_ahead_of_prefix(clinic: Clinic, ivanovs: dict[str, Person]) -> None:
    """An exact name is not a typo: no similar names are added after it."""
    hits = person_search(actor=clinic.actor, query="Иванов Иван")
    assert [(hit.person.full_name, hit.matched_on, hit.score) for hit in hits] == [
        ("Иванов Иван Иванович", "name", 1.0),
        ("Ивановский Иван Сергеевич", "name", 0.8),
    ]


def test_prefix_matches_in_name_order_without_similar_names(
    clinic: Clinic, ivanovs: dict[str, Person]
) -> None:
    hits = person_search(actor=clinic.actor, query="Иванов Ив")
    assert [(hit.person.full_name, hit.score) for hit in hits] == [
        ("Иванов Иван Иванович", 0.8),
        ("Иванова Ивонна Петровна", 0.8),
        ("Ивановский Иван Сергеевич", 0.8),
    ]


@pytest.mark.parametrize(
    ("typed", "first"),
    [
        ("иванов ив", "Иванов Иван Иванович"),
        ("Иванов И", "Иванов Иван Иванович"),
        ("Иванов И.И.", "Иванов Иван Иванович"),
        ("ИВАНОВА", "Иванова Ивонна Петровна"),
        ("Иван Иванович", "Иванов Иван Иванович"),
    ],
)
def test_name_fragments_find_the_person_first(
    clinic: Clinic, ivanovs: dict[str, Person], typed: str, first: str
) -> None:
    assert names(person_search(actor=clinic.actor, query=typed))[0] == first


def test_fragment_matches_surnames_before_first_names(
    clinic: Clinic, ivanovs: dict[str, Person]
) -> None:
    """A patronymic alone is not searched: "петр" would bring every Петрович."""
    hits = person_search(actor=clinic.actor, query="петр")
    assert [(hit.person.full_name, hit.score) for hit in hits] == [
        ("Петров Сергей Андреевич", 0.8),
        ("Сидоров Пётр Ильич", 0.6),
    ]


@pytest.mark.parametrize("typed", ["Ивонов Иван", "Иваноф Иван Иванович", "Ивонов"])
def test_typo_finds_the_person(clinic: Clinic, ivanovs: dict[str, Person], typed: str) -> None:
    hits = person_search(actor=clinic.actor, query=typed)
    assert hits[0].person == ivanovs["ivan"]
    assert hits[0].matched_on == "name"
    assert 0 < hits[0].score < 0.5


def test_latin_look_alike_letter_is_read_as_cyrillic(
    clinic: Clinic, ivanovs: dict[str, Person]
) -> None:
    hits = person_search(actor=clinic.actor, query="Ивaнов Ивaн")  # Latin "a"
    assert (hits[0].person, hits[0].score) == (ivanovs["ivan"], 1.0)


def test_one_typo_finds_only_the_corrected_name(clinic: Clinic, ivanovs: dict[str, Person]) -> None:
    hits = person_search(actor=clinic.actor, query="Ивонов Иван")
    assert [hit.person for hit in hits] == [ivanovs["ivan"]]


def test_similar_names_rank_the_closest_first(clinic: Clinic, ivanovs: dict[str, Person]) -> None:
    """Words in another order and a typo: found by trigrams, the closest name first."""
    hits = person_search(actor=clinic.actor, query="Иван Ивонов")
    assert hits[0].person == ivanovs["ivan"]
    assert ivanovs["smirnov"] in [hit.person for hit in hits[1:]]
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > scores[1]
    assert all(0 < score < 0.5 for score in scores)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Федоров Семен", "fedorov"),
        ("фёдоров", "fedorov"),
        ("Сидоров Петр", "petr"),
        ("Сидоров Пётр Ильич", "petr"),
    ],
)
def test_yo_and_ye_are_the_same_letter(
    clinic: Clinic, ivanovs: dict[str, Person], typed: str, expected: str
) -> None:
    hits = person_search(actor=clinic.actor, query=typed)
    assert [(hit.person, hit.score) for hit in hits] == [(ivanovs[expected], 1.0)]


def test_stored_ye_is_found_by_typed_yo(clinic: Clinic) -> None:
    person = make_person(clinic.organization, "Федоров Артем Петрович")
    hits = person_search(actor=clinic.actor, query="Фёдоров Артём")
    assert [(hit.person, hit.score) for hit in hits] == [(person, 1.0)]


def test_limit_caps_the_hits_in_name_order(clinic: Clinic) -> None:
    for index in range(5):
        make_person(clinic.organization, f"Кузнецов Иван{chr(ord('а') + index)} Петрович")
    hits = person_search(actor=clinic.actor, query="кузнецов", limit=3)
    assert names(hits) == [
        "Кузнецов Ивана Петрович",
        "Кузнецов Иванб Петрович",
        "Кузнецов Иванв Петрович",
    ]


# --- identifiers ---------------------------------------------------------------------------


@pytest.fixture
def ivan(clinic: Clinic) -> Person:
    return make_person(
        clinic.organization,
        "Иванов Иван Иванович",
        birth_date=datetime.date(1980, 12, 31),
        snils=VALID_SNILS,
        oms_policy="7700000012345678",
        phones=("+79161234567",),
    )


@pytest.fixture
def neighbour(clinic: Clinic) -> Person:
    """Shares digits with Ivan's phone and his birth year, but nothing exact."""
    return make_person(
        clinic.organization,
        "Иванов Пётр Сергеевич",
        birth_date=datetime.date(1980, 1, 1),
        snils=OTHER_VALID_SNILS,
        phones=("+79031234500",),
    )


@pytest.mark.parametrize(
    ("typed", "matched_on", "score"),
    [
        ("112-233-445 95", "snils", 3.0),
        (VALID_SNILS, "snils", 3.0),
        ("7700 0000 1234 5678", "oms_policy", 3.0),
        ("+7 916 123-45-67", "phone", 2.5),
        ("8 (916) 123-45-67", "phone", 2.5),
        ("9161234567", "phone", 2.5),
        ("916 123", "phone", 2.0),
        ("1234567", "phone", 2.0),
        ("31.12.1980", "birth_date", 1.0),
        ("1980-12-31", "birth_date", 1.0),
        ("Иванов 31.12.1980", "birth_date", 2.0),
        ("Иван 916123", "phone", 2.8),
    ],
)
def test_identifier_finds_the_person(
    clinic: Clinic, ivan: Person, neighbour: Person, typed: str, matched_on: str, score: float
) -> None:
    hits = person_search(actor=clinic.actor, query=typed)
    assert [(hit.person, hit.matched_on, hit.score) for hit in hits] == [(ivan, matched_on, score)]


def test_shared_phone_fragment_finds_both_in_name_order(
    clinic: Clinic, ivan: Person, neighbour: Person
) -> None:
    hits = person_search(actor=clinic.actor, query="12345")
    assert [(hit.person, hit.matched_on) for hit in hits] == [
        (ivan, "phone"),
        (neighbour, "phone"),
    ]
    hits = person_search(actor=clinic.actor, query="79031234500")
    assert [(hit.person, hit.score) for hit in hits] == [(neighbour, 2.5)]


def test_exact_identifier_ranks_ahead_of_name(clinic: Clinic, ivan: Person) -> None:
    namesake = make_person(clinic.organization, "Иванов Иван Иванович", snils="")
    make_card(clinic, namesake, clinic.outpatient, "А1234567")
    hits = person_search(actor=clinic.actor, query="1234567")
    assert [(hit.person, hit.matched_on, hit.score) for hit in hits] == [
        (namesake, "card_number", 3.0),
        (ivan, "phone", 2.0),
    ]


@pytest.mark.parametrize("typed", ["А100", "а100", "A100", "№100", "100"])
def test_card_number_of_an_open_type_finds_the_owner(
    clinic: Clinic, ivan: Person, typed: str
) -> None:
    make_card(clinic, ivan, clinic.outpatient, "А100")
    hits = person_search(actor=clinic.actor, query=typed)
    assert [(hit.person, hit.matched_on, hit.score) for hit in hits] == [(ivan, "card_number", 3.0)]


@pytest.mark.parametrize("typed", ["В200", "200", "№В200", "Иванов В200"])
def test_card_number_of_a_type_not_granted_finds_nobody(
    clinic: Clinic, ivan: Person, typed: str
) -> None:
    make_card(clinic, ivan, clinic.venereology, "В200")
    assert person_search(actor=clinic.actor, query=typed) == []


def test_name_and_birth_date_both_must_match(
    clinic: Clinic, ivan: Person, neighbour: Person
) -> None:
    assert person_search(actor=clinic.actor, query="Петров 31.12.1980") == []
    assert [hit.person for hit in person_search(actor=clinic.actor, query="Иванов 01.01.1980")] == [
        neighbour
    ]
    assert person_search(actor=clinic.actor, query="31.12.1980 01.01.1980") == []


# --- scoping -------------------------------------------------------------------------------


def test_other_organizations_and_tombstones_are_never_found(clinic: Clinic, ivan: Person) -> None:
    elsewhere = make_person(
        OrganizationFactory(),
        "Иванов Иван Иванович",
        birth_date=ivan.birth_date,
        snils=VALID_SNILS,
        oms_policy=ivan.oms_policy,
        phones=("+79161234567",),
    )
    tombstone = make_person(
        clinic.organization,
        "Иванов Иван Иванович",
        birth_date=ivan.birth_date,
        snils=VALID_SNILS,
        oms_policy=ivan.oms_policy,
        phones=("+79161234567",),
        merged_into=ivan,
    )
    make_card(clinic, tombstone, clinic.outpatient, "А555")
    for typed in (
        "Иванов Иван Иванович",
        "Ивонов Иван",
        VALID_SNILS,
        "7700000012345678",
        "916 123 45",
        "31.12.1980",
    ):
        found = {hit.person for hit in person_search(actor=clinic.actor, query=typed)}
        assert found == {ivan}, typed
        assert not found & {elsewhere, tombstone}
    assert person_search(actor=clinic.actor, query="А555") == []


@pytest.mark.parametrize("typed", ["", "   ", "!!!", "%%% ???", "---", "12", "*", "ab_cd"])
def test_empty_or_garbage_query_finds_nothing(clinic: Clinic, ivan: Person, typed: str) -> None:
    assert person_search(actor=clinic.actor, query=typed) == []


def test_person_of_another_organization_is_not_found_by_its_staff_only(clinic: Clinic) -> None:
    other = OrganizationFactory()
    theirs = make_person(other, "Петров Пётр Петрович")
    their_staff = staff_with_role(Role.REGISTRAR, organization=other)
    assert person_search(actor=clinic.actor, query="Петров") == []
    assert [hit.person for hit in person_search(actor=their_staff.user, query="Петров")] == [theirs]


# --- cost ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "max_queries"),
    [
        # exact tier (fills the page); people; contacts
        ("Иванов", 3),
        # + prefix, any-order and typo tiers
        ("Ивонов Иван", 6),
        # + card grants (content type, card types) and identifier owners; no typo tier
        ("916 123 Иванов", 8),
    ],
)
def test_search_costs_a_bounded_number_of_queries(
    clinic: Clinic, django_assert_max_num_queries: Any, typed: str, max_queries: int
) -> None:
    for index in range(30):
        make_person(
            clinic.organization,
            f"Иванов Иван{chr(ord('а') + index)} Петрович",
            phones=(f"+7916123{index:04d}",),
        )
    with django_assert_max_num_queries(max_queries):
        hits = person_search(actor=clinic.actor, query=typed)
        assert len(hits) == 20
        for hit in hits:
            assert hit.person.organization == clinic.organization
            assert [contact.value for contact in hit.person.contacts.all()]


def test_name_words_are_spelt_as_the_indexes_spell_them(clinic: Clinic) -> None:
    """The planner uses an expression index only for the very same expression."""
    # Enough rows, analysed, that a full scan of another index never looks as cheap: the check
    # is then about the spelling of the expressions, not about the planner's view of a tiny table.
    people = []
    for number in range(2000):
        person = Person(
            organization=clinic.organization,
            last_name=f"Фамилия{number}",
            first_name=f"Имя{number % 97}",
            patronymic="Отчество",
        )
        person.refresh_name_key()
        people.append(person)
    Person.objects.bulk_create(people)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE patients_person")
        cursor.execute("SET LOCAL enable_seqscan = off")
    by_surname = Person.objects.alias(word1=name_word(1), word2=name_word(2)).filter(
        word1="иванов", word2__startswith="ив"
    )
    by_first_name = Person.objects.alias(word2=name_word(2), word3=name_word(3)).filter(
        word2="иван", word3__startswith="пет"
    )
    assert "patients_person_name_words" in by_surname.explain()
    assert "patients_person_first_names" in by_first_name.explain()


# --- property ------------------------------------------------------------------------------

CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
name_part = st.text(alphabet=CYRILLIC, min_size=1, max_size=12).map(str.capitalize)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(last_name=name_part, first_name=name_part, patronymic=st.one_of(st.just(""), name_part))
def test_exact_full_name_finds_that_person_first(
    clinic: Clinic, last_name: str, first_name: str, patronymic: str
) -> None:
    """Among namesakes that differ by a letter, the exact full name comes first."""
    full_name = " ".join(part for part in (last_name, first_name, patronymic) if part)
    with transaction.atomic():
        for near in (
            f"{last_name}а {first_name} {patronymic}",
            f"{last_name} {first_name}а {patronymic}",
            f"{first_name} {last_name} {patronymic}",
        ):
            if search_key(near) != search_key(full_name):
                make_person(clinic.organization, near)
        person = make_person(clinic.organization, full_name)
        hits = person_search(actor=clinic.actor, query=full_name)
        assert hits[0].person == person
        assert (hits[0].matched_on, hits[0].score) == ("name", 1.0)
        transaction.set_rollback(True)
