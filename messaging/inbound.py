"""What patients send and what providers report back.

``delivery_report`` applies a delivery status to the message it concerns, never moving a state
backwards, and falls back to the next channel when WhatsApp cannot reach the patient.
``inbound_receive`` files a patient's message in their conversation; a short yes/no answer to
a message that asked to confirm a visit confirms or cancels it (the desk sees the change live
through the scheduling services), and anything else waits in the conversations inbox.
"""

from __future__ import annotations

import datetime
import logging
import re

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations.messaging import DeliveryStatus, InboundMessage, status_advances
from integrations.messaging.twilio_provider import is_channel_undeliverable
from patients.models import PHONE_KINDS, Contact
from scheduling.models import Appointment, AppointmentStatus, CancelReason, CommunicationStatus
from scheduling.services import SchedulingError, appointment_cancel, appointment_set_status

from .feedback import rating_from_reply
from .models import (
    BranchSender,
    Conversation,
    Direction,
    Message,
    MessageChannel,
    MessageState,
)
from .sender import fallback_queue

logger = logging.getLogger(__name__)

YES = {"1", "да", "yes", "y", "д", "ок", "ok", "подтверждаю", "confirm"}
NO = {"2", "нет", "no", "n", "н", "отмена", "cancel", "отменить"}
ANSWER_WINDOW = datetime.timedelta(days=7)
PATIENT_CANCEL_REASON = "patient_request"

_STATE_OF = {
    DeliveryStatus.QUEUED: MessageState.QUEUED,
    DeliveryStatus.SENDING: MessageState.SENDING,
    DeliveryStatus.SENT: MessageState.SENT,
    DeliveryStatus.DELIVERED: MessageState.DELIVERED,
    DeliveryStatus.READ: MessageState.READ,
    DeliveryStatus.FAILED: MessageState.FAILED,
    DeliveryStatus.UNDELIVERED: MessageState.UNDELIVERED,
    DeliveryStatus.CANCELED: MessageState.FAILED,
}


def _recorded(message: Message) -> DeliveryStatus | None:
    try:
        return DeliveryStatus(message.state)
    except ValueError:
        return None  # planned or sending: no report yet


def delivery_report(
    *, sid: str, status: DeliveryStatus, error_code: str | None, reference: str = ""
) -> Message | None:
    """Apply one delivery report. ``reference`` is the message id the sender put in the
    callback URL: it finds the message even when the answer to the send was lost."""
    with transaction.atomic():
        found = (
            Message.objects.select_for_update()
            .filter(provider_id=sid)
            .exclude(provider_id="")
            .first()
        )
        if found is None and reference.isdigit():
            found = Message.objects.select_for_update().filter(pk=int(reference)).first()
        if found is None:
            logger.info("A delivery report for unknown message %s", sid)
            return None
        if not status_advances(_recorded(found), status):
            return found
        found.state = _STATE_OF[status]
        found.provider_id = found.provider_id or sid
        found.error_code = (error_code or "")[:16]
        found.state_changed_at = timezone.now()
        found.save(update_fields=["state", "provider_id", "error_code", "state_changed_at"])
    if (
        status.is_failure
        and found.channel == MessageChannel.WHATSAPP
        and is_channel_undeliverable(error_code)
    ):
        fallback_queue(found)
    return found


def _answer(text: str) -> str:
    words = re.findall(r"\w+", text.strip().lower())
    if len(words) != 1:
        return ""
    if words[0] in YES:
        return "yes"
    if words[0] in NO:
        return "no"
    return ""


def _conversation(parsed: InboundMessage) -> Conversation:
    sender_row = (
        BranchSender.objects.filter(sms_from=parsed.recipient).first()
        or BranchSender.objects.filter(whatsapp_from=parsed.recipient).first()
    )
    organization_id = sender_row.branch.organization_id if sender_row else None
    patients = list(
        Contact.objects.filter(
            kind__in=PHONE_KINDS, value=parsed.sender, person__merged_into__isnull=True
        )
        .values_list("person_id", "person__organization_id")
        .distinct()
    )
    if organization_id is None and patients:
        organization_id = patients[0][1]
    if organization_id is None:
        from clinic.core.models import Organization

        first = Organization.objects.order_by("pk").first()
        if first is None:
            raise ValueError("no organization to file the message under")
        organization_id = first.pk
    ours = [person for person, organization in patients if organization == organization_id]
    conversation, _created = Conversation.objects.get_or_create(
        organization_id=organization_id,
        channel=parsed.channel.value,
        address=parsed.sender,
        defaults={"patient_id": ours[0] if len(ours) == 1 else None},
    )
    return conversation


def inbound_receive(parsed: InboundMessage) -> Message:
    """File the message (once per provider id) and act on a yes/no answer."""
    with transaction.atomic():
        existing = Message.objects.filter(
            direction=Direction.INBOUND, provider_id=parsed.provider_id
        ).first()
        if existing is not None:
            return existing
        conversation = _conversation(parsed)
        now = timezone.now()
        message = Message.objects.create(
            organization_id=conversation.organization_id,
            patient_id=conversation.patient_id,
            conversation=conversation,
            direction=Direction.INBOUND,
            channel=parsed.channel.value,
            to=parsed.recipient,
            body=parsed.body[:4000],
            state=MessageState.RECEIVED,
            due_at=now,
            state_changed_at=now,
            provider_id=parsed.provider_id,
        )
        conversation.last_inbound_at = now
        text = parsed.button_payload or parsed.body
        answered = rating_from_reply(message, text) or _act_on_answer(message, parsed)
        conversation.needs_answer = not answered
        conversation.save(update_fields=["last_inbound_at", "needs_answer", "updated_at"])
    return message


def _asked(parsed: InboundMessage) -> Message | None:
    """The latest message to this address that asked to confirm a visit still ahead."""
    return (
        Message.objects.filter(
            direction=Direction.OUTBOUND,
            to=parsed.sender,
            rule__asks_to_confirm=True,
            appointment__starts_at__gt=timezone.now(),
            state_changed_at__gte=timezone.now() - ANSWER_WINDOW,
        )
        .exclude(state__in=[MessageState.PLANNED, MessageState.SKIPPED])
        .select_related("appointment__status", "appointment__branch")
        .order_by("-state_changed_at")
        .first()
    )


def _act_on_answer(message: Message, parsed: InboundMessage) -> bool:
    answer = _answer(parsed.button_payload or parsed.body)
    if not answer:
        return False
    asked = _asked(parsed)
    if asked is None or asked.appointment is None:
        return False
    appointment = asked.appointment
    message.appointment = appointment
    message.save(update_fields=["appointment"])
    from integrations.website.booking import website_actor

    actor = website_actor()
    if actor is None:
        return False
    try:
        if answer == "yes":
            if appointment.status.code == AppointmentStatus.BOOKED:
                appointment_set_status(
                    actor=actor, appointment=appointment, code=AppointmentStatus.CONFIRMED
                )
            communication = CommunicationStatus.CONFIRMED
            reply = _("Thank you, your visit is confirmed.")
        else:
            reason = (
                CancelReason.objects.filter(code=PATIENT_CANCEL_REASON, is_active=True).first()
                or CancelReason.objects.filter(is_active=True).order_by("pk").first()
            )
            if reason is None:
                return False
            appointment_cancel(
                actor=actor,
                appointment=appointment,
                reason=reason,
                note=_("Cancelled by the patient's reply to a message."),
            )
            communication = CommunicationStatus.DECLINED
            reply = _("Your visit is cancelled. Call us to book another time.")
    except SchedulingError as refusal:
        logger.info("The answer to message %s was not applied: %s", asked.pk, refusal.message)
        return False
    Appointment.objects.filter(pk=appointment.pk).update(
        communication_status=communication, updated_at=timezone.now()
    )
    Message.objects.create(
        organization_id=message.organization_id,
        branch_id=appointment.branch_id,
        patient_id=message.patient_id,
        appointment=appointment,
        conversation=message.conversation,
        channel=parsed.channel.value,
        to=parsed.sender,
        body=reply,
        due_at=timezone.now(),
    )
    return True
