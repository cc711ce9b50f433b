"""Demo data of patient messaging: each branch's senders and quiet hours, Russian and English
templates for SMS and WhatsApp, and the usual rules — a confirmation on booking, a reminder the
day before that asks to confirm, one two hours before, and the waitlist's offers.

Called by ``clinic.core.demo``. Idempotent: once the demo rules exist, nothing changes.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import transaction

from clinic.core.models import Branch, Organization
from scheduling.models import CommunicationStatus

from .models import BranchSender, MessageChannel, MessageTemplate, ReminderRule, RuleEvent

TEMPLATES: dict[str, dict[str, str]] = {
    "booked": {
        "ru": "{first_name}, вы записаны: {date} в {time}, {doctor}, {branch_address}. "
        "Посмотреть или отменить: {cancel_link}",
        "en": "{first_name}, you are booked: {date} at {time}, {doctor}, {branch_address}. "
        "To see or cancel: {cancel_link}",
    },
    "reminder": {
        "ru": "{first_name}, напоминаем о приёме {date} в {time}, {doctor}, {branch_address}. "
        "Ответьте 1, если придёте, или 2, чтобы отменить.",
        "en": "{first_name}, a reminder of your visit on {date} at {time}, {doctor}, "
        "{branch_address}. Reply 1 to confirm or 2 to cancel.",
    },
    "soon": {
        "ru": "{first_name}, ждём вас сегодня в {time}, кабинет {room}. {branch_phone}",
        "en": "{first_name}, we expect you today at {time}, room {room}. {branch_phone}",
    },
    "next": {
        "ru": "{first_name}, следующий приём сегодня в {time}: кабинет {room}, {doctor}.",
        "en": "{first_name}, your next visit today is at {time}: room {room}, {doctor}.",
    },
    "waitlist": {
        "ru": "{first_name}, освободилось время {slot_date} в {slot_time}, {doctor}. "
        "Позвоните {branch_phone}, чтобы записаться.",
        "en": "{first_name}, a time is free on {slot_date} at {slot_time}, {doctor}. "
        "Call {branch_phone} to book it.",
    },
}


def messaging_demo_exists(organization: Organization) -> bool:
    return ReminderRule.objects.filter(organization=organization).exists()


@transaction.atomic
def messaging_demo_load(organization: Organization) -> bool:
    """Create the demo's messaging settings unless they exist; True when something was made."""
    if messaging_demo_exists(organization):
        return False
    for number, branch in enumerate(
        Branch.objects.filter(organization=organization).order_by("pk"), start=1
    ):
        BranchSender.objects.get_or_create(
            branch=branch,
            defaults={
                "sms_from": f"+7495000000{number}",
                "whatsapp_from": f"+7495000001{number}",
                "email_from": "",
            },
        )
    for code, texts in TEMPLATES.items():
        for language, body in texts.items():
            for channel in (MessageChannel.SMS, MessageChannel.WHATSAPP):
                MessageTemplate.objects.create(
                    organization=organization,
                    code=code,
                    name=code,
                    channel=channel,
                    language=language,
                    body=body,
                )
    both = [MessageChannel.WHATSAPP, MessageChannel.SMS]
    rules: list[tuple[str, str, str, dict[str, Any]]] = [
        ("Подтверждение записи", RuleEvent.BOOKED, "booked", {}),
        (
            "Напоминание накануне",
            RuleEvent.DAYS_BEFORE,
            "reminder",
            {
                "offset_days": 1,
                "send_time": datetime.time(18, 0),
                "asks_to_confirm": True,
                "sets_communication_status": CommunicationStatus.REMINDED,
            },
        ),
        ("За два часа", RuleEvent.MINUTES_BEFORE, "soon", {"offset_minutes": 120}),
        ("Предложение из листа ожидания", RuleEvent.WAITLIST_OFFER, "waitlist", {}),
        ("Куда идти дальше", RuleEvent.NEXT_VISIT, "next", {}),
    ]
    for name, event, template_code, extra in rules:
        ReminderRule.objects.create(
            organization=organization,
            name=name,
            event=event,
            template_code=template_code,
            channels=both,
            **extra,
        )
    return True
