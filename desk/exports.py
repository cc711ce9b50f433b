"""The appointment list as an Excel workbook (.xlsx) for the desk's managers and the call centre.

The workbook is written in openpyxl's write-only mode: rows go to a temporary file as they are
read, so tens of thousands of appointments do not sit in memory as cell objects. Dates and times
are real Excel values in the branch's local time (a spreadsheet sorts and filters them), the
header is frozen and every column has a width that fits what it holds.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from django.utils import translation
from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from scheduling.models import Appointment

from .lists import appointment_row

DATE_FORMAT = "DD.MM.YYYY"
TIME_FORMAT = "HH:MM"
# Column widths in characters, in the order of ``_headers``.
COLUMN_WIDTHS = (12, 8, 28, 14, 36, 14, 20, 44, 16, 16, 20, 40)
SHEET_TITLE_LENGTH = 31  # Excel's limit


def _headers() -> list[str]:
    return [
        _("Date"),
        _("Time"),
        _("Doctor"),
        _("Room"),
        _("Patient"),
        _("Card number"),
        _("Phone"),
        _("Services"),
        _("Status"),
        _("Booking type"),
        _("Communication status"),
        _("Note"),
    ]


def appointments_xlsx(
    appointments: Iterable[Appointment], *, language: str, limit_message: str = ""
) -> bytes:
    """The appointments as an .xlsx file, headed and labelled in ``language``.

    ``appointments`` come from ``desk.lists.appointment_search`` (their prefetches are read, so
    a queryset's ``iterator(chunk_size=...)`` streams without a query per row). A non-empty
    ``limit_message`` is written under the last row, to say the list was cut short.
    """
    with translation.override(language):
        workbook = Workbook(write_only=True)
        sheet: WriteOnlyWorksheet = workbook.create_sheet(
            title=_("Appointments")[:SHEET_TITLE_LENGTH]
        )
        for index, width in enumerate(COLUMN_WIDTHS, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        bold = Font(bold=True)
        header = []
        for title in _headers():
            cell = WriteOnlyCell(sheet, value=title)
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        wrap = Alignment(wrap_text=True, vertical="top")
        for appointment in appointments:
            row = appointment_row(appointment)
            date = WriteOnlyCell(sheet, value=row.starts.date())
            date.number_format = DATE_FORMAT
            time = WriteOnlyCell(sheet, value=row.starts.time().replace(tzinfo=None))
            time.number_format = TIME_FORMAT
            note = WriteOnlyCell(sheet, value=appointment.note)
            note.alignment = wrap
            room = appointment.room
            sheet.append(
                [
                    date,
                    time,
                    appointment.doctor.name if appointment.doctor else "",
                    f"{room.number} {room.name}".strip() if room else "",
                    row.patient_name,
                    ", ".join(row.card_numbers),
                    ", ".join(row.phones),
                    "; ".join(row.services),
                    row.status,
                    row.booking_type,
                    row.communication_status,
                    note,
                ]
            )
        if limit_message:
            message = WriteOnlyCell(sheet, value=limit_message)
            message.font = Font(italic=True)
            sheet.append([])
            sheet.append([message])
        buffer = io.BytesIO()
        workbook.save(buffer)
    return buffer.getvalue()
