"""Changing when resources work: resources, work schedules, exceptions, breaks, shift templates
and the production calendar.

Only the head of registry and the administrator change these (``policies.can_manage_schedules``).
Every write runs in one transaction, validates with ``full_clean`` (a refusal names the field
and the value that was typed) and leaves a history row through the ``@track_history`` triggers,
with the acting user and the reason in the history context.

A change that takes working time away (a shorter schedule, a day off, a break, a holiday) is
checked *after* it is written, inside the same transaction, with the very functions booking uses
(``working_intervals``, ``break_intervals``). If active appointments would be left outside
working time the change is refused with ``appointments_affected`` and rolled back, unless the
caller passes ``force=True`` (the appointments then stay and the desk reschedules them).
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pghistory
from django.core.exceptions import (
    NON_FIELD_ERRORS,
    FieldDoesNotExist,
    PermissionDenied,
    ValidationError,
)
from django.db import models, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from clinic.core.models import Branch, Organization, Room, Staff

from . import policies
from .errors import SchedulingError
from .models import (
    Appointment,
    CalendarDay,
    CalendarDayType,
    Occupancy,
    Resource,
    Rotation,
    ScheduleBreak,
    ScheduleException,
    ShiftTemplate,
    WorkSchedule,
)
from .schedules import break_intervals, overlaps, working_intervals

SCHEDULE_FIELDS = frozenset(
    {
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
    }
)
RESOURCE_FIELDS = frozenset(
    {
        "name",
        "branch",
        "equipment_type",
        "grid_step_minutes",
        "min_patient_age",
        "max_patient_age",
        "is_active",
    }
)
AFFECTED_LISTED = 20  # how many affected appointments an error names (the count is exact)


# --- shared checks -----------------------------------------------------------------------------


def _require(actor: Any, branch_id: int | None) -> None:
    if not policies.can_manage_schedules(actor, branch_id):
        raise PermissionDenied(
            _("Only the head of registry or an administrator changes schedules.")
        )


def _require_organization(actor: Any, organization: Organization) -> None:
    """Organization-wide rows (calendar, templates): the role, and membership of the org."""
    _require(actor, None)
    if actor.is_superuser:
        return
    staff = getattr(actor, "staff", None)
    if staff is None or staff.organization_id != organization.pk:
        raise PermissionDenied(
            _("Only the head of registry or an administrator changes schedules.")
        )


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


@contextmanager
def _history(actor: Any, reason: str) -> Iterator[None]:
    """Attach the acting user (and the reason, when given) to the history rows written inside."""
    metadata: dict[str, Any] = {}
    if getattr(actor, "is_authenticated", False):
        metadata["user"] = actor.pk
    if reason:
        metadata["change_reason"] = reason
    with pghistory.context(**metadata):
        yield


def _display(value: Any) -> str:
    if value is None or value == "" or (isinstance(value, list | tuple) and not value):
        return "—"
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M")
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def _clean(obj: models.Model, *, exclude: Sequence[str] = ()) -> None:
    """``full_clean`` whose refusal is a ``SchedulingError`` naming the field and its value."""
    try:
        obj.full_clean(exclude=list(exclude) or None)
    except ValidationError as error:
        errors = error.message_dict
        field_name = next(iter(errors))
        message = " ".join(errors[field_name])
        if field_name == NON_FIELD_ERRORS:
            raise SchedulingError("invalid", message) from None
        try:
            label = str(getattr(obj._meta.get_field(field_name), "verbose_name", field_name))
        except FieldDoesNotExist:  # a clean() may name a key that is not a field
            label = field_name
        raise SchedulingError(
            "invalid",
            _("%(field)s “%(value)s”: %(message)s")
            % {
                "field": label.capitalize(),
                "value": _display(getattr(obj, field_name, None)),
                "message": message,
            },
            field=field_name,
        ) from None


# --- appointments left outside working time ----------------------------------------------------


def appointments_outside_working_time(
    resource_ids: Iterable[int],
    *,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> list[Appointment]:
    """Active future appointments of the resources that no longer lie in working time.

    An appointment counts when one of the resources it occupies has a work schedule and the
    appointment is outside that resource's working intervals in the appointment's branch, or
    overlaps one of its ad-hoc breaks: exactly the test ``appointment_book`` applies, so what
    this returns is what a new booking at that time would be refused for. Resources without any
    schedule (a room that is open whenever its doctor works) are never the cause.
    """
    ids = sorted(set(resource_ids))
    if not ids:
        return []
    lower = timezone.now()
    if date_from is not None:
        lower = max(lower, _day_start(date_from) - datetime.timedelta(days=1))
    upper = _day_start(date_to) + datetime.timedelta(days=2) if date_to is not None else None
    occupancies = Occupancy.objects.filter(
        resource_id__in=ids,
        is_active=True,
        resource__schedules__isnull=False,
        appointment__status__occupies=True,
        appointment__status__is_final=False,
        during__overlap=DateTimeTZRange(lower, upper, "[)"),
    ).select_related("appointment__branch", "resource")
    rows = list(occupancies.distinct())
    if not rows:
        return []
    resources = {row.resource_id: row.resource for row in rows}
    local_dates = [
        row.appointment.starts_at.astimezone(
            zoneinfo.ZoneInfo(row.appointment.branch.time_zone)
        ).date()
        for row in rows
    ]
    first, last = min(local_dates), max(local_dates)
    intervals = working_intervals(
        list(resources.values()),
        first - datetime.timedelta(days=1),
        last + datetime.timedelta(days=1),
    )
    breaks = break_intervals(
        resources,
        min(r.appointment.starts_at for r in rows),
        max(r.appointment.ends_at for r in rows),
    )
    affected: dict[int, Appointment] = {}
    for row in rows:
        appointment = row.appointment
        start, end = appointment.starts_at, appointment.ends_at
        inside = any(
            i.branch_id == appointment.branch_id and i.starts_at <= start and end <= i.ends_at
            for i in intervals.get(row.resource_id, ())
        )
        if not inside or overlaps(breaks.get(row.resource_id, ()), start, end):
            affected[appointment.pk] = appointment
    return sorted(affected.values(), key=lambda a: (a.starts_at, a.pk))


def _day_start(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)


def _refuse_if_affected(
    resource_ids: Iterable[int],
    *,
    date_from: datetime.date | None,
    date_to: datetime.date | None,
    force: bool,
) -> list[Appointment]:
    """Call inside the transaction after the change: raise (rolling it back) unless forced."""
    affected = appointments_outside_working_time(resource_ids, date_from=date_from, date_to=date_to)
    if affected and not force:
        raise SchedulingError(
            "appointments_affected",
            ngettext(
                "%(count)d active appointment would be left outside working time. "
                "Move or cancel it first, or confirm the change anyway.",
                "%(count)d active appointments would be left outside working time. "
                "Move or cancel them first, or confirm the change anyway.",
                len(affected),
            )
            % {"count": len(affected)},
            details={
                "count": len(affected),
                "appointments": [
                    {
                        "id": str(a.public_id),
                        "starts_at": a.starts_at.isoformat(),
                        "ends_at": a.ends_at.isoformat(),
                    }
                    for a in affected[:AFFECTED_LISTED]
                ],
            },
        )
    return affected


# --- resources ---------------------------------------------------------------------------------


def resource_create(
    *,
    actor: Any,
    branch: Branch,
    kind: str,
    name: str,
    staff: Staff | None = None,
    room: Room | None = None,
    equipment_type: str = "",
    grid_step_minutes: int = 15,
    min_patient_age: int | None = None,
    max_patient_age: int | None = None,
    reason: str = "",
) -> Resource:
    """Add a doctor, room or device to a branch (grid step 5–60 minutes)."""
    _require(actor, branch.pk)
    resource = Resource(
        organization_id=branch.organization_id,
        branch=branch,
        kind=kind,
        name=name.strip(),
        staff=staff,
        room=room,
        equipment_type=equipment_type.strip(),
        grid_step_minutes=grid_step_minutes,
        min_patient_age=min_patient_age,
        max_patient_age=max_patient_age,
        created_by=_user(actor),
    )
    _clean(resource)
    _check_resource_links(resource)
    with transaction.atomic(), _history(actor, reason):
        resource.save()
    return resource


def _check_resource_links(resource: Resource) -> None:
    if resource.staff is not None and resource.staff.organization_id != resource.organization_id:
        raise SchedulingError(
            "invalid",
            _("Doctor “%(value)s” works for another organization.") % {"value": resource.staff},
            field="staff",
        )
    if resource.room is not None and resource.room.branch_id != resource.branch_id:
        raise SchedulingError(
            "invalid",
            _("Room “%(value)s” is in another branch.") % {"value": resource.room},
            field="room",
        )


def resource_update(
    *, actor: Any, resource: Resource, changes: dict[str, Any], reason: str = ""
) -> Resource:
    """Change a resource's name, branch, grid step, age limits or activity."""
    unknown = sorted(set(changes) - RESOURCE_FIELDS)
    if unknown:
        raise SchedulingError(
            "invalid",
            _("“%(value)s” cannot be changed here.") % {"value": unknown[0]},
            field=unknown[0],
        )
    _require(actor, resource.branch_id)
    new_branch = changes.get("branch")
    if new_branch is not None:
        _require(actor, new_branch.pk)
    with transaction.atomic(), _history(actor, reason):
        locked = Resource.objects.select_for_update().get(pk=resource.pk)
        for name, value in changes.items():
            setattr(locked, name, value)
        _clean(locked)
        _check_resource_links(locked)
        locked.save(update_fields=[*changes, "updated_at"])
    return locked


# --- shift templates ---------------------------------------------------------------------------


def shift_template_create(
    *,
    actor: Any,
    organization: Organization,
    name: str,
    start_time: datetime.time,
    end_time: datetime.time,
    break_start: datetime.time | None = None,
    break_end: datetime.time | None = None,
    reason: str = "",
) -> ShiftTemplate:
    """A reusable working day that ``schedule_create(template=...)`` copies its times from."""
    _require_organization(actor, organization)
    template = ShiftTemplate(
        organization=organization,
        name=name.strip(),
        start_time=start_time,
        end_time=end_time,
        break_start=break_start,
        break_end=break_end,
        created_by=_user(actor),
    )
    _clean(template)
    with transaction.atomic(), _history(actor, reason):
        template.save()
    return template


# --- work schedules ----------------------------------------------------------------------------


def schedule_create(
    *,
    actor: Any,
    resource: Resource,
    date_from: datetime.date,
    branch: Branch | None = None,
    date_to: datetime.date | None = None,
    rotation: str = Rotation.WEEKDAYS,
    weekdays: Sequence[int] = (),
    days_on: int = 2,
    days_off: int = 2,
    start_time: datetime.time | None = None,
    end_time: datetime.time | None = None,
    break_start: datetime.time | None = None,
    break_end: datetime.time | None = None,
    template: ShiftTemplate | None = None,
    room: Room | None = None,
    follows_calendar: bool = True,
    reason: str = "",
    force: bool = False,
) -> WorkSchedule:
    """Add a schedule; it overrides older ones on the days both cover.

    With ``template`` the shift and break times come from it (explicit times win). Because a
    new schedule replaces older ones on its days, it can take working time away: appointments
    left outside it refuse the change unless ``force``.
    """
    branch = branch or resource.branch
    _require(actor, branch.pk)
    if template is not None:
        if template.organization_id != resource.organization_id:
            raise SchedulingError(
                "invalid",
                _("Shift template “%(value)s” belongs to another organization.")
                % {"value": template.name},
                field="template",
            )
        start_time = start_time or template.start_time
        end_time = end_time or template.end_time
        if break_start is None and break_end is None:
            break_start, break_end = template.break_start, template.break_end
    if start_time is None or end_time is None:
        missing = "start_time" if start_time is None else "end_time"
        raise SchedulingError(
            "invalid",
            _("Give the %(field)s time or a shift template.")
            % {"field": getattr(WorkSchedule._meta.get_field(missing), "verbose_name", missing)},
            field=missing,
        )
    if branch.organization_id != resource.organization_id:
        raise SchedulingError(
            "invalid",
            _("Branch “%(value)s” belongs to another organization.") % {"value": branch.name},
            field="branch",
        )
    schedule = WorkSchedule(
        resource=resource,
        branch=branch,
        room=room,
        date_from=date_from,
        date_to=date_to,
        rotation=rotation,
        weekdays=sorted(set(weekdays)),
        days_on=days_on,
        days_off=days_off,
        start_time=start_time,
        end_time=end_time,
        break_start=break_start,
        break_end=break_end,
        follows_calendar=follows_calendar,
        created_by=_user(actor),
    )
    _clean(schedule)
    _check_room(schedule)
    with transaction.atomic(), _history(actor, reason):
        schedule.save()
        _refuse_if_affected([resource.pk], date_from=date_from, date_to=date_to, force=force)
    return schedule


def _check_room(schedule: WorkSchedule) -> None:
    if schedule.room is not None and schedule.room.branch_id != schedule.branch_id:
        raise SchedulingError(
            "invalid",
            _("Room “%(value)s” is in another branch.") % {"value": schedule.room},
            field="room",
        )


def schedule_update(
    *,
    actor: Any,
    schedule: WorkSchedule,
    changes: dict[str, Any],
    reason: str = "",
    force: bool = False,
) -> WorkSchedule:
    """Change a schedule's days or times; appointments it would strand refuse it unless forced.

    The check covers both the old and the new date range, since moving ``date_from`` later also
    takes days away.
    """
    unknown = sorted(set(changes) - SCHEDULE_FIELDS)
    if unknown:
        raise SchedulingError(
            "invalid",
            _("“%(value)s” cannot be changed here.") % {"value": unknown[0]},
            field=unknown[0],
        )
    _require(actor, schedule.branch_id)
    if changes.get("branch") is not None:
        _require(actor, changes["branch"].pk)
    with transaction.atomic(), _history(actor, reason):
        locked = WorkSchedule.objects.select_for_update().get(pk=schedule.pk)
        old_from, old_to = locked.date_from, locked.date_to
        for name, value in changes.items():
            if name == "weekdays":
                value = sorted(set(value))
            setattr(locked, name, value)
        _clean(locked)
        _check_room(locked)
        locked.save(update_fields=[*changes, "updated_at"])
        new_to = locked.date_to
        _refuse_if_affected(
            [locked.resource_id],
            date_from=min(old_from, locked.date_from),
            date_to=None if old_to is None or new_to is None else max(old_to, new_to),
            force=force,
        )
    return locked


def schedule_end(
    *,
    actor: Any,
    schedule: WorkSchedule,
    date_to: datetime.date,
    reason: str = "",
    force: bool = False,
) -> WorkSchedule:
    """End a schedule on ``date_to`` (the last day worked); schedules are ended, not deleted,
    so the history of who worked when stays readable."""
    if date_to < schedule.date_from:
        raise SchedulingError(
            "invalid",
            _("To “%(value)s”: a schedule cannot end before it starts (%(start)s).")
            % {"value": date_to.isoformat(), "start": schedule.date_from.isoformat()},
            field="date_to",
        )
    return schedule_update(
        actor=actor, schedule=schedule, changes={"date_to": date_to}, reason=reason, force=force
    )


# --- exceptions and breaks ---------------------------------------------------------------------


def exception_add(
    *,
    actor: Any,
    resource: Resource,
    kind: str,
    date_from: datetime.date,
    date_to: datetime.date,
    note: str = "",
    reason: str = "",
    force: bool = False,
) -> ScheduleException:
    """Mark days a resource does not work (day off, sick leave, vacation, training)."""
    _require(actor, resource.branch_id)
    exception = ScheduleException(
        resource=resource,
        kind=kind,
        date_from=date_from,
        date_to=date_to,
        note=note.strip(),
        created_by=_user(actor),
    )
    _clean(exception)
    with transaction.atomic(), _history(actor, reason):
        exception.save()
        _refuse_if_affected([resource.pk], date_from=date_from, date_to=date_to, force=force)
    return exception


def exception_remove(*, actor: Any, exception: ScheduleException, reason: str = "") -> None:
    """Withdraw an exception: the days are worked again (this never strands an appointment)."""
    _require(actor, exception.resource.branch_id)
    with transaction.atomic(), _history(actor, reason):
        exception.delete()


def break_add(
    *,
    actor: Any,
    resource: Resource,
    starts_at: datetime.datetime,
    ends_at: datetime.datetime,
    reason: str = "",
    force: bool = False,
) -> ScheduleBreak:
    """An ad-hoc break (a meeting, a repair): no bookings inside it."""
    _require(actor, resource.branch_id)
    pause = ScheduleBreak(
        resource=resource,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason.strip(),
        created_by=_user(actor),
    )
    _clean(pause)
    if starts_at >= ends_at:
        raise SchedulingError(
            "invalid",
            _("Ends at “%(value)s”: the break must end after it starts.")
            % {"value": timezone.localtime(ends_at).strftime("%d.%m.%Y %H:%M")},
            field="ends_at",
        )
    with transaction.atomic(), _history(actor, reason):
        pause.save()
        _refuse_if_affected(
            [resource.pk],
            date_from=timezone.localdate(starts_at),
            date_to=timezone.localdate(ends_at),
            force=force,
        )
    return pause


def break_remove(*, actor: Any, pause: ScheduleBreak, reason: str = "") -> None:
    """Withdraw an ad-hoc break (this only adds working time)."""
    _require(actor, pause.resource.branch_id)
    with transaction.atomic(), _history(actor, reason):
        pause.delete()


# --- production calendar -----------------------------------------------------------------------


def _calendar_resources(organization: Organization) -> list[int]:
    return list(
        WorkSchedule.objects.filter(
            resource__organization=organization, follows_calendar=True
        ).values_list("resource_id", flat=True)
    )


def calendar_day_set(
    *,
    actor: Any,
    organization: Organization,
    date: datetime.date,
    day_type: str,
    shortened_by_minutes: int = 60,
    name: str = "",
    reason: str = "",
    force: bool = False,
) -> CalendarDay:
    """Set one day of the organization's production calendar (a holiday, a working Saturday,
    a shortened eve). Schedules that follow the calendar change with it."""
    _require_organization(actor, organization)
    with transaction.atomic(), _history(actor, reason):
        day = (
            CalendarDay.objects.select_for_update()
            .filter(organization=organization, date=date)
            .first()
        )
        if day is None:
            day = CalendarDay(organization=organization, date=date, created_by=_user(actor))
        day.day_type = day_type
        day.shortened_by_minutes = shortened_by_minutes
        day.name = name.strip()
        _clean(day, exclude=["organization", "date"] if day.pk else ())
        day.save()
        if day_type != CalendarDayType.WORKING:
            _refuse_if_affected(
                _calendar_resources(organization), date_from=date, date_to=date, force=force
            )
    return day


def calendar_day_clear(
    *,
    actor: Any,
    organization: Organization,
    date: datetime.date,
    reason: str = "",
    force: bool = False,
) -> None:
    """Return a day to the ordinary week (Monday–Friday working). Clearing a transferred
    working Saturday takes working time away, so it is checked like any other change."""
    _require_organization(actor, organization)
    with transaction.atomic(), _history(actor, reason):
        CalendarDay.objects.filter(organization=organization, date=date).delete()
        _refuse_if_affected(
            _calendar_resources(organization), date_from=date, date_to=date, force=force
        )
