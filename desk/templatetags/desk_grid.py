"""The body of the schedule grid, written in Python.

A day of thirty doctors is a couple of thousand cells; through the template engine they cost
well over a second, written here they cost tens of milliseconds. The markup is the one the
grid's script and styles read (see static/js/desk-grid.js): every value is escaped, the
URLs are reversed once per render and filled in per appointment.
"""

from __future__ import annotations

import datetime
import zoneinfo

from django import template
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from scheduling.models import ResourceKind

from ..selectors import ABSENT, BOOKED, BREAK, FREE, HELD, Cell, Grid

register = template.Library()

_ZERO = "00000000-0000-0000-0000-000000000000"


def _marker_labels() -> dict[str, str]:
    return {
        "primary": escape(_("primary")),
        "minor": escape(_("minor")),
        "vip": "VIP",
        "processed": escape(_("processed")),
        "debt": escape(_("debt")),
        "advance": escape(_("advance")),
    }


def _hhmm(moment: datetime.datetime, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


class _Writer:
    def __init__(self, grid: Grid) -> None:
        self.zone = zoneinfo.ZoneInfo(grid.time_zone)
        self.patient_url = reverse("patients:detail", args=[_ZERO])
        self.slip_url = reverse("desk:appointment_slip", args=[_ZERO])
        self.markers = _marker_labels()
        self.held = escape(_("held"))
        self.free = escape(_("Free"))
        # Only a doctor's free time is booked from the grid; a room's or a device's is shown.
        self.bookable = grid.kind == ResourceKind.DOCTOR

    def cell(self, cell: Cell) -> str:
        kind = cell.kind
        if kind == FREE and not self.bookable:
            kind = "vacant"
        attributes = [
            f'rowspan="{cell.rows}"',
            f'class="slot slot--{kind}'
            + (
                f' slot--status-{escape(cell.appointment.status.code)}"'
                if cell.appointment is not None
                else '"'
            ),
            f'data-kind="{kind}"',
            f'data-col="{cell.column}"',
            f'data-starts="{cell.starts_at.astimezone(self.zone).isoformat(timespec="minutes")}"',
        ]
        body = ""
        appointment = cell.appointment
        if appointment is not None and kind == BOOKED:
            public_id = str(appointment.public_id)
            name = escape(appointment.patient_name)
            status = escape(appointment.status.label)
            attributes += [
                f'data-appointment="{public_id}"',
                'draggable="true" tabindex="0"',
                f'data-minutes="{cell.minutes}"',
                f'data-slip-url="{self.slip_url.replace(_ZERO, public_id)}"',
                f'title="{name} · {status}"',
            ]
            if cell.phone:
                attributes.append(f'data-phone="{escape(cell.phone)}"')
            if appointment.patient is not None:
                url = self.patient_url.replace(_ZERO, str(appointment.patient.public_id))
                attributes.append(f'data-patient-url="{url}"')
            names = appointment.service_names  # type: ignore[attr-defined]
            services = escape(", ".join(name for name in names if name))
            markers = "".join(
                f'<span class="marker marker--{m}" data-marker="{m}">{self.markers[m]}</span>'
                for m in cell.markers
            )
            body = (
                f'<span class="slot__time">{_hhmm(appointment.starts_at, self.zone)}–'
                f"{_hhmm(appointment.ends_at, self.zone)}</span>"
                f'<span class="slot__patient">{name}</span>'
                f'<span class="slot__services">{services}</span>'
                f'<span class="slot__status">{status}</span>'
                f'<span class="slot__resize" data-resize aria-hidden="true"></span>{markers}'
            )
        elif kind == FREE:
            attributes.append('tabindex="0"')
            attributes.append(f'aria-label="{self.free} {_hhmm(cell.starts_at, self.zone)}"')
        elif kind == HELD:
            body = (
                f'<span class="slot__time">{_hhmm(cell.starts_at, self.zone)}</span> '
                f'<span class="slot__label">{self.held}</span>'
            )
        elif kind in (BREAK, ABSENT):
            body = f'<span class="slot__label">{escape(cell.label)}</span>'
        return f"<td {' '.join(attributes)}>{body}</td>"


@register.simple_tag
def grid_body(grid: Grid) -> SafeString:
    """The grid's <tbody>: a row per time step, a cell where a cell starts (row spans)."""
    writer = _Writer(grid)
    rows: list[str] = []
    for row in grid.rows:
        cells = "".join(writer.cell(cell) for cell in row.cells if cell is not None)
        rows.append(
            f'<tr data-row="{row.index}" data-minute="{row.minute}">'
            f'<th scope="row" class="schedule-grid__time">{row.label}</th>{cells}</tr>'
        )
    return mark_safe("<tbody>" + "\n".join(rows) + "</tbody>")  # noqa: S308 (escaped above)
