"""/api/v1/scheduling/waitlist/: the waitlist and the offers of freed time made from it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.urls import URLPattern, path
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from patients.selectors import person_list

from .. import policies, waitlist
from ..errors import SchedulingError
from ..models import Appointment, ResourceKind, WaitlistEntry, WaitlistOffer, WaitlistState
from .common import AppointmentOutSerializer, branch_from, resource_from, services_from


class WaitlistOfferSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    doctor = serializers.UUIDField(source="doctor.public_id", read_only=True)
    doctor_name = serializers.CharField(source="doctor.name", read_only=True)

    class Meta:
        model = WaitlistOffer
        fields = ["id", "doctor", "doctor_name", "starts_at", "ends_at", "state", "expires_at"]
        read_only_fields = fields


class WaitlistEntrySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    branch = serializers.UUIDField(source="branch.public_id", read_only=True)
    patient = serializers.UUIDField(source="patient.public_id", read_only=True)
    patient_name = serializers.CharField(source="patient.full_name", read_only=True)
    service = serializers.CharField(source="service.code", read_only=True)
    service_name = serializers.CharField(source="service.name", read_only=True)
    doctor = serializers.SerializerMethodField()
    doctor_name = serializers.SerializerMethodField()
    appointment = serializers.SerializerMethodField()
    offers = WaitlistOfferSerializer(many=True, read_only=True)

    class Meta:
        model = WaitlistEntry
        fields = [
            "id",
            "branch",
            "patient",
            "patient_name",
            "service",
            "service_name",
            "doctor",
            "doctor_name",
            "date_from",
            "date_to",
            "time_from",
            "time_to",
            "state",
            "note",
            "appointment",
            "offers",
            "created_at",
        ]
        read_only_fields = fields

    def get_doctor(self, obj: WaitlistEntry) -> str | None:
        return str(obj.doctor.public_id) if obj.doctor_id and obj.doctor else None

    def get_doctor_name(self, obj: WaitlistEntry) -> str:
        return obj.doctor.name if obj.doctor_id and obj.doctor else ""

    def get_appointment(self, obj: WaitlistEntry) -> str | None:
        return str(obj.appointment.public_id) if obj.appointment_id and obj.appointment else None


class WaitlistAddSerializer(serializers.Serializer):
    branch = serializers.UUIDField()
    patient = serializers.UUIDField()
    service = serializers.CharField(help_text="Service code or public id.")
    doctor = serializers.UUIDField(required=False, allow_null=True, default=None)
    date_from = serializers.DateField(required=False, allow_null=True, default=None)
    date_to = serializers.DateField(required=False, allow_null=True, default=None)
    time_from = serializers.TimeField(required=False, allow_null=True, default=None)
    time_to = serializers.TimeField(required=False, allow_null=True, default=None)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


def _entries(actor: Any) -> QuerySet[WaitlistEntry]:
    return waitlist.waitlist_list(actor=actor).prefetch_related(
        Prefetch("offers", queryset=WaitlistOffer.objects.select_related("doctor"))
    )


def _appointment_out(appointment: Appointment) -> dict[str, Any]:
    full = (
        Appointment.objects.select_related(
            "branch",
            "patient",
            "doctor",
            "room",
            "kind",
            "status",
            "cancel_reason",
            "follow_up_of",
            "copied_from",
        )
        .prefetch_related("lines__service", "occupancies__resource")
        .get(pk=appointment.pk)
    )
    data: dict[str, Any] = AppointmentOutSerializer(full).data
    return data


class WaitlistListCreateView(APIView):
    """The waitlist of the caller's branches (oldest first), or put a patient on it."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "state", str, enum=WaitlistState.values, description="Only entries in this state"
            ),
            OpenApiParameter("branch", str, description="Only this branch (public id)"),
        ],
        responses=WaitlistEntrySerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        if not policies.can_view_schedule(request.user):
            raise PermissionDenied
        entries = _entries(request.user)
        state = request.query_params.get("state")
        if state:
            if state not in WaitlistState.values:
                raise SchedulingError(
                    "invalid_state",
                    _("Unknown waitlist state “%(value)s”.") % {"value": state},
                    field="state",
                )
            entries = entries.filter(state=state)
        branch = request.query_params.get("branch")
        if branch:
            entries = entries.filter(branch=branch_from(request.user, branch))
        return Response(WaitlistEntrySerializer(entries, many=True).data)

    @extend_schema(request=WaitlistAddSerializer, responses={201: WaitlistEntrySerializer})
    def post(self, request: Request) -> Response:
        serializer = WaitlistAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        actor = request.user
        if not policies.can_view_schedule(actor):
            raise PermissionDenied
        branch = branch_from(actor, data["branch"])
        patient = (
            person_list(actor=actor)
            .filter(public_id=data["patient"], organization_id=branch.organization_id)
            .first()
        )
        if patient is None:
            raise SchedulingError(
                "unknown_patient",
                _("Unknown patient “%(value)s”.") % {"value": data["patient"]},
                field="patient",
            )
        [service] = services_from(branch.organization_id, [data["service"]], field="service")
        doctor = None
        if data["doctor"] is not None:
            doctor = resource_from(
                branch.organization_id, data["doctor"], "doctor", kind=ResourceKind.DOCTOR
            )
        entry = waitlist.waitlist_add(
            actor=actor,
            branch=branch,
            patient=patient,
            service=service,
            doctor=doctor,
            date_from=data["date_from"],
            date_to=data["date_to"],
            time_from=data["time_from"],
            time_to=data["time_to"],
            note=data["note"],
        )
        created = _entries(actor).get(pk=entry.pk)
        return Response(WaitlistEntrySerializer(created).data, status=status.HTTP_201_CREATED)


class WaitlistCancelView(APIView):
    """Take a patient off the waitlist; open offers are withdrawn."""

    @extend_schema(request=None, responses=WaitlistEntrySerializer)
    def post(self, request: Request, public_id: str) -> Response:
        entry = waitlist.waitlist_entry_get_for_actor(actor=request.user, public_id=public_id)
        waitlist.waitlist_cancel(actor=request.user, entry=entry)
        return Response(WaitlistEntrySerializer(_entries(request.user).get(pk=entry.pk)).data)


class WaitlistOfferAcceptView(APIView):
    """Book the offered time; 409 ``slot_taken`` when someone else got it first."""

    @extend_schema(request=None, responses=AppointmentOutSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        offer = waitlist.waitlist_offer_get_for_actor(actor=request.user, public_id=public_id)
        appointment = waitlist.waitlist_offer_accept(actor=request.user, offer=offer)
        return Response(_appointment_out(appointment))


class WaitlistOfferDeclineView(APIView):
    """The patient does not want the offered time; the entry waits for the next one."""

    @extend_schema(request=None, responses=WaitlistOfferSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        offer = waitlist.waitlist_offer_get_for_actor(actor=request.user, public_id=public_id)
        declined = waitlist.waitlist_offer_decline(actor=request.user, offer=offer)
        return Response(WaitlistOfferSerializer(declined).data)


urlpatterns: list[URLPattern] = [
    path("waitlist/", WaitlistListCreateView.as_view(), name="scheduling-waitlist"),
    path(
        "waitlist/<uuid:public_id>/cancel/",
        WaitlistCancelView.as_view(),
        name="scheduling-waitlist-cancel",
    ),
    path(
        "waitlist/offers/<uuid:public_id>/accept/",
        WaitlistOfferAcceptView.as_view(),
        name="scheduling-waitlist-offer-accept",
    ),
    path(
        "waitlist/offers/<uuid:public_id>/decline/",
        WaitlistOfferDeclineView.as_view(),
        name="scheduling-waitlist-offer-decline",
    ),
]
