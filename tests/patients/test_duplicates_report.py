"""The report of likely duplicate pairs (patients.duplicates.duplicate_pairs)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from clinic.core.models import Organization
from clinic.core.roles import Role
from patients.dedup import REASON_LABELS
from patients.duplicates import DuplicatePair, duplicate_pairs
from patients.models import Contact, ContactKind, Person
from tests.core.factories import OrganizationFactory, staff_with_role

pytestmark = pytest.mark.django_db

BIRTH_DATE = datetime.date(1980, 5, 17)


def valid_snils(number: int) -> str:
    """An 11-digit SNILS with a correct check number for the 9-digit ``number``."""
    digits = f"{number:09d}"
    total = sum(int(digit) * weight for digit, weight in zip(digits, range(9, 0, -1), strict=True))
    if total > 101:
        total %= 101
    return f"{digits}{0 if total in (100, 101) else total:02d}"


def make_person(
    organization: Organization, last_name: str, first_name: str, **fields: Any
) -> Person:
    person = Person(organization=organization, last_name=last_name, first_name=first_name, **fields)
    person.refresh_name_key()
    person.save()
    return person


def add_phone(person: Person, value: str, kind: str = ContactKind.MOBILE) -> Contact:
    return Contact.objects.create(person=person, kind=kind, value=value, digits=value[1:])


def as_tuples(pairs: list[DuplicatePair]) -> list[tuple[int, int, tuple[str, ...]]]:
    return [(pair.first.pk, pair.second.pk, pair.reasons) for pair in pairs]


@pytest.fixture
def organization() -> Organization:
    return OrganizationFactory()


@pytest.fixture
def head(organization: Organization) -> Any:
    return staff_with_role(Role.HEAD_OF_REGISTRY, organization=organization).user


def test_pairs_are_found_for_each_reason_once_lower_pk_first(
    organization: Organization, head: Any
) -> None:
    by_phone = [
        make_person(organization, "Смирнов", "Олег"),
        make_person(organization, "Кузнецова", "Анна"),
    ]
    add_phone(by_phone[1], "+79161234567")
    add_phone(by_phone[0], "+79161234567", kind=ContactKind.WHATSAPP)
    add_phone(by_phone[0], "+79161234567")  # two contacts with the number: still one pair
    by_snils = [
        make_person(organization, "Попов", "Игорь", snils=valid_snils(112233445)),
        make_person(organization, "Лебедев", "Илья", snils=valid_snils(112233445)),
    ]
    by_oms = [
        make_person(organization, "Волкова", "Ольга", oms_policy="7700000000000001"),
        make_person(organization, "Зайцева", "Нина", oms_policy="7700000000000001"),
    ]
    by_name = [
        make_person(organization, "Семёнова", "Пётр", patronymic="Ильич", birth_date=BIRTH_DATE),
        make_person(organization, "Семенов", "Петр", patronymic="Ильич", birth_date=BIRTH_DATE),
    ]
    # Not pairs: same name on another birth date, e-mails, empty SNILS/OMS, unlike names.
    make_person(
        organization, "Семенов", "Петр", patronymic="Ильич", birth_date=BIRTH_DATE.replace(day=18)
    )
    for person in (
        make_person(organization, "Белов", "Ян"),
        make_person(organization, "Орлов", "Лев"),
    ):
        Contact.objects.create(person=person, kind=ContactKind.EMAIL, value="family@example.org")
    make_person(organization, "Фёдоров", "Максим", birth_date=BIRTH_DATE)

    pairs = duplicate_pairs(actor=head)

    assert sorted(as_tuples(pairs)) == sorted(
        [
            (by_phone[0].pk, by_phone[1].pk, ("phone",)),
            (by_snils[0].pk, by_snils[1].pk, ("snils",)),
            (by_oms[0].pk, by_oms[1].pk, ("oms_policy",)),
            (by_name[0].pk, by_name[1].pk, ("name_birth_date",)),
        ]
    )
    assert pairs[0].first == by_name[0]  # the similar names rank first (one reason + similarity)
    assert pairs[0].name_similarity == pytest.approx(0.857, abs=0.001)
    assert pairs[0].reason_labels == [str(REASON_LABELS["name_birth_date"])]


def test_a_pair_with_several_reasons_appears_once_with_all_of_them_and_ranks_first(
    organization: Organization, head: Any
) -> None:
    weak = [
        make_person(organization, "Попов", "Игорь", snils=valid_snils(223344556)),
        make_person(organization, "Лебедев", "Илья", snils=valid_snils(223344556)),
    ]
    strong = [
        make_person(
            organization,
            "Иванова",
            "Анна",
            patronymic="Сергеевна",
            birth_date=BIRTH_DATE,
            snils=valid_snils(112233445),
            oms_policy="7700000000000001",
        ),
        make_person(
            organization,
            "Иваноа",
            "Анна",
            patronymic="Сергевна",
            birth_date=BIRTH_DATE,
            snils=valid_snils(112233445),
            oms_policy="7700000000000001",
        ),
    ]
    add_phone(strong[0], "+79161234567")
    add_phone(strong[1], "+79161234567")

    pairs = duplicate_pairs(actor=head)

    assert as_tuples(pairs) == [
        (strong[0].pk, strong[1].pk, ("phone", "snils", "oms_policy", "name_birth_date")),
        (weak[0].pk, weak[1].pk, ("snils",)),
    ]
    assert pairs[0].name_similarity == pytest.approx(0.68, abs=0.001)
    assert pairs[0].score == pytest.approx(4.68, abs=0.001)
    assert pairs[1].score == pytest.approx(1 + pairs[1].name_similarity)


def test_tombstones_and_other_organizations_are_left_out(
    organization: Organization, head: Any
) -> None:
    other = OrganizationFactory()
    living = make_person(organization, "Попов", "Игорь", snils=valid_snils(112233445))
    survivor = make_person(organization, "Лебедев", "Илья")
    make_person(organization, "Попов", "Игорь", snils=valid_snils(112233445), merged_into=survivor)
    make_person(other, "Попов", "Игорь", snils=valid_snils(112233445))
    in_other = [
        make_person(other, "Волкова", "Ольга", oms_policy="7700000000000001"),
        make_person(other, "Волкова", "Ольга", oms_policy="7700000000000001"),
    ]
    phone_elsewhere = make_person(other, "Кузнецова", "Анна")
    add_phone(phone_elsewhere, "+79161234567")
    add_phone(living, "+79161234567")

    assert duplicate_pairs(actor=head) == []

    colleague = staff_with_role(Role.ADMINISTRATOR, organization=other).user
    assert as_tuples(duplicate_pairs(actor=colleague)) == [
        (in_other[0].pk, in_other[1].pk, ("oms_policy",))
    ]


def test_the_limit_cuts_the_ranked_list(organization: Organization, head: Any) -> None:
    for number in range(5):
        for _copy in range(2):
            make_person(
                organization, f"Фамилия{number}", "Имя", oms_policy=f"77000000000000{number:02d}"
            )

    assert len(duplicate_pairs(actor=head, limit=3)) == 3
    assert len(duplicate_pairs(actor=head)) == 5
    assert duplicate_pairs(actor=head, limit=0) == []


@pytest.mark.parametrize("pair_count", [2, 40])
def test_the_report_costs_a_fixed_number_of_queries(
    organization: Organization, head: Any, pair_count: int, django_assert_max_num_queries: Any
) -> None:
    for number in range(pair_count):
        facts = {
            "snils": valid_snils(300000000 + number),
            "birth_date": BIRTH_DATE - datetime.timedelta(days=number),
        }
        first = make_person(organization, "Петров", "Олег", **facts)
        second = make_person(organization, "Петров", "Олег", **facts)
        add_phone(first, f"+7916{number:07d}")
        add_phone(second, f"+7916{number:07d}")
    actor = type(head).objects.get(pk=head.pk)  # nothing cached on the user

    with django_assert_max_num_queries(6):
        pairs = duplicate_pairs(actor=actor)
        names = [(pair.first.full_name, pair.second.full_name) for pair in pairs]

    assert len(names) == pair_count
    assert {pair.reasons for pair in pairs} == {("phone", "snils", "name_birth_date")}


@pytest.mark.parametrize("role", [Role.REGISTRAR, Role.DOCTOR, Role.CASHIER])
def test_roles_that_may_not_merge_do_not_get_the_report(
    organization: Organization, role: str
) -> None:
    actor = staff_with_role(role, organization=organization).user

    with pytest.raises(PermissionDenied):
        duplicate_pairs(actor=actor)
