"""Non-fiscal slips reach an ESC/POS printer on the network byte for byte, in CP866."""

from __future__ import annotations

import pytest

from devices.escpos_slip import print_slip
from devices.fiscal import DeviceUnavailable

from .conftest import free_port
from .escpos_capture import EscposCapture

INIT = b"\x1b@"
CP866 = b"\x1bt\x11"
FULL_CUT = b"\x1dV\x00"
LINES = [("Пациент", "Петров Пётр Петрович"), ("Сумма", "1500.00"), ("Оплата", "наличными")]


def test_a_slip_reaches_the_network_printer(printer: EscposCapture) -> None:
    port = printer.server_address[1]

    sent = print_slip(
        {"printer": "network", "host": "127.0.0.1", "port": port},
        "Квитанция об оплате",
        LINES,
        footer="Спасибо! Чек придёт на e-mail.",
    )

    assert printer.connection_closed.wait(timeout=10)
    assert printer.received == [sent]
    assert sent.startswith(INIT + CP866)
    assert "Квитанция об оплате".encode("cp866") in sent
    assert ("Сумма" + " " * 36 + "1500.00").encode("cp866") in sent
    assert ("Пациент" + " " * 21 + "Петров Пётр Петрович").encode("cp866") in sent
    assert "Спасибо! Чек придёт на e-mail.".encode("cp866") in sent
    assert sent.endswith(FULL_CUT)


def test_a_host_alone_means_a_network_printer(printer: EscposCapture) -> None:
    sent = print_slip({"host": "127.0.0.1", "port": printer.server_address[1]}, "Талон", [])

    assert printer.connection_closed.wait(timeout=10)
    assert printer.received == [sent]
    assert "Талон".encode("cp866") in sent


def test_the_dummy_printer_returns_the_same_bytes_as_the_network_one(
    printer: EscposCapture,
) -> None:
    network = print_slip(
        {"printer": "network", "host": "127.0.0.1", "port": printer.server_address[1]},
        "Квитанция об оплате",
        LINES,
    )

    dummy = print_slip({"printer": "dummy"}, "Квитанция об оплате", LINES)

    assert dummy == network


def test_a_long_line_wraps_with_the_value_right_aligned() -> None:
    sent = print_slip(
        {"printer": "dummy", "width": 20},
        "Талон",
        [("Направление на исследование", "Кабинет 214")],
    )

    assert "Направление на\n".encode("cp866") in sent
    assert "исследование\n".encode("cp866") in sent
    assert (" " * 9 + "Кабинет 214\n").encode("cp866") in sent


def test_characters_outside_cp866_print_as_question_marks() -> None:
    sent = print_slip({"printer": "dummy"}, "Итого", [("Сумма", "1500 ₽")])

    assert ("Сумма" + " " * 37 + "1500 ?").encode("cp866") in sent


def test_an_unreachable_printer_is_unavailable() -> None:
    with pytest.raises(DeviceUnavailable):
        print_slip({"printer": "network", "host": "127.0.0.1", "port": free_port()}, "Талон", [])


@pytest.mark.parametrize("config", [{}, {"printer": "usb"}, {"printer": "network"}])
def test_a_config_without_a_usable_printer_is_a_value_error(config: dict) -> None:
    with pytest.raises(ValueError):
        print_slip(config, "Талон", [])
