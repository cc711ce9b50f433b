"""Visit ratings: the signed link, recording a rating once per completed visit, a reply of one
digit to a rating request, and the managers' tasks that low ratings open.

A rating comes from the public page the ``{feedback_link}`` opens or from a reply "1"…"5" to a
message of a rule that ``asks_for_rating``. Digits 1 and 2 also answer a rule that
``asks_to_confirm``; the latest message that asked the patient something decides which, so a
rating request sent after a reminder turns "2" into a rating and never into a cancellation.

A rating of ``LOW_RATING`` or lower opens a task for the branch's feedback manager
(``BranchSender.feedback_manager``); the reviews list shows it until a manager closes it with a
note of what was done.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.errors import DomainError
from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from clinic.core.selectors import branch_list
from scheduling.models import Appointment, AppointmentStatus

from .models import (
    LOW_RATING,
    BranchSender,
    Direction,
    Feedback,
    FeedbackSource,
    FeedbackTaskState,
    Message,
    MessageChannel,
    MessageState,
)

SALT = "messaging.feedback"
LINK_MAX_AGE = datetime.timedelta(days=60)
REPLY_WINDOW = datetime.timedelta(days=7)
MAX_COMMENT_LENGTH = 2000
MAX_NOTE_LENGTH = 1000
RATINGS = (1, 2, 3, 4, 5)

_RATING_REPLY = re.compile(r"\s*([1-5])\s*[.!)]?\s*")
# States in which the patient never got the message, so cannot be answering it.
_NOT_RECEIVED = (
    MessageState.PLANNED,
    MessageState.SKIPPED,
    MessageState.SENDING,
    MessageState.FAILED,
    MessageState.UNDELIVERED,
)


class FeedbackError(DomainError):
    """A rating or a task change refused, with the reason for the person at the screen."""


class FeedbackAlreadyGiven(FeedbackError):
    """The visit was rated before: the patient is thanked, nothing changes (HTTP 409)."""

    status_code = 409


class FeedbackNotOpen(FeedbackError):
    """The visit cannot be rated yet (or at all): it is not completed (HTTP 409)."""

    status_code = 409


# ---- the signed link ------------------------------------------------------------------------


def feedback_token(appointment: Appointment) -> str:
    """The token of the visit's rating page: its public id, signed and dated."""
    return signing.dumps(str(appointment.public_id), salt=SALT, compress=True)


def appointment_for_feedback(token: str) -> Appointment | None:
    """The appointment a rating link was signed for, or None for a forged or expired link."""
    try:
        public_id = signing.loads(token, salt=SALT, max_age=LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    return (
        Appointment.objects.select_related("branch", "doctor", "status", "feedback")
        .prefetch_related("services")
        .filter(public_id=public_id)
        .first()
    )


def existing_feedback(appointment: Appointment) -> Feedback | None:
    try:
        return appointment.feedback
    except Feedback.DoesNotExist:
        return None


# ---- policies -------------------------------------------------------------------------------


def _is_active_staff(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    staff = getattr(user, "staff", None)
    return staff is not None and bool(staff.is_active)


def can_review_feedback(user: Any) -> bool:
    """Ratings are read by those who run the front office (``review_feedback``: heads of
    registry and administrators) and by anyone named a branch's feedback manager, who must see
    the tasks given to them."""
    if has_capability(user, Capability.REVIEW_FEEDBACK):
        return True
    return _is_active_staff(user) and BranchSender.objects.filter(feedback_manager=user).exists()


def can_close_feedback_task(user: Any, feedback: Feedback) -> bool:
    """A reviewer who may see the rating closes its task, and only an open one."""
    if feedback.task_state != FeedbackTaskState.OPEN or not can_review_feedback(user):
        return False
    return feedback_list(actor=user).filter(pk=feedback.pk).exists()


# ---- selectors ------------------------------------------------------------------------------


def feedback_list(
    *,
    actor: Any,
    branch: Any = None,
    low_only: bool = False,
    open_only: bool = False,
) -> QuerySet[Feedback]:
    """Ratings of the actor's branches and those whose task is the actor's, newest first."""
    queryset = Feedback.objects.filter(Q(branch__in=branch_list(actor=actor)) | Q(manager=actor))
    if branch is not None:
        queryset = queryset.filter(branch=branch)
    if low_only:
        queryset = queryset.filter(rating__lte=LOW_RATING)
    if open_only:
        queryset = queryset.filter(task_state=FeedbackTaskState.OPEN)
    return queryset.select_related(
        "branch", "patient", "appointment__doctor", "manager", "resolved_by"
    ).order_by("-created_at", "-pk")


def feedback_get_for_actor(*, actor: Any, public_id: Any) -> Feedback:
    """One rating the actor may see, or 404 (another branch's looks like none)."""
    found = feedback_list(actor=actor).filter(public_id=public_id).first()
    if found is None:
        raise Http404
    return found


# ---- services -------------------------------------------------------------------------------


def _checked_rating(rating: Any) -> int:
    try:
        value = int(rating)
    except (TypeError, ValueError):
        value = 0
    if value not in RATINGS:
        raise FeedbackError("rating_invalid", _("Choose a rating from 1 to 5."), field="rating")
    return value


def feedback_record(
    *,
    appointment: Appointment,
    rating: Any,
    source: str,
    comment: str = "",
    message: Message | None = None,
) -> Feedback:
    """Record the rating of a completed visit, once; a low one opens the manager's task.

    The appointment row is locked while the rating is written, so two answers sent at once (the
    page submitted twice, or the page and a reply) record one rating and refuse the other.
    """
    value = _checked_rating(rating)
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_LENGTH:
        raise FeedbackError(
            "comment_too_long",
            _("The comment is %(length)s characters long; at most %(limit)s are kept.")
            % {"length": len(comment), "limit": MAX_COMMENT_LENGTH},
            field="comment",
        )
    with transaction.atomic():
        locked = (
            Appointment.objects.select_for_update(of=("self",))
            .select_related("status")
            .get(pk=appointment.pk)
        )
        if Feedback.objects.filter(appointment=locked).exists():
            raise FeedbackAlreadyGiven(
                "already_rated", _("This visit has already been rated. Thank you!")
            )
        if locked.status.code != AppointmentStatus.COMPLETED:
            raise FeedbackNotOpen(
                "visit_not_completed", _("A visit can be rated once it has taken place.")
            )
        low = value <= LOW_RATING
        manager = None
        if low:
            sender = (
                BranchSender.objects.filter(branch_id=locked.branch_id)
                .select_related("feedback_manager")
                .first()
            )
            if sender is not None and sender.feedback_manager is not None:
                manager = sender.feedback_manager if sender.feedback_manager.is_active else None
        feedback = Feedback(
            organization_id=locked.organization_id,
            branch_id=locked.branch_id,
            appointment=locked,
            patient_id=locked.patient_id,
            rating=value,
            comment=comment,
            source=source,
            message=message,
            manager=manager,
            task_state=FeedbackTaskState.OPEN if low else "",
        )
        # The related rows were just read under the lock; only the values need checking.
        feedback.full_clean(
            exclude=["organization", "branch", "appointment", "patient", "message", "manager"]
        )
        feedback.save()
    return feedback


def feedback_task_close(*, actor: Any, feedback: Feedback, note: str) -> Feedback:
    """Close a low rating's task with a note of what was done (the note is required)."""
    note = (note or "").strip()
    if not note:
        raise FeedbackError(
            "note_required",
            _("What was done: write a note to close the task."),
            field="resolution_note",
        )
    if len(note) > MAX_NOTE_LENGTH:
        raise FeedbackError(
            "note_too_long",
            _("What was done: the note is %(length)s characters long; at most %(limit)s are kept.")
            % {"length": len(note), "limit": MAX_NOTE_LENGTH},
            field="resolution_note",
        )
    with transaction.atomic():
        locked = Feedback.objects.select_for_update().get(pk=feedback.pk)
        if locked.task_state != FeedbackTaskState.OPEN:
            raise FeedbackError("task_closed", _("This task is already closed."))
        if not can_close_feedback_task(actor, locked):
            raise PermissionDenied
        locked.task_state = FeedbackTaskState.DONE
        locked.resolution_note = note
        locked.resolved_at = timezone.now()
        locked.resolved_by = actor
        locked.save(
            update_fields=[
                "task_state",
                "resolution_note",
                "resolved_at",
                "resolved_by",
                "updated_at",
            ]
        )
    return locked


# ---- replies by SMS and WhatsApp ------------------------------------------------------------


def _latest_question(message: Message) -> Message | None:
    """The latest message the patient got at this address that asked them something: to
    confirm a visit or to rate one."""
    address = message.conversation.address if message.conversation is not None else ""
    if not address:
        return None
    return (
        Message.objects.filter(
            organization_id=message.organization_id,
            direction=Direction.OUTBOUND,
            to=address,
            sent_at__gte=timezone.now() - REPLY_WINDOW,
        )
        .filter(Q(rule__asks_for_rating=True) | Q(rule__asks_to_confirm=True))
        .exclude(state__in=_NOT_RECEIVED)
        .select_related("rule", "appointment")
        .order_by("-sent_at", "-pk")
        .first()
    )


def rating_from_reply(message: Message, text: str) -> bool:
    """Record a reply of one digit 1–5 as the rating of the visit the patient was asked about.

    ``message`` is the patient's inbound message, already filed in its conversation; call
    inside the transaction that files it. Returns True when the reply was a rating (recorded,
    or refused with a polite answer because the visit was already rated): the conversation then
    needs no answer from the desk. Returns False for any other text, and when the latest
    question to the patient was a confirmation, which the yes/no handling answers.
    """
    match = _RATING_REPLY.fullmatch(text or "")
    if match is None:
        return False
    asked = _latest_question(message)
    if asked is None or asked.rule is None or not asked.rule.asks_for_rating:
        return False
    appointment = asked.appointment
    if appointment is None:
        return False
    message.appointment = appointment
    message.save(update_fields=["appointment"])
    source = (
        FeedbackSource.WHATSAPP
        if message.channel == MessageChannel.WHATSAPP
        else FeedbackSource.SMS
    )
    try:
        feedback = feedback_record(
            appointment=appointment, rating=match.group(1), source=source, message=message
        )
    except FeedbackError as refusal:
        answer = str(refusal.message)
    else:
        answer = (
            _(
                "Thank you for your rating. We are sorry the visit fell short; our manager "
                "will get in touch with you. You can tell us what went wrong in a reply."
            )
            if feedback.is_low
            else _("Thank you for your rating!")
        )
    Message.objects.create(
        organization_id=message.organization_id,
        branch_id=appointment.branch_id,
        patient_id=message.patient_id,
        appointment=appointment,
        conversation=message.conversation,
        channel=message.channel,
        to=asked.to,
        body=answer,
        due_at=timezone.now(),
    )
    return True
