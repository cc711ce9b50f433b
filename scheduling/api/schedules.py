"""/api/v1/scheduling/: resources, the service catalogue, reference data, work schedules,
exceptions, breaks, the production calendar and a schedule's change history.

Everyone who may view the schedule reads; only the head of registry and the administrator write
(``policies.can_manage_schedules``, checked again by every ``rostering`` service). Reads are
scoped to the branches and the organization the actor works in; each list costs a fixed number
of queries.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from clinic.audit.selectors import history_for_object
from clinic.core.models import Organization, Room, Staff
from clinic.core.selectors import branch_list, organization_list, staff_for_user

from .. import policies, rostering
from ..errors import SchedulingError
from ..models import (
    AppointmentKind,
    AppointmentStatus,
    BookingChannel,
    BookingType,
    CalendarDay,
    CalendarDayType,
    CancelReason,
    ExceptionKind,
    InformationSource,
    Resource,
    ResourceKind,
    Rotation,
    ScheduleBreak,
    ScheduleException,
    Service,
    ShiftTemplate,
    WorkSchedule,
)
from .common import branch_from

# --- scoping (reads) ---------------------------------------------------------------------------


def _require_view(user: Any) -> None:
    if not policies.can_view_schedule(user):
        raise PermissionDenied


def _require_manage(user: Any) -> None:
    """Refuse a write before the body is even read: a registrar learns nothing from a 400."""
    if not policies.can_manage_schedules(user):
        raise PermissionDenied(
            _("Only the head of registry or an administrator changes schedules.")
        )


def _guard(call: Any) -> Any:
    try:
        return call()
    except DjangoPermissionDenied as denied:
        raise PermissionDenied(str(denied) or None) from None


def _resources(actor: Any) -> QuerySet[Resource]:
    return Resource.objects.filter(branch__in=branch_list(actor=actor)).select_related(
        "branch", "staff__specialty", "room"
    )


def _schedules(actor: Any) -> QuerySet[WorkSchedule]:
    return WorkSchedule.objects.filter(branch__in=branch_list(actor=actor)).select_related(
        "resource", "branch", "room"
    )


def _by_public_id(queryset: QuerySet[Any], value: Any, field: str) -> Any:
    """A row of the actor's scope by public id; an unknown one is a field error naming it."""
    try:
        key = uuid.UUID(str(value))
    except ValueError:
        key = None
    row = queryset.filter(public_id=key).first() if key is not None else None
    if row is None:
        raise SchedulingError(
            "unknown_" + field,
            _("Unknown %(field)s “%(value)s”.") % {"field": field, "value": value},
            field=field,
        )
    return row


def _organization(request: Request) -> Organization:
    """The actor's organization; a superuser without a staff record names it by ``?organization=``
    (INN)."""
    staff = staff_for_user(request.user)
    if staff is not None:
        return staff.organization
    inn = request.query_params.get("organization") or request.data.get("organization", "")
    organization = organization_list(actor=request.user).filter(inn=inn).first()
    if organization is None:
        raise SchedulingError(
            "unknown_organization",
            _("Unknown organization “%(value)s”: give its INN.") % {"value": inn},
            field="organization",
        )
    return organization


def _date_param(value: str | None, field: str) -> datetime.date | None:
    if value in (None, ""):
        return None
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise SchedulingError(
            "invalid_date",
            _("“%(value)s” is not a date (YYYY-MM-DD).") % {"value": value},
            field=field,
        ) from None


# --- serializers -------------------------------------------------------------------------------


class ResourceSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    branch = serializers.UUIDField(source="branch.public_id", read_only=True)
    branch_name = serializers.CharField(source="branch.name", read_only=True)
    kind = serializers.ChoiceField(choices=ResourceKind.choices, read_only=True)
    staff = serializers.SerializerMethodField()
    specialty = serializers.SerializerMethodField()
    room = serializers.SerializerMethodField()

    class Meta:
        model = Resource
        fields = [
            "id",
            "kind",
            "name",
            "branch",
            "branch_name",
            "staff",
            "specialty",
            "room",
            "equipment_type",
            "grid_step_minutes",
            "min_patient_age",
            "max_patient_age",
            "is_active",
        ]
        read_only_fields = fields

    def get_staff(self, obj: Resource) -> str | None:
        return str(obj.staff.public_id) if obj.staff_id and obj.staff else None

    def get_specialty(self, obj: Resource) -> str | None:
        if obj.staff_id and obj.staff and obj.staff.specialty_id and obj.staff.specialty:
            return str(obj.staff.specialty.name)
        return None

    def get_room(self, obj: Resource) -> str | None:
        return str(obj.room.public_id) if obj.room_id and obj.room else None


class ResourceCreateSerializer(serializers.Serializer):
    branch = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=ResourceKind.choices)
    name = serializers.CharField(max_length=200)
    staff = serializers.UUIDField(required=False, allow_null=True, default=None)
    room = serializers.UUIDField(required=False, allow_null=True, default=None)
    equipment_type = serializers.CharField(
        max_length=60, required=False, allow_blank=True, default=""
    )
    grid_step_minutes = serializers.IntegerField(required=False, default=15)
    min_patient_age = serializers.IntegerField(required=False, allow_null=True, default=None)
    max_patient_age = serializers.IntegerField(required=False, allow_null=True, default=None)


class RequirementSerializer(serializers.Serializer):
    kind = serializers.CharField()
    specialty = serializers.CharField(source="specialty.name", default=None)
    resource = serializers.UUIDField(source="resource.public_id", default=None)
    room_type = serializers.CharField()
    equipment_type = serializers.CharField()


class ServiceSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    kind = serializers.CharField(source="kind.code", read_only=True)
    duration_minutes = serializers.SerializerMethodField()
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=BookingChannel.choices), read_only=True
    )
    requirements = RequirementSerializer(many=True, read_only=True)

    class Meta:
        model = Service
        fields = [
            "id",
            "code",
            "name",
            "kind",
            "duration_minutes",
            "buffer_after_minutes",
            "channels",
            "min_age",
            "max_age",
            "requirements",
        ]
        read_only_fields = fields

    def get_duration_minutes(self, obj: Service) -> int:
        """The effective duration: the service's own, else its kind's default."""
        return int(obj.duration.total_seconds() // 60)


class ScheduleSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    resource = serializers.UUIDField(source="resource.public_id", read_only=True)
    resource_name = serializers.CharField(source="resource.name", read_only=True)
    branch = serializers.UUIDField(source="branch.public_id", read_only=True)
    room = serializers.SerializerMethodField()
    rotation = serializers.ChoiceField(choices=Rotation.choices, read_only=True)

    class Meta:
        model = WorkSchedule
        fields = [
            "id",
            "resource",
            "resource_name",
            "branch",
            "room",
            "date_from",
            "date_to",
            "rotation",
            "weekdays",
            "days_on",
            "days_off",
            "start_time",
            "end_time",
            "break_start",
            "break_end",
            "follows_calendar",
        ]
        read_only_fields = fields

    def get_room(self, obj: WorkSchedule) -> str | None:
        return str(obj.room.public_id) if obj.room_id and obj.room else None


class ChangeOptionsSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    force = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Save even if active appointments would be left outside working time.",
    )


class ScheduleInputSerializer(ChangeOptionsSerializer):
    resource = serializers.UUIDField()
    branch = serializers.UUIDField(required=False, allow_null=True, default=None)
    room = serializers.UUIDField(required=False, allow_null=True, default=None)
    template = serializers.UUIDField(required=False, allow_null=True, default=None)
    date_from = serializers.DateField()
    date_to = serializers.DateField(required=False, allow_null=True, default=None)
    rotation = serializers.ChoiceField(
        choices=Rotation.choices, required=False, default=Rotation.WEEKDAYS
    )
    weekdays = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    days_on = serializers.IntegerField(required=False, default=2, min_value=0)
    days_off = serializers.IntegerField(required=False, default=2, min_value=0)
    start_time = serializers.TimeField(required=False, allow_null=True, default=None)
    end_time = serializers.TimeField(required=False, allow_null=True, default=None)
    break_start = serializers.TimeField(required=False, allow_null=True, default=None)
    break_end = serializers.TimeField(required=False, allow_null=True, default=None)
    follows_calendar = serializers.BooleanField(required=False, default=True)


class ScheduleUpdateSerializer(ChangeOptionsSerializer):
    branch = serializers.UUIDField(required=False)
    room = serializers.UUIDField(required=False, allow_null=True)
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False, allow_null=True)
    rotation = serializers.ChoiceField(choices=Rotation.choices, required=False)
    weekdays = serializers.ListField(child=serializers.IntegerField(), required=False)
    days_on = serializers.IntegerField(required=False, min_value=0)
    days_off = serializers.IntegerField(required=False, min_value=0)
    start_time = serializers.TimeField(required=False)
    end_time = serializers.TimeField(required=False)
    break_start = serializers.TimeField(required=False, allow_null=True)
    break_end = serializers.TimeField(required=False, allow_null=True)
    follows_calendar = serializers.BooleanField(required=False)


class ExceptionSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    resource = serializers.UUIDField(source="resource.public_id", read_only=True)
    kind = serializers.ChoiceField(choices=ExceptionKind.choices, read_only=True)

    class Meta:
        model = ScheduleException
        fields = ["id", "resource", "kind", "date_from", "date_to", "note"]
        read_only_fields = fields


class ExceptionInputSerializer(ChangeOptionsSerializer):
    resource = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=ExceptionKind.choices)
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class BreakSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    resource = serializers.UUIDField(source="resource.public_id", read_only=True)

    class Meta:
        model = ScheduleBreak
        fields = ["id", "resource", "starts_at", "ends_at", "reason"]
        read_only_fields = fields


class BreakInputSerializer(ChangeOptionsSerializer):
    resource = serializers.UUIDField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()


class CalendarDaySerializer(serializers.ModelSerializer):
    day_type = serializers.ChoiceField(choices=CalendarDayType.choices, read_only=True)

    class Meta:
        model = CalendarDay
        fields = ["date", "day_type", "shortened_by_minutes", "name"]
        read_only_fields = fields


class CalendarDayInputSerializer(ChangeOptionsSerializer):
    day_type = serializers.ChoiceField(choices=CalendarDayType.choices)
    shortened_by_minutes = serializers.IntegerField(required=False, default=60, min_value=0)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class HistoryEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    event = serializers.CharField()
    user = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    changes = serializers.DictField()


class ReferenceSerializer(serializers.Serializer):
    appointment_statuses = serializers.ListField(child=serializers.DictField())
    appointment_kinds = serializers.ListField(child=serializers.DictField())
    cancel_reasons = serializers.ListField(child=serializers.DictField())
    information_sources = serializers.ListField(child=serializers.DictField())
    booking_channels = serializers.ListField(child=serializers.DictField())
    booking_types = serializers.ListField(child=serializers.DictField())


def _choices(choices: Any) -> list[dict[str, str]]:
    return [{"code": str(value), "name": str(label)} for value, label in choices]


# --- resources, services, reference ------------------------------------------------------------


class ResourceListCreateView(APIView):
    """Doctors, rooms and devices of the actor's branches; administrators add new ones."""

    @extend_schema(
        parameters=[
            OpenApiParameter("branch", uuid.UUID, description="Only this branch"),
            OpenApiParameter("kind", str, enum=ResourceKind.values),
        ],
        responses=ResourceSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        _require_view(request.user)
        resources = _resources(request.user).filter(is_active=True)
        if request.query_params.get("branch"):
            branch = branch_from(request.user, request.query_params["branch"])
            resources = resources.filter(branch=branch)
        if request.query_params.get("kind"):
            resources = resources.filter(kind=request.query_params["kind"])
        return Response(ResourceSerializer(resources, many=True).data)

    @extend_schema(request=ResourceCreateSerializer, responses={201: ResourceSerializer})
    def post(self, request: Request) -> Response:
        _require_manage(request.user)
        serializer = ResourceCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        branch = branch_from(request.user, data.pop("branch"))
        staff_id, room_id = data.pop("staff"), data.pop("room")
        staff = (
            _by_public_id(Staff.objects.filter(organization=branch.organization), staff_id, "staff")
            if staff_id
            else None
        )
        room = (
            _by_public_id(Room.objects.filter(branch=branch), room_id, "room") if room_id else None
        )
        resource = _guard(
            lambda: rostering.resource_create(
                actor=request.user, branch=branch, staff=staff, room=room, **data
            )
        )
        return Response(ResourceSerializer(resource).data, status=status.HTTP_201_CREATED)


class ServiceListView(APIView):
    """The active service catalogue with what each service needs, its channels and age limits."""

    @extend_schema(responses=ServiceSerializer(many=True))
    def get(self, request: Request) -> Response:
        _require_view(request.user)
        services = (
            Service.objects.filter(
                organization__in=organization_list(actor=request.user), is_active=True
            )
            .select_related("kind")
            .prefetch_related("requirements__specialty", "requirements__resource")
            .order_by("name", "pk")
        )
        return Response(ServiceSerializer(services, many=True).data)


class ReferenceView(APIView):
    """Everything a booking screen needs to label and colour: statuses, kinds, reasons, sources,
    channels and booking types, in the user's language where the names are not data."""

    @extend_schema(responses=ReferenceSerializer)
    def get(self, request: Request) -> Response:
        _require_view(request.user)
        return Response(
            {
                "appointment_statuses": [
                    {
                        "code": s.code,
                        "name": s.name,
                        "colour": s.colour,
                        "occupies": s.occupies,
                        "is_final": s.is_final,
                    }
                    for s in AppointmentStatus.objects.order_by("order")
                ],
                "appointment_kinds": [
                    {
                        "code": k.code,
                        "name": k.name,
                        "default_duration_minutes": k.default_duration_minutes,
                    }
                    for k in AppointmentKind.objects.filter(is_active=True).order_by("name")
                ],
                "cancel_reasons": [
                    {"code": r.code, "name": r.name}
                    for r in CancelReason.objects.filter(is_active=True).order_by("name")
                ],
                "information_sources": [
                    {"code": s.code, "name": s.name}
                    for s in InformationSource.objects.order_by("name")
                ],
                "booking_channels": _choices(BookingChannel.choices),
                "booking_types": _choices(BookingType.choices),
            }
        )


# --- schedules ---------------------------------------------------------------------------------


class ScheduleListCreateView(APIView):
    """Work schedules of the actor's branches (filter by resource, branch, a date they cover)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("resource", uuid.UUID),
            OpenApiParameter("branch", uuid.UUID),
            OpenApiParameter("on", datetime.date, description="Only schedules covering this date"),
        ],
        responses=ScheduleSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        _require_view(request.user)
        schedules = _schedules(request.user).order_by("resource__name", "date_from", "pk")
        params = request.query_params
        if params.get("resource"):
            resource = _by_public_id(_resources(request.user), params["resource"], "resource")
            schedules = schedules.filter(resource=resource)
        if params.get("branch"):
            schedules = schedules.filter(branch=branch_from(request.user, params["branch"]))
        on = _date_param(params.get("on"), "on")
        if on is not None:
            schedules = schedules.filter(date_from__lte=on).filter(
                Q(date_to__isnull=True) | Q(date_to__gte=on)
            )
        return Response(ScheduleSerializer(schedules, many=True).data)

    @extend_schema(request=ScheduleInputSerializer, responses={201: ScheduleSerializer})
    def post(self, request: Request) -> Response:
        _require_manage(request.user)
        serializer = ScheduleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        resource = _by_public_id(_resources(request.user), data.pop("resource"), "resource")
        branch_id, room_id, template_id = data.pop("branch"), data.pop("room"), data.pop("template")
        branch = branch_from(request.user, branch_id) if branch_id else resource.branch
        room = (
            _by_public_id(Room.objects.filter(branch=branch), room_id, "room") if room_id else None
        )
        template = (
            _by_public_id(
                ShiftTemplate.objects.filter(organization_id=resource.organization_id),
                template_id,
                "template",
            )
            if template_id
            else None
        )
        schedule = _guard(
            lambda: rostering.schedule_create(
                actor=request.user,
                resource=resource,
                branch=branch,
                room=room,
                template=template,
                **data,
            )
        )
        return Response(ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailView(APIView):
    """One schedule: read it, change it, or end it (DELETE sets its last day; nothing is
    deleted)."""

    def _get(self, request: Request, public_id: uuid.UUID) -> WorkSchedule:
        schedule = _schedules(request.user).filter(public_id=public_id).first()
        if schedule is None:
            raise Http404
        return schedule

    @extend_schema(responses=ScheduleSerializer)
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        _require_view(request.user)
        return Response(ScheduleSerializer(self._get(request, public_id)).data)

    @extend_schema(request=ScheduleUpdateSerializer, responses=ScheduleSerializer)
    def patch(self, request: Request, public_id: uuid.UUID) -> Response:
        _require_manage(request.user)
        schedule = self._get(request, public_id)
        serializer = ScheduleUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        reason, force = changes.pop("reason", ""), changes.pop("force", False)
        if "branch" in changes:
            changes["branch"] = branch_from(request.user, changes["branch"])
        if changes.get("room") is not None:
            branch = changes.get("branch", schedule.branch)
            changes["room"] = _by_public_id(
                Room.objects.filter(branch=branch), changes["room"], "room"
            )
        updated = _guard(
            lambda: rostering.schedule_update(
                actor=request.user, schedule=schedule, changes=changes, reason=reason, force=force
            )
        )
        return Response(ScheduleSerializer(updated).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "date_to", datetime.date, description="Last day worked; today if empty"
            ),
            OpenApiParameter("force", bool),
            OpenApiParameter("reason", str),
        ],
        responses=ScheduleSerializer,
    )
    def delete(self, request: Request, public_id: uuid.UUID) -> Response:
        _require_manage(request.user)
        schedule = self._get(request, public_id)
        params = request.query_params
        date_to = _date_param(params.get("date_to"), "date_to") or timezone.localdate()
        ended = _guard(
            lambda: rostering.schedule_end(
                actor=request.user,
                schedule=schedule,
                date_to=date_to,
                reason=params.get("reason", ""),
                force=params.get("force", "").lower() in ("1", "true", "yes"),
            )
        )
        return Response(ScheduleSerializer(ended).data)


class ScheduleHistoryView(APIView):
    """Who changed a schedule, what and when (oldest first), from the history triggers."""

    @extend_schema(responses=HistoryEventSerializer(many=True))
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        _require_view(request.user)
        schedule = _schedules(request.user).filter(public_id=public_id).first()
        if schedule is None:
            raise Http404
        events = history_for_object(schedule).select_related("user")
        return Response(
            [
                {
                    "at": event.pgh_created_at,
                    "event": event.pgh_label,
                    "user": event.user.get_username() if event.user is not None else None,
                    "reason": (event.pgh_context or {}).get("change_reason", ""),
                    "changes": event.pgh_diff or {},
                }
                for event in events
            ]
        )


# --- exceptions and breaks ---------------------------------------------------------------------


class ExceptionListCreateView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("resource", uuid.UUID, required=True)],
        responses=ExceptionSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        _require_view(request.user)
        resource = _by_public_id(
            _resources(request.user), request.query_params.get("resource", ""), "resource"
        )
        exceptions = ScheduleException.objects.filter(resource=resource).select_related("resource")
        return Response(ExceptionSerializer(exceptions, many=True).data)

    @extend_schema(request=ExceptionInputSerializer, responses={201: ExceptionSerializer})
    def post(self, request: Request) -> Response:
        _require_manage(request.user)
        serializer = ExceptionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        resource = _by_public_id(_resources(request.user), data.pop("resource"), "resource")
        exception = _guard(
            lambda: rostering.exception_add(actor=request.user, resource=resource, **data)
        )
        return Response(ExceptionSerializer(exception).data, status=status.HTTP_201_CREATED)


RowT = TypeVar("RowT", ScheduleException, ScheduleBreak)


def _resource_row(model: type[RowT], actor: Any, public_id: uuid.UUID) -> RowT:
    """An exception or a break of a resource in the actor's branches, or 404."""
    row = (
        model.objects.filter(public_id=public_id, resource__branch__in=branch_list(actor=actor))
        .select_related("resource")
        .first()
    )
    if row is None:
        raise Http404
    return row


class ExceptionDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, public_id: uuid.UUID) -> Response:
        _require_manage(request.user)
        exception = _resource_row(ScheduleException, request.user, public_id)
        _guard(lambda: rostering.exception_remove(actor=request.user, exception=exception))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BreakCreateView(APIView):
    @extend_schema(request=BreakInputSerializer, responses={201: BreakSerializer})
    def post(self, request: Request) -> Response:
        _require_manage(request.user)
        serializer = BreakInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        resource = _by_public_id(_resources(request.user), data.pop("resource"), "resource")
        pause = _guard(lambda: rostering.break_add(actor=request.user, resource=resource, **data))
        return Response(BreakSerializer(pause).data, status=status.HTTP_201_CREATED)


class BreakDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, public_id: uuid.UUID) -> Response:
        _require_manage(request.user)
        pause = _resource_row(ScheduleBreak, request.user, public_id)
        _guard(lambda: rostering.break_remove(actor=request.user, pause=pause))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- production calendar -----------------------------------------------------------------------


class CalendarView(APIView):
    """The days of a year that differ from the Monday–Friday week."""

    @extend_schema(
        parameters=[
            OpenApiParameter("year", int, required=True),
            OpenApiParameter("organization", str, description="INN (superusers only)"),
        ],
        responses=CalendarDaySerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        _require_view(request.user)
        raw = request.query_params.get("year", "")
        try:
            year = int(raw)
            if not 1900 <= year <= 2200:
                raise ValueError
        except ValueError:
            raise SchedulingError(
                "invalid_year", _("“%(value)s” is not a year.") % {"value": raw}, field="year"
            ) from None
        days = CalendarDay.objects.filter(
            organization=_organization(request), date__year=year
        ).order_by("date")
        return Response(CalendarDaySerializer(days, many=True).data)


class CalendarDayView(APIView):
    """Set (PUT) or clear (DELETE) one day of the production calendar."""

    @extend_schema(request=CalendarDayInputSerializer, responses=CalendarDaySerializer)
    def put(self, request: Request, day: str) -> Response:
        _require_manage(request.user)
        date = _date_param(day, "date")
        assert date is not None  # the URL always carries a value
        serializer = CalendarDayInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = _organization(request)
        row = _guard(
            lambda: rostering.calendar_day_set(
                actor=request.user,
                organization=organization,
                date=date,
                **serializer.validated_data,
            )
        )
        return Response(CalendarDaySerializer(row).data)

    @extend_schema(
        parameters=[OpenApiParameter("force", bool), OpenApiParameter("reason", str)],
        responses={204: None},
    )
    def delete(self, request: Request, day: str) -> Response:
        _require_manage(request.user)
        date = _date_param(day, "date")
        assert date is not None
        organization = _organization(request)
        params = request.query_params
        _guard(
            lambda: rostering.calendar_day_clear(
                actor=request.user,
                organization=organization,
                date=date,
                reason=params.get("reason", ""),
                force=params.get("force", "").lower() in ("1", "true", "yes"),
            )
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("resources/", ResourceListCreateView.as_view(), name="scheduling-resources"),
    path("services/", ServiceListView.as_view(), name="scheduling-services"),
    path("reference/", ReferenceView.as_view(), name="scheduling-reference"),
    path("schedules/", ScheduleListCreateView.as_view(), name="scheduling-schedules"),
    path("schedules/<uuid:public_id>/", ScheduleDetailView.as_view(), name="scheduling-schedule"),
    path(
        "schedules/<uuid:public_id>/history/",
        ScheduleHistoryView.as_view(),
        name="scheduling-schedule-history",
    ),
    path("exceptions/", ExceptionListCreateView.as_view(), name="scheduling-exceptions"),
    path(
        "exceptions/<uuid:public_id>/", ExceptionDetailView.as_view(), name="scheduling-exception"
    ),
    path("breaks/", BreakCreateView.as_view(), name="scheduling-breaks"),
    path("breaks/<uuid:public_id>/", BreakDetailView.as_view(), name="scheduling-break"),
    path("calendar/", CalendarView.as_view(), name="scheduling-calendar"),
    path("calendar/<str:day>/", CalendarDayView.as_view(), name="scheduling-calendar-day"),
]
