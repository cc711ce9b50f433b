"""Non-fiscal slips (a payment slip, a queue ticket) on an ESC/POS receipt printer.

Text is printed in code page CP866 (``ESC t 17`` on Epson-compatible printers), the one
Russian-market printers ship with, so Cyrillic comes out as letters rather than question marks.
Characters CP866 lacks print as ``?``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils.translation import gettext as _
from escpos.escpos import Escpos
from escpos.exceptions import DeviceNotFoundError
from escpos.printer import Dummy, Network

from devices.fiscal.base import DeviceUnavailable

__all__ = ["print_slip"]

DEFAULT_WIDTH = 48
DEFAULT_CODEPAGE = "CP866"
DEFAULT_PORT = 9100


class _RecordingNetwork(Network):
    """A network printer that keeps a copy of every byte it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = bytearray()

    def _raw(self, msg: bytes) -> None:
        super()._raw(msg)
        self.sent += msg


def print_slip(
    config: Mapping[str, Any],
    title: str,
    lines: Sequence[tuple[str, str]],
    footer: str = "",
) -> bytes:
    """Print a slip and return the exact bytes sent to the printer.

    ``config`` is ``{"printer": "network", "host": ..., "port": 9100}`` (``printer`` may be left
    out when ``host`` is given) or ``{"printer": "dummy"}``, which prints nowhere and only returns
    the bytes. Optional: ``width`` (characters per line, 48), ``codepage`` (``CP866``),
    ``profile`` (a python-escpos printer profile), ``timeout`` (seconds, 10). An unreachable
    printer raises ``DeviceUnavailable``; a config that names no printer raises ``ValueError``.
    """
    kind = config.get("printer") or ("network" if config.get("host") else "")
    width = int(config.get("width", DEFAULT_WIDTH))
    codepage = str(config.get("codepage", DEFAULT_CODEPAGE))
    profile = config.get("profile")
    if kind == "dummy":
        dummy = Dummy(profile=profile)
        _compose(dummy, title, lines, footer, width=width, codepage=codepage)
        return bytes(dummy.output)
    if kind == "network":
        host = config.get("host")
        if not host:
            raise ValueError(_("A network slip printer needs the 'host' setting."))
        port = int(config.get("port", DEFAULT_PORT))
        printer = _RecordingNetwork(
            host=str(host), port=port, timeout=float(config.get("timeout", 10)), profile=profile
        )
        try:
            printer.open()
            _compose(printer, title, lines, footer, width=width, codepage=codepage)
        except (DeviceNotFoundError, OSError) as error:
            raise DeviceUnavailable(
                _("The slip printer %(host)s:%(port)s cannot be reached: %(error)s")
                % {"host": host, "port": port, "error": error}
            ) from error
        finally:
            printer.close()
        return bytes(printer.sent)
    raise ValueError(_("Unknown slip printer %(kind)r: use 'network' or 'dummy'.") % {"kind": kind})


def _compose(
    printer: Escpos,
    title: str,
    lines: Sequence[tuple[str, str]],
    footer: str,
    *,
    width: int,
    codepage: str,
) -> None:
    printer.hw("INIT")
    printer.charcode(codepage)
    printer.set(align="center", bold=True, double_height=True)
    for row in textwrap.wrap(title, width) or [""]:
        printer.textln(row)
    printer.set(align="left", bold=False, normal_textsize=True)
    printer.textln("-" * width)
    for label, value in lines:
        for row in _rows(label, value, width):
            printer.textln(row)
    if footer:
        printer.textln("-" * width)
        printer.set(align="center")
        for paragraph in footer.splitlines():
            for row in textwrap.wrap(paragraph, width) or [""]:
                printer.textln(row)
    printer.cut()


def _rows(label: str, value: str, width: int) -> list[str]:
    """``label ....... value`` on one line when both fit, otherwise the label wrapped and the
    value right-aligned below it."""
    gap = width - len(label) - len(value)
    if gap >= 1:
        return [label + " " * gap + value]
    return [
        *(textwrap.wrap(label, width) or [""]),
        *(row.rjust(width) for row in textwrap.wrap(value, width)),
    ]
