"""Validators of Russian registration numbers (INN, SNILS) with their check digits."""

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)
INN12_WEIGHTS_11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
INN12_WEIGHTS_12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def _check_digit(digits: str, weights: tuple[int, ...]) -> int:
    return (
        sum(int(digit) * weight for digit, weight in zip(digits, weights, strict=False)) % 11 % 10
    )


def inn_is_valid(value: str) -> bool:
    if not value.isdigit() or len(value) not in (10, 12):
        return False
    if len(value) == 10:
        return _check_digit(value, INN10_WEIGHTS) == int(value[9])
    return _check_digit(value, INN12_WEIGHTS_11) == int(value[10]) and _check_digit(
        value, INN12_WEIGHTS_12
    ) == int(value[11])


def validate_inn(value: str) -> None:
    if not inn_is_valid(value):
        raise ValidationError(
            _(
                "INN “%(value)s” is invalid: it must have 10 or 12 digits "
                "with a correct check digit."
            ),
            code="invalid_inn",
            params={"value": value},
        )


def normalize_snils(value: str) -> str:
    """Keep the digits only: "112-233-445 95" -> "11223344595"."""
    return "".join(character for character in value if character.isdigit())


def snils_is_valid(value: str) -> bool:
    digits = normalize_snils(value)
    if len(digits) != 11 or any(ch not in "0123456789 -" for ch in value):
        return False
    number, control = digits[:9], int(digits[9:])
    if int(number) <= 1001998:
        # Numbers up to 001-001-998 were issued before check digits existed.
        return True
    total = sum(int(digit) * weight for digit, weight in zip(number, range(9, 0, -1), strict=True))
    if total > 101:
        total %= 101
    expected = 0 if total in (100, 101) else total
    return expected == control


def validate_snils(value: str) -> None:
    if not snils_is_valid(value):
        raise ValidationError(
            _("SNILS “%(value)s” is invalid: 11 digits with a correct check number are expected."),
            code="invalid_snils",
            params={"value": value},
        )
