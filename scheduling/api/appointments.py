"""/api/v1/scheduling/appointments/: book, list, move, copy, cancel, restore, statuses, history.

Booking accepts an ``Idempotency-Key`` header (or ``idempotency_key`` in the body): the same key
returns the same appointment (HTTP 200), the same key with different data is HTTP 422. A clash
is HTTP 409 naming the busy resource and its time, never the other patient.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.audit.selectors import history_for_object
from clinic.core.models import Staff
from clinic.core.selectors import staff_for_user
from patients.selectors import person_list

from .. import policies, selectors, services
from ..errors import SchedulingError
from ..models import (
    Appointment,
    AppointmentKind,
    AppointmentStatus,
    BookingChannel,
    BookingType,
    CancelReason,
    InformationSource,
    PayerKind,
    ReferringAgent,
    ResourceKind,
)
from .common import AppointmentOutSerializer, branch_from, resource_from, services_from


class PrimaryPatientSerializer(serializers.Serializer):
    last_name = serializers.CharField(max_length=100)
    first_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    patronymic = serializers.CharField(max_length=100, required=False, allow_blank=True)
    phone = serializers.CharField(max_length=32)
    birth_date = serializers.DateField(required=False, allow_null=True)


class BookingInSerializer(serializers.Serializer):
    branch = serializers.UUIDField()
    services = serializers.ListField(child=serializers.CharField(), min_length=1)
    starts_at = serializers.DateTimeField()
    channel = serializers.ChoiceField(choices=BookingChannel.choices)
    patient = serializers.UUIDField(required=False, allow_null=True)
    primary = PrimaryPatientSerializer(required=False, allow_null=True)
    doctor = serializers.UUIDField(required=False, allow_null=True)
    room = serializers.UUIDField(required=False, allow_null=True)
    equipment = serializers.ListField(child=serializers.UUIDField(), required=False)
    kind = serializers.CharField(required=False, allow_blank=True)
    duration_minutes = serializers.IntegerField(required=False, allow_null=True)
    booking_type = serializers.ChoiceField(choices=BookingType.choices, required=False)
    information_source = serializers.CharField(required=False, allow_blank=True)
    payer_kind = serializers.ChoiceField(choices=PayerKind.choices, required=False)
    note = serializers.CharField(required=False, allow_blank=True)
    assistant = serializers.UUIDField(required=False, allow_null=True)
    referring_agent = serializers.UUIDField(required=False, allow_null=True)
    hold_token = serializers.CharField(required=False, allow_blank=True)
    idempotency_key = serializers.CharField(required=False, allow_blank=True, max_length=100)


class MoveInSerializer(serializers.Serializer):
    starts_at = serializers.DateTimeField(required=False)
    doctor = serializers.UUIDField(required=False)
    room = serializers.UUIDField(required=False)
    duration_minutes = serializers.IntegerField(required=False)
    reason = serializers.CharField(required=False, allow_blank=True)


class CopyInSerializer(serializers.Serializer):
    starts_at = serializers.DateTimeField()
    doctor = serializers.UUIDField(required=False)
    services = serializers.ListField(child=serializers.CharField(), required=False, min_length=1)


class FollowUpInSerializer(serializers.Serializer):
    starts_at = serializers.DateTimeField()
    services = serializers.ListField(child=serializers.CharField(), min_length=1)
    kind = serializers.CharField(required=False, allow_blank=True)
    doctor = serializers.UUIDField(required=False)
    note = serializers.CharField(required=False, allow_blank=True)


class CancelInSerializer(serializers.Serializer):
    reason = serializers.CharField()
    note = serializers.CharField(required=False, allow_blank=True)


class StatusInSerializer(serializers.Serializer):
    status = serializers.CharField()


def _reference(model: Any, value: str, field: str) -> Any:
    """A reference row by code; an unknown code is a field error quoting it."""
    row = model.objects.filter(code=value).first()
    if row is None:
        raise SchedulingError(
            "unknown_code", _("Unknown code “%(value)s”.") % {"value": value}, field=field
        )
    return row


def _patient(actor: Any, organization_id: int, value: Any) -> Any:
    person = (
        person_list(actor=actor)
        .filter(organization_id=organization_id, public_id=value, merged_into__isnull=True)
        .first()
    )
    if person is None:
        raise SchedulingError(
            "unknown_patient", _("Unknown patient “%(value)s”.") % {"value": value}, field="patient"
        )
    return person


def _booking_request(request: Request, data: dict[str, Any]) -> services.BookingRequest:
    actor = request.user
    branch = branch_from(actor, data["branch"])
    org = branch.organization_id
    primary = None
    if data.get("primary"):
        primary = services.PrimaryPatient(**data["primary"])
    assistant = None
    if data.get("assistant"):
        assistant = Staff.objects.filter(organization_id=org, public_id=data["assistant"]).first()
        if assistant is None:
            raise SchedulingError(
                "unknown_staff",
                _("Unknown staff member “%(value)s”.") % {"value": data["assistant"]},
                field="assistant",
            )
    agent = None
    if data.get("referring_agent"):
        agent = ReferringAgent.objects.filter(
            organization_id=org, public_id=data["referring_agent"]
        ).first()
        if agent is None:
            raise SchedulingError(
                "unknown_referring_agent",
                _("Unknown referring agent “%(value)s”.") % {"value": data["referring_agent"]},
                field="referring_agent",
            )
    key = request.headers.get("Idempotency-Key") or data.get("idempotency_key") or None
    return services.BookingRequest(
        branch=branch,
        services=services_from(org, data["services"]),
        starts_at=data["starts_at"],
        channel=data["channel"],
        patient=_patient(actor, org, data["patient"]) if data.get("patient") else None,
        primary=primary,
        doctor=resource_from(org, data["doctor"], "doctor", kind=ResourceKind.DOCTOR)
        if data.get("doctor")
        else None,
        room=resource_from(org, data["room"], "room", kind=ResourceKind.ROOM)
        if data.get("room")
        else None,
        equipment=[
            resource_from(org, value, "equipment", kind=ResourceKind.EQUIPMENT)
            for value in data.get("equipment", [])
        ],
        kind=_reference(AppointmentKind, data["kind"], "kind") if data.get("kind") else None,
        duration_minutes=data.get("duration_minutes"),
        booking_type=data.get("booking_type") or BookingType.PLANNED,
        information_source=_reference(
            InformationSource, data["information_source"], "information_source"
        )
        if data.get("information_source")
        else None,
        payer_kind=data.get("payer_kind") or PayerKind.SELF_PAY,
        note=data.get("note", ""),
        assistant=assistant,
        referring_agent=agent,
        hold_token=data.get("hold_token") or None,
        idempotency_key=key,
    )


def _fresh(request: Request, appointment: Appointment) -> dict[str, Any]:
    """The appointment just written, re-read with everything the output needs (the service
    authorised the actor for it, so no branch scoping is repeated here)."""
    again = selectors.appointment_with_details(appointment.pk)
    return dict(AppointmentOutSerializer(again).data)


class AppointmentListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("branch", str),
            OpenApiParameter("date_from", str, description="YYYY-MM-DD, local"),
            OpenApiParameter("date_to", str, description="YYYY-MM-DD, local, inclusive"),
            OpenApiParameter("doctor", str),
            OpenApiParameter("patient", str),
            OpenApiParameter("status", str),
        ],
        responses=AppointmentOutSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        if not policies.can_view_schedule(request.user):
            raise PermissionDenied
        filters = _ListFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        branch = branch_from(request.user, values["branch"]) if values.get("branch") else None
        org_id = branch.organization_id if branch else None
        doctor = None
        if values.get("doctor"):
            doctor = resource_from(org_id or _actor_org(request.user), values["doctor"], "doctor")
        patient = None
        if values.get("patient"):
            patient = _patient(request.user, org_id or _actor_org(request.user), values["patient"])
        appointments = selectors.appointment_list(
            actor=request.user,
            branch_id=branch.pk if branch else None,
            date_from=values.get("date_from"),
            date_to=values.get("date_to"),
            doctor_id=doctor.pk if doctor else None,
            patient_id=patient.pk if patient else None,
            status_code=values.get("status") or None,
        )
        paginator = _Pagination()
        page = paginator.paginate_queryset(appointments, request, view=self)
        return paginator.get_paginated_response(AppointmentOutSerializer(page, many=True).data)

    @extend_schema(
        request=BookingInSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, location=OpenApiParameter.HEADER)],
        responses={201: AppointmentOutSerializer, 200: AppointmentOutSerializer},
    )
    def post(self, request: Request) -> Response:
        incoming = BookingInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        booking = _booking_request(request, dict(incoming.validated_data))
        appointment = services.appointment_book(actor=request.user, request=booking)
        replayed = getattr(appointment, "replayed", False)
        return Response(
            _fresh(request, appointment),
            status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED,
        )


class _ListFilters(serializers.Serializer):
    branch = serializers.UUIDField(required=False)
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)
    doctor = serializers.UUIDField(required=False)
    patient = serializers.UUIDField(required=False)
    status = serializers.CharField(required=False, allow_blank=True)


class _Pagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500


def _actor_org(actor: Any) -> int:
    staff = staff_for_user(actor)
    if staff is None:
        raise PermissionDenied
    return staff.organization_id


class AppointmentDetailView(APIView):
    @extend_schema(responses=AppointmentOutSerializer)
    def get(self, request: Request, public_id: str) -> Response:
        if not policies.can_view_schedule(request.user):
            raise PermissionDenied
        appointment = selectors.appointment_get_for_actor(actor=request.user, public_id=public_id)
        return Response(AppointmentOutSerializer(appointment).data)


class _ActionView(APIView):
    """An action on one appointment of the actor's branches."""

    def appointment(self, request: Request, public_id: str) -> Appointment:
        return selectors.appointment_get_for_actor(actor=request.user, public_id=public_id)


class MoveView(_ActionView):
    @extend_schema(request=MoveInSerializer, responses=AppointmentOutSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        appointment = self.appointment(request, public_id)
        incoming = MoveInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        org = appointment.organization_id
        moved = services.appointment_move(
            actor=request.user,
            appointment=appointment,
            starts_at=data.get("starts_at"),
            doctor=resource_from(org, data["doctor"], "doctor", kind=ResourceKind.DOCTOR)
            if data.get("doctor")
            else None,
            room=resource_from(org, data["room"], "room", kind=ResourceKind.ROOM)
            if data.get("room")
            else None,
            duration_minutes=data.get("duration_minutes"),
            reason=data.get("reason", ""),
        )
        return Response(_fresh(request, moved))


class CopyView(_ActionView):
    @extend_schema(request=CopyInSerializer, responses={201: AppointmentOutSerializer})
    def post(self, request: Request, public_id: str) -> Response:
        appointment = self.appointment(request, public_id)
        incoming = CopyInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        org = appointment.organization_id
        copy = services.appointment_copy(
            actor=request.user,
            appointment=appointment,
            starts_at=data["starts_at"],
            doctor=resource_from(org, data["doctor"], "doctor", kind=ResourceKind.DOCTOR)
            if data.get("doctor")
            else None,
            services=services_from(org, data["services"]) if data.get("services") else None,
            idempotency_key=request.headers.get("Idempotency-Key") or None,
        )
        return Response(_fresh(request, copy), status=status.HTTP_201_CREATED)


class FollowUpView(_ActionView):
    @extend_schema(request=FollowUpInSerializer, responses={201: AppointmentOutSerializer})
    def post(self, request: Request, public_id: str) -> Response:
        appointment = self.appointment(request, public_id)
        incoming = FollowUpInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        org = appointment.organization_id
        follow_up = services.appointment_follow_up(
            actor=request.user,
            appointment=appointment,
            starts_at=data["starts_at"],
            services=services_from(org, data["services"]),
            kind=_reference(AppointmentKind, data["kind"], "kind") if data.get("kind") else None,
            doctor=resource_from(org, data["doctor"], "doctor", kind=ResourceKind.DOCTOR)
            if data.get("doctor")
            else appointment.doctor,
            note=data.get("note", ""),
            idempotency_key=request.headers.get("Idempotency-Key") or None,
        )
        return Response(_fresh(request, follow_up), status=status.HTTP_201_CREATED)


class CancelView(_ActionView):
    @extend_schema(request=CancelInSerializer, responses=AppointmentOutSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        appointment = self.appointment(request, public_id)
        incoming = CancelInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        reason = _reference(CancelReason, incoming.validated_data["reason"], "reason")
        cancelled = services.appointment_cancel(
            actor=request.user,
            appointment=appointment,
            reason=reason,
            note=incoming.validated_data.get("note", ""),
        )
        return Response(_fresh(request, cancelled))


class RestoreView(_ActionView):
    @extend_schema(request=None, responses=AppointmentOutSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        appointment = self.appointment(request, public_id)
        restored = services.appointment_restore(actor=request.user, appointment=appointment)
        return Response(_fresh(request, restored))


class StatusView(_ActionView):
    @extend_schema(request=StatusInSerializer, responses=AppointmentOutSerializer)
    def post(self, request: Request, public_id: str) -> Response:
        appointment = self.appointment(request, public_id)
        incoming = StatusInSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        code = incoming.validated_data["status"]
        _reference(AppointmentStatus, code, "status")
        changed = services.appointment_set_status(
            actor=request.user, appointment=appointment, code=code
        )
        return Response(_fresh(request, changed))


class HistoryEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    user = serializers.CharField()
    action = serializers.CharField()
    changes = serializers.DictField()
    reason = serializers.CharField(allow_null=True)


class HistoryView(_ActionView):
    @extend_schema(responses=HistoryEntrySerializer(many=True))
    def get(self, request: Request, public_id: str) -> Response:
        """Who changed what when: every tracked change of the appointment, oldest first."""
        appointment = self.appointment(request, public_id)
        if not policies.can_view_schedule(request.user):
            raise PermissionDenied
        entries = []
        for event in history_for_object(appointment):
            diff = event.pgh_diff or {}
            context = getattr(event, "pgh_context", None) or {}
            entries.append(
                {
                    "at": event.pgh_created_at,
                    "user": getattr(event.user, "username", "") or "",
                    "action": event.pgh_label,
                    "changes": {
                        key: value
                        for key, value in diff.items()
                        if key not in ("updated_at", "idempotency_fingerprint")
                    },
                    "reason": context.get("change_reason") if isinstance(context, dict) else None,
                }
            )
        return Response(HistoryEntrySerializer(entries, many=True).data)


class TrashView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("branch", str)],
        responses=AppointmentOutSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        """Cancelled appointments that may still be restored, latest cancellation first."""
        if not policies.can_view_schedule(request.user):
            raise PermissionDenied
        branch_value = request.query_params.get("branch")
        branch = branch_from(request.user, branch_value) if branch_value else None
        appointments = selectors.trash_list(
            actor=request.user, branch_id=branch.pk if branch else None
        )
        paginator = _Pagination()
        page = paginator.paginate_queryset(appointments, request, view=self)
        return paginator.get_paginated_response(AppointmentOutSerializer(page, many=True).data)


urlpatterns = [
    path("appointments/", AppointmentListView.as_view(), name="scheduling-appointment-list"),
    path("appointments/trash/", TrashView.as_view(), name="scheduling-appointment-trash"),
    path(
        "appointments/<uuid:public_id>/",
        AppointmentDetailView.as_view(),
        name="scheduling-appointment-detail",
    ),
    path("appointments/<uuid:public_id>/move/", MoveView.as_view(), name="scheduling-move"),
    path("appointments/<uuid:public_id>/copy/", CopyView.as_view(), name="scheduling-copy"),
    path(
        "appointments/<uuid:public_id>/follow-up/",
        FollowUpView.as_view(),
        name="scheduling-follow-up",
    ),
    path("appointments/<uuid:public_id>/cancel/", CancelView.as_view(), name="scheduling-cancel"),
    path(
        "appointments/<uuid:public_id>/restore/", RestoreView.as_view(), name="scheduling-restore"
    ),
    path("appointments/<uuid:public_id>/status/", StatusView.as_view(), name="scheduling-status"),
    path(
        "appointments/<uuid:public_id>/history/",
        HistoryView.as_view(),
        name="scheduling-history",
    ),
]
