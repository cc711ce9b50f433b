"""What the online portal adds: each doctor's online-booking settings and one-time phone codes.

The portal books through the scheduling engine like every other channel (``BookingChannel.PORTAL``);
what only the portal needs about a doctor — whether and what patients may book online, how the
price is shown, prepayment — lives here, one row per doctor, so the schedule does not depend on
the portal.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from PIL import Image, UnidentifiedImageError

from clinic.audit.history import track_history
from clinic.core.models import TimeStampedModel
from scheduling.models import Resource, Service


class ConsultationMode(models.TextChoices):
    IN_CLINIC = "in_clinic", _("In the clinic")
    ONLINE = "online", _("Online (video)")
    BOTH = "both", _("In the clinic or online")


class PriceRounding(models.TextChoices):
    NONE = "none", _("No rounding")
    TO_10 = "10", _("To 10 roubles")
    TO_50 = "50", _("To 50 roubles")
    TO_100 = "100", _("To 100 roubles")


PHOTO_MAX_BYTES = 2 * 1024 * 1024
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")


def validate_doctor_photo(value: Any) -> None:
    """A newly uploaded photo is a JPEG, PNG or WebP image of at most 2 MB.

    A photo stored earlier was checked when it was uploaded and is not read again (the file
    may live on another storage, or be gone).
    """
    if getattr(value, "_committed", True):
        return
    if value.size > PHOTO_MAX_BYTES:
        raise ValidationError(
            _("The photo must be at most 2 MB; this file is %(size)s MB."),
            code="photo_too_large",
            params={"size": f"{value.size / (1024 * 1024):.1f}"},
        )
    try:
        value.seek(0)
        with Image.open(value) as image:
            image_format = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        image_format = None
    finally:
        value.seek(0)
    if image_format not in PHOTO_FORMATS:
        raise ValidationError(
            _("The photo must be a JPEG, PNG or WebP image."), code="photo_not_an_image"
        )


@track_history()
class DoctorOnlineSettings(TimeStampedModel):
    """Whether and how patients book a doctor online."""

    doctor = models.OneToOneField(
        Resource,
        verbose_name=_("doctor"),
        on_delete=models.CASCADE,
        related_name="online_settings",
        limit_choices_to={"kind": "doctor"},
    )
    is_bookable_online = models.BooleanField(_("bookable online"), default=True)
    services = models.ManyToManyField(
        Service,
        verbose_name=_("services bookable online"),
        blank=True,
        related_name="+",
        help_text=_("Empty: every service of the doctor that the portal channel allows."),
    )
    consultation_mode = models.CharField(
        _("consultation"),
        max_length=12,
        choices=ConsultationMode.choices,
        default=ConsultationMode.IN_CLINIC,
    )
    show_price = models.BooleanField(_("show the price"), default=True)
    prepayment_amount = models.DecimalField(
        _("prepayment"),
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("Paid online when booking; 0: no prepayment."),
    )
    prepayment_discount_percent = models.DecimalField(
        _("discount for prepaying, %"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
    )
    price_rounding = models.CharField(
        _("price rounding"), max_length=4, choices=PriceRounding.choices, default=PriceRounding.NONE
    )
    horizon_days = models.PositiveIntegerField(
        _("booking horizon, days"),
        null=True,
        blank=True,
        help_text=_("Empty: the organization's rule for the portal channel."),
    )
    min_notice_minutes = models.PositiveIntegerField(
        _("minimum notice, minutes"),
        null=True,
        blank=True,
        help_text=_("Empty: the organization's rule for the portal channel."),
    )
    bio = models.TextField(_("short biography"), blank=True)
    photo = models.ImageField(
        _("photo"),
        upload_to="portal/doctors/",
        blank=True,
        validators=[validate_doctor_photo],
        help_text=_("A JPEG, PNG or WebP image of at most 2 MB, shown on the doctor's card."),
    )
    for_children = models.BooleanField(_("sees children"), default=False)
    for_adults = models.BooleanField(_("sees adults"), default=True)

    class Meta:
        verbose_name = _("doctor's online booking settings")
        verbose_name_plural = _("doctors' online booking settings")
        constraints = [
            models.CheckConstraint(
                condition=Q(prepayment_amount__gte=0),
                name="portal_settings_prepayment_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(prepayment_discount_percent__gte=0)
                & Q(prepayment_discount_percent__lte=100),
                name="portal_settings_discount_is_a_percent",
            ),
        ]

    def __str__(self) -> str:
        return str(self.doctor)


class CodePurpose(models.TextChoices):
    LOGIN = "login", _("Logging in to the account")
    BOOKING = "booking", _("Confirming a booking")


class PhoneCode(models.Model):
    """A one-time code sent to a phone. Only its hash is kept; it is used once, expires within
    minutes and stops working after a few wrong tries."""

    phone = models.CharField(_("phone"), max_length=20, db_index=True)
    purpose = models.CharField(_("purpose"), max_length=8, choices=CodePurpose.choices)
    code_hash = models.CharField(_("code hash"), max_length=128, editable=False)
    created_at = models.DateTimeField(_("sent at"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"))
    attempts = models.PositiveSmallIntegerField(_("wrong tries"), default=0)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    ip = models.GenericIPAddressField(_("requested from"), null=True, blank=True)

    class Meta:
        verbose_name = _("one-time code")
        verbose_name_plural = _("one-time codes")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["phone", "purpose", "created_at"], name="portal_code_lookup")
        ]

    def __str__(self) -> str:
        return f"{self.phone} {self.get_purpose_display()}"
