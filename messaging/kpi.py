"""Managers' KPIs: how well visits are kept, confirmed and booked, and how much the phone rings.

Every figure is one aggregate statement over the period *and* the previous period of the same
length, grouped by period and by day (by 7-day step for periods longer than
``DAILY_UP_TO_DAYS``) with ``GROUPING SETS``, so the page costs one query per metric whatever the
amount of history. Each statement is bounded by an index: visits by ``(branch, starts_at)``,
bookings by the BRIN index on ``created_at``, history events by the BRIN index on
``pgh_created_at`` or by ``pgh_obj_id``, messages by ``appointment_id``, rebookings by
``(doctor, starts_at)``, calls by ``(organization, started_at)``.

Days are the local days of the branch (or of the organization when every branch is shown);
``[since, until]`` covers both ends.

The definitions (also shown on the page):

* **No-show rate** — of the visits whose time falls in the period and that ended (status
  ``completed`` or ``no_show`` now), the share that ended as a no-show.
* **Confirmed within 24 h** — of the visits in the period that were sent at least one message
  (outbound, tied to the visit, accepted by the provider and not failed since), the share whose
  history shows the visit becoming confirmed (status ``confirmed`` or communication status
  ``confirmed``) within 24 hours after the first such message was sent. A visit already
  confirmed when that message went out (by its last history event before) counts as not
  confirmed by it.
* **Online bookings** — of the appointments created in the period, the share booked through the
  portal (channel ``portal``), whatever became of them afterwards.
* **Hold to booking at the desk** — for the appointments created in the period at the desk
  (channel ``desk``) with a slot hold, the median time from taking the hold to the booking
  (``Appointment.held_at`` to ``created_at``).
* **Cancellation to rebooking** — for the cancellations in the period (the history event where
  the status became ``cancelled``) of a doctor's time that was still ahead, the median time to
  the first appointment created afterwards that overlaps the freed time with the same doctor
  (as that appointment stands now). Cancellations never rebooked count only in the rate.
* **Administrative calls** — calls in the call log that started in the period, by the purpose the
  operator gave (unclassified ones apart). Calls on a line that names no branch count when every
  branch is shown.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from scheduling.models import Appointment, AppointmentStatus, BookingChannel, CommunicationStatus
from telephony.models import Call, CallPurpose

from .models import Direction, Message, MessageState

DAILY_UP_TO_DAYS = 62
WEEK_DAYS = 7
MAX_PERIOD_DAYS = 366
CONFIRMATION_WINDOW = datetime.timedelta(hours=24)

# A message counts as sent once the provider accepted it (``sent_at`` is set then), unless it
# failed or proved undeliverable since.
SENT_STATES = (
    MessageState.QUEUED,
    MessageState.SENT,
    MessageState.DELIVERED,
    MessageState.READ,
)

SHARE = "share"
DURATION = "duration"
COUNT = "count"

UNCLASSIFIED = ""


@dataclass(frozen=True)
class KpiPeriod:
    """Local days ``since`` to ``until``, both included."""

    since: datetime.date
    until: datetime.date

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    @property
    def previous(self) -> KpiPeriod:
        """The period of the same length that ends the day before this one starts."""
        return KpiPeriod(
            self.since - datetime.timedelta(days=self.days),
            self.since - datetime.timedelta(days=1),
        )

    @property
    def step_days(self) -> int:
        """Days per chart bar: one for up to ``DAILY_UP_TO_DAYS`` days, else a week."""
        return 1 if self.days <= DAILY_UP_TO_DAYS else WEEK_DAYS

    @property
    def buckets(self) -> int:
        return -(-self.days // self.step_days)

    def bucket_starts(self) -> list[datetime.date]:
        return [
            self.since + datetime.timedelta(days=index * self.step_days)
            for index in range(self.buckets)
        ]

    def bucket_ends(self) -> list[datetime.date]:
        return [
            min(start + datetime.timedelta(days=self.step_days - 1), self.until)
            for start in self.bucket_starts()
        ]


@dataclass(frozen=True)
class KpiScope:
    """What the figures cover: the branches (ids), the zone of their days and the period.

    ``calls_without_branch`` adds the calls on lines that name no branch (when every branch of
    the organization the actor works in is shown).
    """

    organization_id: int
    branch_ids: tuple[int, ...]
    time_zone: str
    period: KpiPeriod
    calls_without_branch: bool = False


@dataclass(frozen=True)
class Figure:
    """One period's value and what it rests on.

    ``value`` is a share (0..1), seconds or a count, None when there is nothing to measure;
    ``base`` is how many cases it is taken over (visits, bookings, cancellations, calls) and
    ``part`` how many of them count (no-shows, confirmed, online, rebooked), where that applies.
    """

    value: float | None
    base: int
    part: int | None = None


@dataclass(frozen=True)
class BreakdownRow:
    key: str
    label: str
    current: int
    previous: int


@dataclass
class Metric:
    code: str
    kind: str
    lower_is_better: bool | None
    current: Figure
    previous: Figure
    current_series: list[float | None]
    previous_series: list[float | None]
    breakdown: list[BreakdownRow] = field(default_factory=list)

    @property
    def change(self) -> float | None:
        """Current minus previous (share points as a fraction, seconds, or a count)."""
        if self.current.value is None or self.previous.value is None:
            return None
        return self.current.value - self.previous.value

    @property
    def relative_change(self) -> float | None:
        """The change as a fraction of the previous value (None from zero)."""
        change = self.change
        if change is None or not self.previous.value:
            return None
        return change / self.previous.value

    @property
    def title(self) -> Promise:
        return TITLES[self.code]

    @property
    def definition(self) -> Promise:
        return DEFINITIONS[self.code]


NO_SHOW = "no_show_rate"
CONFIRMED_24H = "confirmed_within_24h"
ONLINE_SHARE = "online_share"
HOLD_TO_BOOKING = "hold_to_booking"
CANCEL_TO_REBOOK = "cancellation_to_rebooking"
CALLS = "administrative_calls"

TITLES: dict[str, Promise] = {
    NO_SHOW: _("No-show rate"),
    CONFIRMED_24H: _("Confirmed within 24 h of a reminder"),
    ONLINE_SHARE: _("Online bookings"),
    HOLD_TO_BOOKING: _("Hold to booking at the desk"),
    CANCEL_TO_REBOOK: _("Cancellation to rebooking"),
    CALLS: _("Administrative calls"),
}

DEFINITIONS: dict[str, Promise] = {
    NO_SHOW: _(
        "Of the visits in the period that ended (completed or no-show), the share that ended "
        "as a no-show."
    ),
    CONFIRMED_24H: _(
        "Of the visits in the period that were sent at least one message which the provider "
        "accepted, the share that became confirmed (status or communication status) within "
        "24 hours after the first such message, according to the appointment's history; a "
        "visit already confirmed when that message went out does not count as confirmed."
    ),
    ONLINE_SHARE: _(
        "Of the appointments created in the period, the share booked by patients through the "
        "portal."
    ),
    HOLD_TO_BOOKING: _(
        "For the appointments booked at the desk in the period with a slot hold, the median "
        "time from taking the hold to the booking."
    ),
    CANCEL_TO_REBOOK: _(
        "For the cancellations in the period of a doctor's time still ahead, the median time "
        "until a new appointment with the same doctor overlapping that time was booked; "
        "cancellations never rebooked count only in the rebooked share."
    ),
    CALLS: _("Calls in the call log that started in the period, by the purpose the operator gave."),
}

PURPOSE_LABELS: dict[str, Any] = {
    **{purpose.value: purpose.label for purpose in CallPurpose},
    UNCLASSIFIED: pgettext_lazy("call purpose", "Not classified"),
}


# --- the statements ----------------------------------------------------------------------------

_APPOINTMENT = Appointment._meta.db_table
_EVENT = "scheduling_appointmentevent"
_STATUS = AppointmentStatus._meta.db_table
_MESSAGE = Message._meta.db_table
_CALL = Call._meta.db_table


def _bucketed(moment: str) -> str:
    """The SELECT list's ``period`` (0 previous, 1 current) and ``bucket`` (bar) of a time."""
    day = f"(({moment}) AT TIME ZONE %(zone)s)::date - %(first_day)s::date"
    return f"({day}) / %(days)s AS period, (({day}) %% %(days)s) / %(step)s AS bucket"


_GROUPED = "GROUP BY GROUPING SETS ((period), (period, bucket))"


def _status_id(code: str) -> str:
    """A scalar subquery for a status's id by its code (run once, as an init plan)."""
    return f"SELECT id FROM {_STATUS} WHERE code = %({code}_code)s"  # noqa: S608


NO_SHOW_SQL = f"""
    WITH v AS (
      SELECT {_bucketed("a.starts_at")}, a.status_id = ({_status_id("no_show")}) AS missed
      FROM {_APPOINTMENT} a
      WHERE a.branch_id = ANY(%(branches)s::bigint[])
        AND a.starts_at >= %(low)s AND a.starts_at < %(high)s
        AND a.status_id IN (({_status_id("completed")}), ({_status_id("no_show")}))
    )
    SELECT period, bucket, count(*) FILTER (WHERE missed), count(*)
    FROM v {_GROUPED}
"""  # noqa: S608 (table names from the models)

# The visit's state when the first message went out is that of its last history event before;
# whether it became confirmed within the window, that of the events in the window.
CONFIRMED_SQL = f"""
    WITH visit AS (
      SELECT a.id, a.starts_at, min(m.sent_at) AS first_sent
      FROM {_APPOINTMENT} a
      JOIN {_MESSAGE} m ON m.appointment_id = a.id
      WHERE a.branch_id = ANY(%(branches)s::bigint[])
        AND a.starts_at >= %(low)s AND a.starts_at < %(high)s
        AND m.direction = %(outbound)s AND m.sent_at IS NOT NULL
        AND m.state = ANY(%(sent_states)s)
      GROUP BY a.id, a.starts_at
    ),
    v AS (
      SELECT {_bucketed("visit.starts_at")},
        coalesce(h.confirmed_in_window AND NOT coalesce(h.confirmed_before, false), false) AS ok
      FROM visit
      CROSS JOIN LATERAL (
        SELECT
          bool_or(e.confirmed) FILTER (
            WHERE e.pgh_created_at >= visit.first_sent
              AND e.pgh_created_at <= visit.first_sent + %(window)s
          ) AS confirmed_in_window,
          (array_agg(e.confirmed ORDER BY e.pgh_id DESC)
            FILTER (WHERE e.pgh_created_at < visit.first_sent))[1] AS confirmed_before
        FROM (
          SELECT pgh_id, pgh_created_at,
            status_id = ({_status_id("confirmed")})
              OR communication_status = %(confirmed)s AS confirmed
          FROM {_EVENT}
          WHERE pgh_obj_id = visit.id
        ) e
      ) h
    )
    SELECT period, bucket, count(*) FILTER (WHERE ok), count(*)
    FROM v {_GROUPED}
"""  # noqa: S608 (table names from the models)

ONLINE_SQL = f"""
    WITH v AS (
      SELECT {_bucketed("a.created_at")}, a.channel = %(portal)s AS online
      FROM {_APPOINTMENT} a
      WHERE a.branch_id = ANY(%(branches)s::bigint[])
        AND a.created_at >= %(low)s AND a.created_at < %(high)s
    )
    SELECT period, bucket, count(*) FILTER (WHERE online), count(*)
    FROM v {_GROUPED}
"""  # noqa: S608 (table names from the models)

HOLD_SQL = f"""
    WITH v AS (
      SELECT {_bucketed("a.created_at")}, extract(epoch FROM a.created_at - a.held_at) AS seconds
      FROM {_APPOINTMENT} a
      WHERE a.branch_id = ANY(%(branches)s::bigint[])
        AND a.created_at >= %(low)s AND a.created_at < %(high)s
        AND a.channel = %(desk)s AND a.held_at IS NOT NULL AND a.held_at <= a.created_at
    )
    SELECT period, bucket, percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds), count(*)
    FROM v {_GROUPED}
"""  # noqa: S608 (table names from the models)

# A visit lasts at most 24 hours (``scheduling.services.booking_span``), so an appointment that
# overlaps the freed time starts less than a day before it: that bounds the index range. The
# "created after the cancellation" condition is an aggregate FILTER so that the planner reads the
# doctor's few appointments by ``(doctor, starts_at)`` rather than combining that with the
# ``created_at`` BRIN index, whose bitmap for an old cancellation covers most of the table.
REBOOK_SQL = f"""
    WITH cancellation AS (
      SELECT e.pgh_id, e.pgh_obj_id, e.pgh_created_at AS at, e.doctor_id, e.starts_at, e.ends_at
      FROM {_EVENT} e
      WHERE e.pgh_created_at >= %(low)s AND e.pgh_created_at < %(high)s
        AND e.pgh_label = 'update' AND e.status_id = ({_status_id("cancelled")})
        AND e.branch_id = ANY(%(branches)s::bigint[])
        AND e.doctor_id IS NOT NULL AND e.ends_at > e.pgh_created_at
    ),
    became AS (
      SELECT c.* FROM cancellation c
      WHERE (
        SELECT p.status_id FROM {_EVENT} p
        WHERE p.pgh_obj_id = c.pgh_obj_id AND p.pgh_id < c.pgh_id
        ORDER BY p.pgh_id DESC LIMIT 1
      ) IS DISTINCT FROM ({_status_id("cancelled")})
    ),
    v AS (
      SELECT {_bucketed("c.at")},
        extract(epoch FROM (
          SELECT min(a.created_at) FILTER (WHERE a.created_at > c.at)
          FROM {_APPOINTMENT} a
          WHERE a.doctor_id = c.doctor_id
            AND a.starts_at < c.ends_at AND a.starts_at > c.starts_at - interval '24 hours'
            AND a.ends_at > c.starts_at AND a.id <> c.pgh_obj_id
        ) - c.at) AS seconds
      FROM became c
    )
    SELECT period, bucket, percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
           count(seconds), count(*)
    FROM v {_GROUPED}
"""  # noqa: S608 (table names from the models)

CALLS_SQL = f"""
    WITH v AS (
      SELECT {_bucketed("c.started_at")}, c.purpose
      FROM {_CALL} c
      WHERE c.organization_id = %(organization)s
        AND c.started_at >= %(low)s AND c.started_at < %(high)s
        AND (
          c.branch_id = ANY(%(branches)s::bigint[])
          OR (%(without_branch)s AND c.branch_id IS NULL)
        )
    )
    SELECT period, bucket, purpose, count(*), GROUPING(bucket)
    FROM v GROUP BY GROUPING SETS ((period, purpose), (period, bucket))
"""  # noqa: S608 (table names from the models)


# --- reading -----------------------------------------------------------------------------------


def _midnight(day: datetime.date, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), tzinfo=zone)


def _params(scope: KpiScope) -> dict[str, Any]:
    period = scope.period
    zone = zoneinfo.ZoneInfo(scope.time_zone)
    first_day = period.previous.since
    return {
        "zone": scope.time_zone,
        "first_day": first_day,
        "days": period.days,
        "step": period.step_days,
        "low": _midnight(first_day, zone),
        "high": _midnight(period.until + datetime.timedelta(days=1), zone),
        "branches": list(scope.branch_ids),
        "organization": scope.organization_id,
        "without_branch": scope.calls_without_branch,
        "completed_code": AppointmentStatus.COMPLETED,
        "no_show_code": AppointmentStatus.NO_SHOW,
        "cancelled_code": AppointmentStatus.CANCELLED,
        "confirmed_code": AppointmentStatus.CONFIRMED,
        "confirmed": CommunicationStatus.CONFIRMED,
        "outbound": Direction.OUTBOUND,
        "sent_states": list(SENT_STATES),
        "window": CONFIRMATION_WINDOW,
        "portal": BookingChannel.PORTAL,
        "desk": BookingChannel.DESK,
    }


def _fetch(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _share(part: int, base: int) -> Figure:
    return Figure(part / base if base else None, base, part)


def _median(seconds: float | None, base: int, part: int | None = None) -> Figure:
    return Figure(float(seconds) if seconds is not None else None, base, part)


def _metric(
    code: str,
    kind: str,
    lower_is_better: bool | None,
    rows: Sequence[tuple[Any, ...]],
    scope: KpiScope,
    figure_of: Callable[..., Figure],
) -> Metric:
    """Spread ``(period, bucket, *aggregates)`` rows into the two periods and their bars."""
    buckets = scope.period.buckets
    totals: dict[int, Figure] = {}
    series: dict[int, list[float | None]] = {0: [None] * buckets, 1: [None] * buckets}
    for period, bucket, *aggregates in rows:
        figure = figure_of(*aggregates)
        if bucket is None:
            totals[period] = figure
        elif bucket < buckets:
            series[period][bucket] = figure.value
    blank = Figure(None, 0, 0 if kind == SHARE else None)
    return Metric(
        code=code,
        kind=kind,
        lower_is_better=lower_is_better,
        current=totals.get(1, blank),
        previous=totals.get(0, blank),
        current_series=series[1],
        previous_series=series[0],
    )


def no_show_rate(scope: KpiScope) -> Metric:
    """No-shows among the visits of the period that ended (see the module's definitions)."""
    rows = _fetch(NO_SHOW_SQL, _params(scope))
    return _metric(NO_SHOW, SHARE, True, rows, scope, lambda part, base: _share(part, base))


def confirmed_within_24h(scope: KpiScope) -> Metric:
    """Visits confirmed within 24 hours after their first sent message, from the history."""
    rows = _fetch(CONFIRMED_SQL, _params(scope))
    return _metric(CONFIRMED_24H, SHARE, False, rows, scope, lambda part, base: _share(part, base))


def online_share(scope: KpiScope) -> Metric:
    """Portal bookings among the appointments created in the period."""
    rows = _fetch(ONLINE_SQL, _params(scope))
    return _metric(ONLINE_SHARE, SHARE, False, rows, scope, lambda part, base: _share(part, base))


def hold_to_booking(scope: KpiScope) -> Metric:
    """Median seconds from the slot hold to the booking, for desk bookings made with a hold."""
    rows = _fetch(HOLD_SQL, _params(scope))
    return _metric(
        HOLD_TO_BOOKING, DURATION, True, rows, scope, lambda median, base: _median(median, base)
    )


def cancellation_to_rebooking(scope: KpiScope) -> Metric:
    """Median seconds from a cancellation of future time to its first rebooking."""
    rows = _fetch(REBOOK_SQL, _params(scope))
    return _metric(
        CANCEL_TO_REBOOK,
        DURATION,
        True,
        rows,
        scope,
        lambda median, rebooked, cancellations: _median(median, cancellations, rebooked),
    )


def administrative_calls(scope: KpiScope) -> Metric:
    """Calls of the period: the total, the count per purpose and per bar."""
    rows = _fetch(CALLS_SQL, _params(scope))
    buckets = scope.period.buckets
    series: dict[int, list[float | None]] = {0: [0.0] * buckets, 1: [0.0] * buckets}
    per_purpose: dict[str, dict[int, int]] = {}
    for period, bucket, purpose, count, by_purpose in rows:
        if by_purpose:
            per_purpose.setdefault(purpose, {})[period] = count
        elif bucket < buckets:
            series[period][bucket] = float(count)
    totals = {
        period: sum(counts.get(period, 0) for counts in per_purpose.values()) for period in (0, 1)
    }
    order = [*(purpose.value for purpose in CallPurpose), UNCLASSIFIED]
    breakdown = [
        BreakdownRow(
            key=key or "unclassified",
            label=str(PURPOSE_LABELS[key]),
            current=per_purpose.get(key, {}).get(1, 0),
            previous=per_purpose.get(key, {}).get(0, 0),
        )
        for key in order
        if key in per_purpose
    ]
    return Metric(
        code=CALLS,
        kind=COUNT,
        lower_is_better=True,
        current=Figure(float(totals[1]), totals[1]),
        previous=Figure(float(totals[0]), totals[0]),
        current_series=series[1],
        previous_series=series[0],
        breakdown=breakdown,
    )


def kpi_dashboard(scope: KpiScope) -> list[Metric]:
    """Every metric of the dashboard, in the page's order: one statement each."""
    return [
        no_show_rate(scope),
        confirmed_within_24h(scope),
        online_share(scope),
        hold_to_booking(scope),
        cancellation_to_rebooking(scope),
        administrative_calls(scope),
    ]
