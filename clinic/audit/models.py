"""Audit records that are not row history: reads of sensitive records and security events.

Row history (who changed what, before/after) is kept by django-pghistory triggers on each
tracked model, so it also captures bulk ``QuerySet.update`` calls.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class AccessLog(models.Model):
    """One read of a sensitive record (a medical card, a document) by a user."""

    occurred_at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.PROTECT,
        null=True,
        related_name="+",
    )
    object_type = models.CharField(_("record type"), max_length=100)
    object_id = models.CharField(_("record id"), max_length=64)
    purpose = models.CharField(_("purpose"), max_length=200, blank=True)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    path = models.CharField(_("path"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("record access")
        verbose_name_plural = _("record access log")
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["object_type", "object_id", "-occurred_at"])]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.user} {self.object_type}#{self.object_id}"


class SecurityEventKind(models.TextChoices):
    LOGIN = "login", _("Login")
    LOGOUT = "logout", _("Logout")
    LOGIN_FAILED = "login_failed", _("Failed login")
    LOCKED_OUT = "locked_out", _("Locked out")
    TWO_FACTOR_PASSED = "otp_passed", _("Two-factor check passed")
    TWO_FACTOR_FAILED = "otp_failed", _("Two-factor check failed")
    TWO_FACTOR_ENROLLED = "otp_enrolled", _("Two-factor device enrolled")
    SESSION_EXPIRED = "session_expired", _("Session expired after inactivity")
    ACCESS_DENIED = "access_denied", _("Action denied")


class SecurityEvent(models.Model):
    """Logins, failures, lockouts, two-factor checks and denied actions (security review)."""

    occurred_at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)
    kind = models.CharField(_("event"), max_length=32, choices=SecurityEventKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    username = models.CharField(_("user name typed"), max_length=150, blank=True)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("browser"), max_length=300, blank=True)
    path = models.CharField(_("path"), max_length=500, blank=True)
    detail = models.CharField(_("detail"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("security event")
        verbose_name_plural = _("security events")
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["kind", "-occurred_at"])]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.get_kind_display()} {self.username}"
