"""Filling a template's ``{placeholders}`` with a visit's facts.

Only the names in ``models.PLACEHOLDERS`` exist; a template naming another one is refused when
it is saved (``MessageTemplate.clean``), so sending never meets an unknown name. Braces that do
not wrap a known name are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.utils import formats

from scheduling.models import Appointment

from .models import PLACEHOLDERS

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def unknown_placeholders(text: str) -> list[str]:
    return sorted({name for name in _PLACEHOLDER.findall(text or "") if name not in PLACEHOLDERS})


def render(text: str, params: Mapping[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PLACEHOLDERS:
            return match.group(0)
        return str(params.get(name, ""))

    return _PLACEHOLDER.sub(fill, text or "")


def appointment_params(appointment: Appointment, *, links: Mapping[str, str]) -> dict[str, str]:
    """The facts of a visit as a message shows them: local date and time of its branch."""
    starts_at = appointment.starts_at.astimezone(appointment.branch.zone)
    patient = appointment.patient
    services = ", ".join(service.name for service in appointment.services.all())
    return {
        "first_name": patient.first_name if patient else appointment.primary_first_name,
        "patronymic": patient.patronymic if patient else appointment.primary_patronymic,
        "last_name": patient.last_name if patient else appointment.primary_last_name,
        "date": formats.date_format(starts_at, "DATE_FORMAT"),
        "time": f"{starts_at:%H:%M}",
        "doctor": appointment.doctor.name if appointment.doctor else "",
        "room": appointment.room.name if appointment.room else "",
        "service": services,
        "branch": appointment.branch.name,
        "branch_address": appointment.branch.address,
        "branch_phone": appointment.branch.phone,
        **links,
    }


def sample_params() -> dict[str, str]:
    """What the admin's preview fills a template with."""
    return {
        "first_name": "Мария",
        "patronymic": "Петровна",
        "last_name": "Иванова",
        "date": "12 декабря 2026",
        "time": "10:30",
        "doctor": "Петров И. И.",
        "room": "214",
        "service": "Приём терапевта",
        "branch": "Центральный филиал",
        "branch_address": "Москва, Тверская ул., 1",
        "branch_phone": "+7 495 123-45-67",
        "confirm_link": "https://clinic.example/portal/a/…",
        "cancel_link": "https://clinic.example/portal/a/…",
        "feedback_link": "https://clinic.example/portal/feedback/…",
        "slot_date": "13 декабря 2026",
        "slot_time": "11:00",
        "card_number": "000123",
    }
