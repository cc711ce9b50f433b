"""The base of refusals that domain services raise and every interface shows the same way."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule said no: a stable ``code`` for programs, a translated ``message`` for people, the
    ``field`` it is about, and ``details`` safe to show (never another patient's data).

    The API answers with ``status_code`` in the one error format (clinic/api/errors.py); pages
    show the message next to the field.
    """

    status_code = 400

    def __init__(
        self,
        code: str,
        message: Any,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(str(message))
        self.code = code
        self.message = message
        self.field = field
        self.details = details or {}
