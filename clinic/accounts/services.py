"""Two-factor enrolment and verification on top of django-otp's TOTP devices."""

from __future__ import annotations

import base64
import io
from typing import Any

import qrcode
import qrcode.image.svg
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.audit.models import SecurityEventKind
from clinic.audit.services import security_event_record

DEVICE_NAME = "authenticator"


def totp_device_pending(*, user: Any) -> TOTPDevice:
    """The user's unconfirmed device for enrolment, created on first call and reused after."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    return device


def totp_qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// URL as an inline SVG QR code, as a data URI (no third-party service)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def totp_secret_base32(device: TOTPDevice) -> str:
    return base64.b32encode(device.bin_key).decode().rstrip("=")


@transaction.atomic
def two_factor_verify(*, request: HttpRequest, token: str) -> bool:
    """Check the token against the user's devices; on success mark the session verified.

    An unconfirmed (enrolling) device becomes confirmed by its first correct code.
    """
    user = request.user
    devices = list(TOTPDevice.objects.filter(user=user).order_by("-confirmed", "pk"))
    for device in devices:
        if device.verify_token(token):
            if not device.confirmed:
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                TOTPDevice.objects.filter(user=user, confirmed=False).delete()
                security_event_record(
                    kind=SecurityEventKind.TWO_FACTOR_ENROLLED, request=request, user=user
                )
            otp_login(request, device)
            security_event_record(
                kind=SecurityEventKind.TWO_FACTOR_PASSED, request=request, user=user
            )
            return True
    security_event_record(kind=SecurityEventKind.TWO_FACTOR_FAILED, request=request, user=user)
    return False


def user_has_confirmed_device(user: Any) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()
