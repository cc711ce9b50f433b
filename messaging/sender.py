"""Sending: due messages are claimed from the database and sent through the guards.

``send_due`` claims a batch of ``planned`` messages whose time has come with ``FOR UPDATE SKIP
LOCKED`` and moves them to ``sending`` in the same statement, so two workers (or beat firing
twice) never take the same message. Each message then passes the guards in order:

1. a reminder whose visit has moved or been cancelled since it was planned is dropped;
2. the rule's channels are tried in order, and a channel is used only with the patient's
   active consent to it and an address for it (otherwise: skipped, with the reason);
3. quiet hours in the branch's time zone put the message back until the morning;
4. the rule's day type (working days, weekends and holidays) and the branch's daily cap per
   patient skip it, with the reason;
5. the template for the channel and language is filled and handed to the provider.

A provider that cannot be reached gets the message again later with backoff, unless the request
may have arrived (then it is marked failed rather than risk a second copy). A WhatsApp message
the patient cannot receive falls back to the rule's next channel as a new message.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from integrations.messaging import (
    Channel,
    MessagingProvider,
    OutgoingMessage,
    ProviderRejected,
    ProviderUnavailable,
    provider_for,
)
from patients.models import PHONE_KINDS, Consent, ConsentKind, Contact, ContactKind
from scheduling.models import Appointment, AppointmentStatus, CommunicationStatus
from scheduling.schedules import is_working_day

from .models import (
    BranchSender,
    Conversation,
    DayType,
    Direction,
    Message,
    MessageChannel,
    MessageState,
    MessageTemplate,
    RuleEvent,
)
from .rendering import appointment_params, render

logger = logging.getLogger(__name__)

BATCH = 200
MAX_ATTEMPTS = 5
WHATSAPP_WINDOW = datetime.timedelta(hours=24)
CAP_WINDOW = datetime.timedelta(hours=24)
_REMINDERS = (RuleEvent.DAYS_BEFORE, RuleEvent.MINUTES_BEFORE)
_COUNTED = (
    MessageState.QUEUED,
    MessageState.SENT,
    MessageState.DELIVERED,
    MessageState.READ,
    MessageState.SENDING,
)


def providers() -> dict[str, MessagingProvider]:
    """The configured provider of each channel (``settings.MESSAGING_PROVIDERS``)."""
    configured: Mapping[str, Any] = getattr(settings, "MESSAGING_PROVIDERS", {}) or {}
    found = {}
    for channel, config in configured.items():
        if config and config.get("provider"):
            found[channel] = provider_for(config)
    return found


def site_url(path: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def _claimed(now: datetime.datetime, batch: int) -> list[int]:
    table = Message._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET state = %s, attempts = attempts + 1, state_changed_at = %s"  # noqa: S608 - the model's table
            f" WHERE id IN (SELECT id FROM {table} WHERE state = %s AND due_at <= %s"
            " ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
            [MessageState.SENDING, now, MessageState.PLANNED, now, batch],
        )
        return [row[0] for row in cursor.fetchall()]


def send_due(now: datetime.datetime | None = None, *, batch: int = BATCH) -> int:
    """Send what is due; returns how many messages were claimed."""
    now = now or timezone.now()
    ids = _claimed(now, batch)
    if not ids:
        return 0
    available = providers()
    messages = Message.objects.filter(pk__in=ids).select_related(
        "rule",
        "patient",
        "branch",
        "appointment__branch",
        "appointment__doctor",
        "appointment__room",
        "appointment__status",
        "appointment__patient",
    )
    for message in messages.order_by("due_at", "pk"):
        try:
            _send_one(message, now, available)
        except Exception:
            logger.exception("Message %s could not be processed", message.pk)
            _finish(message, MessageState.FAILED, _("An internal error stopped the message."))
    return len(ids)


def _finish(message: Message, state: str, reason: str = "", **fields: Any) -> None:
    message.state = state
    message.skip_reason = reason[:300]
    message.state_changed_at = timezone.now()
    for name, value in fields.items():
        setattr(message, name, value)
    message.save(update_fields=["state", "skip_reason", "state_changed_at", *fields.keys()])


@dataclass(frozen=True)
class Route:
    channel: str
    to: str


def _consented(person_id: int | None) -> set[str]:
    if person_id is None:
        return set()
    return set(
        Consent.objects.filter(
            person_id=person_id, kind=ConsentKind.COMMUNICATION, revoked_on__isnull=True
        ).values_list("channel", flat=True)
    )


def _address(person_id: int, channel: str) -> str:
    contacts = Contact.objects.filter(person_id=person_id)
    if channel == MessageChannel.EMAIL:
        kinds: tuple[str, ...] = (ContactKind.EMAIL,)
    elif channel == MessageChannel.WHATSAPP:
        kinds = (ContactKind.WHATSAPP, ContactKind.MOBILE)
    else:
        kinds = (ContactKind.MOBILE, *[k for k in PHONE_KINDS if k != ContactKind.MOBILE])
    for kind in kinds:
        found = contacts.filter(kind=kind).order_by("pk").values_list("value", flat=True).first()
        if found:
            return str(found)
    return ""


def route_for(message: Message, channels: list[str]) -> tuple[Route | None, list[str]]:
    """The first of ``channels`` with consent and an address, and why the others were passed."""
    reasons = []
    consented = _consented(message.patient_id)
    for channel in channels:
        label = MessageChannel(channel).label
        if channel not in consented:
            reasons.append(_("no consent to %(channel)s") % {"channel": label})
            continue
        assert message.patient_id is not None  # consent exists only for a known patient
        to = _address(message.patient_id, channel)
        if not to:
            reasons.append(_("no address for %(channel)s") % {"channel": label})
            continue
        return Route(channel, to), reasons
    return None, reasons


def _sender_of(message: Message) -> BranchSender | None:
    if message.branch_id is None:
        return None
    return BranchSender.objects.filter(branch_id=message.branch_id).first()


def _quiet_until(sender: BranchSender | None, now: datetime.datetime, zone: Any) -> Any:
    """The end of the quiet hours ``now`` falls in, or None outside them."""
    if sender is None or sender.quiet_from == sender.quiet_to:
        return None
    local = now.astimezone(zone)
    moment = local.time()
    start, end = sender.quiet_from, sender.quiet_to
    quiet = (start <= moment or moment < end) if start > end else (start <= moment < end)
    if not quiet:
        return None
    day = local.date()
    if start > end and moment >= start:
        day += datetime.timedelta(days=1)
    return datetime.datetime.combine(day, end, tzinfo=zone)


def _is_working_day(message: Message, day: datetime.date) -> bool:
    return is_working_day(message.organization_id, day)


def _over_cap(message: Message, sender: BranchSender | None, now: datetime.datetime) -> bool:
    if sender is None or message.patient_id is None:
        return False
    sent = (
        Message.objects.filter(
            patient_id=message.patient_id,
            direction=Direction.OUTBOUND,
            state__in=_COUNTED,
            state_changed_at__gte=now - CAP_WINDOW,
        )
        .exclude(pk=message.pk)
        .count()
    )
    return sent >= sender.daily_cap


def _visit_gone(message: Message) -> bool:
    appointment = message.appointment
    if appointment is None or message.rule is None or message.rule.event not in _REMINDERS:
        return False
    if appointment.status.code not in (AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED):
        return True
    return message.planned_for is not None and appointment.starts_at != message.planned_for


def _links(appointment: Appointment | None) -> dict[str, str]:
    if appointment is None:
        return {}
    from portal.links import appointment_token

    from .feedback import feedback_token

    link = site_url(reverse("portal:appointment", args=[appointment_token(appointment)]))
    feedback = site_url(reverse("messaging_feedback:rate", args=[feedback_token(appointment)]))
    return {"confirm_link": link, "cancel_link": link, "feedback_link": feedback}


def _template(message: Message, channel: str) -> MessageTemplate | None:
    assert message.rule is not None
    templates = MessageTemplate.objects.filter(
        organization_id=message.organization_id,
        code=message.rule.template_code,
        channel=channel,
        is_active=True,
    )
    language = translation.get_language() or settings.LANGUAGE_CODE
    return (
        templates.filter(language=language).first()
        or templates.filter(language=settings.LANGUAGE_CODE).first()
        or templates.order_by("pk").first()
    )


def _send_one(
    message: Message, now: datetime.datetime, available: Mapping[str, MessagingProvider]
) -> None:
    rule = message.rule
    if rule is None:  # written by a person or a fallback: already has its channel and text
        _deliver(message, Route(message.channel, message.to), available, None, now=now)
        return
    if _visit_gone(message):
        _finish(message, MessageState.SKIPPED, _("The visit has moved or been cancelled since."))
        return
    channels = [message.channel] if message.channel else list(rule.channels)
    route, reasons = route_for(message, channels)
    if route is None:
        reason = "; ".join(reasons) or _("The patient has no address to write to.")
        _finish(message, MessageState.SKIPPED, reason)
        return
    sender = _sender_of(message)
    zone = message.branch.zone if message.branch is not None else timezone.get_current_timezone()
    until = _quiet_until(sender, now, zone)
    if until is not None:
        _finish(message, MessageState.PLANNED, "", due_at=until)
        return
    if rule.day_type != DayType.ANY:
        working = _is_working_day(message, now.astimezone(zone).date())
        if working != (rule.day_type == DayType.WORKING):
            _finish(message, MessageState.SKIPPED, _("Not a day this rule sends on."))
            return
    if _over_cap(message, sender, now):
        _finish(message, MessageState.SKIPPED, _("The patient's daily message limit is reached."))
        return
    template = _template(message, route.channel)
    if template is None:
        _finish(
            message,
            MessageState.SKIPPED,
            _("No active template “%(code)s” for %(channel)s.")
            % {"code": rule.template_code, "channel": MessageChannel(route.channel).label},
        )
        return
    params = {
        **(
            appointment_params(message.appointment, links=_links(message.appointment))
            if message.appointment is not None
            else _person_params(message)
        ),
        **{key: str(value) for key, value in (message.params or {}).items()},
    }
    message.channel = route.channel
    message.to = route.to
    message.body = render(template.body, params)
    message.subject = render(template.subject, params)
    _deliver(message, route, available, template, params, now=now)


def _person_params(message: Message) -> dict[str, str]:
    patient = message.patient
    if patient is None:
        return {}
    return {
        "first_name": patient.first_name,
        "patronymic": patient.patronymic,
        "last_name": patient.last_name,
    }


def _whatsapp_window_open(message: Message) -> bool:
    return Conversation.objects.filter(
        organization_id=message.organization_id,
        channel=MessageChannel.WHATSAPP,
        address=message.to,
        last_inbound_at__gte=timezone.now() - WHATSAPP_WINDOW,
    ).exists()


def _deliver(
    message: Message,
    route: Route,
    available: Mapping[str, MessagingProvider],
    template: MessageTemplate | None,
    params: Mapping[str, str] | None = None,
    *,
    now: datetime.datetime,
) -> None:
    provider = available.get(route.channel)
    if provider is None:
        _finish(
            message,
            MessageState.FAILED,
            _("No provider is configured for %(channel)s.")
            % {"channel": MessageChannel(route.channel).label},
            channel=route.channel,
            to=route.to,
            body=message.body,
            subject=message.subject,
        )
        return
    content_sid, variables = "", {}
    if (
        route.channel == MessageChannel.WHATSAPP
        and template is not None
        and template.whatsapp_content_sid
        and not _whatsapp_window_open(message)
    ):
        content_sid = template.whatsapp_content_sid
        variables = {
            str(index): str((params or {}).get(name, ""))
            for index, name in enumerate(template.whatsapp_variables, start=1)
        }
    branch_sender = _sender_of(message)
    outgoing = OutgoingMessage(
        sender=branch_sender.address_for(route.channel) if branch_sender is not None else "",
        to=route.to,
        body=message.body,
        channel=Channel(route.channel),
        subject=message.subject,
        content_sid=content_sid,
        content_variables=variables,
        status_callback=site_url(reverse("messaging:twilio_status")),
        idempotency_key=str(message.pk),
    )
    texts = {"channel": route.channel, "to": route.to, "body": message.body}
    texts["subject"] = message.subject
    try:
        sent = provider.send(outgoing)
    except ProviderUnavailable as exc:
        if exc.may_have_been_sent or message.attempts >= MAX_ATTEMPTS:
            _finish(
                message,
                MessageState.FAILED,
                _("The provider did not answer; the message was not sent again: %(error)s")
                % {"error": exc},
                **texts,
            )
            return
        delay = datetime.timedelta(seconds=exc.retry_after_seconds or 60 * 2**message.attempts)
        _finish(message, MessageState.PLANNED, str(exc), due_at=now + delay, **texts)
        return
    except ProviderRejected as exc:
        _rejected(message, exc.code, exc.description, exc.undeliverable_on_channel, texts)
        return
    _finish(
        message,
        sent.status.value if sent.status.value in MessageState.values else MessageState.QUEUED,
        "",
        provider_id=sent.provider_id,
        sent_at=now,
        error_code=sent.error_code or "",
        **texts,
    )
    _mark_appointment(message)


def _rejected(
    message: Message, code: str, description: str, undeliverable: bool, texts: dict[str, str]
) -> None:
    state = MessageState.UNDELIVERED if undeliverable else MessageState.FAILED
    _finish(message, state, description, error_code=code[:16], **texts)
    if undeliverable:
        fallback_queue(message)


def fallback_queue(message: Message) -> Message | None:
    """The same message on the rule's next channel, due now (WhatsApp → SMS)."""
    rule = message.rule
    if rule is None or message.channel not in rule.channels:
        return None
    later = rule.channels[rule.channels.index(message.channel) + 1 :]
    if not later:
        return None
    route, _reasons = route_for(message, later)
    if route is None:
        return None
    key = f"{message.dedup_key or message.pk}:via:{route.channel}"
    with transaction.atomic():
        fallback, _created = Message.objects.get_or_create(
            dedup_key=key,
            defaults={
                "organization_id": message.organization_id,
                "branch_id": message.branch_id,
                "patient_id": message.patient_id,
                "appointment_id": message.appointment_id,
                "rule": rule,
                "channel": route.channel,
                "due_at": timezone.now(),
                "planned_for": message.planned_for,
                "fallback_of": message,
            },
        )
    return fallback


def _mark_appointment(message: Message) -> None:
    rule = message.rule
    if rule is None or not rule.sets_communication_status or message.appointment_id is None:
        return
    # Never overwrite an answer the patient has already given.
    Appointment.objects.filter(pk=message.appointment_id).exclude(
        communication_status__in=[CommunicationStatus.CONFIRMED, CommunicationStatus.DECLINED]
    ).update(communication_status=rule.sets_communication_status, updated_at=timezone.now())


STUCK_AFTER = datetime.timedelta(minutes=10)


def sending_reap(now: datetime.datetime | None = None) -> int:
    """Messages a worker claimed and then died on are marked failed, not sent again: whether the
    provider got them is unknown, and a patient must not get a reminder twice."""
    now = now or timezone.now()
    return Message.objects.filter(
        state=MessageState.SENDING, state_changed_at__lt=now - STUCK_AFTER
    ).update(
        state=MessageState.FAILED,
        skip_reason=_("Interrupted while sending; not sent again to avoid a duplicate."),
        state_changed_at=now,
    )
