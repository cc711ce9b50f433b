"""Calls from and to patients: what the PBX reported, what the operator made of it, and the
outgoing calls planned for later.

The PBX tells the clinic about calls through a webhook (``telephony.api``): each body is kept as
received (``RawTelephonyEvent``) before it is read, so a body that cannot be read is still there
for review. A readable one moves a ``Call`` through its states.

The patients a call matches are not stored with the call: they are looked up from the caller's
number when shown (``selectors.caller_matches``). Contacts change and people are merged, and a
stored list would keep pointing at a tombstone or miss a number added during the call; the
lookup is one indexed query.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from clinic.audit.history import track_history
from clinic.core.models import Branch, Organization, Staff, TimeStampedModel
from patients.models import Person
from scheduling.models import Appointment


@track_history(exclude=("token_hash",))
class TelephonySettings(TimeStampedModel):
    """One organization's connection to its PBX: the hash of the webhook's shared secret.

    Only the SHA-256 of the token is stored (``services.telephony_token_set``); the token itself
    is shown once to the administrator who sets it. Tokens are long random strings, so a fast
    hash is enough and lets the webhook find the organization by the hash.
    """

    organization = models.OneToOneField(
        Organization,
        verbose_name=_("organization"),
        on_delete=models.PROTECT,
        related_name="telephony_settings",
    )
    token_hash = models.CharField(_("token hash"), max_length=64, blank=True, editable=False)
    token_set_at = models.DateTimeField(_("token set at"), null=True, blank=True, editable=False)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("telephony settings")
        verbose_name_plural = _("telephony settings")
        constraints = [
            models.UniqueConstraint(
                fields=["token_hash"],
                condition=~Q(token_hash=""),
                name="telephony_settings_unique_token_hash",
            )
        ]

    def __str__(self) -> str:
        return str(self.organization)


@track_history()
class TelephonyLine(TimeStampedModel):
    """A number of the clinic that patients call, and the branch that answers it."""

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
    )
    number = models.CharField(
        _("number"),
        max_length=32,
        help_text=_("As the PBX sends it in “called”: E.164 (+74951234567) or a short number."),
    )
    name = models.CharField(_("name"), max_length=200, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("telephone line")
        verbose_name_plural = _("telephone lines")
        ordering = ["organization", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "number"], name="telephony_line_unique_number_per_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.name}".strip()


@track_history()
class OperatorExtension(TimeStampedModel):
    """Which staff member answers on a PBX extension (``operator_extension`` of the webhook)."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    extension = models.CharField(_("extension"), max_length=32)
    staff = models.ForeignKey(
        Staff, verbose_name=_("staff member"), on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name = _("operator extension")
        verbose_name_plural = _("operator extensions")
        ordering = ["organization", "extension"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "extension"],
                name="telephony_extension_unique_per_org",
            )
        ]

    def __str__(self) -> str:
        return f"{self.extension}: {self.staff}"


class CallDirection(models.TextChoices):
    INBOUND = "inbound", _("Inbound")
    OUTBOUND = "outbound", _("Outbound")


class CallEventKind(models.TextChoices):
    """The events the PBX sends, which are also the states a call goes through."""

    RINGING = "ringing", _("Ringing")
    ANSWERED = "answered", _("Answered")
    ENDED = "ended", _("Ended")
    MISSED = "missed", _("Missed")


# A call's state is the last of these it reached; an event never moves it back.
CallState = CallEventKind
CALL_STATE_ORDER = {
    CallState.RINGING: 0,
    CallState.ANSWERED: 1,
    CallState.ENDED: 2,
    CallState.MISSED: 2,
}


class CallPurpose(models.TextChoices):
    BOOKING = "booking", _("Booking")
    CANCELLATION = "cancellation", _("Cancellation")
    RESCHEDULE = "reschedule", _("Reschedule")
    QUESTION = "question", _("Question")
    COMPLAINT = "complaint", _("Complaint")
    OTHER = "other", pgettext_lazy("call purpose", "Other")


class CallOutcome(models.TextChoices):
    BOOKED = "booked", _("Booked")
    CANCELLED = "cancelled", pgettext_lazy("call outcome", "Cancelled")
    ANSWERED = "answered", pgettext_lazy("call outcome", "Question answered")
    CALLBACK_NEEDED = "callback_needed", _("Call back")
    NO_ANSWER = "no_answer", _("No answer")
    OTHER = "other", pgettext_lazy("call outcome", "Other")


@track_history()
class Call(TimeStampedModel):
    """One telephone call, as the PBX reported it and the operator classified it."""

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
    )
    call_id = models.CharField(_("PBX call id"), max_length=100)
    direction = models.CharField(
        _("direction"),
        max_length=8,
        choices=CallDirection.choices,
        default=CallDirection.INBOUND,
    )
    caller_number = models.CharField(
        _("caller number"), max_length=32, help_text=_("E.164, as read from the PBX.")
    )
    called_line = models.CharField(_("called line"), max_length=32, blank=True)
    state = models.CharField(
        _("state"), max_length=8, choices=CallState.choices, default=CallState.RINGING
    )
    started_at = models.DateTimeField(_("started at"))
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    operator_extension = models.CharField(_("operator extension"), max_length=32, blank=True)
    operator = models.ForeignKey(
        Staff,
        verbose_name=_("operator"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    purpose = models.CharField(_("purpose"), max_length=16, choices=CallPurpose.choices, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=CallOutcome.choices, blank=True)
    note = models.TextField(_("note"), blank=True)
    appointment = models.ForeignKey(
        Appointment,
        verbose_name=_("appointment"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    classified_at = models.DateTimeField(_("classified at"), null=True, blank=True)

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "call_id"], name="telephony_call_unique_call_id_per_org"
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "started_at"], name="telephony_call_org_started"),
            models.Index(fields=["caller_number"], name="telephony_call_caller"),
        ]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M} {self.outside_number}"

    @property
    def outside_number(self) -> str:
        """The patient's side of the call: the caller of an inbound call, else the called."""
        if self.direction == CallDirection.OUTBOUND:
            return self.called_line
        return self.caller_number

    @property
    def duration_seconds(self) -> int | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return max(0, int((self.ended_at - self.answered_at).total_seconds()))


class RawEventStatus(models.TextChoices):
    RECEIVED = "received", _("Received")
    PROCESSED = "processed", _("Processed")
    DUPLICATE = "duplicate", _("Repeated event")
    FAILED = "failed", _("Could not be read")


class RawTelephonyEvent(models.Model):
    """A webhook body exactly as received, kept whether or not it could be read.

    Not tracked in history: a row is written once and then only gets its outcome.
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)
    body = models.TextField(_("body"), blank=True)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=RawEventStatus.choices,
        default=RawEventStatus.RECEIVED,
    )
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    error = models.TextField(_("error"), blank=True)
    call = models.ForeignKey(
        Call,
        verbose_name=_("call"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="raw_events",
    )

    class Meta:
        verbose_name = _("raw telephony event")
        verbose_name_plural = _("raw telephony events")
        ordering = ["-received_at"]
        indexes = [
            models.Index(
                fields=["status"],
                condition=Q(status="failed"),
                name="telephony_raw_failed",
            )
        ]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} {self.get_status_display()}"


class PlannedCallStatus(models.TextChoices):
    PLANNED = "planned", _("Planned")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", pgettext_lazy("planned call", "Cancelled")


@track_history()
class PlannedCall(TimeStampedModel):
    """An outgoing call someone must make: to whom, why, by when and who does it."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    patient = models.ForeignKey(
        Person, verbose_name=_("patient"), on_delete=models.PROTECT, related_name="planned_calls"
    )
    phone = models.CharField(_("phone"), max_length=32, help_text=_("E.164."))
    reason = models.CharField(_("reason"), max_length=300)
    due_at = models.DateTimeField(_("due"))
    assigned_to = models.ForeignKey(
        Staff,
        verbose_name=_("assigned to"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=PlannedCallStatus.choices,
        default=PlannedCallStatus.PLANNED,
    )
    result_note = models.TextField(_("result"), blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    call = models.ForeignKey(
        Call,
        verbose_name=_("call"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("planned call")
        verbose_name_plural = _("planned calls")
        ordering = ["due_at"]
        indexes = [
            models.Index(
                fields=["organization", "due_at"],
                condition=Q(status="planned"),
                name="telephony_planned_open_due",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="planned") | Q(closed_at__isnull=False),
                name="telephony_planned_closed_has_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.due_at:%Y-%m-%d %H:%M} {self.patient}"
