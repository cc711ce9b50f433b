"""/api/v1/scheduling/absences/ and /route-sheet/: a doctor's absence, moving or cancelling his
patients in bulk, and a patient's printable route sheet for a day."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.core.selectors import organization_list
from patients.selectors import person_list

from .. import policies
from ..absence import (
    BulkResult,
    absence_register,
    appointments_bulk_cancel,
    appointments_bulk_move,
    appointments_for_bulk,
)
from ..errors import SchedulingError, unknown_resource
from ..models import (
    CancelReason,
    ExceptionKind,
    Resource,
    ResourceKind,
    ScheduleException,
)
from ..route_sheet import route_sheet_pdf
from ..selectors import appointments_with_details
from .common import AppointmentOutSerializer, uuid_from


class AbsenceSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    doctor = serializers.UUIDField(source="resource.public_id", read_only=True)
    doctor_name = serializers.CharField(source="resource.name", read_only=True)

    class Meta:
        model = ScheduleException
        fields = ["id", "doctor", "doctor_name", "kind", "date_from", "date_to", "note"]
        read_only_fields = fields


class AbsenceInSerializer(serializers.Serializer):
    doctor = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=ExceptionKind.choices)
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class AbsenceOutSerializer(serializers.Serializer):
    absence = AbsenceSerializer()
    affected = AppointmentOutSerializer(many=True)


class BulkMoveInSerializer(serializers.Serializer):
    appointments = serializers.ListField(
        child=serializers.UUIDField(), allow_empty=False, max_length=500
    )
    to_doctor = serializers.UUIDField(required=False, allow_null=True, default=None)
    shift_days = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=-365, max_value=365
    )
    new_times = serializers.DictField(
        child=serializers.DateTimeField(),
        required=False,
        default=dict,
        help_text="A new start per appointment public id.",
    )
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class BulkCancelInSerializer(serializers.Serializer):
    appointments = serializers.ListField(
        child=serializers.UUIDField(), allow_empty=False, max_length=500
    )
    reason = serializers.SlugField(required=False, default="doctor_absent")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class BulkResultSerializer(serializers.Serializer):
    appointment = serializers.UUIDField()
    outcome = serializers.ChoiceField(choices=["moved", "cancelled", "refused"])
    code = serializers.CharField()
    message = serializers.CharField()
    result = AppointmentOutSerializer(allow_null=True)


class BulkOutSerializer(serializers.Serializer):
    results = BulkResultSerializer(many=True)


def _doctor_from(actor: Any, value: Any, field: str) -> Resource:
    doctor = (
        Resource.objects.filter(
            public_id=value,
            kind=ResourceKind.DOCTOR,
            is_active=True,
            organization__in=organization_list(actor=actor),
        )
        .select_related("staff", "branch")
        .first()
    )
    if doctor is None:
        raise unknown_resource(value, field)
    return doctor


def _results_out(results: list[BulkResult]) -> dict[str, Any]:
    full = {a.pk: a for a in appointments_with_details([r.appointment for r in results])}
    return {
        "results": [
            {
                "appointment": str(result.appointment.public_id),
                "outcome": result.outcome,
                "code": result.code,
                "message": result.message,
                "result": AppointmentOutSerializer(full[result.appointment.pk]).data,
            }
            for result in results
        ]
    }


class AbsenceRegisterView(APIView):
    """Record a doctor's sick leave, vacation or day off; answer with the appointments it hits."""

    @extend_schema(request=AbsenceInSerializer, responses={201: AbsenceOutSerializer})
    def post(self, request: Request) -> Response:
        serializer = AbsenceInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not policies.can_manage_schedules(request.user):
            raise PermissionDenied
        doctor = _doctor_from(request.user, data["doctor"], "doctor")
        exception, affected = absence_register(
            actor=request.user,
            doctor=doctor,
            kind=data["kind"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            note=data["note"],
        )
        body = {
            "absence": AbsenceSerializer(exception).data,
            "affected": AppointmentOutSerializer(
                appointments_with_details(affected), many=True
            ).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class BulkMoveView(APIView):
    """Move appointments to another doctor and/or time; each one moves or is refused alone."""

    @extend_schema(request=BulkMoveInSerializer, responses=BulkOutSerializer)
    def post(self, request: Request) -> Response:
        serializer = BulkMoveInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        appointments = appointments_for_bulk(actor=request.user, public_ids=data["appointments"])
        to_doctor = None
        if data["to_doctor"] is not None:
            to_doctor = _doctor_from(request.user, data["to_doctor"], "to_doctor")
        new_times = {uuid_from(key, "new_times"): value for key, value in data["new_times"].items()}
        results = appointments_bulk_move(
            actor=request.user,
            appointments=appointments,
            to_doctor=to_doctor,
            shift_days=data["shift_days"],
            new_times=new_times,
            reason=data["reason"],
        )
        return Response(_results_out(results))


class BulkCancelView(APIView):
    """Cancel appointments (by default for the doctor's absence) and notify each patient."""

    @extend_schema(request=BulkCancelInSerializer, responses=BulkOutSerializer)
    def post(self, request: Request) -> Response:
        serializer = BulkCancelInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        appointments = appointments_for_bulk(actor=request.user, public_ids=data["appointments"])
        reason = CancelReason.objects.filter(code=data["reason"], is_active=True).first()
        if reason is None:
            raise SchedulingError(
                "unknown_reason",
                _("Unknown cancellation reason “%(value)s”.") % {"value": data["reason"]},
                field="reason",
            )
        results = appointments_bulk_cancel(
            actor=request.user, appointments=appointments, reason=reason, note=data["note"]
        )
        return Response(_results_out(results))


class RouteSheetView(APIView):
    """A patient's route sheet for one day as a PDF."""

    @extend_schema(
        parameters=[
            OpenApiParameter("patient", OpenApiTypes.UUID, required=True),
            OpenApiParameter("date", OpenApiTypes.DATE, required=True),
        ],
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY)},
    )
    def get(self, request: Request) -> HttpResponse:
        if not policies.can_view_schedule(request.user):
            raise PermissionDenied
        params = request.query_params
        patient_value = params.get("patient", "")
        date_value = params.get("date", "")
        try:
            day = datetime.date.fromisoformat(date_value)
        except ValueError:
            raise SchedulingError(
                "invalid_date",
                _("“%(value)s” is not a date in the form YYYY-MM-DD.") % {"value": date_value},
                field="date",
            ) from None
        patient = (
            person_list(actor=request.user)
            .filter(public_id=uuid_from(patient_value, "patient"))
            .first()
        )
        if patient is None:
            raise SchedulingError(
                "unknown_patient",
                _("Unknown patient “%(value)s”.") % {"value": patient_value},
                field="patient",
            )
        pdf = route_sheet_pdf(actor=request.user, patient=patient, day=day)
        response = HttpResponse(pdf, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="route-sheet-{day.isoformat()}.pdf"'
        return response


urlpatterns: list[URLPattern] = [
    path("absences/", AbsenceRegisterView.as_view(), name="scheduling-absences"),
    path("absences/bulk-move/", BulkMoveView.as_view(), name="scheduling-absences-bulk-move"),
    path("absences/bulk-cancel/", BulkCancelView.as_view(), name="scheduling-absences-bulk-cancel"),
    path("route-sheet/", RouteSheetView.as_view(), name="scheduling-route-sheet"),
]
