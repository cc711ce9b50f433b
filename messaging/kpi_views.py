"""The managers' KPI dashboard page (included under /messaging/kpi/).

Thin: the query string is read by ``kpi_params_from`` (a value that cannot be used answers 400
with a message naming the parameter and quoting the value, and nothing is computed), the figures
come from ``messaging.kpi``, and each metric is turned here into what the page shows: formatted
values, the change against the previous period and a small chart drawn as inline SVG on the
server (the CSP allows no inline script or style, and the page needs no script at all).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from clinic.core.models import Branch, Organization
from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from clinic.core.selectors import branch_list
from patients.views import requires

from .kpi import COUNT, DURATION, MAX_PERIOD_DAYS, SHARE, KpiPeriod, KpiScope, Metric, kpi_dashboard

TEMPLATE = "messaging/kpi.html"
DEFAULT_DAYS = 30

CHART_WIDTH = 320
CHART_HEIGHT = 96
CHART_TOP = 6  # room above the tallest bar
CHART_BAR_SHARE = 0.7  # of a bar's slot


def can_view_kpis(user: Any) -> bool:
    """Managers: the head of registry (work schedules) and the administrator or whoever reads
    the financial reports."""
    return has_capability(user, Capability.MANAGE_WORK_SCHEDULE) or has_capability(
        user, Capability.VIEW_FINANCIAL_REPORT
    )


class KpiParamError(Exception):
    """A query-string value the dashboard cannot use; ``field`` names the parameter."""

    def __init__(self, code: str, message: str, *, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class KpiParams:
    organization: Organization
    branch: Branch | None
    branches: tuple[Branch, ...]
    period: KpiPeriod

    @property
    def time_zone(self) -> str:
        return self.branch.time_zone if self.branch is not None else self.organization.time_zone

    def scope(self) -> KpiScope:
        return KpiScope(
            organization_id=self.organization.pk,
            branch_ids=tuple(branch.pk for branch in self.branches),
            time_zone=self.time_zone,
            period=self.period,
            calls_without_branch=self.branch is None,
        )


def _date(data: Mapping[str, str], name: str, default: datetime.date) -> datetime.date:
    value = (data.get(name) or "").strip()
    if not value:
        return default
    try:
        parsed = parse_date(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise KpiParamError(
            "invalid_date",
            _("The parameter “%(field)s”: “%(value)s” is not a date (YYYY-MM-DD).")
            % {"field": name, "value": value},
            field=name,
        )
    return parsed


def kpi_params_from(
    *, data: Mapping[str, str], visible: Sequence[Branch], now: datetime.datetime | None = None
) -> KpiParams:
    """Read ``from``, ``to`` (local dates, both included) and ``branch`` (a public id, optional).

    ``visible`` are the branches the actor works in. Without a branch the figures cover all of
    them, which must belong to one organization. The period defaults to the last
    ``DEFAULT_DAYS`` days up to today in the branch's (or the organization's) time zone, and is at
    most ``MAX_PERIOD_DAYS`` long.
    """
    branch_value = (data.get("branch") or "").strip()
    branch: Branch | None = None
    if branch_value:
        branch = next((b for b in visible if str(b.public_id) == branch_value.lower()), None)
        if branch is None:
            raise KpiParamError(
                "unknown_branch",
                _("The parameter “%(field)s” names an unknown branch “%(value)s”.")
                % {"field": "branch", "value": branch_value},
                field="branch",
            )
        organization = branch.organization
        branches: tuple[Branch, ...] = (branch,)
    else:
        organizations = {b.organization_id: b.organization for b in visible}
        if len(organizations) != 1:
            raise KpiParamError(
                "branch_required",
                _("The parameter “%(field)s” is required: you work in several organizations.")
                % {"field": "branch"}
                if organizations
                else _("You work in no branch whose figures could be shown."),
                field="branch",
            )
        (organization,) = organizations.values()
        branches = tuple(visible)
    zone = branch.zone if branch is not None else Branch(time_zone=organization.time_zone).zone
    today = timezone.localtime(now or timezone.now(), zone).date()
    since = _date(data, "from", today - datetime.timedelta(days=DEFAULT_DAYS - 1))
    until = _date(data, "to", today)
    if until < since:
        raise KpiParamError(
            "invalid_period",
            _("The parameter “%(field)s” (%(value)s) is before the period's start (%(since)s).")
            % {"field": "to", "value": until.isoformat(), "since": since.isoformat()},
            field="to",
        )
    if (until - since).days >= MAX_PERIOD_DAYS:
        raise KpiParamError(
            "period_too_long",
            _("The period from %(since)s to %(value)s is longer than %(limit)d days.")
            % {"since": since.isoformat(), "value": until.isoformat(), "limit": MAX_PERIOD_DAYS},
            field="to",
        )
    return KpiParams(organization, branch, branches, KpiPeriod(since, until))


# --- presentation ------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """A duration as a person reads it: seconds, minutes, hours or days, the two largest units."""
    total = round(abs(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return _("%(days)d d %(hours)d h") % {"days": days, "hours": hours}
    if hours:
        return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}
    if minutes:
        return _("%(minutes)d min %(seconds)d s") % {"minutes": minutes, "seconds": secs}
    return _("%(seconds)d s") % {"seconds": secs}


def format_value(kind: str, value: float | None) -> str:
    if value is None:
        return "—"
    if kind == SHARE:
        return _("%(value)s %%") % {"value": number_format(value * 100, 1)}
    if kind == DURATION:
        return format_duration(value)
    return number_format(round(value), 0, force_grouping=True)


def _signed(text: str, change: float) -> str:
    if change > 0:
        return f"+{text}"
    if change < 0:
        return f"−{text}"
    return text


def _shown_change(metric: Metric) -> float | None:
    """The change rounded as the page shows it (a tenth of a share point, whole seconds or
    calls), so that a change too small to show reads as none rather than as "−0.0"."""
    change = metric.change
    if change is None:
        return None
    if metric.kind == SHARE:
        return round(change * 100, 1) / 100
    return float(round(change))


def format_change(metric: Metric) -> str:
    """The change against the previous period: share points, a duration, or a count with its
    percentage."""
    change = _shown_change(metric)
    if change is None:
        return "—"
    if metric.kind == SHARE:
        points = number_format(abs(change) * 100, 1)
        return _signed(_("%(value)s pp") % {"value": points}, change)
    if metric.kind == DURATION:
        return _signed(format_duration(change), change)
    text = _signed(number_format(abs(round(change)), 0, force_grouping=True), change)
    relative = metric.relative_change
    if relative is None:
        return text
    percent = _signed(number_format(abs(relative) * 100, 1), round(relative, 3))
    return _("%(change)s (%(percent)s %%)") % {"change": text, "percent": percent}


def _verdict(metric: Metric) -> str:
    """``better``, ``worse`` or ``same``: the colour of the change."""
    change = _shown_change(metric)
    if not change or metric.lower_is_better is None:
        return "same"
    return "better" if (change < 0) == metric.lower_is_better else "worse"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Chart:
    """An SVG chart in a ``CHART_WIDTH`` × ``CHART_HEIGHT`` view box: the period as bars, the
    previous period as a line over the same days (one polyline per unbroken run)."""

    width: int
    height: int
    bars: list[Bar]
    previous_lines: list[str]
    previous_points: list[tuple[float, float, str]]
    baseline: float
    summary: str


def _bucket_label(start: datetime.date, end: datetime.date) -> str:
    if start == end:
        return date_format(start, "SHORT_DATE_FORMAT")
    return _("%(start)s to %(end)s") % {
        "start": date_format(start, "SHORT_DATE_FORMAT"),
        "end": date_format(end, "SHORT_DATE_FORMAT"),
    }


def build_chart(metric: Metric, period: KpiPeriod) -> Chart:
    """Geometry of the bars and the comparison line, with a tooltip for each day or week."""
    starts = period.bucket_starts()
    ends = period.bucket_ends()
    previous_starts = period.previous.bucket_starts()
    previous_ends = period.previous.bucket_ends()
    values = [v for v in (*metric.current_series, *metric.previous_series) if v is not None]
    top = max(values, default=0.0) or 1.0
    slot = CHART_WIDTH / max(len(starts), 1)
    usable = CHART_HEIGHT - CHART_TOP

    def y_of(value: float) -> float:
        return round(CHART_HEIGHT - usable * value / top, 2)

    bars = []
    for index, value in enumerate(metric.current_series):
        if value is None:
            continue
        y = y_of(value)
        label = _("%(when)s: %(value)s") % {
            "when": _bucket_label(starts[index], ends[index]),
            "value": format_value(metric.kind, value),
        }
        bars.append(
            Bar(
                x=round(index * slot + slot * (1 - CHART_BAR_SHARE) / 2, 2),
                y=y,
                width=round(slot * CHART_BAR_SHARE, 2),
                height=round(CHART_HEIGHT - y, 2),
                label=label,
            )
        )
    lines: list[str] = []
    points: list[tuple[float, float, str]] = []
    run: list[str] = []
    for index, value in enumerate(metric.previous_series):
        if value is None:
            if len(run) > 1:
                lines.append(" ".join(run))
            run = []
            continue
        x = round(index * slot + slot / 2, 2)
        y = y_of(value)
        run.append(f"{x},{y}")
        label = _("%(when)s: %(value)s") % {
            "when": _bucket_label(previous_starts[index], previous_ends[index]),
            "value": format_value(metric.kind, value),
        }
        points.append((x, y, label))
    if len(run) > 1:
        lines.append(" ".join(run))
    summary = _("%(title)s by %(step)s: bars for the period, a line for the previous period.") % {
        "title": metric.title,
        "step": _("day") if period.step_days == 1 else _("week"),
    }
    return Chart(CHART_WIDTH, CHART_HEIGHT, bars, lines, points, CHART_HEIGHT, summary)


def _base_text(metric: Metric) -> str:
    """What the current value rests on, in words."""
    figure = metric.current
    texts = {
        "no_show_rate": _("%(part)s no-shows of %(base)s ended visits"),
        "confirmed_within_24h": _("%(part)s confirmed of %(base)s reminded visits"),
        "online_share": _("%(part)s online of %(base)s bookings"),
        "hold_to_booking": _("over %(base)s desk bookings with a hold"),
        "cancellation_to_rebooking": _("%(part)s rebooked of %(base)s cancellations"),
        "administrative_calls": _("%(base)s calls"),
    }
    return texts[metric.code] % {
        "part": number_format(figure.part or 0, 0, force_grouping=True),
        "base": number_format(figure.base, 0, force_grouping=True),
    }


def _rows(metric: Metric, period: KpiPeriod) -> list[dict[str, str]]:
    """The chart's figures as a table, for readers who do not see the chart."""
    starts, ends = period.bucket_starts(), period.bucket_ends()
    previous_starts, previous_ends = period.previous.bucket_starts(), period.previous.bucket_ends()
    return [
        {
            "when": _bucket_label(starts[index], ends[index]),
            "value": format_value(metric.kind, metric.current_series[index]),
            "previous_when": _bucket_label(previous_starts[index], previous_ends[index]),
            "previous": format_value(metric.kind, metric.previous_series[index]),
        }
        for index in range(period.buckets)
    ]


def metric_card(metric: Metric, period: KpiPeriod) -> dict[str, Any]:
    return {
        "code": metric.code,
        "title": metric.title,
        "definition": metric.definition,
        "value": format_value(metric.kind, metric.current.value),
        "previous": format_value(metric.kind, metric.previous.value),
        "change": format_change(metric),
        "verdict": _verdict(metric),
        "base": _base_text(metric),
        "chart": build_chart(metric, period),
        "rows": _rows(metric, period),
        "breakdown": [
            {
                "key": row.key,
                "label": row.label,
                "current": number_format(row.current, 0, force_grouping=True),
                "previous": number_format(row.previous, 0, force_grouping=True),
            }
            for row in metric.breakdown
        ],
        "is_count": metric.kind == COUNT,
    }


@require_GET
@requires(can_view_kpis)
def kpi_page(request: HttpRequest) -> HttpResponse:
    """The period and branch form, then one card per metric with the previous period beside."""
    visible = list(branch_list(actor=request.user).order_by("organization__short_name", "name"))
    values = {name: (request.GET.get(name) or "").strip() for name in ("from", "to", "branch")}
    context: dict[str, Any] = {"branches": visible, "values": values}
    try:
        params = kpi_params_from(data=request.GET, visible=visible)
    except KpiParamError as error:
        context.update(error=error.message, error_field=error.field)
        return render(request, TEMPLATE, context, status=400)
    period = params.period
    metrics = kpi_dashboard(params.scope())
    context.update(
        params=params,
        period=period,
        previous=period.previous,
        step_is_day=period.step_days == 1,
        cards=[metric_card(metric, period) for metric in metrics],
        values={
            "from": period.since.isoformat(),
            "to": period.until.isoformat(),
            "branch": str(params.branch.public_id) if params.branch else "",
        },
    )
    return render(request, TEMPLATE, context)
