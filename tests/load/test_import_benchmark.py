"""Benchmark: the migration import of 100,000 patients with dedup (target: under 2 minutes).

The file has, in every block of 100 rows: 1 malformed row, 5 rows of people already in the
registry (the row adds an e-mail and a card), 89 new people and 5 repeats of earlier rows of the
block written differently. Prints the time and rows per second; asserts only the counts.
"""

from __future__ import annotations

import csv
import datetime
import time
from pathlib import Path
from typing import Any

import pytest

from clinic.core.models import Organization
from patients.importing import DEFAULT_MAPPING, patients_import
from patients.models import Contact, ContactKind, ImportOutcome, ImportStatus, MedicalCard, Person
from tests.core.factories import BranchFactory, OrganizationFactory

pytestmark = [pytest.mark.load, pytest.mark.django_db(transaction=True)]

ROWS = 100_000
BLOCK = 100
MALFORMED, REGISTERED, REPEATED = range(1), range(1, 6), range(95, 100)
REPEAT_OFFSET = 89  # rows 95..99 of a block repeat rows 6..10
FIRST_DAY = datetime.date(1940, 1, 1)
SAME_DAY_EVERY = 20_000  # people i and i + 20,000 share a birth date, never a name pool

# Disjoint name pools: people born on the same day come from different pools, so no two of them
# have similar names and the expected counts are exact.
NAME_POOLS = [
    (["Иванов", "Петров", "Сидоров"], ["Пётр", "Иван", "Семён"], ["Сергеевич", "Ильич"]),
    (["Смирнова", "Волкова", "Зайцева"], ["Анна", "Ольга", "Дарья"], ["Олеговна", "Юрьевна"]),
    (["Кузнецов", "Морозов", "Павлов"], ["Дмитрий", "Алексей", "Глеб"], ["Андреевич", "Львович"]),
    (["Попова", "Лебедева", "Козлова"], ["Елена", "Ирина", "Нина"], ["Викторовна", "Тимуровна"]),
    (["Соколов", "Новиков", "Фёдоров"], ["Михаил", "Борис", "Егор"], ["Захарович", "Маркович"]),
]


def snils_for(index: int) -> str:
    digits = f"{100_000_000 + index:09d}"
    total = sum(int(digit) * weight for digit, weight in zip(digits, range(9, 0, -1), strict=True))
    total %= 101
    return f"{digits}{0 if total in (100, 101) else total:02d}"


def person_values(index: int) -> dict[str, Any]:
    last_names, first_names, patronymics = NAME_POOLS[index // SAME_DAY_EVERY]
    return {
        "last_name": last_names[index % len(last_names)],
        "first_name": first_names[index % len(first_names)],
        "patronymic": patronymics[index % len(patronymics)],
        "birth_date": FIRST_DAY + datetime.timedelta(days=index % SAME_DAY_EVERY),
        "phone": f"+7916{index:07d}",
        "snils": snils_for(index),
    }


def file_row(index: int, *, repeat: bool = False, malformed: bool = False) -> dict[str, str]:
    person = person_values(index)
    national = person["phone"][2:]
    row = {
        "last_name": person["last_name"].upper() if repeat else person["last_name"],
        "first_name": person["first_name"],
        "patronymic": person["patronymic"],
        "birth_date": person["birth_date"].isoformat()
        if repeat
        else person["birth_date"].strftime("%d.%m.%Y"),
        "phone": f"8 ({national[:3]}) {national[3:6]}-{national[6:8]}-{national[8:]}",
        "email": f"p{index}@example.org",
        "snils": person["snils"],
        "card_number": f"А{index + 1}",
        "card_type": "outpatient",
    }
    if malformed:
        row["birth_date"] = "31.02.1980"
    return {DEFAULT_MAPPING[name]: value for name, value in row.items()}


def write_file(path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(DEFAULT_MAPPING.values()), delimiter=";")
        writer.writeheader()
        for row in range(ROWS):
            position = row % BLOCK
            if position in REPEATED:
                writer.writerow(file_row(row - REPEAT_OFFSET, repeat=True))
            else:
                writer.writerow(file_row(row, malformed=position in MALFORMED))


def register_existing(organization: Organization) -> int:
    """People of the file's "registered" rows, with their phone (no e-mail, no card)."""
    people = []
    for row in range(ROWS):
        if row % BLOCK in REGISTERED:
            values = person_values(row)
            person = Person(
                organization=organization,
                **{name: value for name, value in values.items() if name != "phone"},
            )
            person.refresh_name_key()
            people.append((person, values["phone"]))
    Person.objects.bulk_create([person for person, _phone in people], batch_size=2000)
    Contact.objects.bulk_create(
        [
            Contact(person=person, kind=ContactKind.MOBILE, value=phone, digits=phone[1:])
            for person, phone in people
        ],
        batch_size=2000,
    )
    return len(people)


def test_import_of_100k_patients(tmp_path: Path, capsys: Any) -> None:
    organization = OrganizationFactory()
    BranchFactory(organization=organization)
    registered = register_existing(organization)
    path = tmp_path / "patients.csv"
    write_file(path)

    started = time.perf_counter()
    run = patients_import(organization=organization, path=path, mapping=DEFAULT_MAPPING)
    elapsed = time.perf_counter() - started

    blocks = ROWS // BLOCK
    new_people = blocks * (BLOCK - len(MALFORMED) - len(REGISTERED) - len(REPEATED))
    assert run.status == ImportStatus.COMPLETED
    assert (run.rows_total, run.rows_done) == (ROWS, ROWS)
    assert run.created_count == new_people
    assert run.merged_count == registered == blocks * len(REGISTERED)
    assert run.matched_count == blocks * len(REPEATED)
    assert run.rejected_count == blocks * len(MALFORMED)
    assert run.rows.count() == ROWS
    assert run.rows.filter(outcome=ImportOutcome.REJECTED, person__isnull=False).count() == 0
    assert Person.objects.count() == registered + new_people
    assert Contact.objects.count() == 2 * (registered + new_people)
    assert MedicalCard.objects.count() == registered + new_people
    with capsys.disabled():
        print(
            f"\nimport of {ROWS} rows ({registered} registered people, {blocks * len(REPEATED)} "
            f"repeats, {blocks * len(MALFORMED)} malformed): {elapsed:.1f} s, "
            f"{ROWS / elapsed:,.0f} rows/s"
        )
