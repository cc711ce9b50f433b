"""Payments a patient starts online through a payment gateway (the portal's "Pay" button).

A row is written before the gateway is asked, with the idempotency key every retry reuses, so
a timeout or a crash between the request and its answer cannot create a second charge. The
billing ``Payment`` is posted only when the gateway's own API says the money arrived; until then
the row is the trace. Money the gateway took that billing could not post (the invoice was
cancelled at the desk in the meantime, say) is kept in ``needs_review`` for the cashier.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clinic.audit.history import track_history
from clinic.core.models import TimeStampedModel

from .documents import Invoice, Payment


class OnlinePaymentState(models.TextChoices):
    PENDING = "pending", _("Waiting for the patient")
    SUCCEEDED = "succeeded", _("Paid")
    CANCELED = "canceled", _("Not paid")
    NEEDS_REVIEW = "needs_review", _("Paid, to be posted by the cashier")


@track_history()
class OnlinePayment(TimeStampedModel):
    invoice = models.ForeignKey(
        Invoice,
        verbose_name=_("invoice"),
        on_delete=models.PROTECT,
        related_name="online_payments",
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    gateway = models.CharField(_("gateway"), max_length=32)
    idempotency_key = models.CharField(
        _("idempotency key"), max_length=64, unique=True, editable=False
    )
    gateway_payment_id = models.CharField(_("gateway's payment id"), max_length=64, blank=True)
    state = models.CharField(
        _("state"),
        max_length=16,
        choices=OnlinePaymentState.choices,
        default=OnlinePaymentState.PENDING,
    )
    confirmation_url = models.URLField(_("payment page"), max_length=2000, blank=True)
    payment = models.OneToOneField(
        Payment,
        verbose_name=_("posted payment"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="online_payment",
    )
    phone = models.CharField(_("paid from the account of"), max_length=20, blank=True)
    problem = models.TextField(_("why it was not posted"), blank=True)
    gateway_answer = models.JSONField(_("gateway's last answer"), default=dict, blank=True)

    class Meta:
        verbose_name = _("online payment")
        verbose_name_plural = _("online payments")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "gateway_payment_id"],
                condition=~Q(gateway_payment_id=""),
                name="billing_online_payment_gateway_id",
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=Decimal("0")), name="billing_online_payment_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice} {self.amount} {self.get_state_display()}"
