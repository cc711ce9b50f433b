"""The accountant's revenue report page and its CSV and Excel exports.

Thin: the query string is read by ``report_params_from`` (a value that cannot be used answers
400 with a message naming the parameter and quoting the value), the figures come from
``billing.reports``. Both exports stream: the CSV is produced chunk by chunk from a server-side
cursor while the client downloads it; the workbook is written row by row in openpyxl's
write-only mode to a temporary file, which is then sent as a file.
"""

from __future__ import annotations

import csv
import datetime
import io
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from clinic.core.models import Branch, Organization
from clinic.core.selectors import branch_list
from patients.views import requires

from .errors import BillingError
from .params import date_param
from .policies import can_view_financial_reports
from .reports import DETAIL_COLUMNS, GROUPINGS, revenue_line_rows, revenue_report

TEMPLATE = "billing/reports/revenue.html"
MAX_PERIOD_DAYS = 366
EXPORT_CHUNK_ROWS = 2000
XLSX_MAX_ROWS = 1_048_575  # Excel's limit of a sheet, less the header
XLSX_DATE_FORMAT = "DD.MM.YYYY"
XLSX_MONEY_FORMAT = "#,##0.00"
XLSX_COLUMN_WIDTHS = (12, 10, 36, 14, 44, 28, 9, 12, 12, 12, 12)


@dataclass(frozen=True)
class ReportParams:
    """What the report is asked, as read from the query string."""

    organization: Organization
    branch: Branch | None
    since: datetime.date
    until: datetime.date
    group_by: str

    def query(self) -> QueryDict:
        """The parameters as a query string for the export links."""
        query = QueryDict(mutable=True)
        if self.branch is not None:
            query["branch"] = str(self.branch.public_id)
        query["since"] = self.since.isoformat()
        query["until"] = self.until.isoformat()
        query["group"] = self.group_by
        return query

    def selection(self) -> dict[str, Any]:
        return {
            "organization": self.organization,
            "branch": self.branch,
            "since": self.since,
            "until": self.until,
        }


def _date(value: str, *, field: str, default: datetime.date) -> datetime.date:
    return date_param(value, field=field) if value else default


def report_params_from(*, actor: Any, data: Mapping[str, str]) -> ReportParams:
    """Read ``branch`` (optional), ``since``, ``until`` and ``group`` from ``data``.

    Without a branch the report covers every branch of the actor's organization that the actor
    works in; staff of several organizations must name a branch. The period defaults to the
    current month up to today, in the branch's (or organization's) time zone.
    """

    def text(name: str) -> str:
        return (data.get(name) or "").strip()

    visible = branch_list(actor=actor)
    branch_value = text("branch")
    branch: Branch | None = None
    if branch_value:
        branch = next(
            (found for found in visible if str(found.public_id) == branch_value.lower()), None
        )
        if branch is None:
            raise BillingError(
                "unknown_branch",
                _("The parameter “%(field)s” names an unknown branch “%(value)s”.")
                % {"field": "branch", "value": branch_value},
                field="branch",
            )
        organization = branch.organization
    else:
        organizations = {found.organization_id: found.organization for found in visible}
        if len(organizations) != 1:
            raise BillingError(
                "branch_required",
                _("The parameter “%(field)s” is required: you work in several organizations.")
                % {"field": "branch"}
                if organizations
                else _("You work in no branch whose revenue could be shown."),
                field="branch",
            )
        (organization,) = organizations.values()
    zone = branch.zone if branch is not None else organization_zone(organization)
    today = timezone.localtime(timezone.now(), zone).date()
    since = _date(text("since"), field="since", default=today.replace(day=1))
    until = _date(text("until"), field="until", default=today)
    if until < since:
        raise BillingError(
            "invalid_period",
            _("The parameter “%(field)s” (%(value)s) is before the period's start (%(since)s).")
            % {"field": "until", "value": until.isoformat(), "since": since.isoformat()},
            field="until",
        )
    if (until - since).days >= MAX_PERIOD_DAYS:
        raise BillingError(
            "period_too_long",
            _("The period from %(since)s to %(value)s is longer than %(limit)d days.")
            % {"since": since.isoformat(), "value": until.isoformat(), "limit": MAX_PERIOD_DAYS},
            field="until",
        )
    group_by = text("group") or "service"
    if group_by not in GROUPINGS:
        raise BillingError(
            "unknown_grouping",
            _("The parameter “%(field)s” cannot be “%(value)s”; choose one of: %(choices)s.")
            % {"field": "group", "value": group_by, "choices": ", ".join(GROUPINGS)},
            field="group",
        )
    return ReportParams(organization, branch, since, until, group_by)


def organization_zone(organization: Organization) -> Any:
    return Branch(time_zone=organization.time_zone).zone


def _form_context(actor: Any, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "branches": branch_list(actor=actor).order_by("organization__short_name", "name"),
        "groupings": list(GROUPINGS.items()),
        "values": {name: (data.get(name) or "").strip() for name in ("branch", "since", "until")},
        "chosen_group": (data.get("group") or "service").strip(),
    }


@require_GET
@requires(can_view_financial_reports)
def revenue_page(request: HttpRequest) -> HttpResponse:
    """The period/branch/grouping form, the aggregated table and the links to the exports."""
    context = _form_context(request.user, request.GET)
    try:
        params = report_params_from(actor=request.user, data=request.GET)
    except BillingError as error:
        context.update(error=error.message, error_field=error.field)
        return render(request, TEMPLATE, context, status=400)
    report = revenue_report(actor=request.user, group_by=params.group_by, **params.selection())
    context.update(
        params=params,
        report=report,
        total=report.total,
        grouping_label=GROUPINGS[params.group_by],
        values={
            "branch": str(params.branch.public_id) if params.branch else "",
            "since": params.since.isoformat(),
            "until": params.until.isoformat(),
        },
        chosen_group=params.group_by,
        export_query=params.query(),
    )
    return render(request, TEMPLATE, context)


def _export_params(request: HttpRequest) -> ReportParams | HttpResponse:
    try:
        return report_params_from(actor=request.user, data=request.GET)
    except BillingError as error:
        return HttpResponse(error.message, status=400, content_type="text/plain; charset=utf-8")


def _file_name(params: ReportParams, extension: str) -> str:
    return f"revenue-{params.since.isoformat()}-{params.until.isoformat()}.{extension}"


def _headers() -> list[str]:
    return [str(header) for _name, header in DETAIL_COLUMNS]


def _invoice_number(invoice_id: int) -> str:
    return f"{invoice_id:08d}"


def csv_chunks(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    """The CSV text in chunks of ``EXPORT_CHUNK_ROWS`` rows, headed, with a byte-order mark so
    that Excel opens the UTF-8 file with Cyrillic names intact."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(_headers())
    for count, (posted_on, invoice_id, patient, code, name, doctor, *figures) in enumerate(
        rows, start=1
    ):
        writer.writerow(
            [
                posted_on.isoformat(),
                _invoice_number(invoice_id),
                patient or "",
                code,
                name,
                doctor or "",
                *figures,
            ]
        )
        if count % EXPORT_CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _revenue_export_csv(request: HttpRequest) -> HttpResponseBase:
    """Every invoice line of the report as CSV, streamed as it is read from the database."""
    params = _export_params(request)
    if isinstance(params, HttpResponse):
        return params
    rows = revenue_line_rows(actor=request.user, **params.selection())
    response = StreamingHttpResponse(
        csv_chunks(rows.iterator(chunk_size=EXPORT_CHUNK_ROWS)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{_file_name(params, "csv")}"'
    return response


def _money_cell(sheet: WriteOnlyWorksheet, value: Any) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=value)
    cell.number_format = XLSX_MONEY_FORMAT
    return cell


def xlsx_write(rows: Iterable[tuple[Any, ...]], target: Any) -> int:
    """Write the lines as a workbook to the binary file ``target``; returns the rows written.

    Stops at Excel's row limit and says so under the last row: the CSV has no such limit.
    """
    workbook = Workbook(write_only=True)
    sheet: WriteOnlyWorksheet = workbook.create_sheet(title=_("Revenue")[:31])
    for index, width in enumerate(XLSX_COLUMN_WIDTHS, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for title in _headers():
        cell = WriteOnlyCell(sheet, value=title)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    written = 0
    cut_short = False
    for posted_on, invoice_id, patient, code, name, doctor, quantity, *money in rows:
        if written == XLSX_MAX_ROWS:
            cut_short = True
            break
        date = WriteOnlyCell(sheet, value=posted_on)
        date.number_format = XLSX_DATE_FORMAT
        sheet.append(
            [
                date,
                _invoice_number(invoice_id),
                patient or "",
                code,
                name,
                doctor or "",
                quantity,
                *(_money_cell(sheet, value) for value in money),
            ]
        )
        written += 1
    if cut_short:
        sheet.append(
            [
                _("The sheet holds the first %(limit)d lines; export CSV for all of them.")
                % {"limit": XLSX_MAX_ROWS}
            ]
        )
    workbook.save(target)
    return written


def _revenue_export_xlsx(request: HttpRequest) -> HttpResponseBase:
    """Every invoice line of the report as an Excel workbook."""
    params = _export_params(request)
    if isinstance(params, HttpResponse):
        return params
    rows = revenue_line_rows(actor=request.user, **params.selection())
    # Closed by the response once sent, so not a ``with`` block.
    target = tempfile.TemporaryFile()  # noqa: SIM115
    xlsx_write(rows.iterator(chunk_size=EXPORT_CHUNK_ROWS), target)
    target.seek(0)
    return FileResponse(
        target,
        as_attachment=True,
        filename=_file_name(params, "xlsx"),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


# ``requires`` passes the view's response through untouched; its type names ``HttpResponse``
# only, and a streamed response is a ``StreamingHttpResponse``.
revenue_export_csv = require_GET(
    requires(can_view_financial_reports)(_revenue_export_csv)  # type: ignore[arg-type]
)
revenue_export_xlsx = require_GET(
    requires(can_view_financial_reports)(_revenue_export_xlsx)  # type: ignore[arg-type]
)
