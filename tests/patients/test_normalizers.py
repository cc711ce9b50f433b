"""Normalisers of typed data: phones, names, dates, sex from patronymic (with hypothesis)."""

from __future__ import annotations

import datetime

import phonenumbers
import pytest
from django.core.exceptions import ValidationError
from django.utils import translation
from hypothesis import assume, given
from hypothesis import strategies as st

from patients.normalizers import (
    normalize_name_part,
    normalize_phone,
    parse_date,
    phone_digits,
    search_key,
    sex_from_patronymic,
    validate_birth_date,
)


@pytest.mark.parametrize(
    "typed",
    ["8 (916) 123-45-67", "+7 916 123 45 67", "89161234567", "9161234567", "+7(916)1234567"],
)
def test_russian_numbers_typed_any_way_become_e164(typed: str) -> None:
    assert normalize_phone(typed) == "+79161234567"


def test_foreign_number_keeps_its_country() -> None:
    assert normalize_phone("+49 30 901820") == "+4930901820"


@pytest.mark.parametrize("typed", ["abc", "123", "+7 000", "8 (916) 123-45-6x7"])
def test_unreadable_phone_names_what_was_typed(typed: str) -> None:
    with pytest.raises(ValidationError) as raised:
        normalize_phone(typed)
    assert raised.value.params == {"value": typed.strip()}


@given(
    st.integers(min_value=900, max_value=999),
    st.integers(min_value=0, max_value=9_999_999),
    st.sampled_from(["+7 {a} {b}", "8{a}{b}", "8 ({a}) {b}", "+7-{a}-{b}"]),
)
def test_any_spelling_of_a_mobile_number_gives_the_same_e164(
    code: int, rest: int, pattern: str
) -> None:
    number = f"{rest:07d}"
    canonical = f"+7{code}{number}"
    assume(phonenumbers.is_valid_number(phonenumbers.parse(canonical)))  # allocated ranges only
    typed = pattern.format(a=code, b=f"{number[:3]}-{number[3:5]}-{number[5:]}")
    assert normalize_phone(typed) == canonical


@given(st.text(alphabet="абвгдеёжзийклмнопрстуфхцчшщъыьэюя- ", min_size=1, max_size=30))
def test_name_normalisation_is_idempotent(name: str) -> None:
    once = normalize_name_part(name)
    assert normalize_name_part(once) == once
    assert "  " not in once


def test_names_are_capitalised_per_part() -> None:
    assert normalize_name_part("  иванова-петрова  ") == "Иванова-Петрова"
    assert normalize_name_part("АННА МАРИЯ") == "Анна Мария"


def test_search_key_reads_yo_as_ye() -> None:
    assert search_key("Фёдоров", "Пётр", "") == "федоров петр"


@pytest.mark.parametrize(
    "typed", ["31.12.1980", "1980-12-31", "31/12/1980", "31-12-1980", "1980.12.31"]
)
def test_dates_in_common_forms(typed: str) -> None:
    assert parse_date(typed) == datetime.date(1980, 12, 31)


@pytest.mark.parametrize("typed", ["31.02.1980", "yesterday", "1980/31/12"])
def test_impossible_dates_name_the_value(typed: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_date(typed)
    assert raised.value.params == {"value": typed}


@translation.override("en")
def test_birth_date_checks() -> None:
    today = datetime.date(2026, 11, 22)
    validate_birth_date(datetime.date(1950, 1, 1), today=today)
    with pytest.raises(ValidationError, match="future"):
        validate_birth_date(datetime.date(2027, 1, 1), today=today)
    with pytest.raises(ValidationError, match="125"):
        validate_birth_date(datetime.date(1890, 1, 1), today=today)


@pytest.mark.parametrize(
    ("patronymic", "sex"),
    [
        ("Ивановна", "female"),
        ("Ильинична", "female"),
        ("Петрович", "male"),
        ("Ильич", "male"),
        ("Сергеевич", "male"),
        ("Рашид оглы", "male"),
        ("Али кызы", "female"),
        ("", None),
        ("Smith", None),
    ],
)
def test_sex_from_patronymic(patronymic: str, sex: str | None) -> None:
    assert sex_from_patronymic(patronymic) == sex


def test_phone_digits() -> None:
    assert phone_digits("+7 (916) 123-45") == "791612345"
