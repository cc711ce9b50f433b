"""Migration import of patients: normalisation, dedup against the registry and within the file,
rejected rows, the report, re-runs, dry runs, resuming after a crash and the management command."""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import ManagementUtility, call_command
from django.db import connection
from django.utils import translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinic.audit.selectors import history_for_object
from clinic.core.roles import Role
from patients import importing
from patients.dedup import PersonFacts, duplicate_candidates
from patients.importing import (
    DEFAULT_MAPPING,
    CardTypeLookup,
    ImportFileError,
    ImportInProgressError,
    RowRejected,
    patients_import,
    row_read,
)
from patients.models import (
    CardNumberSequence,
    CardType,
    Contact,
    ImportOutcome,
    ImportRun,
    ImportStatus,
    MedicalCard,
    Person,
)

from ..core.factories import BranchFactory, OrganizationFactory, UserFactory, staff_with_role
from .factories import ContactFactory, MedicalCardFactory, PersonFactory

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
HEADERS = list(DEFAULT_MAPPING.values())
SNILS = "112-233-445 95"


def snils_with_check(number: int) -> str:
    """A valid SNILS (with its check number) for a 9-digit number above 001-001-998."""
    digits = f"{number:09d}"
    total = sum(int(digit) * weight for digit, weight in zip(digits, range(9, 0, -1), strict=True))
    total %= 101
    control = 0 if total in (100, 101) else total
    return f"{digits}{control:02d}"


def line(**values: Any) -> dict[str, Any]:
    """A file row from our field names (unmentioned columns are empty)."""
    return {DEFAULT_MAPPING[name]: value for name, value in values.items()}


def write_csv(
    path: Path, rows: list[dict[str, Any]], *, delimiter: str = ";", encoding: str = "utf-8"
) -> Path:
    with path.open("w", encoding=encoding, newline="") as target:
        writer = csv.DictWriter(target, fieldnames=HEADERS, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[dict[str, Any]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADERS)
    for row in rows:
        sheet.append([row.get(header) for header in HEADERS])
    workbook.save(path)
    return path


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """Messages are asserted in English (Russian translations come separately)."""
    with translation.override("en"):
        yield


@pytest.fixture
def clinic() -> dict[str, Any]:
    organization = OrganizationFactory()
    branch = BranchFactory(organization=organization, name="Central")
    return {
        "organization": organization,
        "branch": branch,
        "outpatient": CardType.objects.get(code="outpatient", organization=None),
    }


def run_import(clinic: dict[str, Any], path: Path, **kwargs: Any) -> ImportRun:
    return patients_import(
        organization=clinic["organization"], path=path, mapping=DEFAULT_MAPPING, **kwargs
    )


def outcomes(run: ImportRun) -> list[tuple[int, str, str]]:
    return list(run.rows.order_by("row_number").values_list("row_number", "outcome", "message"))


def registry_counts() -> dict[str, int]:
    return {
        "people": Person.objects.count(),
        "contacts": Contact.objects.count(),
        "cards": MedicalCard.objects.count(),
        "person events": Person.pgh_event_model.objects.count(),  # type: ignore[attr-defined]
        "contact events": Contact.pgh_event_model.objects.count(),  # type: ignore[attr-defined]
    }


# Normalisation ---------------------------------------------------------------------------------


def test_csv_row_is_normalised_like_the_desk(clinic: dict[str, Any], tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "people.csv",
        [
            line(
                last_name="  ИВАНОВА ",
                first_name="мария",
                patronymic="ивановна",
                birth_date="31.12.1980",
                phone="8 (916) 123-45-67",
                email="Maria@Example.ORG",
                snils=SNILS,
                oms_policy="7751 2345 6789 0123",
                card_number="А100",
                card_type="Амбулаторная карта (025/у)",
                address="Москва, ул. Ленина, 1",
            )
        ],
    )
    run = run_import(clinic, path)
    person = Person.objects.get()
    assert outcomes(run) == [(2, ImportOutcome.CREATED, "")]
    assert (person.last_name, person.first_name, person.patronymic) == (
        "Иванова",
        "Мария",
        "Ивановна",
    )
    assert person.name_key == "иванова мария ивановна"
    assert person.sex == "female"
    assert person.birth_date == datetime.date(1980, 12, 31)
    assert person.snils == "11223344595"
    assert person.oms_policy == "7751234567890123"
    assert person.registration_address == "Москва, ул. Ленина, 1"
    assert person.organization == clinic["organization"]
    assert sorted(person.contacts.values_list("kind", "value", "digits")) == [
        ("email", "maria@example.org", ""),
        ("mobile", "+79161234567", "79161234567"),
    ]
    card = person.cards.get()
    assert (card.card_type, card.number, card.branch) == (
        clinic["outpatient"],
        "А100",
        clinic["branch"],
    )
    assert run.rows.get().person == person


@pytest.mark.parametrize("typed", ["31.12.1980", "1980-12-31", "31/12/1980"])
def test_dates_in_any_common_form(clinic: dict[str, Any], tmp_path: Path, typed: str) -> None:
    path = write_csv(
        tmp_path / "people.csv", [line(last_name="Орлов", first_name="Олег", birth_date=typed)]
    )
    run_import(clinic, path)
    assert Person.objects.get().birth_date == datetime.date(1980, 12, 31)


def test_sex_comes_from_the_column_or_the_patronymic(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    rows = [
        line(last_name="Петрова", first_name="Анна", patronymic="Ивановна", birth_date="1.1.1990"),
        line(last_name="Петров", first_name="Олег", patronymic="Ильич", birth_date="2.1.1990"),
        line(last_name="Ким", first_name="Саша", birth_date="3.1.1990"),
        line(last_name="Ким", first_name="Женя", sex="Ж", birth_date="4.1.1990"),
        line(last_name="Ли", first_name="Дима", sex="муж.", birth_date="5.1.1990"),
    ]
    run_import(clinic, write_csv(tmp_path / "people.csv", rows))
    assert dict(Person.objects.values_list("first_name", "sex")) == {
        "Анна": "female",
        "Олег": "male",
        "Саша": "unknown",
        "Женя": "female",
        "Дима": "male",
    }


def test_phones_become_e164_in_the_organizations_region(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    rows = [
        line(
            last_name="Орлов",
            first_name="Олег",
            phone="8 (916) 123-45-67; +7 495 123-45-67, 9161112233",
        ),
    ]
    run_import(clinic, write_csv(tmp_path / "people.csv", rows))
    assert sorted(Contact.objects.values_list("kind", "value")) == [
        ("home", "+74951234567"),
        ("mobile", "+79161112233"),
        ("mobile", "+79161234567"),
    ]


def test_xlsx_with_date_and_number_cells(clinic: dict[str, Any], tmp_path: Path) -> None:
    rows = [
        line(
            last_name="сидоров",
            first_name="сидор",
            patronymic="сидорович",
            birth_date=datetime.datetime(1975, 5, 4),
            phone=89161234567,
            snils=11223344595,
            card_number=1001,
        ),
        line(last_name="Сидорова", first_name="Анна", birth_date="04/05/1976", phone="bad"),
    ]
    run = run_import(clinic, write_xlsx(tmp_path / "people.xlsx", rows))
    person = Person.objects.get()
    assert (person.full_name, person.birth_date, person.sex, person.snils) == (
        "Сидоров Сидор Сидорович",
        datetime.date(1975, 5, 4),
        "male",
        "11223344595",
    )
    assert list(person.contacts.values_list("value", flat=True)) == ["+79161234567"]
    assert list(person.cards.values_list("number", "card_type__code")) == [("1001", "outpatient")]
    assert outcomes(run) == [
        (2, "created", ""),
        (3, "rejected", "phone: “bad” is not a phone number."),
    ]


def test_windows_1251_csv_with_commas(clinic: dict[str, Any], tmp_path: Path) -> None:
    rows = [line(last_name="Ёлкина", first_name="Алёна", birth_date="01.02.1990")]
    path = write_csv(tmp_path / "people.csv", rows, delimiter=",", encoding="cp1251")
    run_import(clinic, path)
    assert Person.objects.get().full_name == "Ёлкина Алёна"


def test_text_is_stored_exactly_as_read(clinic: dict[str, Any], tmp_path: Path) -> None:
    """Tabs, new lines and backslashes survive the bulk write (COPY's escapes)."""
    address = "Москва,\tул. Ленина\\1\nкв. 2\r\\N"
    rows = [line(last_name="Орлов", first_name="Олег", birth_date="01.01.1980", address=address)]
    run_import(clinic, write_csv(tmp_path / "people.csv", rows))
    assert Person.objects.get().registration_address == address


def test_legacy_export_sample(clinic: dict[str, Any]) -> None:
    """A real-world-shaped export: Windows-1251, semicolons, quoted cells, blank lines."""
    mapping = json.loads((DATA / "legacy_export_mapping.json").read_text(encoding="utf-8"))
    run = patients_import(
        organization=clinic["organization"],
        path=DATA / "legacy_export_cp1251.csv",
        mapping=mapping,
    )
    assert (run.rows_total, run.created_count, run.merged_count, run.rejected_count) == (5, 3, 1, 1)
    assert outcomes(run)[-1] == (
        8,
        "rejected",
        "birth_date: “29.02.1983” is not a date: write it as 31.12.1980.",
    )
    assert sorted(Person.objects.values_list("last_name", "first_name", "patronymic")) == [
        ("Кузнецова", "Анна-Мария", "Олеговна"),
        ("Смирнов", "Алексей", "Петрович"),
        ("Фёдоров", "Иван", ""),
    ]
    assert set(Contact.objects.values_list("value", flat=True)) == {
        "+79031234567",
        "+79261112233",
        "+74957654321",
        "anna@example.ru",
    }


# Dedup -----------------------------------------------------------------------------------------


def test_rows_of_registered_people_match_and_fill_in_what_is_missing(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    organization = clinic["organization"]
    by_snils = PersonFactory(
        organization=organization, last_name="Белова", first_name="Ирина", snils="11223344595"
    )
    by_phone = PersonFactory(
        organization=organization, last_name="Зорин", first_name="Пётр", patronymic="Ильич"
    )
    ContactFactory(person=by_phone, value="+79160000001")
    by_name = PersonFactory(
        organization=organization,
        last_name="Смирнова",
        first_name="Ольга",
        patronymic="Викторовна",
        birth_date=datetime.date(1985, 3, 14),
    )
    rows = [
        # Same SNILS, another spelling of the name, a new phone.
        line(last_name="Белова-Ким", first_name="Ирина", snils=SNILS, phone="+7 916 000-00-09"),
        # Same phone, the name with е for ё and without the patronymic: nothing new.
        line(last_name="зорин", first_name="петр", phone="8 916 000 00 01"),
        # A typo in the name, the same birth date, and a card.
        line(
            last_name="Смирнова",
            first_name="Ольга",
            patronymic="Викторвна",
            birth_date="14.03.1985",
            card_number="А7",
        ),
        # The same phone as Зорин but another person (a relative): created, with a note.
        line(last_name="Зорина", first_name="Мария", phone="89160000001"),
        # The same name as Смирнова but born on another day: another person.
        line(
            last_name="Смирнова", first_name="Ольга", patronymic="Викторовна", birth_date="1.1.2000"
        ),
    ]
    run = run_import(clinic, write_csv(tmp_path / "people.csv", rows))
    assert outcomes(run) == [
        (2, "merged", "same SNILS; added: +79160000009"),
        (3, "matched", "same phone, similar name"),
        (4, "merged", "similar name, same birth date; added: card А7 (Амбулаторная карта (025/у))"),
        (5, "created", "a phone or e-mail is shared with another person"),
        (6, "created", ""),
    ]
    assert [row.person_id for row in run.rows.order_by("row_number")[:3]] == [
        by_snils.pk,
        by_phone.pk,
        by_name.pk,
    ]
    assert list(by_snils.contacts.values_list("value", flat=True)) == ["+79160000009"]
    assert list(by_name.cards.values_list("number", flat=True)) == ["А7"]
    assert Person.objects.count() == 5
    by_snils.refresh_from_db()
    assert by_snils.last_name == "Белова"  # a match never renames the registered person


def test_matched_people_are_duplicate_candidates_of_the_desk(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    """The in-memory matcher finds nobody that ``duplicate_candidates`` would not show."""
    organization = clinic["organization"]
    registered = PersonFactory(
        organization=organization,
        last_name="Смирнова",
        first_name="Ольга",
        patronymic="Викторовна",
        birth_date=datetime.date(1985, 3, 14),
    )
    ContactFactory(person=registered, value="+79160000001")
    rows = [
        line(
            last_name="Смирнова",
            first_name="Ольга",
            patronymic="Викторвна",
            birth_date="14.03.1985",
        ),
        line(last_name="Смирнова", first_name="Ольга", phone="+79160000001"),
    ]
    run = run_import(clinic, write_csv(tmp_path / "people.csv", rows))
    assert run.matched_count == 2
    for patronymic, birth_date, phones in (
        ("Викторвна", datetime.date(1985, 3, 14), ()),
        ("", None, ("+79160000001",)),
    ):
        facts = PersonFacts(
            last_name="Смирнова",
            first_name="Ольга",
            patronymic=patronymic,
            birth_date=birth_date,
            phones=phones,
        )
        candidates = duplicate_candidates(organization=organization, facts=facts)
        assert [candidate.person for candidate in candidates] == [registered]


def test_rows_of_the_same_person_within_the_file(clinic: dict[str, Any], tmp_path: Path) -> None:
    rows = [
        line(last_name="Гусев", first_name="Олег", birth_date="01.01.1970", phone="89161230001"),
        line(last_name="ГУСЕВ", first_name="олег", birth_date="1970-01-01", phone="89161230002"),
        line(last_name="Гусев", first_name="Олег", birth_date="01.01.1970", phone="89161230001"),
        line(last_name="Гусев", first_name="Олег", snils=SNILS, phone="89161230002"),
        line(last_name="Гусев", first_name="Олег", snils=SNILS),
    ]
    run = run_import(clinic, write_csv(tmp_path / "people.csv", rows), batch_size=2)
    person = Person.objects.get()
    assert outcomes(run) == [
        (2, "created", ""),
        (3, "merged", "similar name, same birth date; added: +79161230002"),
        (4, "matched", "similar name, same birth date"),
        (5, "merged", "same phone, similar name; added: SNILS"),
        (6, "matched", "same SNILS"),
    ]
    assert set(run.rows.values_list("person_id", flat=True)) == {person.pk}
    assert person.snils == "11223344595"
    assert sorted(person.contacts.values_list("value", flat=True)) == [
        "+79161230001",
        "+79161230002",
    ]


def test_a_different_snils_or_birth_date_is_another_person(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    other_snils = snils_with_check(223344556)
    rows = [
        line(last_name="Гусев", first_name="Олег", birth_date="01.01.1970", snils=SNILS),
        line(last_name="Гусев", first_name="Олег", birth_date="01.01.1970", snils=other_snils),
        line(last_name="Гусев", first_name="Олег", birth_date="01.01.1940", phone="89161230001"),
        line(last_name="Гусев", first_name="Олег", birth_date="01.01.1970", phone="89161230001"),
    ]
    run = run_import(clinic, write_csv(tmp_path / "people.csv", rows))
    assert [outcome for _row, outcome, _message in outcomes(run)] == [
        "created",
        "created",
        "created",
        "merged",
    ]
    assert Person.objects.count() == 3


# Rejected rows ---------------------------------------------------------------------------------


def test_malformed_rows_are_rejected_naming_the_field_and_value(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    owner = PersonFactory(organization=clinic["organization"], last_name="Другой")
    MedicalCardFactory(person=owner, card_type=clinic["outpatient"], number="А100")
    rows = [
        line(last_name="Орлов", first_name="Олег", birth_date="31.02.1980"),
        line(last_name="Орлов", first_name="Олег", birth_date="01.01.2999"),
        line(last_name="Орлов", first_name="Олег", phone="123"),
        line(last_name="Орлов", first_name="Олег", email="oleg@"),
        line(last_name="Орлов", first_name="Олег", snils="112-233-445 96"),
        line(last_name="Орлов", first_name="", birth_date="01.01.1980"),
        line(last_name="Орл0в", first_name="Олег", birth_date="01.01.1980"),
        line(last_name="Орлов", first_name="Олег", sex="X", birth_date="01.01.1980"),
        line(last_name="Орлов", first_name="Олег", card_number="5", card_type="Зубная"),
        line(last_name="Орлов", first_name="Олег", card_number="А100"),
        line(last_name="Орлов", first_name="Олег"),
        line(last_name="Орлов", first_name="Олег", birth_date="32.01.1980", phone="1"),
    ]
    run = run_import(clinic, write_csv(tmp_path / "people.csv", rows))
    assert [message for _row, _outcome, message in outcomes(run)] == [
        "birth_date: “31.02.1980” is not a date: write it as 31.12.1980.",
        "birth_date: Birth date 01.01.2999 is in the future.",
        "phone: “123” is not a valid phone number.",
        "email: “oleg@” is not an e-mail address.",
        "snils: SNILS “112-233-445 96” is invalid: 11 digits with a correct check number are "
        "expected.",
        "first_name: the name is empty.",
        "last_name: “Орл0в” contains digits.",
        "sex: “X” is not a sex: write М or Ж.",
        "card_type: “Зубная” is not a card type of this organization.",
        "card_number: “А100” (Амбулаторная карта (025/у)) is the card of another person.",
        "The row has neither a birth date nor a phone, e-mail, SNILS, OMS policy or card number: "
        "the person cannot be told apart from namesakes.",
        "birth_date: “32.01.1980” is not a date: write it as 31.12.1980. "
        "phone: “1” is not a phone number.",
    ]
    assert set(run.rows.values_list("outcome", flat=True)) == {ImportOutcome.REJECTED}
    assert run.rows.filter(person__isnull=False).count() == 0
    assert Person.objects.count() == 1


# The report ------------------------------------------------------------------------------------


def test_totals_checksum_and_history_of_the_run(clinic: dict[str, Any], tmp_path: Path) -> None:
    administrator = staff_with_role(Role.ADMINISTRATOR, organization=clinic["organization"])
    PersonFactory(organization=clinic["organization"], snils="11223344595")
    rows = [
        line(last_name="Орлов", first_name="Олег", birth_date="01.01.1980"),
        line(last_name="Орлов", first_name="Олег", birth_date="01.01.1980"),
        line(last_name="Белова", first_name="Ирина", snils=SNILS, phone="89160000009"),
        line(last_name="Орлов", first_name="Олег", birth_date="31.02.1980"),
    ]
    path = write_csv(tmp_path / "people.csv", rows)
    run = run_import(clinic, path, actor=administrator.user)
    run.refresh_from_db()
    assert run.file_checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.file_name == "people.csv"
    assert run.mapping == DEFAULT_MAPPING
    assert (run.status, run.dry_run, run.started_by) == (
        ImportStatus.COMPLETED,
        False,
        administrator.user,
    )
    assert run.finished_at is not None
    assert (run.rows_total, run.rows_done) == (4, 4)
    assert (run.created_count, run.matched_count, run.merged_count, run.rejected_count) == (
        1,
        1,
        1,
        1,
    )
    assert run.rows.count() == 4
    created = Person.objects.get(last_name="Орлов")
    assert created.created_by == administrator.user
    [event] = history_for_object(created)
    assert event.pgh_label == "insert"
    assert event.user == administrator.user
    assert event.pgh_context["import_run"] == str(run.public_id)


def test_card_numbering_continues_after_imported_numbers(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    rows = [
        line(last_name="Орлов", first_name="Олег", card_number="А120"),
        line(last_name="Белов", first_name="Иван", card_number="А7"),
        line(last_name="Ким", first_name="Ли", card_number="старый-1"),
    ]
    run_import(clinic, write_csv(tmp_path / "people.csv", rows))
    sequence = CardNumberSequence.objects.get(
        organization=clinic["organization"], card_type=clinic["outpatient"]
    )
    assert sequence.next_value == 121


# Re-runs, dry runs and resuming ----------------------------------------------------------------


def mixed_rows() -> list[dict[str, Any]]:
    return [
        line(last_name="Орлов", first_name="Олег", birth_date="01.01.1980", card_number="А1"),
        line(last_name="Белова", first_name="Ирина", snils=SNILS, phone="89160000009"),
        line(last_name="Орлов", first_name="Олег", birth_date="01.01.1980", phone="89160000001"),
        line(last_name="Ким", first_name="Ли", email="li@example.org"),
        line(last_name="Ким", first_name="Ли", phone="89160000002", email="LI@example.org"),
    ]


def test_running_the_same_file_again_creates_nothing(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    PersonFactory(organization=clinic["organization"], last_name="Белова", snils="11223344595")
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    first = run_import(clinic, path)
    assert (first.created_count, first.matched_count, first.merged_count) == (2, 0, 3)
    before = registry_counts()
    second = run_import(clinic, path)
    assert second.pk != first.pk
    assert (second.created_count, second.matched_count, second.merged_count) == (0, 5, 0)
    assert second.rejected_count == 0
    assert registry_counts() == before


def test_dry_run_reports_everything_and_changes_nothing(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    PersonFactory(organization=clinic["organization"], last_name="Белова", snils="11223344595")
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    before = registry_counts()
    dry = run_import(clinic, path, dry_run=True)
    assert registry_counts() == before
    assert CardNumberSequence.objects.count() == 0
    assert dry.dry_run is True
    assert dry.status == ImportStatus.COMPLETED
    assert dry.rows.filter(outcome="created", person__isnull=False).count() == 0

    real = run_import(clinic, path)
    assert [(o, m) for _r, o, m in outcomes(dry)] == [(o, m) for _r, o, m in outcomes(real)]
    assert (dry.created_count, dry.matched_count, dry.merged_count) == (
        real.created_count,
        real.matched_count,
        real.merged_count,
    )
    assert Person.objects.count() == before["people"] + real.created_count


@pytest.mark.parametrize("left_as", [ImportStatus.FAILED, ImportStatus.RUNNING])
def test_an_interrupted_import_resumes_where_it_stopped(
    clinic: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, left_as: str
) -> None:
    """Batches before the crash stay; the next run of the file processes each row once.

    ``running`` stands for a process that was killed and could not mark its run failed.
    """
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    batch_write = importing._batch_write
    calls = {"count": 0}

    def crash_after_first_batch(importer: Any) -> None:
        calls["count"] += 1
        if calls["count"] == 2:
            raise RuntimeError("simulated crash")
        batch_write(importer)

    monkeypatch.setattr(importing, "_batch_write", crash_after_first_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_import(clinic, path, batch_size=2)
    crashed = ImportRun.objects.get()
    assert (crashed.status, crashed.rows_done, crashed.created_count) == (ImportStatus.FAILED, 2, 2)
    assert Person.objects.count() == 2
    ImportRun.objects.filter(pk=crashed.pk).update(status=left_as)

    monkeypatch.setattr(importing, "_batch_write", batch_write)
    resumed = run_import(clinic, path, batch_size=2)
    assert resumed.pk == crashed.pk
    assert (resumed.status, resumed.rows_total, resumed.rows_done) == (ImportStatus.COMPLETED, 5, 5)
    assert list(resumed.rows.order_by("row_number").values_list("row_number", flat=True)) == [
        2,
        3,
        4,
        5,
        6,
    ]
    assert (resumed.created_count, resumed.matched_count, resumed.merged_count) == (3, 0, 2)
    assert Person.objects.count() == 3
    assert ImportRun.objects.count() == 1


def test_a_dry_run_is_never_resumed(
    clinic: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "people.csv", mixed_rows())

    def crash(importer: Any) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(importing, "_batch_write", crash)
    with pytest.raises(RuntimeError):
        run_import(clinic, path, dry_run=True)
    monkeypatch.undo()
    dry = run_import(clinic, path, dry_run=True)
    assert (dry.rows_done, dry.created_count) == (5, 3)
    assert ImportRun.objects.filter(dry_run=True).count() == 2


def test_the_same_file_cannot_be_imported_twice_at_once(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    key = importing._lock_key(clinic["organization"], importing.file_checksum(path))
    database = connection.settings_dict
    with psycopg.connect(
        dbname=database["NAME"],
        user=database["USER"],
        password=database["PASSWORD"] or None,
        host=database["HOST"],
        port=database["PORT"] or None,
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [key])
        with pytest.raises(ImportInProgressError):
            run_import(clinic, path)
        # Unlock before closing: the server ends a closed session's locks asynchronously.
        other.execute("SELECT pg_advisory_unlock(%s)", [key])
    assert ImportRun.objects.count() == 0
    assert run_import(clinic, path).status == ImportStatus.COMPLETED


def test_importing_needs_the_administrators_capability_in_that_organization(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    registrar = staff_with_role(Role.REGISTRAR, organization=clinic["organization"])
    elsewhere = staff_with_role(Role.ADMINISTRATOR, organization=OrganizationFactory())
    for user in (registrar.user, elsewhere.user):
        with pytest.raises(PermissionDenied):
            run_import(clinic, path, actor=user)
    assert ImportRun.objects.count() == 0
    assert Person.objects.count() == 0


def test_a_mapped_column_missing_from_the_file_is_named(
    clinic: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Фамилия;Имя\nОрлов;Олег\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as raised:
        run_import(clinic, path)
    assert str(raised.value) == (
        "The file has no column “Отчество” (mapped to “patronymic”); "
        "its columns are: “Фамилия”, “Имя”."
    )
    assert ImportRun.objects.count() == 0


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ([], "The mapping must be a JSON object of field names to column headers"),
        ({"first_name": "Имя"}, "The mapping must name the column of the field “last_name”."),
        ({"last_name": "Ф", "first_name": "И", "age": "Возраст"}, "unknown field “age”"),
        ({"last_name": "Ф", "first_name": " "}, "no column header for the field “first_name”"),
    ],
)
def test_bad_mappings_are_refused(
    clinic: dict[str, Any], tmp_path: Path, mapping: Any, message: str
) -> None:
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    with pytest.raises(ImportFileError, match=message):
        patients_import(organization=clinic["organization"], path=path, mapping=mapping)


# Reading rows (property-based) -----------------------------------------------------------------


def offline_card_types() -> CardTypeLookup:
    lookup = CardTypeLookup.__new__(CardTypeLookup)
    outpatient = CardType(pk=1, code="outpatient", name="Амбулаторная", number_prefix="А")
    lookup.by_label = {"outpatient": outpatient}
    lookup.default = outpatient
    return lookup


FIELD_PREFIXES = (*(f"{name}: " for name in DEFAULT_MAPPING), "The row has neither")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(list(DEFAULT_MAPPING)), st.text(max_size=30)))
def test_any_row_is_read_or_rejected_with_named_fields(values: dict[str, str]) -> None:
    values = {name: value.strip() for name, value in values.items()}
    try:
        facts = row_read(values, region="RU", card_types=offline_card_types())
    except RowRejected as rejected:
        assert rejected.messages
        assert all(message.startswith(FIELD_PREFIXES) for message in rejected.messages)
        return
    assert facts.last_name and facts.first_name
    assert facts.sex in ("male", "female", "unknown")
    assert all(value.startswith("+") for _kind, value in facts.phones)
    assert facts.identifies


# The management command ------------------------------------------------------------------------


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(DEFAULT_MAPPING, ensure_ascii=False), encoding="utf-8")
    return path


def test_command_prints_the_report(
    clinic: dict[str, Any], tmp_path: Path, mapping_file: Path
) -> None:
    administrator = staff_with_role(Role.ADMINISTRATOR, organization=clinic["organization"])
    rows = [*mixed_rows(), line(last_name="Орлов", first_name="Олег", birth_date="31.02.1980")]
    path = write_csv(tmp_path / "people.csv", rows)
    out = io.StringIO()
    call_command(
        "import_patients",
        str(path),
        mapping=str(mapping_file),
        organization=clinic["organization"].inn,
        user=administrator.user.username,
        stdout=out,
    )
    run = ImportRun.objects.get()
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    organization = clinic["organization"]
    assert out.getvalue().splitlines() == [
        "File: people.csv",
        f"Checksum (SHA-256): {checksum}",
        f"Organization: {organization.short_name} (INN {organization.inn})",
        "Rows: 6; created: 3; matched: 0; merged: 2; rejected: 1.",
        "Rejected rows (the first 1 of 1):",
        "  row 7: birth_date: “31.02.1980” is not a date: write it as 31.12.1980.",
        f"Report: import {run.public_id}",
    ]
    assert run.started_by == administrator.user
    assert Person.objects.filter(created_by=administrator.user).count() == 3


def test_command_dry_run(clinic: dict[str, Any], tmp_path: Path, mapping_file: Path) -> None:
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    out = io.StringIO()
    call_command(
        "import_patients",
        str(path),
        "--dry-run",
        mapping=str(mapping_file),
        organization=clinic["organization"].inn,
        stdout=out,
    )
    assert "Dry run: nothing was written to the registry." in out.getvalue()
    assert "Rows: 5; created: 3; matched: 0; merged: 2; rejected: 0." in out.getvalue()
    assert Person.objects.count() == 0


@pytest.fixture
def run_manage(monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """Run a command as ``manage.py`` does (a usage error ends with ``sys.exit``).

    ``run_from_argv`` closes the database connections at the end, which would end the test's
    transaction.
    """
    monkeypatch.setattr("django.core.management.base.connections.close_all", lambda: None)
    return manage


def manage(*argv: str) -> int:
    try:
        ManagementUtility(["manage.py", *argv]).execute()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_command_bad_mapping_is_a_one_line_error(
    clinic: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    run_manage: Callable[..., int],
) -> None:
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    bad = tmp_path / "bad.json"
    bad.write_text('{"last_name": "Фамилия",', encoding="utf-8")
    code = run_manage(
        "import_patients",
        str(path),
        "--mapping",
        str(bad),
        "--organization",
        clinic["organization"].inn,
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [
        f"CommandError: {bad}: The mapping is not valid JSON: "
        "Expecting property name enclosed in double quotes: line 1 column 25 (char 24)."
    ]
    assert ImportRun.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("missing file", "CommandError: The file “{tmp}/nothing.csv” does not exist."),
        ("missing mapping", "CommandError: The mapping file “{tmp}/nothing.json” does not exist."),
        ("unknown field", "CommandError: {tmp}/mapping.json: The mapping names an unknown field"),
        ("unknown organization", "CommandError: There is no organization with INN “0000000000”."),
        ("unknown user", "CommandError: There is no user “nobody”."),
    ],
)
def test_command_usage_errors_exit_with_2(
    clinic: dict[str, Any],
    tmp_path: Path,
    mapping_file: Path,
    capsys: pytest.CaptureFixture[str],
    run_manage: Callable[..., int],
    change: str,
    error: str,
) -> None:
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    argv = [str(path), "--mapping", str(mapping_file), "--organization", clinic["organization"].inn]
    if change == "missing file":
        argv[0] = str(tmp_path / "nothing.csv")
    elif change == "missing mapping":
        argv[2] = str(tmp_path / "nothing.json")
    elif change == "unknown field":
        mapping_file.write_text(json.dumps({**DEFAULT_MAPPING, "age": "Возраст"}), encoding="utf-8")
    elif change == "unknown organization":
        argv[4] = "0000000000"
    else:
        argv += ["--user", "nobody"]
    assert run_manage("import_patients", *argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(error.format(tmp=tmp_path))
    assert ImportRun.objects.count() == 0


def test_command_refuses_a_user_who_may_not_import(
    clinic: dict[str, Any],
    tmp_path: Path,
    mapping_file: Path,
    capsys: pytest.CaptureFixture[str],
    run_manage: Callable[..., int],
) -> None:
    UserFactory(username="clerk")
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    code = run_manage(
        "import_patients",
        str(path),
        "--mapping",
        str(mapping_file),
        "--organization",
        clinic["organization"].inn,
        "--user",
        "clerk",
    )
    assert code == 2
    organization = clinic["organization"]
    assert capsys.readouterr().err.splitlines() == [
        f"CommandError: The user “clerk” may not import patients into {organization}."
    ]


# Outside a transaction: batches written by a second connection --------------------------------


@pytest.mark.django_db(transaction=True)
def test_committed_batches_survive_a_crash_of_the_writer_and_the_import_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a transaction batches are written by a writer thread, each committed on its own."""
    organization = OrganizationFactory()
    BranchFactory(organization=organization)
    administrator = staff_with_role(Role.ADMINISTRATOR, organization=organization)
    path = write_csv(tmp_path / "people.csv", mixed_rows())
    batch_write = importing._batch_write
    threads = set()
    calls = {"count": 0}
    switch_interval = sys.getswitchinterval()

    def crash_on_second_batch(batch: Any) -> None:
        threads.add(threading.current_thread().name)
        calls["count"] += 1
        if calls["count"] == 2:
            raise RuntimeError("simulated crash")
        batch_write(batch)

    monkeypatch.setattr(importing, "_batch_write", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        patients_import(
            organization=organization,
            path=path,
            mapping=DEFAULT_MAPPING,
            actor=administrator.user,
            batch_size=2,
        )
    assert threads == {"patients-import-writer"}
    crashed = ImportRun.objects.get()
    assert (crashed.status, crashed.rows_done) == (ImportStatus.FAILED, 2)
    assert Person.objects.count() == 2

    monkeypatch.setattr(importing, "_batch_write", batch_write)
    resumed = patients_import(
        organization=organization,
        path=path,
        mapping=DEFAULT_MAPPING,
        actor=administrator.user,
        batch_size=2,
    )
    assert resumed.pk == crashed.pk
    assert (resumed.status, resumed.rows_done, resumed.created_count) == (
        ImportStatus.COMPLETED,
        5,
        3,
    )
    assert Person.objects.count() == 3
    assert sys.getswitchinterval() == switch_interval
    person = Person.objects.get(last_name="Ким")
    events = list(history_for_object(person))
    assert [event.pgh_label for event in events] == ["insert"]
    assert events[0].user == administrator.user
    assert events[0].pgh_context["import_run"] == str(resumed.public_id)
