"""One JSON error format for the whole API.

Every error answer is ``{"error": {"code": ..., "message": ..., "fields": {...}}}``: ``code`` is
stable for programs, ``message`` is translated for people, ``fields`` maps a field name to its
messages (present for validation errors).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record
from clinic.core.errors import DomainError


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        field_errors = {exc.field: [str(exc.message)]} if exc.field else {}
        body = {"code": exc.code, "message": str(exc.message), "fields": field_errors}
        body.update(exc.details)
        return Response({"error": body}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None

    fields: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        code = "validation_error"
        message = _("The request has invalid fields.")
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _flatten(detail)
        else:
            fields = {"non_field_errors": _flatten(detail)}
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        message = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else _("Error.")
    else:  # pragma: no cover - DRF only returns responses for APIException
        code, message = "error", _("Error.")

    if response.status_code == status.HTTP_403_FORBIDDEN:
        request = context.get("request")
        security_event_record(
            kind=SecurityEventKind.ACCESS_DENIED,
            request=getattr(request, "_request", None),
            user=getattr(request, "user", None),
            detail=f"API {getattr(request, 'method', '')}",
        )
    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    return response
