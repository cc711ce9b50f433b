"""/api/v1/telephony/: the webhook the PBX calls on every call event.

The PBX authenticates with its organization's shared secret, not a user: the header
``X-Telephony-Token`` carries the token set in the admin (``TelephonySettings``). The body is
kept as received before it is read, so a body that cannot be read stays for review.
"""

from __future__ import annotations

import json
from typing import Any

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record
from clinic.core.models import Organization

from . import selectors, services
from .errors import TelephonyError, TelephonyForbidden, TelephonyNotAuthenticated
from .models import CallDirection, CallEventKind

TOKEN_HEADER = "X-Telephony-Token"  # noqa: S105 - a header name, not a secret


class CallEventSerializer(serializers.Serializer):
    """The documented webhook body (only for the schema: the service reads the body itself,
    so that a bad body is kept raw and answered with the field and value that are wrong)."""

    call_id = serializers.CharField(max_length=100, help_text="The PBX's id of the call.")
    event = serializers.ChoiceField(choices=CallEventKind.choices)
    caller = serializers.CharField(
        max_length=32,
        help_text="The calling number; any common format, read with the organization's "
        "default region (E.164 such as +79161234567 is best).",
    )
    called = serializers.CharField(
        max_length=32, help_text="The clinic's line that was called (E.164 or a short number)."
    )
    operator_extension = serializers.CharField(
        max_length=32,
        required=False,
        help_text="The extension that answered, if known (mapped to a staff member in admin).",
    )
    timestamp = serializers.DateTimeField(
        required=False,
        help_text="ISO-8601 time of the event; without an offset it is the clinic's local time; "
        "when absent, the time of receipt.",
    )
    direction = serializers.ChoiceField(
        choices=CallDirection.choices,
        required=False,
        help_text="inbound (default) or outbound; for outbound calls the patient's number is "
        "in “called”.",
    )


class CallEventResultSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The call's public id (for the pop-up).")
    call_id = serializers.CharField()
    state = serializers.ChoiceField(choices=CallEventKind.choices)
    matches = serializers.IntegerField(help_text="How many patients have the caller's number.")


class ErrorSerializer(serializers.Serializer):
    """``{"error": {"code", "message", "fields"}}`` (clinic/api/errors.py)."""

    error = serializers.DictField()


def _organization(request: Request) -> Organization:
    token = request.headers.get(TOKEN_HEADER, "").strip()
    if not token:
        raise TelephonyNotAuthenticated(
            "not_authenticated",
            _("The header %(header)s is missing.") % {"header": TOKEN_HEADER},
        )
    organization = selectors.organization_for_token(token)
    if organization is None:
        security_event_record(
            kind=SecurityEventKind.ACCESS_DENIED,
            request=request._request,
            detail="telephony webhook: unknown token",
        )
        raise TelephonyForbidden(
            "invalid_token",
            _("The token in %(header)s is not valid.") % {"header": TOKEN_HEADER},
        )
    return organization


class WebhookView(APIView):
    """Receive one call event from the PBX.

    Headers: ``X-Telephony-Token: <the organization's token>``, ``Content-Type:
    application/json``. Body::

        {"call_id": "a1b2c3", "event": "ringing|answered|ended|missed",
         "caller": "+79161234567", "called": "+74951234567",
         "operator_extension": "101", "timestamp": "2026-03-02T10:15:00+03:00"}

    ``operator_extension`` and ``timestamp`` are optional; ``direction`` ("inbound", the
    default, or "outbound") may be added. Sending the same event again is harmless (the answer
    is the same). ``ended`` for a call that was never answered makes it a missed call.

    Answers: 200 with the call; 400 ``invalid_json``, ``invalid_body``, ``missing_field``,
    ``invalid_event``, ``invalid_phone``, ``invalid_timestamp`` naming the field and value (the
    body is kept for review); 401 ``not_authenticated`` without the header; 403
    ``invalid_token`` with an unknown token.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="telephony_webhook",
        request=CallEventSerializer,
        parameters=[
            OpenApiParameter(
                TOKEN_HEADER,
                str,
                location=OpenApiParameter.HEADER,
                required=True,
                description="The organization's shared secret (set in the admin).",
            )
        ],
        responses={
            200: CallEventResultSerializer,
            400: OpenApiResponse(ErrorSerializer, description="The body cannot be read."),
            401: OpenApiResponse(ErrorSerializer, description="No token."),
            403: OpenApiResponse(ErrorSerializer, description="Unknown token."),
        },
        examples=[
            OpenApiExample(
                "Ringing",
                request_only=True,
                value={
                    "call_id": "1718003.42",
                    "event": "ringing",
                    "caller": "+79161234567",
                    "called": "+74951234567",
                    "timestamp": "2026-03-02T10:15:00+03:00",
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        organization = _organization(request)
        body = request.body.decode("utf-8", errors="replace")
        raw_event = services.raw_event_record(organization=organization, body=body)
        try:
            payload = json.loads(body)
        except ValueError as error:
            refusal = TelephonyError(
                "invalid_json",
                _("The body is not valid JSON: %(reason)s") % {"reason": error},
            )
            services.raw_event_fail(raw_event=raw_event, error=refusal)
            raise refusal from None
        call = services.call_event_receive(
            organization=organization, payload=payload, raw_event=raw_event
        )
        matches = selectors.caller_matches(organization=organization, phone=call.outside_number)
        return Response(
            {
                "id": str(call.public_id),
                "call_id": call.call_id,
                "state": call.state,
                "matches": len(matches),
            }
        )
