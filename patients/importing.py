"""Migration import of patients from a CSV or XLSX file.

The file is read through a column mapping (our field name → the file's column header, see
``DEFAULT_MAPPING``). Every row goes through the normalisers the desk uses (names, E.164 phones in
the organization's region, dates, SNILS) and is then compared with the organization's registry and
with the rows before it:

* a strong match is the same person: the same SNILS or OMS policy; the same card number, phone or
  e-mail with a similar name; or a similar name with the same birth date (a different SNILS or
  birth date on both sides rules a match out). What the row adds to that person (contacts, a
  card, blank identity fields) is filled in and the row is "merged"; when it adds nothing the row
  is "matched";
* any other row creates a person ("created");
* a row that cannot be read, or contradicts the registry (a card number or OMS policy of another
  person), is "rejected" with a message naming the field and the value.

Rows are processed in batches, each in its own transaction that also writes the rows' report
(``ImportRow``) and advances ``ImportRun.rows_done``, so a crash loses at most the batch in flight.
Importing the same file (by SHA-256) into the same organization again resumes a run that did not
complete; after a completed run every row matches and nothing new is created. A dry run computes
and reports everything (its ``ImportRun`` and rows are kept as the report) but writes nothing to
the registry.

Matching uses the same reasons as ``dedup.duplicate_candidates``, but against the registry's keys
loaded into memory once per run (phones, e-mails, SNILS, OMS policies, card numbers and names by
birth date), with the trigram similarity computed in Python: one query per row would make a
migration of 100,000 patients take far too long. For the same reason rows are written with
``COPY`` (the history triggers fire as for ``INSERT``) by a second thread with its own connection,
while the next batch is read; new people get their primary keys from the sequence beforehand, so
later rows can point at them at once.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime
import hashlib
import itertools
import json
import queue
import sys
import threading
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openpyxl
import pghistory
import phonenumbers
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import connection, connections, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from openpyxl.utils.exceptions import InvalidFileException

from clinic.core.models import Branch, Organization
from clinic.core.validators import normalize_snils, validate_snils

from . import policies
from .dedup import NAME_SIMILARITY_THRESHOLD, name_trigrams
from .models import (
    CardNumberSequence,
    CardType,
    Contact,
    ContactKind,
    ImportOutcome,
    ImportRow,
    ImportRun,
    ImportStatus,
    MedicalCard,
    Person,
    Sex,
)
from .normalizers import (
    normalize_name_part,
    normalize_phone,
    parse_date,
    phone_digits,
    search_key,
    sex_from_patronymic,
    validate_birth_date,
)

DEFAULT_MAPPING: dict[str, str] = {
    "last_name": "Фамилия",
    "first_name": "Имя",
    "patronymic": "Отчество",
    "birth_date": "Дата рождения",
    "sex": "Пол",
    "phone": "Телефон",
    "email": "Email",
    "snils": "СНИЛС",
    "oms_policy": "Полис ОМС",
    "card_number": "Номер карты",
    "card_type": "Тип карты",
    "address": "Адрес",
}
IMPORT_FIELDS: tuple[str, ...] = tuple(DEFAULT_MAPPING)
REQUIRED_FIELDS = ("last_name", "first_name")
DEFAULT_BATCH_SIZE = 500
DEFAULT_CARD_TYPE_CODE = "outpatient"
CSV_DELIMITERS = (",", ";", "\t", "|")
CSV_FALLBACK_ENCODING = "cp1251"  # what Excel in a Russian locale saves as "CSV"
MULTIPLE_VALUES_SEPARATORS = str.maketrans({";": ",", "\n": ","})

SEX_WORDS = {
    "м": Sex.MALE,
    "муж": Sex.MALE,
    "мужской": Sex.MALE,
    "m": Sex.MALE,
    "male": Sex.MALE,
    "ж": Sex.FEMALE,
    "жен": Sex.FEMALE,
    "женский": Sex.FEMALE,
    "f": Sex.FEMALE,
    "female": Sex.FEMALE,
}
PHONE_KIND_BY_NUMBER_TYPE = {
    phonenumbers.PhoneNumberType.FIXED_LINE: ContactKind.HOME,
}

NAME_MAX_LENGTH = 100
OMS_POLICY_MAX_LENGTH = 20
CARD_NUMBER_MAX_LENGTH = 40
EMAIL_MAX_LENGTH = 254


class ImportFileError(ValueError):
    """The file or the mapping cannot be used; the message names the problem in one line."""


class ImportInProgressError(RuntimeError):
    """Another process is importing the same file into the same organization right now."""


# The mapping -----------------------------------------------------------------------------------


def mapping_validate(raw: object) -> dict[str, str]:
    """The mapping with headers trimmed; an error names the first problem found."""
    if not isinstance(raw, dict) or not raw:
        raise ImportFileError(
            _(
                "The mapping must be a JSON object of field names to column headers, "
                "such as {“last_name”: “Фамилия”}."
            )
        )
    unknown = sorted(str(name) for name in raw if name not in IMPORT_FIELDS)
    if unknown:
        raise ImportFileError(
            _("The mapping names an unknown field “%(field)s”; the fields are: %(fields)s.")
            % {"field": unknown[0], "fields": ", ".join(IMPORT_FIELDS)}
        )
    mapping: dict[str, str] = {}
    for name, header in raw.items():
        if not isinstance(header, str) or not header.strip():
            raise ImportFileError(
                _("The mapping gives no column header for the field “%(field)s”.") % {"field": name}
            )
        mapping[name] = header.strip()
    for name in REQUIRED_FIELDS:
        if name not in mapping:
            raise ImportFileError(
                _("The mapping must name the column of the field “%(field)s”.") % {"field": name}
            )
    return mapping


def mapping_parse(text: str) -> dict[str, str]:
    """A mapping typed as JSON (the admin's text area, the command's mapping file)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFileError(
            _("The mapping is not valid JSON: %(error)s.") % {"error": error}
        ) from None
    return mapping_validate(raw)


def mapping_load(path: str | Path) -> dict[str, str]:
    mapping_path = Path(path)
    try:
        text = mapping_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImportFileError(
            _("The mapping file “%(path)s” does not exist.") % {"path": mapping_path}
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ImportFileError(
            _("The mapping file “%(path)s” cannot be read: %(error)s.")
            % {"path": mapping_path, "error": error}
        ) from None
    try:
        return mapping_parse(text)
    except ImportFileError as error:
        raise ImportFileError(f"{mapping_path}: {error}") from None


# Reading the file ------------------------------------------------------------------------------


def file_checksum(path: str | Path) -> str:
    """SHA-256 of the file's bytes (hex): the identity of "the same file" for resuming."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cell_text(value: object) -> str:
    """A cell as text: spreadsheet dates as ISO dates, whole numbers without ".0"."""
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.date().isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).replace("\x00", "").strip()  # PostgreSQL text cannot hold NUL


@dataclass(frozen=True)
class SourceTable:
    """The first sheet of a workbook, or a CSV file: its header and data rows.

    Row numbers are those a spreadsheet shows (the header is row 1); blank rows are skipped.
    """

    path: Path
    kind: str  # "csv" or "xlsx"
    headers: tuple[str, ...]
    header_row: int
    encoding: str = ""
    delimiter: str = ","

    def _raw_rows(self) -> Iterator[tuple[object, ...] | list[str]]:
        if self.kind == "xlsx":
            yield from _xlsx_rows(self.path)
            return
        with self.path.open(encoding=self.encoding, newline="") as source:
            yield from csv.reader(source, delimiter=self.delimiter)

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(row number, cells as text) of each non-blank row after the header."""
        rows = enumerate(self._raw_rows(), start=1)
        for row_number, cells in rows:
            if row_number <= self.header_row:
                continue
            if self.kind == "csv":
                texts = [str(cell).replace("\x00", "").strip() for cell in cells]
            else:
                texts = [cell_text(cell) for cell in cells]
            if any(texts):
                yield row_number, texts

    def count(self) -> int:
        return sum(1 for _record in self.records())

    def column_indexes(self, mapping: dict[str, str]) -> dict[str, int]:
        """The column of each mapped field; headers match exactly, else ignoring case."""
        exact = {header: index for index, header in enumerate(self.headers) if header}
        folded = {header.casefold(): index for header, index in reversed(exact.items())}
        indexes = {}
        for name, header in mapping.items():
            index = exact.get(header, folded.get(header.casefold()))
            if index is None:
                raise ImportFileError(
                    _(
                        "The file has no column “%(header)s” (mapped to “%(field)s”); "
                        "its columns are: %(columns)s."
                    )
                    % {
                        "header": header,
                        "field": name,
                        "columns": ", ".join(f"“{h}”" for h in self.headers if h),
                    }
                )
            indexes[name] = index
        return indexes


def _xlsx_rows(path: Path) -> Iterator[tuple[object, ...]]:
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as error:
        raise ImportFileError(
            _("“%(name)s” is not a readable XLSX workbook: %(error)s.")
            % {"name": path.name, "error": error}
        ) from None
    try:
        sheet = workbook.worksheets[0]
        # Some writers store a wrong sheet size; without this a read-only sheet stops there.
        sheet.reset_dimensions()
        yield from sheet.iter_rows(values_only=True)
    finally:
        workbook.close()


def _csv_encoding(path: Path) -> str:
    """UTF-8 (with or without a BOM) when the whole file decodes as such, else Windows-1251."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as source:
        try:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return CSV_FALLBACK_ENCODING
    return "utf-8-sig"


def table_open(path: str | Path) -> SourceTable:
    """Open a CSV or XLSX file (told apart by content, not by name) and read its header."""
    source = Path(path)
    if not source.is_file():
        raise ImportFileError(_("The file “%(path)s” does not exist.") % {"path": source})
    with source.open("rb") as head:
        is_zip = head.read(4) == b"PK\x03\x04"
    if is_zip:
        for row_number, cells in enumerate(_xlsx_rows(source), start=1):
            headers = tuple(cell_text(cell) for cell in cells)
            if any(headers):
                return SourceTable(source, "xlsx", headers, row_number)
        raise ImportFileError(_("The file “%(name)s” is empty.") % {"name": source.name})
    encoding = _csv_encoding(source)
    with source.open(encoding=encoding, newline="") as text:
        for line_number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            delimiter = max(CSV_DELIMITERS, key=line.count)
            header_row = next(csv.reader([line], delimiter=delimiter))
            headers = tuple(cell.strip() for cell in header_row)
            return SourceTable(source, "csv", headers, line_number, encoding, delimiter)
    raise ImportFileError(_("The file “%(name)s” is empty.") % {"name": source.name})


# Reading one row -------------------------------------------------------------------------------


class RowRejected(Exception):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(" ".join(messages))
        self.messages = messages


@dataclass
class RowFacts:
    """One row, normalised: what a person record is made of."""

    last_name: str
    first_name: str
    patronymic: str
    birth_date: datetime.date | None
    sex: str
    phones: list[tuple[str, str]]
    emails: list[str]
    snils: str
    oms_policy: str
    address: str
    card_type: CardType | None
    card_number: str
    name_key: str = ""
    _trigrams: frozenset[str] | None = None

    def __post_init__(self) -> None:
        self.name_key = search_key(self.last_name, self.first_name, self.patronymic)

    @property
    def trigrams(self) -> frozenset[str]:
        if self._trigrams is None:
            self._trigrams = frozenset(name_trigrams(self.name_key))
        return self._trigrams

    @property
    def contact_values(self) -> list[str]:
        return [*(value for _kind, value in self.phones), *self.emails]

    @property
    def identifies(self) -> bool:
        """Whether anything besides the name tells this person apart (and makes re-runs match)."""
        return bool(
            self.birth_date
            or self.phones
            or self.emails
            or self.snils
            or self.oms_policy
            or self.card_number
        )


def _quoted(value: str) -> str:
    return f"“{value}”"


def _phone_kind(e164: str) -> str:
    """Home for a fixed line, mobile otherwise; read from the E.164 form without parsing again."""
    digits = e164[1:]
    for size in (1, 2, 3):  # country codes are prefix-free
        country_code = int(digits[:size])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            number = phonenumbers.PhoneNumber(
                country_code=country_code,
                national_number=int(national),
                italian_leading_zero=national.startswith("0") or None,
            )
            number_type = phonenumbers.number_type(number)
            return PHONE_KIND_BY_NUMBER_TYPE.get(number_type, ContactKind.MOBILE)
    return ContactKind.MOBILE


def _split_values(text: str) -> list[str]:
    return [part.strip() for part in text.translate(MULTIPLE_VALUES_SEPARATORS).split(",")]


class CardTypeLookup:
    """Card types of the organization by code or name (ignoring case); its own types win."""

    def __init__(self, organization: Organization) -> None:
        self.by_label: dict[str, CardType] = {}
        types = CardType.objects.filter(
            Q(organization=None) | Q(organization=organization), is_active=True
        ).order_by("-organization_id")  # NULLs (standard types) first, the organization's last
        for card_type in types:
            self.by_label[card_type.code.casefold()] = card_type
            self.by_label[card_type.name.strip().casefold()] = card_type
        self.default = self.by_label.get(DEFAULT_CARD_TYPE_CODE)

    def get(self, label: str) -> CardType | None:
        return self.by_label.get(label.strip().casefold())


def row_read(
    values: dict[str, str],
    *,
    region: str,
    card_types: CardTypeLookup,
    today: datetime.date | None = None,
) -> RowFacts:
    """Normalise one row; ``RowRejected`` lists every field that cannot be read."""
    errors: list[str] = []

    def fail(name: str, message: str) -> None:
        errors.append(f"{name}: {message}")

    names: dict[str, str] = {}
    for name in ("last_name", "first_name", "patronymic"):
        typed = values.get(name, "")
        names[name] = normalize_name_part(typed)
        if name in REQUIRED_FIELDS and not names[name]:
            fail(name, _("the name is empty."))
        elif any(character.isdigit() for character in typed):
            fail(name, _("%(value)s contains digits.") % {"value": _quoted(typed)})
        elif len(names[name]) > NAME_MAX_LENGTH:
            fail(
                name,
                _("%(value)s is longer than %(limit)d characters.")
                % {"value": _quoted(typed), "limit": NAME_MAX_LENGTH},
            )

    birth_date: datetime.date | None = None
    try:
        birth_date = parse_date(values.get("birth_date", ""))
        if birth_date is not None:
            validate_birth_date(birth_date, today=today or timezone.localdate())
    except ValidationError as error:
        birth_date = None
        fail("birth_date", " ".join(error.messages))

    sex = ""
    typed_sex = values.get("sex", "")
    if typed_sex:
        sex = SEX_WORDS.get(typed_sex.casefold().rstrip("."), "")
        if not sex:
            fail("sex", _("%(value)s is not a sex: write М or Ж.") % {"value": _quoted(typed_sex)})
    if not sex:
        sex = sex_from_patronymic(names["patronymic"]) or Sex.UNKNOWN

    phones: list[tuple[str, str]] = []
    for typed in _split_values(values.get("phone", "")):
        if not typed:
            continue
        try:
            number = normalize_phone(typed, region=region)
        except ValidationError as error:
            fail("phone", " ".join(error.messages))
            continue
        if number not in (value for _kind, value in phones):
            phones.append((_phone_kind(number), number))

    emails: list[str] = []
    for typed in _split_values(values.get("email", "")):
        if not typed:
            continue
        try:
            validate_email(typed)
        except ValidationError:
            fail("email", _("%(value)s is not an e-mail address.") % {"value": _quoted(typed)})
            continue
        if len(typed) > EMAIL_MAX_LENGTH:
            fail(
                "email",
                _("%(value)s is longer than %(limit)d characters.")
                % {"value": _quoted(typed), "limit": EMAIL_MAX_LENGTH},
            )
        elif typed.lower() not in emails:
            emails.append(typed.lower())

    snils = ""
    typed_snils = values.get("snils", "")
    if typed_snils:
        try:
            validate_snils(typed_snils)
            snils = normalize_snils(typed_snils)
        except ValidationError as error:
            fail("snils", " ".join(error.messages))

    oms_policy = values.get("oms_policy", "").replace(" ", "")
    if len(oms_policy) > OMS_POLICY_MAX_LENGTH:
        fail(
            "oms_policy",
            _("%(value)s is longer than %(limit)d characters.")
            % {"value": _quoted(values["oms_policy"]), "limit": OMS_POLICY_MAX_LENGTH},
        )

    card_number = values.get("card_number", "")
    card_type: CardType | None = None
    typed_type = values.get("card_type", "")
    if typed_type:
        card_type = card_types.get(typed_type)
        if card_type is None:
            fail(
                "card_type",
                _("%(value)s is not a card type of this organization.")
                % {"value": _quoted(typed_type)},
            )
    elif card_number:
        card_type = card_types.default
        if card_type is None:
            fail("card_type", _("the card type is empty and there is no default card type."))
    if len(card_number) > CARD_NUMBER_MAX_LENGTH:
        fail(
            "card_number",
            _("%(value)s is longer than %(limit)d characters.")
            % {"value": _quoted(card_number), "limit": CARD_NUMBER_MAX_LENGTH},
        )

    if errors:
        raise RowRejected(errors)
    facts = RowFacts(
        last_name=names["last_name"],
        first_name=names["first_name"],
        patronymic=names["patronymic"],
        birth_date=birth_date,
        sex=sex,
        phones=phones,
        emails=emails,
        snils=snils,
        oms_policy=oms_policy,
        address=values.get("address", ""),
        card_type=card_type if card_number else None,
        card_number=card_number,
    )
    if not facts.identifies:
        raise RowRejected(
            [
                _(
                    "The row has neither a birth date nor a phone, e-mail, SNILS, OMS policy or "
                    "card number: the person cannot be told apart from namesakes."
                )
            ]
        )
    return facts


# The registry in memory ------------------------------------------------------------------------


@dataclass(eq=False)
class KnownPerson:
    """A living person of the registry, or one this run creates, with the keys matching uses.

    ``names`` is set for a person this run creates (their row is written from these fields).
    """

    pk: int
    name_key: str
    birth_date: datetime.date | None
    snils: str
    oms_policy: str
    sex: str
    address: str
    contacts: set[str] = field(default_factory=set)
    cards: set[tuple[int, str]] = field(default_factory=set)
    names: tuple[str, str, str] | None = None
    _trigrams: frozenset[str] | None = None

    @property
    def trigrams(self) -> frozenset[str]:
        if self._trigrams is None:
            self._trigrams = frozenset(name_trigrams(self.name_key))
        return self._trigrams

    def similarity(self, facts: RowFacts) -> float:
        """pg_trgm's similarity of the two names (as ``dedup`` ranks candidates)."""
        if self.name_key == facts.name_key:
            return 1.0
        mine, theirs = self.trigrams, facts.trigrams
        if not mine or not theirs:
            return 0.0
        return len(mine & theirs) / len(mine | theirs)

    def contradicts(self, facts: RowFacts) -> bool:
        """Different SNILS or different birth dates: not the same person whatever else agrees."""
        return bool(
            (self.snils and facts.snils and self.snils != facts.snils)
            or (self.birth_date and facts.birth_date and self.birth_date != facts.birth_date)
        )


REASON_LABELS = {
    "snils": gettext_lazy("same SNILS"),
    "oms_policy": gettext_lazy("same OMS policy"),
    "card": gettext_lazy("same card number, similar name"),
    "name_birth_date": gettext_lazy("similar name, same birth date"),
    "phone": gettext_lazy("same phone, similar name"),
    "email": gettext_lazy("same e-mail, similar name"),
}


class RegistryIndex:
    """The organization's living people by every key a strong match uses."""

    def __init__(self) -> None:
        self.by_pk: dict[int, KnownPerson] = {}
        self.by_snils: dict[str, KnownPerson] = {}
        self.by_oms: dict[str, KnownPerson] = {}
        self.by_birth_date: dict[datetime.date, list[KnownPerson]] = defaultdict(list)
        self.by_contact: dict[str, list[KnownPerson]] = defaultdict(list)
        # A card of a person outside the living registry (a merged tombstone) maps to None.
        self.by_card: dict[tuple[int, str], KnownPerson | None] = {}

    @classmethod
    def load(cls, organization: Organization) -> RegistryIndex:
        index = cls()
        people = Person.objects.filter(organization=organization, merged_into__isnull=True)
        for pk, name_key, birth_date, snils, oms_policy, sex, address in people.values_list(
            "pk", "name_key", "birth_date", "snils", "oms_policy", "sex", "registration_address"
        ).iterator(chunk_size=5000):
            index.add(KnownPerson(pk, name_key, birth_date, snils, oms_policy, sex, address))
        contacts = Contact.objects.filter(person__in=people).values_list("person_id", "value")
        for person_id, value in contacts.iterator(chunk_size=5000):
            index.add_contact(index.by_pk[person_id], value)
        cards = MedicalCard.objects.filter(organization=organization).values_list(
            "person_id", "card_type_id", "number"
        )
        for person_id, card_type_id, number in cards.iterator(chunk_size=5000):
            owner = index.by_pk.get(person_id)
            if owner is None:
                index.by_card[(card_type_id, number)] = None
            else:
                index.add_card(owner, (card_type_id, number))
        return index

    def add(self, known: KnownPerson) -> None:
        self.by_pk[known.pk] = known
        if known.snils:
            self.by_snils.setdefault(known.snils, known)
        if known.oms_policy:
            self.by_oms.setdefault(known.oms_policy, known)
        if known.birth_date:
            self.by_birth_date[known.birth_date].append(known)

    def add_contact(self, known: KnownPerson, value: str) -> None:
        if value not in known.contacts:
            known.contacts.add(value)
            self.by_contact[value].append(known)

    def add_card(self, known: KnownPerson, key: tuple[int, str]) -> None:
        known.cards.add(key)
        self.by_card[key] = known

    def match(self, facts: RowFacts) -> tuple[KnownPerson, str] | None:
        """The person this row strongly matches and why, best reason first."""
        if facts.snils and facts.snils in self.by_snils:
            return self.by_snils[facts.snils], "snils"
        owner = self.by_oms.get(facts.oms_policy) if facts.oms_policy else None
        if owner is not None and not owner.contradicts(facts):
            return owner, "oms_policy"
        if facts.card_type is not None:
            card_owner = self.by_card.get((facts.card_type.pk, facts.card_number))
            if card_owner is not None and self._same(card_owner, facts):
                return card_owner, "card"
        if facts.birth_date:
            found = self._most_similar(self.by_birth_date.get(facts.birth_date, ()), facts)
            if found is not None:
                return found, "name_birth_date"
        for reason, values in (
            ("phone", [value for _kind, value in facts.phones]),
            ("email", facts.emails),
        ):
            for value in values:
                found = self._most_similar(self.by_contact.get(value, ()), facts)
                if found is not None:
                    return found, reason
        return None

    def _same(self, known: KnownPerson, facts: RowFacts) -> bool:
        return not known.contradicts(facts) and (
            known.similarity(facts) >= NAME_SIMILARITY_THRESHOLD
        )

    def _most_similar(
        self, candidates: Iterable[KnownPerson], facts: RowFacts
    ) -> KnownPerson | None:
        best: KnownPerson | None = None
        best_similarity = NAME_SIMILARITY_THRESHOLD
        for candidate in candidates:
            if candidate.contradicts(facts):
                continue
            similarity = candidate.similarity(facts)
            if similarity >= best_similarity:
                best, best_similarity = candidate, similarity
                if similarity == 1.0:
                    break
        return best


# Writing ---------------------------------------------------------------------------------------


COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text_value(value: object) -> str:
    """One value in ``COPY``'s text format (``\\N`` for NULL, special characters escaped)."""
    if isinstance(value, str):  # choices are str too
        return value.translate(COPY_ESCAPES)
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.date):  # dates and aware datetimes
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False).translate(COPY_ESCAPES)
    raise TypeError(f"no COPY text form for {type(value).__name__}")


class _CopyTable:
    """Rows of one model written with ``COPY``: the columns given, every other field its default.

    ``COPY`` costs a fraction of ``bulk_create`` in Python (no model instances, no per-value
    preparation), which is most of a 100,000-row import. Row triggers fire as for ``INSERT``, so
    the history is written the same way. Defaults come from the model's fields, so a field added
    later gets its default here too; ``auto_now``/``auto_now_add`` fields get the batch's time.
    The text is made by the thread that reads the file, so the writer thread only sends it.
    """

    def __init__(self, model: type[models.Model], columns: tuple[str, ...]) -> None:
        self.model = model
        given = set(columns)
        fields = model._meta.concrete_fields
        other = [f for f in fields if f.attname not in given and not f.primary_key]
        # A unique field with a callable default (the public UUID) needs a new value per row.
        self.fresh_fields = [f for f in other if f.unique and callable(f.default)]
        self.constant_fields = [f for f in other if f not in self.fresh_fields]
        by_attname = {f.attname: str(f.column) for f in fields}
        self.column_names = [
            *(by_attname[name] for name in columns),
            *(str(f.column) for f in (*self.constant_fields, *self.fresh_fields)),
        ]

    def text(self, rows: Iterable[tuple[Any, ...]], *, now: datetime.datetime) -> str:
        """The rows (values of the given columns, in order) as ``COPY`` text."""
        constant = [
            copy_text_value(
                now
                if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
                else f.get_default()
            )
            for f in self.constant_fields
        ]
        fresh = self.fresh_fields
        return "".join(
            "\t".join(
                [
                    *map(copy_text_value, row),
                    *constant,
                    *(copy_text_value(f.get_default()) for f in fresh),
                ]
            )
            + "\n"
            for row in rows
        )

    def write(self, text: str) -> None:
        if not text:
            return
        quote = connection.ops.quote_name
        sql = (
            f"COPY {quote(self.model._meta.db_table)} "
            f"({', '.join(quote(name) for name in self.column_names)}) FROM STDIN"
        )
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            copy.write(text)


PERSON_TABLE = _CopyTable(
    Person,
    (
        "id",
        "organization_id",
        "last_name",
        "first_name",
        "patronymic",
        "name_key",
        "birth_date",
        "sex",
        "snils",
        "oms_policy",
        "registration_address",
        "created_by_id",
    ),
)
CONTACT_TABLE = _CopyTable(Contact, ("person_id", "kind", "value", "digits", "created_by_id"))
CARD_TABLE = _CopyTable(
    MedicalCard,
    (
        "person_id",
        "organization_id",
        "card_type_id",
        "branch_id",
        "number",
        "opened_on",
        "created_by_id",
    ),
)
IMPORT_ROW_TABLE = _CopyTable(
    ImportRow, ("run_id", "row_number", "outcome", "person_id", "message")
)


class _PersonIds:
    """Primary keys for new people, taken from the table's sequence ahead of the insert.

    Knowing the key at once lets later rows point at the person before the batch is written. A
    dry run hands out negative numbers that never reach the database.
    """

    def __init__(self, *, dry_run: bool, chunk: int) -> None:
        self.dry_run = dry_run
        self.chunk = chunk
        self.free: list[int] = []
        self.last_fake = 0

    def take(self) -> int:
        if self.dry_run:
            self.last_fake -= 1
            return self.last_fake
        if not self.free:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [Person._meta.db_table, self.chunk],
                )
                self.free = [pk for (pk,) in reversed(cursor.fetchall())]
        return self.free.pop()


@dataclass
class _Batch:
    """What one batch writes, in its own transaction."""

    people: dict[int, KnownPerson] = field(default_factory=dict)
    filled: dict[int, KnownPerson] = field(default_factory=dict)
    contacts: list[tuple[int, str, str, str]] = field(default_factory=list)
    cards: list[tuple[int, CardType, str]] = field(default_factory=list)
    rows: list[tuple[int, str, int | None, str]] = field(default_factory=list)


@dataclass
class _Importer:
    run: ImportRun
    organization: Organization
    index: RegistryIndex
    card_types: CardTypeLookup
    branch: Branch | None
    user: Any
    dry_run: bool
    columns: dict[str, int]
    person_ids: _PersonIds
    today: datetime.date = field(default_factory=timezone.localdate)
    batch: _Batch = field(default_factory=_Batch)

    def row_apply(self, row_number: int, cells: list[str]) -> None:
        values = {
            name: cells[index] if index < len(cells) else "" for name, index in self.columns.items()
        }
        try:
            facts = row_read(
                values,
                region=self.organization.phone_region,
                card_types=self.card_types,
                today=self.today,
            )
            found = self.index.match(facts)
            if found is None:
                self._check_owned_elsewhere(facts, None)
                message = ""
                if any(self.index.by_contact.get(value) for value in facts.contact_values):
                    message = _("a phone or e-mail is shared with another person")
                known, outcome = self._create(facts), ImportOutcome.CREATED
            else:
                known, reason = found
                self._check_owned_elsewhere(facts, known)
                added = self._fill(known, facts)
                outcome = ImportOutcome.MERGED if added else ImportOutcome.MATCHED
                message = str(REASON_LABELS[reason])
                if added:
                    message += "; " + _("added: %(what)s") % {"what": ", ".join(added)}
        except RowRejected as rejected:
            self._report(row_number, ImportOutcome.REJECTED, None, " ".join(rejected.messages))
            return
        self._report(row_number, outcome, known, message)

    def _report(
        self, row_number: int, outcome: str, known: KnownPerson | None, message: str
    ) -> None:
        person_id = known.pk if known is not None and known.pk > 0 else None
        self.batch.rows.append((row_number, str(outcome), person_id, message))
        counter = f"{ImportOutcome(outcome).value}_count"
        setattr(self.run, counter, getattr(self.run, counter) + 1)
        self.run.rows_done += 1

    def _check_owned_elsewhere(self, facts: RowFacts, known: KnownPerson | None) -> None:
        """A card number or OMS policy of someone else: the row contradicts the registry."""
        errors = []
        if facts.card_type is not None:
            key = (facts.card_type.pk, facts.card_number)
            if key in self.index.by_card:
                if self.index.by_card[key] is not known:
                    errors.append(
                        "card_number: "
                        + _("%(value)s (%(type)s) is the card of another person.")
                        % {"value": _quoted(facts.card_number), "type": facts.card_type.name}
                    )
            elif self.branch is None:
                errors.append(
                    "card_number: " + _("the organization has no active branch to keep cards in.")
                )
        owner = self.index.by_oms.get(facts.oms_policy) if facts.oms_policy else None
        if owner is not None and owner is not known:
            errors.append(
                "oms_policy: "
                + _("%(value)s is the policy of another person.")
                % {"value": _quoted(facts.oms_policy)}
            )
        if errors:
            raise RowRejected(errors)

    def _create(self, facts: RowFacts) -> KnownPerson:
        known = KnownPerson(
            pk=self.person_ids.take(),
            name_key=facts.name_key,
            birth_date=facts.birth_date,
            snils=facts.snils,
            oms_policy=facts.oms_policy,
            sex=facts.sex,
            address=facts.address,
            names=(facts.last_name, facts.first_name, facts.patronymic),
        )
        self.index.add(known)
        self.batch.people[known.pk] = known
        self._add_contacts_and_card(known, facts)
        return known

    def _fill(self, known: KnownPerson, facts: RowFacts) -> list[str]:
        """Add what the row knows and the person lacks; describe each addition."""
        added = self._add_contacts_and_card(known, facts)
        filled = []
        if facts.snils and not known.snils:
            known.snils = facts.snils
            self.index.by_snils.setdefault(facts.snils, known)
            filled.append(_("SNILS"))
        if facts.oms_policy and not known.oms_policy:
            known.oms_policy = facts.oms_policy
            self.index.by_oms.setdefault(facts.oms_policy, known)
            filled.append(_("OMS policy"))
        if facts.birth_date and not known.birth_date:
            known.birth_date = facts.birth_date
            self.index.by_birth_date[facts.birth_date].append(known)
            filled.append(_("birth date"))
        if facts.sex != Sex.UNKNOWN and known.sex == Sex.UNKNOWN:
            known.sex = facts.sex
            filled.append(_("sex"))
        if facts.address and not known.address:
            known.address = facts.address
            filled.append(_("address"))
        if filled and known.pk not in self.batch.people:
            # A person of this batch is written with the values filled in; others are updated.
            self.batch.filled[known.pk] = known
        return [*added, *filled]

    def _add_contacts_and_card(self, known: KnownPerson, facts: RowFacts) -> list[str]:
        added: list[str] = []
        contacts = [*facts.phones, *((ContactKind.EMAIL, email) for email in facts.emails)]
        for kind, value in contacts:
            if value in known.contacts:
                continue
            self.index.add_contact(known, value)
            digits = "" if kind == ContactKind.EMAIL else phone_digits(value)
            self.batch.contacts.append((known.pk, str(kind), value, digits))
            added.append(value)
        if facts.card_type is not None and self.branch is not None:
            key = (facts.card_type.pk, facts.card_number)
            if key not in known.cards:
                self.index.add_card(known, key)
                self.batch.cards.append((known.pk, facts.card_type, facts.card_number))
                added.append(
                    _("card %(number)s (%(type)s)")
                    % {"number": facts.card_number, "type": facts.card_type.name}
                )
        return added


@dataclass(frozen=True)
class _BatchRows:
    """One batch as plain rows, ready to be written (by another thread, perhaps)."""

    run_pk: int
    totals: dict[str, int]
    dry_run: bool
    people: str  # COPY text
    filled: list[tuple[Any, ...]]
    contacts: str
    cards: str
    card_numbers: dict[CardType, int]
    rows: str
    organization: Organization
    now: datetime.datetime


def _batch_rows(importer: _Importer) -> _BatchRows:
    """Turn the importer's batch into rows (and start a new batch)."""
    batch, run, now = importer.batch, importer.run, timezone.now()
    importer.batch = _Batch()
    organization_id, today = importer.organization.pk, timezone.localdate()
    user_id = importer.user.pk if importer.user is not None else None
    branch_id = importer.branch.pk if importer.branch is not None else None
    return _BatchRows(
        run_pk=run.pk,
        totals={
            "rows_done": run.rows_done,
            "created_count": run.created_count,
            "matched_count": run.matched_count,
            "merged_count": run.merged_count,
            "rejected_count": run.rejected_count,
        },
        dry_run=importer.dry_run,
        people=PERSON_TABLE.text(
            (
                (
                    known.pk,
                    organization_id,
                    *(known.names or ("", "", "")),
                    known.name_key,
                    known.birth_date,
                    known.sex,
                    known.snils,
                    known.oms_policy,
                    known.address,
                    user_id,
                )
                for known in batch.people.values()
            ),
            now=now,
        ),
        filled=[
            (known.pk, known.snils, known.oms_policy, known.birth_date, known.sex, known.address)
            for known in batch.filled.values()
        ],
        contacts=CONTACT_TABLE.text(((*contact, user_id) for contact in batch.contacts), now=now),
        cards=CARD_TABLE.text(
            (
                (person_id, organization_id, card_type.pk, branch_id, number, today, user_id)
                for person_id, card_type, number in batch.cards
            ),
            now=now,
        ),
        card_numbers=_highest_card_numbers(batch.cards),
        rows=IMPORT_ROW_TABLE.text(((run.pk, *row) for row in batch.rows), now=now),
        organization=importer.organization,
        now=now,
    )


def _batch_write(batch: _BatchRows) -> None:
    """Write one batch and its report, and advance the run, all in one transaction."""
    with transaction.atomic():
        # The first statement: it also sets the history context for the COPYs that follow.
        ImportRun.objects.filter(pk=batch.run_pk).update(**batch.totals)
        if not batch.dry_run:
            PERSON_TABLE.write(batch.people)
            _people_fill(batch.filled, now=batch.now)
            CONTACT_TABLE.write(batch.contacts)
            CARD_TABLE.write(batch.cards)
            _card_sequences_advance(batch.organization, batch.card_numbers)
        IMPORT_ROW_TABLE.write(batch.rows)


def _people_fill(filled: list[tuple[Any, ...]], *, now: datetime.datetime) -> None:
    """Write the blank fields filled in from the file, in one statement.

    ``bulk_update`` builds a ``CASE`` per field and row in Python, which costs more than the
    rest of a batch; the history triggers record the update all the same.
    """
    if not filled:
        return
    columns = list(zip(*filled, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE patients_person AS person SET snils = filled.snils, "
            "oms_policy = filled.oms_policy, birth_date = filled.birth_date, "
            "sex = filled.sex, registration_address = filled.address, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::date[], %s::text[], %s::text[]) "
            "AS filled (id, snils, oms_policy, birth_date, sex, address) "
            "WHERE person.id = filled.id",
            [now, *(list(column) for column in columns)],
        )


class _GilSwitchInterval:
    """Python's thread switch interval, shortened while any import's writer thread runs.

    The writer wakes up from every database round trip and has to take the GIL back from the
    thread reading rows; by default Python hands it over only every 5 ms, which adds seconds to
    a large import. Nested and concurrent imports keep it shortened until the last one ends.
    """

    SHORT = 0.001

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved = 0.0

    def shorten(self) -> None:
        with self.lock:
            if self.users == 0:
                self.saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self.saved, self.SHORT))
            self.users += 1

    def restore(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                sys.setswitchinterval(self.saved)


_GIL_SWITCH_INTERVAL = _GilSwitchInterval()


class _BackgroundWriter:
    """Writes batches on its own database connection while the next batch is read.

    Reading rows is Python's work and writing them (with the history triggers) is PostgreSQL's:
    overlapping the two uses both cores. Batches are written in order, each in its transaction,
    so ``rows_done`` still marks a prefix of the file. The first error stops the writing; it is
    raised in the importing thread at its next ``put`` or at ``close``.
    """

    def __init__(self, history_context: dict[str, Any]) -> None:
        self.history_context = history_context
        self.queue: queue.Queue[_BatchRows | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="patients-import-writer")
        _GIL_SWITCH_INTERVAL.shorten()
        self.thread.start()

    def _work(self) -> None:
        closed = False
        try:
            with pghistory.context(**self.history_context):
                while (batch := self.queue.get()) is not None:
                    if self.error is None:
                        try:
                            _batch_write(batch)
                        except BaseException as error:
                            self.error = error
                closed = True
        except BaseException as error:
            self.error = self.error or error
            # Keep taking batches, so that the reading thread never waits on a full queue.
            while not closed and self.queue.get() is not None:
                pass
        finally:
            connections.close_all()  # this thread's connections only

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, batch: _BatchRows) -> None:
        self._raise()
        self.queue.put(batch)

    def close(self) -> None:
        """Wait for the batches handed over so far to be written."""
        self.queue.put(None)
        self.thread.join()
        _GIL_SWITCH_INTERVAL.restore()
        self._raise()


def _highest_card_numbers(cards: list[tuple[int, CardType, str]]) -> dict[CardType, int]:
    """The highest number of each card type among those its numbering would generate itself."""
    highest: dict[CardType, int] = {}
    for _person_id, card_type, number in cards:
        digits = number[len(card_type.number_prefix) :]
        if number.startswith(card_type.number_prefix) and digits.isdigit():
            highest[card_type] = max(highest.get(card_type, 0), int(digits))
    return highest


def _card_sequences_advance(organization: Organization, highest: dict[CardType, int]) -> None:
    """Move each card type's numbering past the imported numbers.

    Without this ``card_open`` would skip the imported numbers one query at a time.
    """
    for card_type, highest_number in highest.items():
        sequence, _created = CardNumberSequence.objects.get_or_create(
            organization=organization, card_type=card_type
        )
        CardNumberSequence.objects.filter(pk=sequence.pk, next_value__lte=highest_number).update(
            next_value=highest_number + 1
        )


def _lock_key(organization: Organization, checksum: str) -> int:
    digest = hashlib.sha256(f"patients-import:{organization.pk}:{checksum}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _file_lock(organization: Organization, checksum: str) -> Iterator[None]:
    """A session-level advisory lock: one process imports a given file into an organization."""
    key = _lock_key(organization, checksum)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        (acquired,) = cursor.fetchone()
    if not acquired:
        raise ImportInProgressError(
            _("This file is being imported into this organization right now; wait for it to end.")
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _batches(records: Iterator[tuple[int, list[str]]], size: int) -> Iterator[list[Any]]:
    while batch := list(itertools.islice(records, size)):
        yield batch


def _run_start(
    *,
    organization: Organization,
    table: SourceTable,
    file_name: str,
    checksum: str,
    mapping: dict[str, str],
    user: Any,
    dry_run: bool,
) -> ImportRun:
    """The unfinished run of this file to resume, or a new run.

    Dry runs never resume: they wrote nothing, so the rows before a crash are not in the registry
    to match the rows after it.
    """
    if not dry_run:
        last = (
            ImportRun.objects.filter(
                organization=organization, file_checksum=checksum, dry_run=False
            )
            .order_by("-started_at", "-pk")
            .first()
        )
        if last is not None and last.status != ImportStatus.COMPLETED and last.mapping == mapping:
            last.status = ImportStatus.RUNNING
            last.save(update_fields=["status"])
            return last
    return ImportRun.objects.create(
        organization=organization,
        file_name=file_name[:300],
        file_checksum=checksum,
        mapping=mapping,
        dry_run=dry_run,
        rows_total=table.count(),
        started_by=user,
    )


def patients_import(
    *,
    organization: Organization,
    path: str | Path,
    mapping: dict[str, str],
    actor: Any = None,
    dry_run: bool = False,
    file_name: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportRun:
    """Import the patients of a CSV or XLSX file into the organization's registry.

    ``actor`` is the user running it (the author of the new rows); without one (a management
    command run by the system) no permission is checked. Raises ``ImportFileError`` for a file or
    mapping that cannot be used (before anything is written), ``ImportInProgressError`` when the
    same file is being imported by another process, ``PermissionDenied``. Call it outside a
    transaction: each batch commits on its own.
    """
    user = actor if getattr(actor, "is_authenticated", False) else None
    if user is not None and not policies.can_import_patients(user, organization):
        raise PermissionDenied
    mapping = mapping_validate(mapping)
    source = Path(path)
    table = table_open(source)
    columns = table.column_indexes(mapping)
    checksum = file_checksum(source)
    lock = contextlib.nullcontext() if dry_run else _file_lock(organization, checksum)
    with lock:
        run = _run_start(
            organization=organization,
            table=table,
            file_name=file_name or source.name,
            checksum=checksum,
            mapping=mapping,
            user=user,
            dry_run=dry_run,
        )
        history_context: dict[str, Any] = {"import_run": str(run.public_id)}
        if user is not None:
            history_context["user"] = user.pk
        try:
            with pghistory.context(**history_context):
                importer = _Importer(
                    person_ids=_PersonIds(dry_run=dry_run, chunk=batch_size),
                    run=run,
                    organization=organization,
                    index=RegistryIndex.load(organization),
                    card_types=CardTypeLookup(organization),
                    branch=Branch.objects.filter(organization=organization, is_active=True)
                    .order_by("pk")
                    .first(),
                    user=user,
                    dry_run=dry_run,
                    columns=columns,
                )
                records = itertools.islice(table.records(), run.rows_done, None)
                writer = None
                try:
                    if not connection.in_atomic_block:
                        # Inside a transaction (a test's) another connection could not see
                        # its rows: the batches are then written here, one after another.
                        writer = _BackgroundWriter(history_context)
                    for batch in _batches(records, batch_size):
                        for row_number, cells in batch:
                            importer.row_apply(row_number, cells)
                        if writer is None:
                            _batch_write(_batch_rows(importer))
                        else:
                            writer.put(_batch_rows(importer))
                finally:
                    if writer is not None:
                        writer.close()
        except BaseException:
            ImportRun.objects.filter(pk=run.pk).update(status=ImportStatus.FAILED)
            raise
        run.status = ImportStatus.COMPLETED
        run.finished_at = timezone.now()
        run.rows_total = max(run.rows_total, run.rows_done)
        run.save(update_fields=["status", "finished_at", "rows_total"])
    return run


def rejected_rows(run: ImportRun, *, limit: int) -> list[ImportRow]:
    """The first ``limit`` rejected rows of a run, in file order (for reports)."""
    return list(run.rows.filter(outcome=ImportOutcome.REJECTED).order_by("row_number")[:limit])
