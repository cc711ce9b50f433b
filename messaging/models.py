"""Patient messaging: who sends from which number, what the texts say, when they go out, and
every message sent or received, with its delivery state.

A ``Message`` row is written *before* anything is sent: planned by a rule (its ``dedup_key``
makes a second planning of the same rule and appointment a no-op, however often beat or a
worker runs), then claimed by the sender, checked against the guards (consent, quiet hours,
frequency caps) and handed to the provider. The row is the record on the patient's page.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clinic.audit.history import track_history
from clinic.core.models import Branch, Organization, TimeStampedModel
from patients.models import Person
from scheduling.models import Appointment, CommunicationStatus, Service


class MessageChannel(models.TextChoices):
    WHATSAPP = "whatsapp", _("WhatsApp")
    SMS = "sms", _("SMS")
    EMAIL = "email", _("E-mail")


@track_history()
class BranchSender(TimeStampedModel):
    """A branch's sender numbers and address, its quiet hours and the frequency cap."""

    branch = models.OneToOneField(
        Branch, verbose_name=_("branch"), on_delete=models.CASCADE, related_name="sender"
    )
    sms_from = models.CharField(_("SMS sender"), max_length=32, blank=True)
    whatsapp_from = models.CharField(_("WhatsApp sender"), max_length=32, blank=True)
    email_from = models.EmailField(_("e-mail sender"), blank=True)
    quiet_from = models.TimeField(_("quiet hours from"), default=datetime.time(21, 0))
    quiet_to = models.TimeField(_("quiet hours until"), default=datetime.time(9, 0))
    daily_cap = models.PositiveSmallIntegerField(
        _("at most messages a day per patient"),
        default=4,
        help_text=_("Answers to the patient's own messages and one-time codes do not count."),
    )
    feedback_manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("manager for low ratings"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("A rating of 3 or lower from this branch's patients becomes their task."),
    )

    class Meta:
        verbose_name = _("branch sender")
        verbose_name_plural = _("branch senders")

    def __str__(self) -> str:
        return str(self.branch)

    def address_for(self, channel: str) -> str:
        senders: dict[str, str] = {
            MessageChannel.SMS: self.sms_from,
            MessageChannel.WHATSAPP: self.whatsapp_from,
            MessageChannel.EMAIL: self.email_from,
        }
        return senders.get(channel, "")


@track_history()
class MessageTemplate(TimeStampedModel):
    """A text for one channel and language; ``{placeholders}`` are filled when it is sent.

    For WhatsApp outside the 24-hour window the approved template ``content_sid`` is sent with
    the same parameters as numbered variables (``whatsapp_variables`` lists their order).
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    code = models.SlugField(_("code"), max_length=50)
    name = models.CharField(_("name"), max_length=200)
    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel.choices)
    language = models.CharField(_("language"), max_length=8, default="ru")
    subject = models.CharField(_("subject (e-mail)"), max_length=200, blank=True)
    body = models.TextField(_("text"))
    whatsapp_content_sid = models.CharField(
        _("WhatsApp template (ContentSid)"), max_length=64, blank=True
    )
    whatsapp_variables = ArrayField(
        models.CharField(max_length=40),
        verbose_name=_("WhatsApp template variables, in order"),
        default=list,
        blank=True,
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        ordering = ["code", "channel", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "code", "channel", "language"],
                name="messaging_template_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_channel_display()}, {self.language})"

    def clean(self) -> None:
        from .rendering import unknown_placeholders

        errors = {}
        for field in ("body", "subject"):
            unknown = unknown_placeholders(getattr(self, field))
            if unknown:
                errors[field] = _("Unknown parameter %(value)s. Use: %(known)s.") % {
                    "value": ", ".join(f"{{{name}}}" for name in unknown),
                    "known": ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS)),
                }
        unknown_variables = [v for v in self.whatsapp_variables if v not in PLACEHOLDERS]
        if unknown_variables:
            errors["whatsapp_variables"] = _("Unknown parameter %(value)s.") % {
                "value": ", ".join(unknown_variables)
            }
        if errors:
            raise ValidationError(errors)


PLACEHOLDERS = {
    "first_name": _("patient's first name"),
    "patronymic": _("patient's patronymic"),
    "last_name": _("patient's last name"),
    "date": _("visit date"),
    "time": _("visit time"),
    "doctor": _("doctor"),
    "room": _("room"),
    "service": _("services"),
    "branch": _("branch"),
    "branch_address": _("branch address"),
    "branch_phone": _("branch phone"),
    "confirm_link": _("link to confirm the visit"),
    "cancel_link": _("link to see or cancel the visit"),
    "feedback_link": _("link to rate the visit"),
    "slot_date": _("offered time's date"),
    "slot_time": _("offered time"),
    "card_number": _("discount card number"),
}


class RuleEvent(models.TextChoices):
    BOOKED = "booked", _("On booking")
    MOVED = "moved", _("On a move")
    CANCELLED = "cancelled", _("On cancellation")
    DAYS_BEFORE = "days_before", _("N days before the visit, at a time of day")
    MINUTES_BEFORE = "minutes_before", _("N minutes before the visit")
    AFTER_STATUS = "after_status", _("N minutes after a status change")
    DAYS_AFTER_SERVICES = "days_after_services", _("N days after given services")
    BIRTHDAY = "birthday", _("Birthday")
    LAB_READY = "lab_ready", _("Lab results ready")
    DISCOUNT_CARD = "discount_card", _("Discount card issued")
    WAITLIST_OFFER = "waitlist_offer", _("Waitlist slot offer")
    NEXT_VISIT = "next_visit", _("After a visit: the way to the next one that day")


class DayType(models.TextChoices):
    ANY = "any", _("Any day")
    WORKING = "working", _("Working days")
    NON_WORKING = "non_working", _("Weekends and holidays")


@track_history()
class ReminderRule(TimeStampedModel):
    """When a message goes out, through which channels in order, and what it marks."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    branch = models.ForeignKey(
        Branch,
        verbose_name=_("branch"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Empty: every branch."),
    )
    name = models.CharField(_("name"), max_length=200)
    event = models.CharField(_("when"), max_length=24, choices=RuleEvent.choices)
    template_code = models.SlugField(_("template code"), max_length=50)
    channels = ArrayField(
        models.CharField(max_length=16, choices=MessageChannel.choices),
        verbose_name=_("channels, in order"),
        default=list,
        help_text=_("The next channel is tried when the patient cannot be reached on one."),
    )
    offset_days = models.PositiveIntegerField(_("days"), default=0)
    offset_minutes = models.PositiveIntegerField(_("minutes"), default=0)
    send_time = models.TimeField(_("time of day"), null=True, blank=True)
    day_type = models.CharField(
        _("days"), max_length=12, choices=DayType.choices, default=DayType.ANY
    )
    status_code = models.SlugField(
        _("status"), max_length=30, blank=True, help_text=_("For “after a status change”.")
    )
    services = models.ManyToManyField(
        Service, verbose_name=_("services"), blank=True, related_name="+"
    )
    sets_communication_status = models.CharField(
        _("then mark the visit as"),
        max_length=16,
        choices=CommunicationStatus.choices,
        blank=True,
    )
    asks_to_confirm = models.BooleanField(
        _("asks to confirm"),
        default=False,
        help_text=_("Replies 1 / yes confirm the visit, 2 / no cancel it."),
    )
    asks_for_rating = models.BooleanField(
        _("asks to rate the visit"),
        default=False,
        help_text=_("A reply of a single digit 1–5 is recorded as the visit's rating."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("reminder rule")
        verbose_name_plural = _("reminder rules")
        ordering = ["event", "offset_days", "offset_minutes", "pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(channels=[]), name="messaging_rule_has_channels"),
            # A reply "1" or "2" must mean one thing: a confirmation or a rating.
            models.CheckConstraint(
                condition=~Q(asks_to_confirm=True, asks_for_rating=True),
                name="messaging_rule_one_question",
                violation_error_message=_(
                    "A rule asks either to confirm the visit or to rate it, not both."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Direction(models.TextChoices):
    OUTBOUND = "out", _("To the patient")
    INBOUND = "in", _("From the patient")


class MessageState(models.TextChoices):
    """In the order a message moves through; failure states are final."""

    PLANNED = "planned", _("Planned")
    SKIPPED = "skipped", _("Skipped")
    SENDING = "sending", _("Sending")
    QUEUED = "queued", _("Queued at the provider")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", _("Read")
    FAILED = "failed", _("Failed")
    UNDELIVERED = "undelivered", _("Undelivered")
    RECEIVED = "received", _("Received")


class Conversation(TimeStampedModel):
    """One patient's (or one unknown number's) thread on a channel."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    patient = models.ForeignKey(
        Person,
        verbose_name=_("patient"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="conversations",
    )
    channel = models.CharField(_("channel"), max_length=16, choices=MessageChannel.choices)
    address = models.CharField(_("phone or address"), max_length=254)
    last_inbound_at = models.DateTimeField(_("last message from the patient"), null=True)
    needs_answer = models.BooleanField(_("waiting for an answer"), default=False)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "channel", "address"], name="messaging_conversation_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.address}"


class Message(models.Model):
    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, null=True, related_name="+"
    )
    patient = models.ForeignKey(
        Person,
        verbose_name=_("patient"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="messages",
    )
    appointment = models.ForeignKey(
        Appointment,
        verbose_name=_("appointment"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="messages",
    )
    rule = models.ForeignKey(
        ReminderRule,
        verbose_name=_("rule"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="messages",
    )
    conversation = models.ForeignKey(
        Conversation,
        verbose_name=_("conversation"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="messages",
    )
    direction = models.CharField(
        _("direction"), max_length=3, choices=Direction.choices, default=Direction.OUTBOUND
    )
    channel = models.CharField(
        _("channel"), max_length=16, choices=MessageChannel.choices, blank=True
    )
    to = models.CharField(_("to"), max_length=254, blank=True)
    subject = models.CharField(_("subject"), max_length=200, blank=True)
    body = models.TextField(_("text"), blank=True)
    params = models.JSONField(
        _("parameters"), default=dict, blank=True, help_text=_("Facts the text is filled with.")
    )
    state = models.CharField(
        _("state"), max_length=12, choices=MessageState.choices, default=MessageState.PLANNED
    )
    skip_reason = models.CharField(_("why skipped or failed"), max_length=300, blank=True)
    error_code = models.CharField(_("provider's error code"), max_length=16, blank=True)
    due_at = models.DateTimeField(_("due at"))
    planned_for = models.DateTimeField(
        _("for the visit at"),
        null=True,
        blank=True,
        help_text=_("A reminder is dropped when the visit has moved from this time since."),
    )
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    state_changed_at = models.DateTimeField(_("state changed at"), null=True, blank=True)
    provider_id = models.CharField(_("provider's id"), max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    dedup_key = models.CharField(_("planning key"), max_length=120, null=True, blank=True)
    fallback_of = models.ForeignKey(
        "self",
        verbose_name=_("instead of"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("written by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=Q(dedup_key__isnull=False),
                name="messaging_message_once",
            ),
        ]
        indexes = [
            models.Index(
                fields=["due_at"],
                condition=Q(state="planned"),
                name="messaging_message_due",
            ),
            # Planning writes 100,000 rows a day: indexes cover only the rows that use them.
            models.Index(
                fields=["provider_id"],
                condition=~Q(provider_id=""),
                name="messaging_message_provider_id",
            ),
            models.Index(
                fields=["conversation", "created_at"],
                condition=Q(conversation__isnull=False),
                name="messaging_message_conversation",
            ),
            models.Index(
                fields=["fallback_of"],
                condition=Q(fallback_of__isnull=False),
                name="messaging_message_fallback_of",
            ),
            models.Index(
                fields=["sent_by"],
                condition=Q(sent_by__isnull=False),
                name="messaging_message_sent_by",
            ),
            models.Index(fields=["patient", "created_at"], name="messaging_message_patient"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.to} {self.get_state_display()}"


class PlannerCursor(models.Model):
    """How far the planner has read a history table (the last event id planned from)."""

    name = models.SlugField(_("name"), max_length=50, unique=True)
    position = models.BigIntegerField(_("last event id"), default=0)

    class Meta:
        verbose_name = _("planner cursor")
        verbose_name_plural = _("planner cursors")

    def __str__(self) -> str:
        return f"{self.name}: {self.position}"


LOW_RATING = 3


class FeedbackSource(models.TextChoices):
    PORTAL = "portal", _("Web page")
    SMS = "sms", _("SMS reply")
    WHATSAPP = "whatsapp", _("WhatsApp reply")


class FeedbackTaskState(models.TextChoices):
    """The manager's task a low rating opens; a rating above ``LOW_RATING`` has none ("")."""

    OPEN = "open", _("Open")
    DONE = "done", _("Done")


@track_history()
class Feedback(TimeStampedModel):
    """A patient's rating of one completed visit (once per visit), with their comment.

    A rating of ``LOW_RATING`` or lower opens a task for the branch's feedback manager, closed
    with a note of what was done; the database refuses a low rating without a task and a
    closed task without its time.
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    branch = models.ForeignKey(
        Branch,
        verbose_name=_("branch"),
        on_delete=models.PROTECT,
        db_index=False,  # led by the (branch, created_at) index
        related_name="+",
    )
    appointment = models.OneToOneField(
        Appointment,
        verbose_name=_("appointment"),
        on_delete=models.PROTECT,
        related_name="feedback",
    )
    patient = models.ForeignKey(
        Person,
        verbose_name=_("patient"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    rating = models.PositiveSmallIntegerField(_("rating"))
    comment = models.TextField(_("comment"), blank=True)
    source = models.CharField(_("given through"), max_length=16, choices=FeedbackSource.choices)
    message = models.ForeignKey(
        Message,
        verbose_name=_("reply"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("manager"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    task_state = models.CharField(
        _("task"), max_length=8, choices=FeedbackTaskState.choices, blank=True
    )
    resolution_note = models.TextField(_("what was done"), blank=True)
    resolved_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("closed by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("visit rating")
        verbose_name_plural = _("visit ratings")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rating__gte=1, rating__lte=5), name="messaging_feedback_rating_1_5"
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        rating__lte=LOW_RATING,
                        task_state__in=[FeedbackTaskState.OPEN, FeedbackTaskState.DONE],
                    )
                    | Q(rating__gt=LOW_RATING, task_state="")
                ),
                name="messaging_feedback_task_for_low_rating",
            ),
            models.CheckConstraint(
                condition=~Q(task_state=FeedbackTaskState.DONE) | Q(resolved_at__isnull=False),
                name="messaging_feedback_done_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["branch", "-created_at"], name="messaging_feedback_branch"),
            models.Index(
                fields=["branch"],
                condition=Q(task_state="open"),
                name="messaging_feedback_open_task",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.appointment_id}: {self.rating}"

    @property
    def is_low(self) -> bool:
        return self.rating <= LOW_RATING
