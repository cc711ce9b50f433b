"""/api/v1/billing/prices/lookup/: the price lookup of the booking form, as JSON.

The same parameters and rules as the desk's fragment (``lookup_params``); a refusal is the API's
one error format (``clinic/api/errors.py``) with the field named.
"""

from __future__ import annotations

import datetime
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduling.models import PayerKind

from .lookup_params import lookup_params_from
from .policies import can_look_up_prices
from .selectors import PRICE_LOOKUP_LIMIT


class CanLookUpPrices(BasePermission):
    """Booking staff and cashiers."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_look_up_prices(request.user)


class PriceRowSerializer(serializers.Serializer):
    """One service with its price; ``price`` is a string of the exact amount, or null."""

    group = serializers.CharField(source="group_name")
    service = serializers.UUIDField(source="service_public_id")
    code = serializers.CharField(source="service_code")
    name = serializers.CharField(source="service_name")
    duration_minutes = serializers.IntegerField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)


class PriceLookupOutSerializer(serializers.Serializer):
    date = serializers.DateField()
    payer = serializers.ChoiceField(choices=PayerKind.choices)
    contract = serializers.UUIDField(allow_null=True)
    limited = serializers.BooleanField(help_text=f"True when {PRICE_LOOKUP_LIMIT} rows are shown")
    results = PriceRowSerializer(many=True)


class PriceLookupView(APIView):
    permission_classes = [CanLookUpPrices]

    @extend_schema(
        summary="Services with their price for a payer on a date",
        parameters=[
            OpenApiParameter("branch", str, required=True, description="Branch public id"),
            OpenApiParameter("q", str, description="Part of the service's code or name"),
            OpenApiParameter("group", str, description="Service group public id or id"),
            OpenApiParameter(
                "payer",
                str,
                enum=PayerKind.values,
                description="Default: the contract's payer kind, else self_pay",
            ),
            OpenApiParameter("contract", str, description="Contract public id or id"),
            OpenApiParameter("date", datetime.date, description="Default: today at the branch"),
        ],
        responses=PriceLookupOutSerializer,
    )
    def get(self, request: Request) -> Response:
        params = lookup_params_from(actor=request.user, data=request.query_params)
        rows = params.rows(request.user)
        body = {
            "date": params.on_date,
            "payer": params.payer_kind,
            "contract": params.contract.public_id if params.contract else None,
            "limited": len(rows) >= PRICE_LOOKUP_LIMIT,
            "results": rows,
        }
        return Response(PriceLookupOutSerializer(body).data)
