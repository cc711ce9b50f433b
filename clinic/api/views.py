"""Core endpoints of /api/v1/: the current user, branches, rooms and staff of the actor."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.core import selectors
from clinic.core.roles import Capability

from .permissions import HasCapability
from .serializers import BranchSerializer, MeSerializer, RoomSerializer, StaffSerializer


class MeView(APIView):
    """The authenticated user: name, roles and the workplaces they may open."""

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(MeSerializer.for_user(request.user)).data)


class BranchListView(generics.ListAPIView):
    """Branches the user works in."""

    serializer_class = BranchSerializer

    def get_queryset(self) -> Any:
        return selectors.branch_list(actor=self.request.user)


class RoomListView(generics.ListAPIView):
    """Rooms of the user's branches."""

    serializer_class = RoomSerializer
    permission_classes = [HasCapability]
    required_capability = Capability.VIEW_SCHEDULE

    def get_queryset(self) -> Any:
        return selectors.room_list(actor=self.request.user)


class StaffListView(generics.ListAPIView):
    """Staff of the user's branches."""

    serializer_class = StaffSerializer
    permission_classes = [HasCapability]
    required_capability = Capability.VIEW_SCHEDULE

    def get_queryset(self) -> Any:
        return selectors.staff_list(actor=self.request.user)
