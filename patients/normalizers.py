"""Normalisers of people's data typed at the desk, read from imports or sent by the portal.

Each raises ``django.core.exceptions.ValidationError`` naming the value when it cannot be read.
"""

from __future__ import annotations

import datetime
import re

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

NAME_SEPARATORS = re.compile(r"\s+")
DATE_FORMATS = ("%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%y", "%Y.%m.%d")
MALE_PATRONYMIC_ENDINGS = ("ович", "евич", "ьич", "ич")
FEMALE_PATRONYMIC_ENDINGS = ("овна", "евна", "ична", "инична", "ьинична")


def normalize_phone(value: str, *, region: str = "RU") -> str:
    """The number in E.164 (+79161234567); a number that is not a possible phone is an error."""
    typed = value.strip()
    if not typed:
        raise ValidationError(_("The phone number is empty."), code="phone_empty")
    try:
        number = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            _("“%(value)s” is not a phone number."), code="phone_invalid", params={"value": typed}
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            _("“%(value)s” is not a valid phone number."),
            code="phone_invalid",
            params={"value": typed},
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_digits(value: str) -> str:
    """Only the digits of a typed fragment, for searching by part of a number."""
    return "".join(character for character in value if character.isdigit())


def normalize_name_part(value: str) -> str:
    """Trim, collapse spaces, capitalise each word and hyphenated part ("анна-мария")."""
    words = NAME_SEPARATORS.split(value.strip())
    return " ".join(
        "-".join(part[:1].upper() + part[1:].lower() for part in word.split("-"))
        for word in words
        if word
    )


def search_key(*parts: str) -> str:
    """A name for fuzzy matching: lower case, ё read as е, single spaces."""
    joined = " ".join(part for part in parts if part)
    return NAME_SEPARATORS.sub(" ", joined.lower().replace("ё", "е")).strip()


def parse_date(value: str | datetime.date | datetime.datetime | None) -> datetime.date | None:
    """A date from the common written forms (31.12.1980, 1980-12-31, 31/12/1980, ...)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    typed = str(value).strip()
    for pattern in DATE_FORMATS:
        try:
            return datetime.datetime.strptime(typed, pattern).date()
        except ValueError:
            continue
    raise ValidationError(
        _("“%(value)s” is not a date: write it as 31.12.1980."),
        code="date_invalid",
        params={"value": typed},
    )


def validate_birth_date(value: datetime.date, *, today: datetime.date | None = None) -> None:
    current = today or datetime.date.today()
    if value > current:
        raise ValidationError(
            _("Birth date %(value)s is in the future."),
            code="birth_date_future",
            params={"value": value.strftime("%d.%m.%Y")},
        )
    if value.year < current.year - 125:
        raise ValidationError(
            _("Birth date %(value)s is more than 125 years ago."),
            code="birth_date_too_old",
            params={"value": value.strftime("%d.%m.%Y")},
        )


def sex_from_patronymic(patronymic: str) -> str | None:
    """ "male"/"female" from a Russian patronymic's ending, or None when it does not tell."""
    ending = patronymic.strip().lower()
    if ending.endswith(FEMALE_PATRONYMIC_ENDINGS) or ending.endswith("кызы"):
        return "female"
    if ending.endswith(MALE_PATRONYMIC_ENDINGS) or ending.endswith("оглы"):
        return "male"
    return None
