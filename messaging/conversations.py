"""The conversations inbox: patients' messages the desk answers from the ERP, and the message
lists shown on a patient's page and from an appointment.

A conversation has no branch of its own (the patient writes to a number, not to a branch), so
it belongs to the branches it touches: those whose sender number the patient wrote to and those
the clinic's messages in it were sent for. A conversation that touches no branch (an unknown
number writing to a number no branch sends from) is shown to all of the organization's desk.

A reply is a ``Message`` like any other: written at once with the conversation's channel and
address, marked as written by the receptionist, and sent by the sender within seconds (the send
task is queued when the transaction commits), so its delivery state shows in the thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.errors import DomainError
from clinic.core.models import Branch
from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from clinic.core.selectors import branch_list, organization_list
from patients.models import Person
from scheduling.models import Appointment

from .models import (
    BranchSender,
    Conversation,
    Direction,
    Message,
    MessageChannel,
    MessageState,
)
from .sender import WHATSAPP_WINDOW

MAX_REPLY_LENGTH = 1600  # the longest text an SMS provider sends as one message (10 parts)
THREAD_LIMIT = 200
PATIENT_LIST_LIMIT = 100

FAILED_STATES = frozenset({MessageState.FAILED, MessageState.UNDELIVERED})

# How a message's state is marked (classes of static/css/app.css).
STATE_TAGS: dict[str, str] = {
    MessageState.PLANNED: "tag--muted",
    MessageState.SKIPPED: "tag--warning",
    MessageState.SENDING: "tag--muted",
    MessageState.QUEUED: "",
    MessageState.SENT: "",
    MessageState.DELIVERED: "tag--success",
    MessageState.READ: "tag--success",
    MessageState.FAILED: "tag--danger",
    MessageState.UNDELIVERED: "tag--danger",
    MessageState.RECEIVED: "tag--success",
}


class ConversationError(DomainError):
    """A reply refused, naming the field and why."""


# ---- policies -------------------------------------------------------------------------------


def can_answer_conversations(user: Any) -> bool:
    """Those who book for patients answer them: registrars, the call centre, heads of
    registry."""
    return has_capability(user, Capability.BOOK_APPOINTMENT)


# ---- selectors ------------------------------------------------------------------------------


def _sender_numbers(branch_ids: list[int]) -> list[str]:
    rows = BranchSender.objects.filter(branch_id__in=branch_ids).values_list(
        "sms_from", "whatsapp_from"
    )
    return sorted({number for row in rows for number in row if number})


def _touching(branch_ids: list[int], numbers: list[str]) -> Exists:
    """A conversation has a message sent for one of the branches, or written to their
    numbers."""
    return Exists(
        Message.objects.filter(conversation_id=OuterRef("pk")).filter(
            Q(branch_id__in=branch_ids) | Q(direction=Direction.INBOUND, to__in=numbers)
        )
    )


def conversation_list(
    *, actor: Any, branch: Branch | None = None, waiting_only: bool = True
) -> QuerySet[Conversation]:
    """Conversations of the actor's branches (or of ``branch``, one of them), those waiting
    for an answer first and the latest message from the patient first."""
    branches = branch_list(actor=actor)
    if branch is not None:
        branches = branches.filter(pk=branch.pk)
    branch_ids = list(branches.values_list("pk", flat=True))
    visible = Q(_touching(branch_ids, _sender_numbers(branch_ids)))
    organizations = organization_list(actor=actor)
    if branch is None:
        every_branch = list(
            Branch.objects.filter(organization__in=organizations).values_list("pk", flat=True)
        )
        visible |= ~Q(_touching(every_branch, _sender_numbers(every_branch)))
    queryset = Conversation.objects.filter(organization__in=organizations).filter(visible)
    if waiting_only:
        queryset = queryset.filter(needs_answer=True)
    last_text = (
        Message.objects.filter(conversation_id=OuterRef("pk"), direction=Direction.INBOUND)
        .order_by("-created_at", "-pk")
        .values("body")[:1]
    )
    return (
        queryset.select_related("patient")
        .annotate(last_text=Subquery(last_text))
        .order_by("-needs_answer", F("last_inbound_at").desc(nulls_last=True), "-pk")
    )


def conversation_get_for_actor(*, actor: Any, public_id: Any) -> Conversation:
    """One conversation the actor may see, or 404 (another branch's looks like none)."""
    found = conversation_list(actor=actor, waiting_only=False).filter(public_id=public_id).first()
    if found is None:
        raise Http404
    return found


def conversation_messages(conversation: Conversation) -> list[Message]:
    """The thread, oldest first: what the patient wrote and was answered, and the clinic's
    messages sent to the same address on the same channel (the reminder a reply is about)."""
    thread = Q(conversation=conversation)
    if conversation.patient_id is not None:
        thread |= Q(
            patient_id=conversation.patient_id,
            direction=Direction.OUTBOUND,
            channel=conversation.channel,
            to=conversation.address,
        )
    latest = list(
        Message.objects.filter(thread)
        .select_related("rule", "sent_by", "appointment")
        .order_by("-created_at", "-pk")[:THREAD_LIMIT]
    )
    latest.reverse()
    return latest


def patient_messages(person: Person) -> list[Message]:
    """The latest messages to and from a patient, newest first."""
    return list(
        Message.objects.filter(patient=person)
        .select_related("rule", "sent_by", "appointment", "conversation")
        .order_by("-created_at", "-pk")[:PATIENT_LIST_LIMIT]
    )


def appointment_messages(appointment: Appointment) -> list[Message]:
    """The messages about one visit (reminders, answers, rating requests), newest first."""
    return list(
        Message.objects.filter(appointment=appointment)
        .select_related("rule", "sent_by", "conversation")
        .order_by("-created_at", "-pk")
    )


def patient_conversations(person: Person) -> list[Conversation]:
    return list(
        Conversation.objects.filter(patient=person).order_by(
            "-needs_answer", F("last_inbound_at").desc(nulls_last=True), "-pk"
        )
    )


@dataclass(frozen=True)
class MessageRow:
    """A message as the lists show it: its state's mark and whether it failed."""

    message: Message
    tag: str
    failed: bool
    skipped: bool

    @property
    def inbound(self) -> bool:
        return self.message.direction == Direction.INBOUND


def message_rows(messages: list[Message]) -> list[MessageRow]:
    return [
        MessageRow(
            message=message,
            tag=STATE_TAGS.get(message.state, ""),
            failed=message.state in FAILED_STATES,
            skipped=message.state == MessageState.SKIPPED,
        )
        for message in messages
    ]


def whatsapp_window_closed(conversation: Conversation) -> bool:
    """WhatsApp delivers free text only within 24 hours of the patient's last message."""
    if conversation.channel != MessageChannel.WHATSAPP:
        return False
    last = conversation.last_inbound_at
    return last is None or last < timezone.now() - WHATSAPP_WINDOW


# ---- services -------------------------------------------------------------------------------


def _reply_branch_id(actor: Any, conversation: Conversation) -> int | None:
    """The actor's branch the conversation belongs to: the one its latest message was sent
    for, else the one whose number the patient wrote to."""
    branch_ids = list(branch_list(actor=actor).values_list("pk", flat=True))
    latest = (
        Message.objects.filter(conversation=conversation, branch_id__in=branch_ids)
        .order_by("-created_at", "-pk")
        .values_list("branch_id", flat=True)
        .first()
    )
    if latest is not None:
        return int(latest)
    written_to = list(
        Message.objects.filter(conversation=conversation, direction=Direction.INBOUND)
        .values_list("to", flat=True)
        .distinct()
    )
    sender = (
        BranchSender.objects.filter(branch_id__in=branch_ids)
        .filter(Q(sms_from__in=written_to) | Q(whatsapp_from__in=written_to))
        .order_by("pk")
        .first()
    )
    return sender.branch_id if sender is not None else None


def _send_soon() -> None:
    from .tasks import send

    send.delay()


def conversation_reply(*, actor: Any, conversation: Conversation, body: str) -> Message:
    """Answer the patient on the conversation's channel; the conversation stops waiting.

    The message is sent by the sender task queued when the transaction commits; its delivery
    state then shows in the thread.
    """
    if not can_answer_conversations(actor):
        raise PermissionDenied
    text = (body or "").strip()
    if not text:
        raise ConversationError(
            "reply_empty", _("Reply: write the text of the message."), field="body"
        )
    if len(text) > MAX_REPLY_LENGTH:
        raise ConversationError(
            "reply_too_long",
            _("Reply: the text is %(length)s characters long; at most %(limit)s can be sent.")
            % {"length": len(text), "limit": MAX_REPLY_LENGTH},
            field="body",
        )
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        message = Message(
            organization_id=locked.organization_id,
            branch_id=_reply_branch_id(actor, locked),
            patient_id=locked.patient_id,
            conversation=locked,
            direction=Direction.OUTBOUND,
            channel=locked.channel,
            to=locked.address,
            body=text,
            state=MessageState.PLANNED,
            due_at=timezone.now(),
            sent_by=actor,
        )
        message.full_clean(
            exclude=[
                "organization",
                "branch",
                "patient",
                "appointment",
                "rule",
                "conversation",
                "fallback_of",
                "sent_by",
            ]
        )
        message.save()
        locked.needs_answer = False
        locked.save(update_fields=["needs_answer", "updated_at"])
        transaction.on_commit(_send_soon)
    return message


def conversation_dismiss(*, actor: Any, conversation: Conversation) -> Conversation:
    """The patient's message needs no answer (a "thank you"): it leaves the inbox."""
    if not can_answer_conversations(actor):
        raise PermissionDenied
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        locked.needs_answer = False
        locked.save(update_fields=["needs_answer", "updated_at"])
    return locked
