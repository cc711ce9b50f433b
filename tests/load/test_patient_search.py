"""Benchmark: the registry search box over a million people.

Builds a separate database (``CLINIC_BENCH_DB``, default ``bench_patients``) with
``CLINIC_BENCH_PERSONS`` people (default 1,000,000; 10% in a second organization, 0.4% merged
tombstones), phones for most, e-mails and medical cards for some, in raw SQL from
``generate_series``. The database is kept and reused (new migrations are applied to it) while its
size and generator version match; otherwise it is dropped and built again.

Then runs typical desk queries through ``person_search`` and prints the build time, p50/p95/max
per kind of query and overall, and the server execution time of a sample (EXPLAIN ANALYZE) with
the indexes the plans used. Asserts only that the exact queries find the right person.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Prefetch
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from clinic.accounts.models import User
from clinic.core.models import Organization
from clinic.core.roles import Role
from patients.models import CardType, ContactKind, MedicalCard, Person
from patients.normalizers import search_key
from patients.search import SearchHit, person_search

from ..core.factories import BranchFactory, OrganizationFactory, StaffFactory, UserFactory
from .kept_database import kept_database_matches, recreate_database, timed

pytestmark = [pytest.mark.load, pytest.mark.timeout(1800)]

BENCH_DB = os.environ.get("CLINIC_BENCH_DB", "bench_patients")
PERSONS = int(os.environ.get("CLINIC_BENCH_PERSONS", "1000000"))
GENERATOR_VERSION = "1"  # bump when the generated data changes, to rebuild kept databases
ACTOR_USERNAME = "bench-registrar"
SEED = 20261122
QUERIES_PER_KIND = 16
EXPLAIN_PER_KIND = 3
# Not a typical desk query: two typos in the surname fall through to the trigram tier.
RARE_KINDS = {"two typos (trigram)"}


def _words(text: str) -> list[str]:
    return text.split()


COMMON_SURNAMES = _words(
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов "
    "Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев "
    "Макаров Никитин Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Воробьёв Сергеев "
    "Кузьмин Фролов Александров Дмитриев Королёв Гусев Киселёв Ильин Максимов Поляков Сорокин "
    "Виноградов Ковалёв Белов Медведев Антонов Тарасов Жуков Баранов Филиппов Комаров Давыдов "
    "Беляев Герасимов Богданов Осипов Сидоров Матвеев Титов Марков Миронов Крылов Куликов "
    "Карпов Власов Мельников Денисов Гаврилов Тихонов Казаков Афанасьев Данилов Савельев "
    "Тимофеев Фомин Чернов Абрамов Мартынов Ефимов Федотов Щербаков Назаров Калинин Исаев "
    "Чернышёв Быков Маслов Родионов Коновалов Лазарев Воронин Климов Филатов Пономарёв Голубев "
    "Кудрявцев Прохоров Шевченко Бондаренко Коваленко Кравченко Ткаченко Вишневский Завадский"
)
SURNAME_ROOTS = _words(
    "Бел Чер Зел Крас Мал Вел Дол Сух Гор Рыб Мед Лис Вол Кур Гол Сер Бор Тар Пан Кар Лар Дор "
    "Мир Вар Жар Нос Рог Гул Сав Ром Лук Шап Щук Ерш Сом Кот Пес Ток Бык Тур Сем Фед Пят Шум"
)
SURNAME_MIDDLES = ["", "ан", "ин", "ен", "ун", "ак", "ук", "ец", "иц", "ал", "ёл", "ох"]
SURNAME_ENDINGS = ["ов", "ев", "ин", "ский", "енко", "ых", "ук", "цев", "ёв", "ман"]
MALE_NAMES = _words(
    "Александр Сергей Дмитрий Андрей Алексей Максим Евгений Иван Михаил Артём Николай Владимир "
    "Павел Роман Никита Егор Илья Кирилл Денис Юрий Олег Виктор Игорь Антон Пётр Фёдор Семён "
    "Григорий Константин Матвей Тимофей Глеб Лев Марк Ярослав Всеволод"
)
FEMALE_NAMES = _words(
    "Анна Мария Елена Ольга Наталья Татьяна Екатерина Ирина Светлана Юлия Анастасия Дарья "
    "Ксения Алёна Марина Людмила Галина Виктория Полина Софья Валентина Надежда Вера Любовь "
    "Евгения Алиса Варвара Зоя Лидия Нина Тамара Яна Кира Милена Ульяна Таисия"
)
PATRONYMIC_ROOTS = [
    ("Александров", "ич", "на"),
    ("Сергеев", "ич", "на"),
    ("Дмитриев", "ич", "на"),
    ("Андреев", "ич", "на"),
    ("Алексеев", "ич", "на"),
    ("Михайлов", "ич", "на"),
    ("Иванов", "ич", "на"),
    ("Николаев", "ич", "на"),
    ("Владимиров", "ич", "на"),
    ("Петров", "ич", "на"),
    ("Фёдоров", "ич", "на"),
    ("Юрьев", "ич", "на"),
    ("Викторов", "ич", "на"),
    ("Игорев", "ич", "на"),
    ("Олегов", "ич", "на"),
    ("Павлов", "ич", "на"),
    ("Евгеньев", "ич", "на"),
    ("Борисов", "ич", "на"),
    ("Анатольев", "ич", "на"),
    ("Васильев", "ич", "на"),
    ("Семёнов", "ич", "на"),
    ("Григорьев", "ич", "на"),
    ("Геннадьев", "ич", "на"),
    ("Валерьев", "ич", "на"),
    ("Романов", "ич", "на"),
    ("Максимов", "ич", "на"),
    ("Артёмов", "ич", "на"),
    ("Константинов", "ич", "на"),
    ("Степанов", "ич", "на"),
    ("Ильинич", "", "на"),
]
MALE_PATRONYMICS = [root + male for root, male, _female in PATRONYMIC_ROOTS]
MALE_PATRONYMICS[-1] = "Ильич"
FEMALE_PATRONYMICS = [root + female for root, _male, female in PATRONYMIC_ROOTS]
FEMALE_PATRONYMICS[-1] = "Ильинична"

# Every random() below is evaluated per row; PostgreSQL does not pull volatile subqueries up.
PERSONS_SQL = """
INSERT INTO patients_person (
    public_id, created_at, updated_at, organization_id, last_name, first_name, patronymic,
    birth_date, sex, snils, document_type, document_series, document_number, document_issued_by,
    oms_policy, registration_address, registration_address_parts, registration_fias,
    actual_address, actual_address_parts, actual_fias, preferred_channel, notes, is_vip, name_key
)
SELECT gen_random_uuid(), now(), now(),
       CASE WHEN g %% 10 = 0 THEN %(other_org)s ELSE %(org)s END,
       last_name, first_name, patronymic, birth_date,
       CASE WHEN female THEN 'female' ELSE 'male' END,
       CASE WHEN has_snils THEN snils9 || lpad((CASE
            WHEN total IN (100, 101) THEN 0
            WHEN total > 101 AND total %% 101 = 100 THEN 0
            WHEN total > 101 THEN total %% 101
            ELSE total END)::text, 2, '0') ELSE '' END,
       '', '', '', '',
       CASE WHEN has_oms THEN '77' || lpad(((g::bigint * 7919) %% 100000000000000)::text, 14, '0')
            ELSE '' END,
       '', '{}', '', '', '{}', '', '', '', false,
       replace(lower(concat_ws(' ', last_name, first_name, nullif(patronymic, ''))), 'ё', 'е')
FROM (
    SELECT g, female, birth_date, has_snils, has_oms, snils9,
           (SELECT sum(substr(snils9, i, 1)::int * (10 - i)) FROM generate_series(1, 9) i) AS total,
           CASE WHEN NOT female THEN surname
                WHEN surname ~ '(ов|ев|ёв|ин|ын)$' THEN surname || 'а'
                WHEN surname ~ 'ский$' THEN left(surname, -4) || 'ская'
                ELSE surname END AS last_name,
           CASE WHEN female THEN (%(female_names)s::text[])[name_index]
                ELSE (%(male_names)s::text[])[name_index] END AS first_name,
           CASE WHEN no_patronymic THEN ''
                WHEN female THEN (%(female_patronymics)s::text[])[patronymic_index]
                ELSE (%(male_patronymics)s::text[])[patronymic_index] END AS patronymic
    FROM (
        SELECT g,
               random() < 0.52 AS female,
               random() < 0.8 AS has_snils,
               random() < 0.6 AS has_oms,
               random() < 0.03 AS no_patronymic,
               lpad((2000000 + g)::text, 9, '0') AS snils9,
               date '1930-01-01' + floor(random() * 33000)::int AS birth_date,
               CASE WHEN random() < 0.5
                    THEN (%(common)s::text[])[1 + floor(power(random(), 2) * %(common_count)s)::int]
                    ELSE (%(roots)s::text[])[1 + floor(random() * %(roots_count)s)::int]
                      || (%(middles)s::text[])[1 + floor(random() * %(middles_count)s)::int]
                      || (%(endings)s::text[])[1 + floor(random() * %(endings_count)s)::int]
               END AS surname,
               1 + floor(power(random(), 1.5) * %(names_count)s)::int AS name_index,
               1 + floor(power(random(), 1.5) * %(patronymics_count)s)::int AS patronymic_index
        FROM generate_series(1, %(persons)s) g
    ) drawn
) named
"""

CONTACTS_SQL = [
    # A mobile for 85%: +79XXXXXXXXX.
    """
    INSERT INTO patients_contact (public_id, created_at, updated_at, kind, value, digits, note,
                                  person_id)
    SELECT gen_random_uuid(), now(), now(), 'mobile', '+7' || national, '7' || national, '', id
    FROM (SELECT id, '9' || lpad(floor(random() * 1e9)::bigint::text, 9, '0') AS national
          FROM patients_person WHERE random() < 0.85) phones
    """,
    # A Moscow landline for 10%.
    """
    INSERT INTO patients_contact (public_id, created_at, updated_at, kind, value, digits, note,
                                  person_id)
    SELECT gen_random_uuid(), now(), now(), 'home', '+7' || national, '7' || national, '', id
    FROM (SELECT id, '495' || lpad(floor(random() * 1e7)::bigint::text, 7, '0') AS national
          FROM patients_person WHERE random() < 0.10) phones
    """,
    # An e-mail for 20% (no digits: e-mails are not searched as phones).
    """
    INSERT INTO patients_contact (public_id, created_at, updated_at, kind, value, digits, note,
                                  person_id)
    SELECT gen_random_uuid(), now(), now(), 'email', 'patient' || id || '@example.org', '', '', id
    FROM patients_person WHERE random() < 0.20
    """,
]

CARDS_SQL = """
INSERT INTO patients_medicalcard (public_id, created_at, updated_at, number, opened_on, status,
                                  paper_location, branch_id, card_type_id, organization_id,
                                  person_id)
SELECT gen_random_uuid(), now(), now(), %(prefix)s || id, date '2015-01-01' + (id %% 3000)::int,
       'open', 'archive',
       CASE WHEN organization_id = %(org)s THEN %(branch)s ELSE %(other_branch)s END,
       %(card_type)s, organization_id, id
FROM patients_person WHERE random() < %(share)s
"""

TABLES = ("patients_person", "patients_contact", "patients_medicalcard")


@dataclass
class Bench:
    actor: Any
    organization_id: int
    persons: int
    load_seconds: float
    steps: list[tuple[str, float]] = field(default_factory=list)
    reused: bool = False


def _fingerprint() -> str:
    """What the kept data was generated with; migrations added since are applied to it."""
    return f"generator v{GENERATOR_VERSION}, {PERSONS} people"


def _execute(sql: str, params: dict[str, Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _execute_all(statements: Iterable[str]) -> None:
    for sql in statements:
        _execute(sql)


def _load(steps: list[tuple[str, float]]) -> tuple[User, int]:
    """Fill the (migrated, empty) bench database; returns the actor and its organization id."""
    organization = OrganizationFactory(short_name="Bench clinic")
    other = OrganizationFactory(short_name="Other clinic")
    branch = BranchFactory(organization=organization)
    other_branch = BranchFactory(organization=other)
    user = UserFactory(username=ACTOR_USERNAME, roles=[Role.REGISTRAR])
    StaffFactory(user=user, organization=organization, branches=[branch])
    card_types = {
        card_type.code: card_type
        for card_type in CardType.objects.filter(
            organization=None, code__in=["outpatient", "dental", "venereology"]
        )
    }
    for code in ("outpatient", "dental"):  # venereology stays closed to the actor
        assign_perm("patients.open_cardtype", user, card_types[code])

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i
            WHERE i.indrelid = ANY(%s::regclass[])
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            """,
            [list(TABLES)],
        )
        secondary_indexes = cursor.fetchall()
    # Bulk load: the pghistory triggers (and foreign-key triggers) do not fire for this session
    # (session_replication_role = replica needs a superuser); the indexes are built afterwards.
    _execute("SET session_replication_role = replica")
    _execute("SET synchronous_commit = off")
    _execute("SET maintenance_work_mem = '512MB'")
    _execute("SET work_mem = '64MB'")
    for name, _definition in secondary_indexes:
        _execute(f"DROP INDEX {name}")
    timed(
        steps,
        "people",
        lambda: _execute(
            PERSONS_SQL,
            {
                "org": organization.pk,
                "other_org": other.pk,
                "persons": PERSONS,
                "common": COMMON_SURNAMES,
                "common_count": len(COMMON_SURNAMES),
                "roots": SURNAME_ROOTS,
                "roots_count": len(SURNAME_ROOTS),
                "middles": SURNAME_MIDDLES,
                "middles_count": len(SURNAME_MIDDLES),
                "endings": SURNAME_ENDINGS,
                "endings_count": len(SURNAME_ENDINGS),
                "male_names": MALE_NAMES,
                "female_names": FEMALE_NAMES,
                "names_count": min(len(MALE_NAMES), len(FEMALE_NAMES)),
                "male_patronymics": MALE_PATRONYMICS,
                "female_patronymics": FEMALE_PATRONYMICS,
                "patronymics_count": len(MALE_PATRONYMICS),
            },
        ),
    )
    timed(
        steps,
        "tombstones",
        lambda: _execute(
            "UPDATE patients_person SET merged_into_id = id - 1 "
            "WHERE id %% 250 = 0 AND id > (SELECT min(id) FROM patients_person)",
            {},
        ),
    )
    timed(steps, "contacts", lambda: _execute_all(CONTACTS_SQL))

    def cards() -> None:
        for code, share in (("outpatient", 0.30), ("dental", 0.05), ("venereology", 0.02)):
            card_type = card_types[code]
            _execute(
                CARDS_SQL,
                {
                    "prefix": card_type.number_prefix,
                    "org": organization.pk,
                    "branch": branch.pk,
                    "other_branch": other_branch.pk,
                    "card_type": card_type.pk,
                    "share": share,
                },
            )

    timed(steps, "cards", cards)
    index_seconds: list[tuple[float, str]] = []
    for name, definition in secondary_indexes:
        started = time.perf_counter()
        _execute(definition)
        index_seconds.append((time.perf_counter() - started, name))
    slowest = ", ".join(f"{name} {seconds:.1f} s" for seconds, name in sorted(index_seconds)[-3:])
    steps.append(
        (f"{len(index_seconds)} indexes (slowest: {slowest})", sum(s for s, _ in index_seconds))
    )
    _execute("SET session_replication_role = DEFAULT")
    timed(steps, "vacuum analyze", lambda: _execute_all(f"VACUUM ANALYZE {t}" for t in TABLES))
    connection.close()  # the queries run in a fresh session, without the settings of the load
    return user, organization.pk


@pytest.fixture(scope="module")
def bench(django_db_blocker: Any) -> Iterator[Bench]:
    """The bench database, built if missing or stale, as Django's default database."""
    with django_db_blocker.unblock():
        original_name = connection.settings_dict["NAME"]
        fingerprint = _fingerprint()
        reused, load_seconds = kept_database_matches(BENCH_DB, fingerprint)
        connection.close()
        try:
            if not reused:
                recreate_database(BENCH_DB)
            connection.settings_dict["NAME"] = BENCH_DB
            steps: list[tuple[str, float]] = []
            if reused:
                timed(steps, "migrate (kept data)", lambda: call_command("migrate", verbosity=0))
                actor = User.objects.get(username=ACTOR_USERNAME)
                organization_id = Organization.objects.get(short_name="Bench clinic").pk
            else:
                started = time.perf_counter()
                timed(steps, "migrate", lambda: call_command("migrate", verbosity=0))
                actor, organization_id = _load(steps)
                load_seconds = time.perf_counter() - started
                _execute(
                    "CREATE TABLE bench_meta (fingerprint text, load_seconds float, "
                    "built_at timestamptz DEFAULT now())"
                )
                _execute(
                    "INSERT INTO bench_meta (fingerprint, load_seconds) "
                    "VALUES (%(fingerprint)s, %(seconds)s)",
                    {"fingerprint": fingerprint, "seconds": load_seconds},
                )
            yield Bench(actor, organization_id, PERSONS, load_seconds, steps, reused)
        finally:
            connection.close()
            connection.settings_dict["NAME"] = original_name


# --- the queries -----------------------------------------------------------------------------

_TYPO_LETTERS = "аеиоуыяклмнпрст"


def _typo(word: str, rng: random.Random) -> str:
    """One letter inside the word replaced (not the first, not the last)."""
    if len(word) < 5:
        return word
    index = rng.randrange(1, len(word) - 1)
    replacement = rng.choice([letter for letter in _TYPO_LETTERS if letter != word[index].lower()])
    return word[:index] + replacement + word[index + 1 :]


def _national(person: Person) -> str | None:
    phones = [c.digits for c in person.contacts.all() if c.kind == ContactKind.MOBILE]
    return phones[0][1:] if phones else None


@dataclass
class Case:
    kind: str
    query: str
    person: Person
    check: Callable[[list[SearchHit]], bool] | None = None


def _cases(people: list[Person], yo_people: list[Person], rng: random.Random) -> list[Case]:
    cases: list[Case] = []
    pool = iter(people)

    def take(condition: Callable[[Person], bool] = lambda person: True) -> Person:
        return next(person for person in pool if condition(person))

    def first_is(person: Person) -> Callable[[list[SearchHit]], bool]:
        return lambda hits: bool(hits) and hits[0].person.pk == person.pk

    def contains(person: Person) -> Callable[[list[SearchHit]], bool]:
        return lambda hits: person.pk in {hit.person.pk for hit in hits}

    def exact_name_first(query: str) -> Callable[[list[SearchHit]], bool]:
        return lambda hits: bool(hits) and hits[0].person.name_key == search_key(query)

    for round_number in range(QUERIES_PER_KIND):
        person = take(lambda p: bool(p.patronymic))
        cases.append(
            Case("full name", person.full_name, person, exact_name_first(person.full_name))
        )
        person = take()
        query = f"{person.last_name} {person.first_name[:2]}".lower()
        cases.append(Case("surname + name prefix", query, person))
        person = take(lambda p: bool(p.patronymic))
        query = f"{person.last_name} {person.first_name[0]}.{person.patronymic[0]}."
        cases.append(Case("initials", query, person))
        person = take()
        cases.append(Case("surname fragment", person.last_name[: rng.choice((3, 4, 5))], person))
        person = take(lambda p: len(p.last_name) >= 6)
        query = f"{_typo(person.last_name, rng)} {person.first_name}"
        cases.append(Case("typo surname + name", query, person))
        person = take(lambda p: len(p.last_name) >= 6)
        cases.append(Case("typo surname", _typo(person.last_name, rng), person))
        if round_number % 2 == 0:
            person = take(lambda p: len(p.last_name) >= 7)
            query = f"{_typo(_typo(person.last_name, rng), rng)} {person.first_name}"
            cases.append(Case("two typos (trigram)", query, person))
        person = take()
        query = f"{person.first_name} {person.patronymic}".strip()
        cases.append(Case("name + patronymic", query, person))
        person = take()
        query = f"{person.last_name} {person.birth_date:%d.%m.%Y}"
        cases.append(Case("surname + birth date", query, person, contains(person)))
        person = take(lambda p: _national(p) is not None)
        national = _national(person) or ""
        start = rng.randrange(0, 4)
        fragment = national[start : start + rng.choice((4, 5, 6, 7))]
        cases.append(Case("phone fragment", f"{fragment[:3]} {fragment[3:]}", person))
        person = take(lambda p: _national(p) is not None)
        national = _national(person) or ""
        query = rng.choice(
            (
                f"+7 {national[:3]} {national[3:6]}-{national[6:8]}-{national[8:]}",
                f"8 ({national[:3]}) {national[3:6]}-{national[6:8]}-{national[8:]}",
                national,
            )
        )
        cases.append(Case("full phone", query, person, contains(person)))
        person = take(lambda p: bool(p.visible_cards))
        number = person.visible_cards[0].number
        query = rng.choice((number, number.lower(), number[1:]))
        cases.append(Case("card number", query, person, contains(person)))
        person = take(lambda p: bool(p.snils))
        snils = person.snils
        query = rng.choice((snils, f"{snils[:3]}-{snils[3:6]}-{snils[6:9]} {snils[9:]}"))
        cases.append(Case("snils", query, person, first_is(person)))
    for person in yo_people[:QUERIES_PER_KIND]:
        query = person.full_name.replace("ё", "е").replace("Ё", "Е")
        cases.append(Case("ё typed as е", query, person, exact_name_first(query)))
    for _ in range(QUERIES_PER_KIND // 2):
        person = take(lambda p: bool(p.oms_policy))
        cases.append(Case("oms policy", person.oms_policy, person, first_is(person)))
    return cases


def _sample_people(organization_id: int, rng: random.Random, count: int) -> list[Person]:
    bounds = Person.objects.filter(organization_id=organization_id).order_by("pk")
    first_id = bounds.values_list("pk", flat=True).first() or 0
    last_id = bounds.reverse().values_list("pk", flat=True).first() or 0
    ids = rng.sample(range(first_id, last_id + 1), min(count * 2, last_id - first_id + 1))
    visible_cards = MedicalCard.objects.exclude(card_type__code="venereology").order_by("pk")
    people = {
        person.pk: person
        for person in Person.objects.filter(
            pk__in=ids, organization_id=organization_id, merged_into__isnull=True
        ).prefetch_related(
            "contacts", Prefetch("cards", queryset=visible_cards, to_attr="visible_cards")
        )
    }
    return [people[pk] for pk in ids if pk in people]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _plan_indexes(plan: dict[str, Any]) -> set[str]:
    """The patients_* indexes a plan reads, and its sequential scans of patients_* tables."""
    found = set()
    if plan.get("Index Name", "").startswith("patients_"):
        found.add(plan["Index Name"])
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name", "").startswith(
        "patients_"
    ):
        found.add(f"SEQ SCAN {plan['Relation Name']}")
    for child in plan.get("Plans", []):
        found |= _plan_indexes(child)
    return found


def _explain(statements: list[str]) -> tuple[float, set[str]]:
    """Server execution time of the search's statements, and the indexes their plans used."""
    total = 0.0
    indexes: set[str] = set()
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:
            if sql.startswith("SELECT set_config"):
                cursor.execute(sql)
                continue
            if not sql.lstrip("(").startswith("SELECT"):
                continue  # BEGIN / COMMIT around the typo tier
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
            [report] = cursor.fetchone()[0]
            total += report["Execution Time"]
            indexes |= _plan_indexes(report["Plan"])
        transaction.set_rollback(True)
    return total, indexes


def test_patient_search_benchmark(bench: Bench, capsys: Any) -> None:
    rng = random.Random(SEED)
    people = _sample_people(bench.organization_id, rng, 400)
    yo_people = list(
        Person.objects.filter(
            organization_id=bench.organization_id,
            merged_into__isnull=True,
            last_name__contains="ё",
        ).order_by()[:200]
    )
    rng.shuffle(yo_people)
    cases = _cases(people, yo_people, rng)

    timings: dict[str, list[float]] = {}
    slowest: list[tuple[float, str, str]] = []
    server: dict[str, list[float]] = {}
    plans: dict[str, set[str]] = {}
    failures: list[str] = []
    found: dict[str, int] = {}
    explained: dict[str, int] = {}
    # The first query of a fresh connection pays for connecting and loading type information.
    person_search(actor=bench.actor, query="Петров")
    for case in cases:
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            hits = person_search(actor=bench.actor, query=case.query)
            elapsed = (time.perf_counter() - started) * 1000
        timings.setdefault(case.kind, []).append(elapsed)
        slowest.append((elapsed, case.kind, case.query))
        if case.check is not None and not case.check(hits):
            failures.append(f"{case.kind}: {case.query!r}")
        if explained.get(case.kind, 0) < EXPLAIN_PER_KIND:
            explained[case.kind] = explained.get(case.kind, 0) + 1
            execution, indexes = _explain([query["sql"] for query in captured.captured_queries])
            server.setdefault(case.kind, []).append(execution)
            plans.setdefault(case.kind, set()).update(indexes)
        if case.person.pk in {hit.person.pk for hit in hits}:
            found[case.kind] = found.get(case.kind, 0) + 1

    with capsys.disabled():
        print()
        origin = "kept from an earlier run" if bench.reused else "built now"
        print(
            f"search bench: {bench.persons:,} people in {BENCH_DB} ({origin}), "
            f"build took {bench.load_seconds:.1f} s"
        )
        for label, seconds in bench.steps:
            print(f"  build step {seconds:7.1f} s  {label}")
        print(
            f"  {'kind':<24}{'n':>4}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
            f"{'server ms':>11}  found  patients indexes read (EXPLAIN sample)"
        )
        for kind, values in timings.items():
            print(
                f"  {kind:<24}{len(values):>4}{_percentile(values, 0.5):>9.1f}"
                f"{_percentile(values, 0.95):>9.1f}{max(values):>9.1f}"
                f"{statistics.mean(server.get(kind, [0.0])):>11.1f}"
                f"  {found.get(kind, 0):>2}/{len(values):<3}"
                f" {', '.join(sorted(plans.get(kind, set())))}"
            )
        typical = [
            ms for kind, values in timings.items() if kind not in RARE_KINDS for ms in values
        ]
        everything = [ms for values in timings.values() for ms in values]
        for label, values in (
            ("overall, typical kinds", typical),
            ("overall, all kinds", everything),
        ):
            print(
                f"  {label:<24}{len(values):>4}{_percentile(values, 0.5):>9.1f}"
                f"{_percentile(values, 0.95):>9.1f}{max(values):>9.1f}"
            )
        for elapsed, kind, query in sorted(slowest, reverse=True)[:5]:
            print(f"  slow: {elapsed:6.1f} ms  {kind}: {query!r}")
        for failure in failures:
            print(f"  NOT FOUND AS EXPECTED: {failure}")
    assert not failures
