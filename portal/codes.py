"""One-time codes sent to a phone: to log in to the account and to confirm a booking.

``code_send`` answers the same way whether or not the phone belongs to a patient, so nobody
learns who is registered; the code goes out through the outbox (channel ``portal.code``) in the
transaction that stores its hash. ``code_verify`` compares in constant time, counts wrong tries,
and uses a code once.

The channel is delivered like the portal's other texts (``notices.phone_text_deliver``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.outbox.registry import channel_register
from clinic.outbox.services import outbox_enqueue
from patients.normalizers import normalize_phone

from .errors import PortalError, TooManyRequests
from .models import PhoneCode
from .notices import phone_text_deliver
from .ratelimit import Limit, RateLimitUnavailable, limit_reached, seconds_left

logger = logging.getLogger(__name__)

CODE_CHANNEL = "portal.code"
CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=5)
MAX_WRONG_TRIES = 5
PER_PHONE_MINUTE = Limit("code-phone-minute", 1, 60)
PER_PHONE_HOUR = Limit("code-phone-hour", 5, 3600)
PER_IP_HOUR = Limit("code-ip-hour", 20, 3600)


def _hash(phone: str, purpose: str, code: str) -> str:
    message = f"{phone}:{purpose}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def phone_checked(value: str) -> str:
    """The phone in E.164, or a refusal naming the field and the value."""
    try:
        return normalize_phone(value)
    except ValidationError as exc:
        raise PortalError("invalid_phone", exc.messages[0], field="phone") from exc


def _limits_checked(phone: str, purpose: str, ip: str | None) -> None:
    # One code a minute for each purpose: logging in right after booking is no abuse; the
    # hourly limit counts every code to the phone.
    checks = [(PER_PHONE_MINUTE, f"{purpose}:{phone}"), (PER_PHONE_HOUR, phone)]
    if ip:
        checks.append((PER_IP_HOUR, ip))
    try:
        for limit, subject in checks:
            if limit_reached(limit, subject):
                raise TooManyRequests(
                    "too_many_codes",
                    _("Too many codes were asked for. Try again in %(value)s s.")
                    % {"value": seconds_left(limit)},
                    field="phone",
                )
    except RateLimitUnavailable as exc:
        raise TooManyRequests(
            "codes_unavailable",
            _("Codes cannot be sent right now. Try again in a minute."),
            field="phone",
        ) from exc


@transaction.atomic
def code_send(*, phone: str, purpose: str, ip: str | None = None) -> None:
    """Send a new code to ``phone`` for ``purpose`` (the same answer whoever the phone is)."""
    number = phone_checked(phone)
    _limits_checked(number, purpose, ip)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    now = timezone.now()
    PhoneCode.objects.create(
        phone=number,
        purpose=purpose,
        code_hash=_hash(number, purpose, code),
        expires_at=now + CODE_TTL,
        ip=ip or None,
    )
    outbox_enqueue(
        channel=CODE_CHANNEL,
        payload={
            "to": number,
            "text": _("Your code: %(code)s. It is valid for 5 minutes. Do not tell it to anyone.")
            % {"code": code},
        },
        subject=f"{purpose} code",
    )


@transaction.atomic
def code_verify(*, phone: str, purpose: str, code: str) -> bool:
    """True when ``code`` is the latest unexpired, unused code for the phone; uses it up.

    A wrong code counts as a try; after ``MAX_WRONG_TRIES`` the code no longer works.
    """
    try:
        number = normalize_phone(phone)
    except ValidationError:
        return False
    latest = (
        PhoneCode.objects.select_for_update()
        .filter(phone=number, purpose=purpose, used_at__isnull=True)
        .order_by("-created_at")
        .first()
    )
    now = timezone.now()
    if latest is None or latest.expires_at <= now or latest.attempts >= MAX_WRONG_TRIES:
        return False
    if not hmac.compare_digest(latest.code_hash, _hash(number, purpose, code.strip())):
        latest.attempts += 1
        latest.save(update_fields=["attempts"])
        return False
    latest.used_at = now
    latest.save(update_fields=["used_at"])
    return True


def code_channel_register() -> None:
    channel_register(CODE_CHANNEL, phone_text_deliver, backoff_max_seconds=60)
