"""Text messages the portal sends a patient's phone: the booking confirmation with its signed
link (channel ``portal.booking``) and, through ``codes``, one-time codes.

Messages go through the outbox and out as SMS through the messaging provider. Without one,
``phone_text_deliver`` writes them to the log in demo mode (``CLINIC_DEMO_MODE``) and otherwise
keeps them waiting (the relay retries them), so none is lost.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import formats
from django.utils.translation import gettext as _

from clinic.outbox.models import OutboxMessage
from clinic.outbox.registry import channel_register
from clinic.outbox.services import outbox_enqueue
from scheduling.models import Appointment

logger = logging.getLogger(__name__)

BOOKING_CHANNEL = "portal.booking"


def phone_text_deliver(message: OutboxMessage) -> None:
    """Outbox handler of the portal's text channels: an SMS through the messaging provider when
    one is configured; otherwise the demo writes it to the log, and a real installation keeps it
    queued (the relay retries) until a provider is set up."""
    from integrations.messaging import Channel, OutgoingMessage, ProviderRejected
    from messaging.sender import providers

    provider = providers().get(Channel.SMS)
    if provider is not None:
        try:
            provider.send(
                OutgoingMessage(
                    to=message.payload["to"],
                    body=message.payload["text"],
                    channel=Channel.SMS,
                    idempotency_key=f"outbox-{message.pk}",
                )
            )
        except ProviderRejected as refusal:
            # Sending again gives the same answer: keep the reason and stop.
            logger.warning("The text to %s was refused: %s", message.payload["to"], refusal)
        return
    if settings.DEMO_MODE:
        logger.warning(
            "Demo mode: message to %s: %s", message.payload["to"], message.payload["text"]
        )
        return
    raise ConnectionError("No messaging provider is configured for SMS.")


def booking_confirmation_queue(*, appointment: Appointment, phone: str, link: str) -> None:
    """Queue the confirmation of a portal booking: when, whom, where, and the link that shows
    or cancels it without logging in. Times are the branch's local times."""
    starts_at = appointment.starts_at.astimezone(appointment.branch.zone)
    text = _(
        "You are booked at %(clinic)s: %(when)s, %(doctor)s, %(address)s. "
        "To see or cancel the visit: %(link)s"
    ) % {
        "clinic": appointment.branch.name,
        "when": f"{formats.date_format(starts_at, 'DATE_FORMAT')}, {starts_at:%H:%M}",
        "doctor": appointment.doctor.name if appointment.doctor is not None else "",
        "address": appointment.branch.address,
        "link": link,
    }
    outbox_enqueue(
        channel=BOOKING_CHANNEL,
        payload={"to": phone, "text": text, "appointment": str(appointment.public_id)},
        subject=f"booking {appointment.public_id}",
    )


def notice_channels_register() -> None:
    channel_register(BOOKING_CHANNEL, phone_text_deliver)
