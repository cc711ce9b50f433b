"""/api/v1/scheduling/availability/ and /holds/: free slots, the nearest free time, slot holds.

Thin views: they turn query parameters into the arguments of ``scheduling.availability`` and
``scheduling.holds`` and the answers into JSON. Holds are taken by the booking screens while a
person fills in the form, so that other screens show the slot as held.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.urls import path
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.core.selectors import organization_list
from patients.selectors import person_get_for_actor

from .. import holds, policies
from ..availability import Slot, free_slots, nearest_free
from ..errors import SchedulingError, unknown_resource
from ..models import BookingChannel, Resource, ResourceKind
from .common import branch_from, resource_from, services_from, uuid_from

MAX_RANGE_DAYS = 31
NEAREST_DAYS = 30
NEAREST_MAX_LIMIT = 100


class CanViewSchedule(BasePermission):
    """Availability and holds are for those who may see the schedule."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and policies.can_view_schedule(
            request.user
        )


class SlotSerializer(serializers.Serializer):
    doctor = serializers.UUIDField(source="doctor_public_id")
    doctor_name = serializers.CharField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=["free", "held"])


class HoldInSerializer(serializers.Serializer):
    resources = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=10)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    token = serializers.CharField(required=False, allow_blank=True, max_length=64)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["ends_at"] <= attrs["starts_at"]:
            raise SchedulingError(
                "invalid_range",
                _("The end %(end)s is not after the start.")
                % {"end": attrs["ends_at"].isoformat()},
                field="ends_at",
            )
        if attrs["ends_at"] - attrs["starts_at"] > datetime.timedelta(hours=24):
            raise SchedulingError(
                "invalid_range", _("A hold covers at most 24 hours."), field="ends_at"
            )
        return attrs


class HoldOutSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


def _param(request: Request, name: str, *, required: bool = False) -> str:
    value = (request.query_params.get(name) or "").strip()
    if required and not value:
        raise SchedulingError(
            "required", _("The parameter “%(field)s” is required.") % {"field": name}, field=name
        )
    return value


def _date(request: Request, name: str, default: datetime.date) -> datetime.date:
    value = _param(request, name)
    if not value:
        return default
    try:
        parsed = parse_date(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise SchedulingError(
            "invalid_date",
            _("“%(value)s” is not a date (YYYY-MM-DD).") % {"value": value},
            field=name,
        )
    return parsed


def _channel(request: Request) -> str:
    channel = _param(request, "channel") or BookingChannel.DESK
    if channel not in BookingChannel.values:
        raise SchedulingError(
            "unknown_channel",
            _("Unknown booking channel “%(value)s”.") % {"value": channel},
            field="channel",
        )
    return channel


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _patient_age(request: Request, day: datetime.date) -> int | None:
    value = _param(request, "patient")
    if not value:
        return None
    person = person_get_for_actor(actor=request.user, public_id=uuid_from(value, "patient"))
    return person.age_on(day)


def _slots_out(slots: list[Slot]) -> list[dict[str, Any]]:
    """The slots as ``SlotSerializer`` documents them, built directly: a two-week grid of fifty
    doctors is thousands of slots, and a serializer per slot would cost more than finding them.
    Each distinct time is formatted once (doctors on one grid share their times)."""
    zone = timezone.get_current_timezone()
    texts: dict[int, str] = {}
    ids: dict[int, str] = {}

    def text(epoch: int) -> str:
        found = texts.get(epoch)
        if found is None:
            found = texts[epoch] = datetime.datetime.fromtimestamp(epoch, zone).isoformat()
        return found

    out = []
    for slot in slots:
        doctor = ids.get(slot.doctor_id)
        if doctor is None:
            doctor = ids[slot.doctor_id] = str(slot.doctor_public_id)
        out.append(
            {
                "doctor": doctor,
                "doctor_name": slot.doctor_name,
                "starts_at": text(slot.start),
                "ends_at": text(slot.end),
                "state": slot.state,
            }
        )
    return out


_COMMON_PARAMETERS = [
    OpenApiParameter("branch", str, required=True, description="Branch public id"),
    OpenApiParameter(
        "services", str, required=True, description="Service codes or ids, comma-separated"
    ),
    OpenApiParameter("channel", str, enum=BookingChannel.values, description="Default: desk"),
    OpenApiParameter("patient", str, description="Patient public id (for the age limits)"),
    OpenApiParameter("hold_token", str, description="The caller's own hold shows as free"),
]


class AvailabilityView(APIView):
    permission_classes = [CanViewSchedule]

    @extend_schema(
        summary="Free slots of doctors over a range of days",
        parameters=[
            *_COMMON_PARAMETERS,
            OpenApiParameter("date_from", datetime.date, description="Default: today"),
            OpenApiParameter("date_to", datetime.date, description="Default: date_from"),
            OpenApiParameter("doctor", str, description="Doctor resource ids, comma-separated"),
            OpenApiParameter("specialty", str, description="Specialty code"),
        ],
        responses=SlotSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        branch = branch_from(request.user, _param(request, "branch", required=True))
        organization_id = branch.organization_id
        services = services_from(
            organization_id, _split(_param(request, "services", required=True))
        )
        date_from = _date(request, "date_from", timezone.localdate())
        date_to = _date(request, "date_to", date_from)
        if date_to < date_from:
            raise SchedulingError(
                "invalid_range",
                _("The end date %(value)s is before the start date.")
                % {"value": date_to.isoformat()},
                field="date_to",
            )
        if (date_to - date_from).days + 1 > MAX_RANGE_DAYS:
            raise SchedulingError(
                "range_too_long",
                _("Ask for at most %(days)s days at once, not up to %(value)s.")
                % {"days": MAX_RANGE_DAYS, "value": date_to.isoformat()},
                field="date_to",
            )
        doctor_ids = _split(_param(request, "doctor"))
        doctors = (
            [
                resource_from(organization_id, value, "doctor", kind=ResourceKind.DOCTOR)
                for value in doctor_ids
            ]
            if doctor_ids
            else None
        )
        slots = free_slots(
            organization_id=organization_id,
            services=services,
            branch=branch,
            date_from=date_from,
            date_to=date_to,
            channel=_channel(request),
            doctors=doctors,
            specialty=_param(request, "specialty") or None,
            patient_age=_patient_age(request, date_from),
            hold_token=_param(request, "hold_token") or None,
        )
        return Response(_slots_out(slots))


class NearestFreeView(APIView):
    permission_classes = [CanViewSchedule]

    @extend_schema(
        summary="The nearest free time across every doctor who performs the services",
        parameters=[
            *_COMMON_PARAMETERS,
            OpenApiParameter("limit", int, description="At most this many slots (default 10)"),
        ],
        responses=SlotSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        branch = branch_from(request.user, _param(request, "branch", required=True))
        services = services_from(
            branch.organization_id, _split(_param(request, "services", required=True))
        )
        raw_limit = _param(request, "limit") or "10"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= NEAREST_MAX_LIMIT:
            raise SchedulingError(
                "invalid_limit",
                _("The limit must be a number from 1 to %(max)s, not “%(value)s”.")
                % {"max": NEAREST_MAX_LIMIT, "value": raw_limit},
                field="limit",
            )
        today = timezone.localdate()
        slots = nearest_free(
            organization_id=branch.organization_id,
            services=services,
            branch=branch,
            channel=_channel(request),
            from_date=today,
            days=NEAREST_DAYS,
            limit=int(raw_limit),
            patient_age=_patient_age(request, today),
            hold_token=_param(request, "hold_token") or None,
        )
        return Response(_slots_out(slots))


def _resources(actor: Any, values: list[Any]) -> list[Resource]:
    """Active resources of the actor's organizations by public id; an unknown one is an error."""
    found = {
        resource.public_id: resource
        for resource in Resource.objects.filter(
            organization__in=organization_list(actor=actor), public_id__in=values, is_active=True
        )
    }
    for value in values:
        if value not in found:
            raise unknown_resource(value, "resources")
    return [found[value] for value in values]


def _hold_input(request: Request) -> dict[str, Any]:
    data: Any = request.data if request.data else request.query_params
    if hasattr(data, "getlist") and "resources" in data:
        data = {**data.dict(), "resources": _split(",".join(data.getlist("resources")))}
    serializer = HoldInSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class HoldsView(APIView):
    permission_classes = [CanViewSchedule]

    @extend_schema(
        summary="Hold a time on resources while a booking is being filled in",
        request=HoldInSerializer,
        responses={
            201: HoldOutSerializer,
            409: OpenApiResponse(description="Someone else holds part of the time (slot_held)"),
            503: OpenApiResponse(description="Holds are unavailable (holds_unavailable)"),
        },
    )
    def post(self, request: Request) -> Response:
        data = _hold_input(request)
        resources = _resources(request.user, data["resources"])
        try:
            hold = holds.slot_hold(
                resource_ids=[resource.pk for resource in resources],
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
                token=data.get("token") or None,
            )
        except holds.SlotHeld as exc:
            held = next((r for r in resources if r.pk == exc.resource_id), resources[0])
            return Response(
                {
                    "error": {
                        "code": "slot_held",
                        "message": _(
                            "Another operator is holding this time on %(resource)s. "
                            "Choose another time or wait a few minutes."
                        )
                        % {"resource": held.name},
                        "fields": {},
                        "conflict": {
                            "resource": held.name,
                            "starts_at": exc.cell_start.isoformat(),
                        },
                    }
                },
                status=status.HTTP_409_CONFLICT,
            )
        except holds.HoldsUnavailable:
            return Response(
                {
                    "error": {
                        "code": "holds_unavailable",
                        "message": _(
                            "Slots cannot be held right now; booking still works, but another "
                            "operator may take the time first."
                        ),
                        "fields": {},
                    }
                },
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response(
            HoldOutSerializer({"token": hold.token, "expires_at": hold.expires_at}).data,
            status=status.HTTP_201_CREATED,
        )


class HoldDetailView(APIView):
    permission_classes = [CanViewSchedule]

    @extend_schema(
        summary="Release one's own hold (only cells still held by the token are freed)",
        parameters=[
            OpenApiParameter("resources", str, description="Resource ids, comma-separated"),
            OpenApiParameter("starts_at", datetime.datetime),
            OpenApiParameter("ends_at", datetime.datetime),
        ],
        request=HoldInSerializer,
        responses={204: None},
    )
    def delete(self, request: Request, token: str) -> Response:
        data = _hold_input(request)
        resources = _resources(request.user, data["resources"])
        holds.slot_release(
            token=token,
            resource_ids=[resource.pk for resource in resources],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("availability/", AvailabilityView.as_view(), name="scheduling-availability"),
    path(
        "availability/nearest/",
        NearestFreeView.as_view(),
        name="scheduling-availability-nearest",
    ),
    path("holds/", HoldsView.as_view(), name="scheduling-holds"),
    path("holds/<str:token>/", HoldDetailView.as_view(), name="scheduling-hold"),
]
