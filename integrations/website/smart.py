"""SMART Scheduling Links: the ``$bulk-publish`` manifest and its NDJSON files.

Aggregators poll the manifest, then download ``Location``, ``Schedule`` and ``Slot`` files of
one FHIR resource a line. Each published Slot is a free portal slot of the next
``PUBLISH_DAYS`` days, with the deep link to the portal's booking page and the branch's phone.

The manifest and the files are cached for ``PUBLISH_CACHE_SECONDS`` only: aggregators poll
often and a burst of them must not recompute the schedule each time, yet a slot booked at the
desk has to disappear from the feed within a minute, or patients would follow links to taken
times (the booking still refuses them, but the feed would mislead).

The Location and Schedule files cost a fixed number of queries. The Slot file asks the engine
once per (branch, service) pair, its unit of search: the cost grows with the catalogue, never
with the number of doctors or days.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.cache import cache
from django.http import HttpResponseBase, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework.response import Response

from clinic.core.selectors import branch_public_list
from scheduling.availability import FREE, free_slots
from scheduling.models import BookingChannel

from . import resources
from .fhir import FHIR_NDJSON, SlotKey, fhir_json, instant
from .selectors import PublicSchedule, notice_allows, online_schedules
from .views import FhirError, FhirView

PUBLISH_DAYS = 14
PUBLISH_CACHE_SECONDS = 60
PORTAL_BOOKING_PATH = "/portal/book/"
RESOURCE_TYPES = ("Location", "Schedule", "Slot")


def _cache_key(request: Request, what: str) -> str:
    return f"website:smart:{what}:{request.build_absolute_uri('/')}"


def _schedules() -> list[PublicSchedule]:
    return online_schedules()


def _location_lines(request: Request) -> Iterator[str]:
    for branch in branch_public_list():
        yield fhir_json(resources.location(branch))


def _schedule_lines(request: Request) -> Iterator[str]:
    for entry in _schedules():
        if entry.services:
            yield fhir_json(resources.schedule(entry))


def _slot_lines(request: Request) -> Iterator[str]:
    """Free slots by branch and service, each search covering every doctor of the pair."""
    today = timezone.localdate()
    pairs: dict[tuple[int, int], list[PublicSchedule]] = {}
    services = {}
    for entry in _schedules():
        for service in entry.services:
            pairs.setdefault((entry.branch.pk, service.pk), []).append(entry)
            services[service.pk] = service
    for (_branch_id, service_id), entries in pairs.items():
        branch = entries[0].branch
        service = services[service_id]
        slots = free_slots(
            organization_id=branch.organization_id,
            services=[service],
            branch=branch,
            date_from=today,
            date_to=today + datetime.timedelta(days=PUBLISH_DAYS - 1),
            channel=BookingChannel.PORTAL,
            doctors=[entry.doctor for entry in entries],
        )
        by_id = {entry.doctor.pk: entry.doctor for entry in entries}
        for found in slots:
            if found.state != FREE or not notice_allows(by_id[found.doctor_id], found.starts_at):
                continue
            key = SlotKey(found.doctor_public_id, service.public_id, found.start).encode()
            link = request.build_absolute_uri(f"{PORTAL_BOOKING_PATH}?slot={key}")
            yield fhir_json(resources.slot(found, service=service, branch=branch, booking_url=link))


LINES = {"Location": _location_lines, "Schedule": _schedule_lines, "Slot": _slot_lines}


def _cached_stream(key: str, lines: Iterable[str]) -> Iterator[bytes]:
    """Stream the lines, keeping them in the cache once the whole file has been produced."""
    produced = []
    for line in lines:
        produced.append(line)
        yield f"{line}\n".encode()
    cache.set(key, produced, PUBLISH_CACHE_SECONDS)


class BulkPublishView(FhirView):
    """``GET $bulk-publish``: the manifest of the three files."""

    resource_type = "$bulk-publish"

    def get(self, request: Request) -> Response:
        key = _cache_key(request, "manifest")
        manifest: dict[str, Any] | None = cache.get(key)
        if manifest is None:
            manifest = {
                "transactionTime": instant(timezone.now()),
                "request": request.build_absolute_uri(),
                "output": [
                    {
                        "type": resource_type,
                        "url": request.build_absolute_uri(
                            reverse("website-fhir:bulk-file", args=[resource_type])
                        ),
                    }
                    for resource_type in RESOURCE_TYPES
                ],
                "error": [],
            }
            cache.set(key, manifest, PUBLISH_CACHE_SECONDS)
        return Response(manifest, content_type="application/json")


class BulkFileView(FhirView):
    """``GET $bulk-publish/<type>.ndjson``: one resource a line, streamed."""

    resource_type = "$bulk-publish"

    def get(self, request: Request, resource_type: str) -> HttpResponseBase:
        if resource_type not in LINES:
            raise FhirError(
                404,
                "not-found",
                _("There is no bulk file of “%(type)s”.") % {"type": resource_type},
            )
        key = _cache_key(request, resource_type)
        cached: list[str] | None = cache.get(key)
        if cached is not None:
            body: Iterable[bytes] = (f"{line}\n".encode() for line in cached)
        else:
            body = _cached_stream(key, LINES[resource_type](request))
        return StreamingHttpResponse(body, content_type=FHIR_NDJSON)
