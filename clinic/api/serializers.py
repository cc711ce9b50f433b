"""Serializers of the core API: who am I, branches, rooms, staff."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from clinic.core.models import Branch, Room, Staff
from clinic.core.selectors import user_roles, workplaces_for_user


class BranchSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    organization = serializers.CharField(source="organization.short_name", read_only=True)

    class Meta:
        model = Branch
        fields = ["id", "name", "organization", "address", "time_zone", "phone"]


class RoomSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    branch = serializers.UUIDField(source="branch.public_id", read_only=True)
    department = serializers.CharField(source="department.name", read_only=True, default="")

    class Meta:
        model = Room
        fields = ["id", "branch", "department", "number", "name", "room_type"]


class StaffSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    specialty = serializers.CharField(source="specialty.name", read_only=True, default="")
    branches = serializers.SerializerMethodField()

    class Meta:
        model = Staff
        fields = [
            "id",
            "last_name",
            "first_name",
            "patronymic",
            "position",
            "specialty",
            "frmr_id",
            "status",
            "branches",
        ]

    def get_branches(self, staff: Staff) -> list[str]:
        return [str(branch.public_id) for branch in staff.branches.all()]


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    full_name = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    workplaces = serializers.ListField(child=serializers.CharField())

    @staticmethod
    def for_user(user: Any) -> dict[str, Any]:
        staff = getattr(user, "staff", None)
        return {
            "username": user.get_username(),
            "full_name": staff.full_name if staff else user.get_full_name(),
            "roles": user_roles(user),
            "workplaces": workplaces_for_user(user),
        }
