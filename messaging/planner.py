"""Planning: which messages the rules call for, written as ``planned`` rows ahead of sending.

Every plan is one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per rule and branch, so planning
a day of 100,000 visits streams inside PostgreSQL instead of through Python, and the
``dedup_key`` (rule + visit + the visit's time, or rule + history event) makes planning
idempotent: beat firing twice, two workers at once, or a re-run after a crash plan each message
exactly once. Texts are not rendered here: the sender renders them when the message is due, so
a visit moved or cancelled meanwhile is caught then.

Event rules (booking, move, cancellation, status change) read the appointments' history events
(pghistory) after a cursor. Events younger than ``EVENT_SETTLE`` are left for the next run: a
transaction that started earlier may still commit an event with a lower id.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from clinic.core.models import Branch
from scheduling.models import AppointmentStatus

from .models import Message, PlannerCursor, ReminderRule, RuleEvent

LOOKAHEAD = datetime.timedelta(hours=26)
STALE_AFTER = datetime.timedelta(hours=1)  # a reminder whose time passed longer ago is not sent
EVENT_SETTLE = datetime.timedelta(seconds=20)
EVENT_CURSOR = "appointment-events"

_OPEN_STATUSES = (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED)

_COLUMNS = (
    "organization_id, branch_id, patient_id, appointment_id, rule_id, direction, channel,"
    ' "to", subject, body, params, state, skip_reason, error_code, due_at, planned_for,'
    " provider_id, attempts, dedup_key, created_at"
)


def _values(
    *,
    due: str,
    planned_for: str,
    key: str,
    branch: str = "a.branch_id",
    appointment: str = "a.id",
) -> str:
    """The SELECT list of a planned row; ``a`` is the appointment (or its history event,
    which carries the appointment's columns, ``id`` included)."""
    return (
        f"a.organization_id, {branch}, a.patient_id, {appointment}, %(rule)s, 'out', '',"
        f" '', '', '', '{{}}'::jsonb, 'planned', '', '', {due}, {planned_for}, '', 0, {key}, now()"
    )


@dataclass(frozen=True)
class PlanResult:
    rule_id: int
    planned: int


def _rules(*events: str) -> list[ReminderRule]:
    return list(
        ReminderRule.objects.filter(is_active=True, event__in=events).prefetch_related("services")
    )


def _branches(rule: ReminderRule) -> list[Branch]:
    if rule.branch_id is not None:
        return [rule.branch] if rule.branch is not None else []
    return list(Branch.objects.filter(organization_id=rule.organization_id, is_active=True))


def _service_filter(rule: ReminderRule, params: dict[str, object]) -> str:
    services = [service.pk for service in rule.services.all()]
    if not services:
        return ""
    params["services"] = services
    return (
        " AND EXISTS (SELECT 1 FROM scheduling_appointmentservice x"
        " WHERE x.appointment_id = a.id AND x.service_id = ANY(%(services)s))"
    )


def _execute(sql: str, params: dict[str, Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


def plan_reminders(now: datetime.datetime | None = None) -> list[PlanResult]:
    """Reminders before visits (N days before at a time of day, N minutes before) and messages
    N days after given services, due within ``LOOKAHEAD``."""
    now = now or timezone.now()
    results = []
    for rule in _rules(
        RuleEvent.DAYS_BEFORE, RuleEvent.MINUTES_BEFORE, RuleEvent.DAYS_AFTER_SERVICES
    ):
        planned = 0
        for branch in _branches(rule):
            planned += _plan_visit_rule(rule, branch, now)
        results.append(PlanResult(rule.pk, planned))
    return results


def _plan_visit_rule(rule: ReminderRule, branch: Branch, now: datetime.datetime) -> int:
    params: dict[str, object] = {
        "rule": rule.pk,
        "branch": branch.pk,
        "zone": branch.time_zone,
        "now": now,
        "lookahead": now + LOOKAHEAD,
        "stale": now - STALE_AFTER,
        "days": rule.offset_days,
        "minutes": rule.offset_minutes,
        "time": rule.send_time or datetime.time(10, 0),
        "open": list(_OPEN_STATUSES),
        "completed": AppointmentStatus.COMPLETED,
    }
    local_day = "(a.starts_at AT TIME ZONE %(zone)s)::date"
    if rule.event == RuleEvent.MINUTES_BEFORE:
        due = "a.starts_at - make_interval(mins => %(minutes)s)"
        window = (
            "a.starts_at > %(now)s"
            " AND a.starts_at <= %(lookahead)s + make_interval(mins => %(minutes)s)"
        )
        status = "s.code = ANY(%(open)s)"
    elif rule.event == RuleEvent.DAYS_BEFORE:
        due = f"(({local_day} - %(days)s) + %(time)s::time) AT TIME ZONE %(zone)s"
        window = (
            "a.starts_at > %(now)s"
            " AND a.starts_at < %(lookahead)s + make_interval(days => %(days)s + 1)"
        )
        status = "s.code = ANY(%(open)s)"
    else:  # DAYS_AFTER_SERVICES: after the visit was completed
        due = f"(({local_day} + %(days)s) + %(time)s::time) AT TIME ZONE %(zone)s"
        window = (
            "a.starts_at < %(now)s"
            " AND a.starts_at > %(stale)s - make_interval(days => %(days)s + 1)"
        )
        status = "s.code = %(completed)s"
    key = "'r' || %(rule)s || ':a' || a.id || ':' || extract(epoch FROM a.starts_at)::bigint"
    sql = (
        f"INSERT INTO {Message._meta.db_table} ({_COLUMNS})"  # noqa: S608 - constant fragments
        f" SELECT {_values(due='d.due_at', planned_for='a.starts_at', key=key)}"
        " FROM scheduling_appointment a"
        " JOIN scheduling_appointmentstatus s ON s.id = a.status_id"
        f" CROSS JOIN LATERAL (SELECT {due} AS due_at) d"
        f" WHERE a.branch_id = %(branch)s AND {window} AND {status}"
        " AND d.due_at <= %(lookahead)s AND d.due_at > %(stale)s"
        f"{_service_filter(rule, params)}"
        " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING"
    )
    return _execute(sql, params)


def plan_birthdays(now: datetime.datetime | None = None) -> list[PlanResult]:
    """Birthday greetings of the day, at the rule's time in each branch's zone, once a year.

    A patient is greeted by the branch of their latest visit, so nobody gets one per branch.
    """
    now = now or timezone.now()
    results = []
    for rule in _rules(RuleEvent.BIRTHDAY):
        planned = 0
        for branch in _branches(rule):
            local_today = now.astimezone(branch.zone).date()
            params: dict[str, object] = {
                "rule": rule.pk,
                "branch": branch.pk,
                "organization": rule.organization_id,
                "zone": branch.time_zone,
                "month": local_today.month,
                "day": local_today.day,
                "today": local_today,
                "time": rule.send_time or datetime.time(10, 0),
                "stale": now - STALE_AFTER,
            }
            sql = (
                f"INSERT INTO {Message._meta.db_table} ({_COLUMNS})"  # noqa: S608 - constants
                " SELECT p.organization_id, %(branch)s, p.id, NULL, %(rule)s, 'out', '', '', '',"
                " '', '{}'::jsonb, 'planned', '', '', d.due_at, NULL, '', 0,"
                " 'r' || %(rule)s || ':p' || p.id || ':' || %(today)s::text, now()"
                " FROM patients_person p"
                " CROSS JOIN LATERAL (SELECT (%(today)s::date + %(time)s::time)"
                " AT TIME ZONE %(zone)s AS due_at) d"
                " WHERE p.organization_id = %(organization)s AND p.merged_into_id IS NULL"
                " AND extract(month FROM p.birth_date) = %(month)s"
                " AND extract(day FROM p.birth_date) = %(day)s"
                " AND d.due_at > %(stale)s"
                " AND (SELECT a.branch_id FROM scheduling_appointment a WHERE a.patient_id = p.id"
                " ORDER BY a.starts_at DESC LIMIT 1) = %(branch)s"
                " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING"
            )
            planned += _execute(sql, params)
        results.append(PlanResult(rule.pk, planned))
    return results


_EVENT_CONDITIONS = {
    RuleEvent.BOOKED: "a.pgh_label = 'insert'",
    RuleEvent.MOVED: (
        "a.pgh_label = 'update' AND a.status_id <> %(cancelled)s"
        " AND (a.starts_at IS DISTINCT FROM a.prev_starts_at"
        " OR a.doctor_id IS DISTINCT FROM a.prev_doctor_id)"
    ),
    RuleEvent.CANCELLED: (
        "a.pgh_label = 'update' AND a.status_id = %(cancelled)s"
        " AND a.prev_status_id IS DISTINCT FROM a.status_id"
    ),
    RuleEvent.AFTER_STATUS: (
        "a.pgh_label = 'update' AND a.status_id = %(status)s"
        " AND a.prev_status_id IS DISTINCT FROM a.status_id"
    ),
    RuleEvent.NEXT_VISIT: (
        "a.pgh_label = 'update' AND a.status_id = %(completed)s"
        " AND a.prev_status_id IS DISTINCT FROM a.status_id"
    ),
}

# The patient's next open visit the same local day, after the one just completed: the
# navigation message is about that visit (its room, time and doctor).
_NEXT_VISIT_JOIN = (
    " JOIN core_branch vb ON vb.id = a.branch_id"
    " CROSS JOIN LATERAL (SELECT n.id, n.branch_id, n.starts_at FROM scheduling_appointment n"
    " JOIN scheduling_appointmentstatus ns ON ns.id = n.status_id"
    " WHERE n.patient_id = a.patient_id AND n.starts_at > a.starts_at"
    " AND n.starts_at < ((a.starts_at AT TIME ZONE vb.time_zone)::date + 1)"
    " AT TIME ZONE vb.time_zone"
    " AND ns.code = ANY(%(open)s) ORDER BY n.starts_at LIMIT 1) nx"
)


def plan_events(now: datetime.datetime | None = None) -> list[PlanResult]:
    """Messages for bookings, moves, cancellations and status changes since the last run."""
    now = now or timezone.now()
    rules = _rules(*_EVENT_CONDITIONS)
    statuses = dict(AppointmentStatus.objects.values_list("code", "pk"))
    results = []
    with transaction.atomic():
        cursor_row, _created = PlannerCursor.objects.select_for_update().get_or_create(
            name=EVENT_CURSOR
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(max(pgh_id), %s) FROM scheduling_appointmentevent"
                " WHERE pgh_id > %s AND pgh_created_at < %s",
                [cursor_row.position, cursor_row.position, now - EVENT_SETTLE],
            )
            upto = int(cursor.fetchone()[0])
        if upto <= cursor_row.position:
            return [PlanResult(rule.pk, 0) for rule in rules]
        for rule in rules:
            status_id = statuses.get(rule.status_code or "", 0)
            if rule.event == RuleEvent.AFTER_STATUS and not status_id:
                results.append(PlanResult(rule.pk, 0))
                continue
            results.append(
                PlanResult(
                    rule.pk,
                    _plan_event_rule(
                        rule,
                        since=cursor_row.position,
                        upto=upto,
                        cancelled=statuses.get(AppointmentStatus.CANCELLED, 0),
                        status_id=status_id,
                        completed=statuses.get(AppointmentStatus.COMPLETED, 0),
                    ),
                )
            )
        cursor_row.position = upto
        cursor_row.save(update_fields=["position"])
    return results


def _plan_event_rule(
    rule: ReminderRule,
    *,
    since: int,
    upto: int,
    cancelled: int,
    status_id: int,
    completed: int = 0,
) -> int:
    params: dict[str, object] = {
        "rule": rule.pk,
        "since": since,
        "upto": upto,
        "cancelled": cancelled,
        "status": status_id,
        "minutes": rule.offset_minutes,
        "organization": rule.organization_id,
    }
    branch_filter = ""
    if rule.branch_id is not None:
        params["branch"] = rule.branch_id
        branch_filter = " AND a.branch_id = %(branch)s"
    due = "a.pgh_created_at + make_interval(mins => %(minutes)s)"
    key = "'r' || %(rule)s || ':e' || a.pgh_id"
    select = _values(due=due, planned_for="a.starts_at", key=key)
    joined = ""
    if rule.event == RuleEvent.NEXT_VISIT:
        params["completed"] = completed
        params["open"] = list(_OPEN_STATUSES)
        select = _values(
            due=due, planned_for="nx.starts_at", key=key, branch="nx.branch_id", appointment="nx.id"
        )
        joined = _NEXT_VISIT_JOIN
    sql = (
        "WITH touched AS (SELECT DISTINCT pgh_obj_id FROM scheduling_appointmentevent"  # noqa: S608
        " WHERE pgh_id > %(since)s AND pgh_id <= %(upto)s),"
        " a AS (SELECT e.*, lag(e.status_id) OVER w AS prev_status_id,"
        " lag(e.starts_at) OVER w AS prev_starts_at, lag(e.doctor_id) OVER w AS prev_doctor_id"
        " FROM scheduling_appointmentevent e"
        " WHERE e.pgh_obj_id IN (SELECT pgh_obj_id FROM touched)"
        " AND e.pgh_id <= %(upto)s WINDOW w AS (PARTITION BY e.pgh_obj_id ORDER BY e.pgh_id))"
        f" INSERT INTO {Message._meta.db_table} ({_COLUMNS})"
        f" SELECT {select}"
        f" FROM a{joined} WHERE a.pgh_id > %(since)s AND a.organization_id = %(organization)s"
        f"{branch_filter} AND {_EVENT_CONDITIONS[RuleEvent(rule.event)]}"
        f"{_service_filter(rule, params)}"
        " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING"
    )
    return _execute(sql, params)


def plan_all(now: datetime.datetime | None = None) -> int:
    """Everything beat plans each run; returns how many messages were planned."""
    now = now or timezone.now()
    results = [*plan_events(now), *plan_reminders(now), *plan_birthdays(now)]
    return sum(result.planned for result in results)
