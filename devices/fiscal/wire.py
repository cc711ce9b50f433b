"""JSON for the registers' protocols with exact money.

The protocols carry amounts as JSON numbers. ``json`` would need floats for that, so amounts are
written from ``Decimal`` digit for digit and read back into ``Decimal``. Standard library only:
the fake register (``devices.fake_atol``) uses it too.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "jsonable", "loads"]


def dumps(value: Any) -> str:
    """JSON text of ``value``; ``Decimal`` becomes a number with exactly its digits."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def loads(text: str | bytes) -> Any:
    """Parse JSON, reading every fractional number as ``Decimal``."""
    return json.loads(text, parse_float=Decimal)


def jsonable(value: Any) -> Any:
    """A copy that ``json`` (and Django's JSONField) can store: ``Decimal`` becomes its string."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def _encode(value: Any, parts: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be sent as a JSON number")
        parts.append(format(value, "f"))
    elif isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                parts.append(",")
            parts.append(json.dumps(str(key), ensure_ascii=False))
            parts.append(":")
            _encode(item, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _encode(item, parts)
        parts.append("]")
    else:
        parts.append(json.dumps(value, ensure_ascii=False))
