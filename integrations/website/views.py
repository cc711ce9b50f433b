"""The public FHIR R4 API: practitioners, locations, services, schedules, free slots, booking.

Public and anonymous: no session or token is read (so no CSRF either), and every answer holds
only what the clinic's website shows anyway. Each request is bounded: lists page with ``_count``
(at most ``MAX_COUNT``), slot searches cover at most ``MAX_WINDOW_DAYS`` days, and every list
costs a fixed number of queries whatever the number of rows. An anonymous client is throttled
per address.
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from clinic.core.models import Branch
from clinic.core.selectors import branch_public_list
from scheduling.availability import free_slots
from scheduling.errors import SchedulingError
from scheduling.models import BookingChannel, Resource, Service

from . import resources, slot_cache
from .booking import BookingThrottled, appointment_create
from .fhir import (
    FHIR_JSON,
    SERVICE_SYSTEM,
    FhirError,
    FhirJsonRenderer,
    fhir_json,
    operation_outcome,
    schedule_decode,
    searchset,
)
from .selectors import (
    notice_allows,
    online_schedule,
    online_schedules,
    public_doctors,
    public_services,
    self_pay_prices,
)

DEFAULT_COUNT = 100
MAX_COUNT = 500
DEFAULT_WINDOW_DAYS = 14
MAX_WINDOW_DAYS = 31


class FhirJsonParser(JSONParser):
    media_type = FHIR_JSON


class PublicThrottle(AnonRateThrottle):
    """Per client address; generous for a website's own calls, a brake on scrapers."""

    scope = "fhir"
    rate = "300/min"


def invalid_parameter(name: str, value: str) -> FhirError:
    return FhirError(
        400,
        "invalid",
        _("Invalid search parameter “%(name)s”: “%(value)s”.") % {"name": name, "value": value},
        name,
    )


def not_found(resource_type: str, resource_id: str) -> FhirError:
    return FhirError(
        404,
        "not-found",
        _("%(type)s “%(id)s” does not exist.") % {"type": resource_type, "id": resource_id},
    )


class FhirView(APIView):
    """Base of the FHIR endpoints. They speak FHIR, described by the resources' own
    specification, so they stay out of the project's OpenAPI schema (``schema = None``)."""

    schema = None
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [FhirJsonRenderer]
    parser_classes = [FhirJsonParser, JSONParser]
    throttle_classes = [PublicThrottle]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, FhirError):
            headers = (
                {"Retry-After": str(exc.retry_after)} if isinstance(exc, BookingThrottled) else None
            )
            return Response(
                operation_outcome(exc.code, exc.diagnostics, exc.expression),
                status=exc.status,
                headers=headers,
            )
        if isinstance(exc, exceptions.Throttled):
            return Response(
                operation_outcome("throttled", _("Too many requests. Try again later.")),
                status=429,
                headers={"Retry-After": str(int(getattr(exc, "wait", None) or 1))},
            )
        if isinstance(exc, exceptions.APIException):
            return Response(operation_outcome("invalid", str(exc.detail)), status=exc.status_code)
        return super().handle_exception(exc)

    def base_url(self, request: Request) -> str:
        """The absolute URL of the FHIR mount point (ends with a slash)."""
        path = request.path
        marker = f"/{type(self).resource_type}"
        return request.build_absolute_uri(path[: path.index(marker) + 1])

    resource_type = ""


def _page(request: Request) -> tuple[int, int]:
    """(count, offset) from ``_count`` and ``_offset``."""
    values = []
    for name, default, low, high in (
        ("_count", DEFAULT_COUNT, 0, MAX_COUNT),
        ("_offset", 0, 0, 10**9),
    ):
        typed = request.query_params.get(name)
        if typed is None:
            values.append(default)
            continue
        if not typed.isdigit() or not low <= int(typed) <= high:
            raise invalid_parameter(name, typed)
        values.append(int(typed))
    return values[0], values[1]


def _public_id(resource_type: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(resource_type, value) from None


class ListView(FhirView):
    """A searchset of one resource type, paged by ``_count``/``_offset``: a count and a page."""

    def rows(self, request: Request) -> QuerySet[Any]:
        raise NotImplementedError

    def build(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def get(self, request: Request, resource_id: str | None = None) -> Response:
        rows = self.rows(request)
        if resource_id is not None:
            row = rows.filter(public_id=_public_id(self.resource_type, resource_id)).first()
            if row is None:
                raise not_found(self.resource_type, resource_id)
            return Response(self.build([row])[0])
        count, offset = _page(request)
        total = rows.count()
        page = list(rows[offset : offset + count]) if count else []
        return Response(
            searchset(
                self.build(page),
                total=total,
                self_url=request.build_absolute_uri(),
                base_url=self.base_url(request),
            )
        )


class PractitionerView(ListView):
    resource_type = "Practitioner"

    def rows(self, request: Request) -> QuerySet[Resource]:
        return public_doctors()

    def build(self, rows: Sequence[Resource]) -> list[dict[str, Any]]:
        return [resources.practitioner(doctor) for doctor in rows]


class LocationView(ListView):
    resource_type = "Location"

    def rows(self, request: Request) -> QuerySet[Branch]:
        return branch_public_list()

    def build(self, rows: Sequence[Branch]) -> list[dict[str, Any]]:
        return [resources.location(branch) for branch in rows]


class HealthcareServiceView(ListView):
    resource_type = "HealthcareService"

    def rows(self, request: Request) -> QuerySet[Service]:
        return public_services()

    def build(self, rows: Sequence[Service]) -> list[dict[str, Any]]:
        organization_ids = {service.organization_id for service in rows}
        branches = list(branch_public_list().filter(organization_id__in=organization_ids))
        prices = self_pay_prices(services=rows, branches=branches, on_date=timezone.localdate())
        return [
            resources.healthcare_service(
                service,
                [b for b in branches if b.organization_id == service.organization_id],
                prices,
            )
            for service in rows
        ]


class ScheduleView(FhirView):
    """One Schedule per doctor per public branch he has a current work schedule in."""

    resource_type = "Schedule"

    def get(self, request: Request, resource_id: str | None = None) -> Response:
        built = [resources.schedule(entry) for entry in online_schedules()]
        if resource_id is not None:
            for resource in built:
                if resource["id"] == resource_id:
                    return Response(resource)
            raise not_found("Schedule", resource_id)
        count, offset = _page(request)
        return Response(
            searchset(
                built[offset : offset + count],
                total=len(built),
                self_url=request.build_absolute_uri(),
                base_url=self.base_url(request),
            )
        )


def _bound(value: str, zone: zoneinfo.ZoneInfo) -> tuple[str, datetime.datetime, datetime.datetime]:
    """(prefix, first instant, instant after) of one ``start`` value: a local date or a
    date-time with an offset (a date-time without one is read in the branch's zone)."""
    prefix = value[:2] if value[:2] in ("eq", "ge", "gt", "le", "lt") else "eq"
    typed = value[2:] if value[:2] == prefix else value
    if len(typed) == 10:
        day = datetime.date.fromisoformat(typed)
        first = datetime.datetime.combine(day, datetime.time(), tzinfo=zone)
        return prefix, first, first + datetime.timedelta(days=1)
    moment = datetime.datetime.fromisoformat(typed)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return prefix, moment, moment + datetime.timedelta(seconds=1)


def slot_window(
    values: Sequence[str], zone: zoneinfo.ZoneInfo
) -> tuple[datetime.datetime, datetime.datetime]:
    """The [low, high) instants of the ``start`` parameters; today's 14 days by default."""
    today = datetime.datetime.combine(timezone.localdate(), datetime.time(), tzinfo=zone)
    low: datetime.datetime | None = None
    high: datetime.datetime | None = None
    for value in values:
        try:
            prefix, first, after = _bound(value, zone)
        except ValueError:
            raise invalid_parameter("start", value) from None
        if prefix in ("eq", "ge", "gt"):
            candidate = after if prefix == "gt" else first
            low = candidate if low is None else max(low, candidate)
        if prefix in ("eq", "le", "lt"):
            candidate = first if prefix == "lt" else after
            high = candidate if high is None else min(high, candidate)
    if low is None:
        low = max(today, high - datetime.timedelta(days=DEFAULT_WINDOW_DAYS)) if high else today
    if high is None:
        high = low + datetime.timedelta(days=DEFAULT_WINDOW_DAYS)
    if high - low > datetime.timedelta(days=MAX_WINDOW_DAYS) or high <= low:
        raise invalid_parameter("start", "&".join(values))
    return low, high


def _service_token(value: str) -> uuid.UUID:
    system, bar, code = value.rpartition("|")
    if bar and system not in ("", SERVICE_SYSTEM):
        raise invalid_parameter("service-type", value)
    try:
        return uuid.UUID(code)
    except ValueError:
        raise invalid_parameter("service-type", value) from None


class SlotView(FhirView):
    """Free slots of one schedule for one service: ``schedule``, ``service-type`` and ``start``
    (repeatable, with ``ge``/``gt``/``le``/``lt``) search exactly the engine's portal slots."""

    resource_type = "Slot"

    def get(self, request: Request) -> HttpResponse:
        params = request.query_params
        for required in ("schedule", "service-type"):
            if not params.get(required):
                raise invalid_parameter(required, params.get(required, ""))
        _page(request)  # a bad _count or page refuses before anything is read
        schedule_ref = params["schedule"].removeprefix("Schedule/")
        try:
            doctor_public_id, branch_public_id = schedule_decode(schedule_ref)
        except ValueError:
            raise invalid_parameter("schedule", params["schedule"]) from None
        service_public_id = _service_token(params["service-type"])

        def compute() -> bytes:
            bundle = self._search(
                request, params, doctor_public_id, branch_public_id, service_public_id
            )
            return fhir_json(bundle).encode()

        # Exact to the last booking (see slot_cache): a stored answer skips every query.
        return slot_cache.answer(
            branch_public_id,
            request.build_absolute_uri(),
            compute,
            content_type=f"{FHIR_JSON}; charset=utf-8",
        )

    def _search(
        self,
        request: Request,
        params: Any,
        doctor_public_id: uuid.UUID,
        branch_public_id: uuid.UUID,
        service_public_id: uuid.UUID,
    ) -> dict[str, Any]:
        count, offset = _page(request)
        bookable = online_schedule(
            doctor_public_id,
            branch_public_id,
            service_public_id,
            schedules=slot_cache.online_schedules_recent(),
        )
        branch = bookable[0].branch if bookable else None
        zone = branch.zone if branch else timezone.get_current_timezone()
        low, high = slot_window(params.getlist("start"), zone)
        found = []
        if bookable is not None and branch is not None:
            entry, service = bookable
            doctor = entry.doctor
            try:
                slots = free_slots(
                    organization_id=branch.organization_id,
                    services=[service],
                    branch=branch,
                    date_from=low.astimezone(zone).date(),
                    date_to=(high - datetime.timedelta(microseconds=1)).astimezone(zone).date(),
                    channel=BookingChannel.PORTAL,
                    doctors=[doctor],
                )
            except SchedulingError as refusal:
                raise FhirError(400, "invalid", str(refusal.message), "service-type") from None
            low_s, high_s = low.timestamp(), high.timestamp()
            found = [
                resources.slot(s, service=service, branch=branch)
                for s in slots
                if low_s <= s.start < high_s and notice_allows(doctor, s.starts_at)
            ]
        return searchset(
            found[offset : offset + count],
            total=len(found),
            self_url=request.build_absolute_uri(),
            base_url=self.base_url(request),
        )


class AppointmentView(FhirView):
    """``POST Appointment``: book a Slot for a contained Patient (see ``booking``)."""

    resource_type = "Appointment"

    def post(self, request: Request) -> Response:
        booked = appointment_create(
            body=request.data,
            idempotency_key=request.headers.get("Idempotency-Key"),
            client_ip=PublicThrottle().get_ident(request),
        )
        resource = resources.appointment(
            booked.appointment, slot_id=booked.slot_id, service=booked.service
        )
        location = f"{self.base_url(request)}Appointment/{resource['id']}"
        return Response(
            resource, status=200 if booked.replayed else 201, headers={"Location": location}
        )
