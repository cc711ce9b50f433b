"""Outbox endpoints for monitoring tools: list messages and re-queue a dead one."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.api.permissions import HasCapability
from clinic.core.roles import Capability

from .models import OutboxMessage
from .services import OutboxPermissionDenied, outbox_requeue


class OutboxMessageSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = OutboxMessage
        fields = [
            "id",
            "channel",
            "subject",
            "idempotency_key",
            "state",
            "attempts",
            "next_attempt_at",
            "last_error",
            "delivered_at",
            "created_at",
        ]


class OutboxMessageListView(generics.ListAPIView):
    """Outbox messages, newest first; filter with ?state=dead and ?channel=NAME."""

    serializer_class = OutboxMessageSerializer
    permission_classes = [HasCapability]
    required_capability = Capability.MANAGE_OUTBOX

    def get_queryset(self) -> Any:
        queryset = OutboxMessage.objects.order_by("-created_at")
        for field in ("state", "channel"):
            value = self.request.query_params.get(field)
            if value:
                queryset = queryset.filter(**{field: value})
        return queryset


class OutboxMessageRequeueView(APIView):
    """Send a dead or waiting message again now (same idempotency key)."""

    permission_classes = [HasCapability]
    required_capability = Capability.MANAGE_OUTBOX

    @extend_schema(request=None, responses=OutboxMessageSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        message = get_object_or_404(OutboxMessage, public_id=public_id)
        try:
            message = outbox_requeue(message=message, actor=request.user)
        except OutboxPermissionDenied:
            raise PermissionDenied from None
        return Response(OutboxMessageSerializer(message).data, status=status.HTTP_200_OK)


urlpatterns = [
    path("", OutboxMessageListView.as_view(), name="outbox-list"),
    path("<uuid:public_id>/requeue/", OutboxMessageRequeueView.as_view(), name="outbox-requeue"),
]
