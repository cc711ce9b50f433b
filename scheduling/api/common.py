"""Shared pieces of the scheduling API: looking up what a request names, and output shapes."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils.translation import gettext as _
from rest_framework import serializers

from clinic.core.models import Branch
from clinic.core.selectors import branch_list

from ..errors import SchedulingError, unknown_resource
from ..models import Appointment, Resource, Service


def uuid_from(value: Any, field: str) -> uuid.UUID:
    """A public id from the request; anything else is a field error quoting it."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise SchedulingError(
            "invalid_id",
            _("“%(value)s” is not a valid identifier.") % {"value": value},
            field=field,
        ) from None


def branch_from(actor: Any, value: Any, field: str = "branch") -> Branch:
    """A branch the actor works in, by public id; an unknown one is a field error."""
    branch = branch_list(actor=actor).filter(public_id=uuid_from(value, field)).first()
    if branch is None:
        raise SchedulingError(
            "unknown_branch",
            _("Unknown branch “%(value)s”.") % {"value": value},
            field=field,
        )
    return branch


def resource_from(
    organization_id: int, value: Any, field: str, *, kind: str | None = None
) -> Resource:
    """An active resource of the organization by public id (of the kind, if given)."""
    resources = Resource.objects.filter(
        organization_id=organization_id, public_id=uuid_from(value, field), is_active=True
    ).select_related("staff")
    if kind is not None:
        resources = resources.filter(kind=kind)
    resource = resources.first()
    if resource is None:
        raise unknown_resource(value, field)
    return resource


def services_from(
    organization_id: int, values: list[Any], field: str = "services"
) -> list[Service]:
    """Active services of the organization by code or public id, in the order given."""
    found: list[Service] = []
    for value in values:
        query = Service.objects.filter(organization_id=organization_id, is_active=True)
        try:
            service = query.filter(public_id=uuid.UUID(str(value))).first()
        except ValueError:
            service = query.filter(code=str(value)).first()
        if service is None:
            raise SchedulingError(
                "unknown_service",
                _("Unknown or inactive service “%(value)s”.") % {"value": value},
                field=field,
            )
        found.append(service)
    return found


class AppointmentOutSerializer(serializers.ModelSerializer):
    """An appointment as the API shows it to staff."""

    id = serializers.UUIDField(source="public_id", read_only=True)
    branch = serializers.UUIDField(source="branch.public_id", read_only=True)
    patient = serializers.SerializerMethodField()
    patient_name = serializers.CharField(read_only=True)
    doctor = serializers.SerializerMethodField()
    doctor_name = serializers.SerializerMethodField()
    room = serializers.SerializerMethodField()
    kind = serializers.CharField(source="kind.code", read_only=True)
    status = serializers.CharField(source="status.code", read_only=True)
    status_name = serializers.CharField(source="status.name", read_only=True)
    status_colour = serializers.CharField(source="status.colour", read_only=True)
    services = serializers.SerializerMethodField()
    resources = serializers.SerializerMethodField()
    cancel_reason = serializers.SerializerMethodField()
    follow_up_of = serializers.SerializerMethodField()
    copied_from = serializers.SerializerMethodField()

    class Meta:
        model = Appointment
        fields = [
            "id",
            "branch",
            "patient",
            "patient_name",
            "primary_phone",
            "primary_birth_date",
            "needs_completion",
            "kind",
            "services",
            "doctor",
            "doctor_name",
            "room",
            "resources",
            "starts_at",
            "ends_at",
            "status",
            "status_name",
            "status_colour",
            "channel",
            "booking_type",
            "communication_status",
            "payer_kind",
            "note",
            "cancel_reason",
            "cancelled_at",
            "follow_up_of",
            "copied_from",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_patient(self, obj: Appointment) -> str | None:
        return str(obj.patient.public_id) if obj.patient_id and obj.patient else None

    def get_doctor(self, obj: Appointment) -> str | None:
        return str(obj.doctor.public_id) if obj.doctor_id and obj.doctor else None

    def get_doctor_name(self, obj: Appointment) -> str:
        return obj.doctor.name if obj.doctor_id and obj.doctor else ""

    def get_room(self, obj: Appointment) -> str:
        return str(obj.room) if obj.room_id and obj.room else ""

    def get_services(self, obj: Appointment) -> list[dict[str, Any]]:
        return [
            {
                "id": str(line.service.public_id),
                "code": line.service.code,
                "name": line.service.name,
            }
            for line in obj.lines.all()
        ]

    def get_resources(self, obj: Appointment) -> list[dict[str, Any]]:
        return [
            {"id": str(o.resource.public_id), "kind": o.resource.kind, "name": o.resource.name}
            for o in obj.occupancies.all()
        ]

    def get_cancel_reason(self, obj: Appointment) -> str | None:
        return obj.cancel_reason.code if obj.cancel_reason_id and obj.cancel_reason else None

    def get_follow_up_of(self, obj: Appointment) -> str | None:
        return str(obj.follow_up_of.public_id) if obj.follow_up_of_id and obj.follow_up_of else None

    def get_copied_from(self, obj: Appointment) -> str | None:
        return str(obj.copied_from.public_id) if obj.copied_from_id and obj.copied_from else None
