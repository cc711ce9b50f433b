"""The XML export the clinic's website CMS imports: who works where, what they do, for how much,
and when over the next ``EXPORT_DAYS`` days.

Format (UTF-8; ids are public UUIDs; times are ISO 8601 in the branch's local time with its
offset; prices are self-pay prices with two decimals)::

    <clinic-export version="1" generated-at="…" date-from="YYYY-MM-DD" date-to="YYYY-MM-DD">
      <organization id="…" short-name="…" inn="…" currency="RUB">
        <name>…</name>
        <branch id="…" time-zone="Europe/Moscow">
          <name>…</name> <address>…</address> <phone>…</phone>
          <department id="…">name</department>…
        </branch>…
        <specialty code="…">name</specialty>…
        <doctor id="…" specialty-code="…">
          <name>…</name> <position>…</position>
          <service id="…" code="…" duration-minutes="30">
            <name>…</name>
            <price branch-id="…" currency="RUB">1500.00</price>…
          </service>…
          <work-day date="YYYY-MM-DD" branch-id="…">
            <interval start="…" end="…"/>…
          </work-day>…
        </doctor>…
      </organization>…
    </clinic-export>

Working days come from the schedule engine's ``working_intervals`` (schedules, rotations,
exceptions and the production calendar; breaks already cut out), the same intervals the free
slots are found in. The document is built from a fixed number of queries and streamed.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from clinic.core.models import Branch, Department, Organization
from clinic.core.selectors import branch_public_list
from scheduling.schedules import WorkInterval, working_intervals

from .selectors import (
    PublicSchedule,
    public_doctors,
    public_schedules,
    public_services,
    self_pay_prices,
)

EXPORT_DAYS = 14


def _attrs(**values: object) -> str:
    return "".join(
        f" {name.replace('_', '-')}={quoteattr(str(value))}" for name, value in values.items()
    )


def _element(tag: str, text: object, **attrs: object) -> str:
    return f"<{tag}{_attrs(**attrs)}>{escape(str(text))}</{tag}>"


def export_lines(today: datetime.date) -> Iterator[str]:
    """The export document in pieces (see the module's docstring for the format)."""
    date_to = today + datetime.timedelta(days=EXPORT_DAYS - 1)
    branches = list(branch_public_list().order_by("organization_id", "name"))
    departments: dict[int, list[Department]] = defaultdict(list)
    for department in Department.objects.filter(branch__in=branches, is_active=True).order_by(
        "name"
    ):
        departments[department.branch_id].append(department)
    services = list(public_services())
    doctors = list(public_doctors())
    schedules = public_schedules(doctors, branches, services)
    prices = self_pay_prices(services=services, branches=branches, on_date=today)
    intervals = working_intervals([entry.doctor for entry in schedules], today, date_to)
    branch_by_id = {branch.pk: branch for branch in branches}

    organizations: dict[int, Organization] = {}
    branches_of: dict[int, list[Branch]] = defaultdict(list)
    for branch in branches:
        organizations.setdefault(branch.organization_id, branch.organization)
        branches_of[branch.organization_id].append(branch)
    schedules_of: dict[int, list[PublicSchedule]] = defaultdict(list)
    for entry in schedules:
        schedules_of[entry.doctor.pk].append(entry)

    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield (
        f"<clinic-export{_attrs(version=1, generated_at=timezone.now().isoformat(timespec='seconds'), date_from=today, date_to=date_to)}>\n"  # noqa: E501
    )
    for organization_id, organization in organizations.items():
        yield (
            f"<organization{_attrs(id=organization.public_id, short_name=organization.short_name, inn=organization.inn, currency=organization.currency)}>"  # noqa: E501
        )
        yield _element("name", organization.name)
        for branch in branches_of[organization_id]:
            yield f"<branch{_attrs(id=branch.public_id, time_zone=branch.time_zone)}>"
            yield _element("name", branch.name)
            yield _element("address", branch.address)
            yield _element("phone", branch.phone)
            for department in departments[branch.pk]:
                yield _element("department", department.name, id=department.public_id)
            yield "</branch>\n"
        org_doctors = [
            doctor
            for doctor in doctors
            if doctor.organization_id == organization_id and doctor.pk in schedules_of
        ]
        specialties = {
            doctor.staff.specialty.code: doctor.staff.specialty
            for doctor in org_doctors
            if doctor.staff is not None and doctor.staff.specialty is not None
        }
        for code, specialty in sorted(specialties.items(), key=lambda item: item[1].name):
            yield _element("specialty", specialty.name, code=code)
        for doctor in org_doctors:
            yield _doctor(doctor.pk, schedules_of[doctor.pk], prices, intervals, branch_by_id)
        yield "</organization>\n"
    yield "</clinic-export>\n"


def _doctor(
    doctor_id: int,
    entries: list[PublicSchedule],
    prices: dict[tuple[int, int], Decimal],
    intervals: dict[int, list[WorkInterval]],
    branch_by_id: dict[int, Branch],
) -> str:
    doctor = entries[0].doctor
    staff = doctor.staff
    assert staff is not None  # a doctor resource always names the staff member
    specialty = staff.specialty.code if staff.specialty else ""
    parts = [f"<doctor{_attrs(id=doctor.public_id, specialty_code=specialty)}>"]
    parts.append(_element("name", staff.full_name))
    parts.append(_element("position", staff.position))
    seen: set[int] = set()
    for entry in entries:
        for service in entry.services:
            if service.pk in seen:
                continue
            seen.add(service.pk)
            minutes = int(service.duration.total_seconds() // 60)
            parts.append(
                f"<service{_attrs(id=service.public_id, code=service.code, duration_minutes=minutes)}>"  # noqa: E501
            )
            parts.append(_element("name", service.name))
            for other in entries:
                amount = prices.get((other.branch.pk, service.pk))
                if amount is not None:
                    parts.append(
                        _element(
                            "price",
                            amount,
                            branch_id=other.branch.public_id,
                            currency=doctor.organization.currency,
                        )
                    )
            parts.append("</service>")
    by_day: dict[tuple[datetime.date, int], list[WorkInterval]] = defaultdict(list)
    for interval in intervals.get(doctor_id, []):
        if interval.branch_id in branch_by_id:
            by_day[(interval.date, interval.branch_id)].append(interval)
    for (day, branch_id), found in sorted(by_day.items()):
        zone = branch_by_id[branch_id].zone
        parts.append(f"<work-day{_attrs(date=day, branch_id=branch_by_id[branch_id].public_id)}>")
        for interval in sorted(found, key=lambda i: i.starts_at):
            start = interval.starts_at.astimezone(zone).isoformat(timespec="minutes")
            end = interval.ends_at.astimezone(zone).isoformat(timespec="minutes")
            parts.append(f"<interval{_attrs(start=start, end=end)}/>")
        parts.append("</work-day>")
    parts.append("</doctor>\n")
    return "".join(parts)


@require_GET
def website_export(request: HttpRequest) -> StreamingHttpResponse:
    """``GET website/export.xml``: public, like the website it feeds."""
    return StreamingHttpResponse(
        (piece.encode() for piece in export_lines(timezone.localdate())),
        content_type="application/xml; charset=utf-8",
    )
