"""The cash desk: fiscal registers, cash shifts, cash in and out, and fiscal receipts.

Every payment and refund has exactly one fiscal receipt (a unique constraint), queued through
the outbox in the posting transaction with the task's uuid made before the first attempt. The
receipt row is the cashier's view of it: queued, sent (the device has it and is working on it),
printed (with the fiscal data) or failed (with the device's error and a retry).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clinic.audit.history import track_history
from clinic.core.models import Branch, Organization, TimeStampedModel
from clinic.outbox.models import OutboxMessage

from .documents import Payment


class FiscalDriverKind(models.TextChoices):
    ATOL_WEB = "atol_web", _("ATOL web server (local register)")
    ATOL_ONLINE = "atol_online", _("ATOL Online (cloud register)")


@track_history(exclude=("device_config",))
class CashRegister(TimeStampedModel):
    """A fiscal register at a branch's cash desk, and how to reach it."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="cash_registers"
    )
    name = models.CharField(_("name"), max_length=100)
    driver = models.CharField(
        _("driver"),
        max_length=16,
        choices=FiscalDriverKind.choices,
        default=FiscalDriverKind.ATOL_WEB,
    )
    device_config = models.JSONField(
        _("connection settings"),
        default=dict,
        blank=True,
        help_text=_(
            'For example {"url": "http://127.0.0.1:16732"} for the web server, or url, login, '
            "password and group_code for ATOL Online."
        ),
    )
    slip_printer = models.JSONField(
        _("slip printer"),
        default=dict,
        blank=True,
        help_text=_('An ESC/POS printer for non-fiscal slips: {"host": "10.0.0.5", "port": 9100}.'),
    )
    operator_inn = models.CharField(_("cashier's INN on receipts"), max_length=12, blank=True)
    taxation_type = models.CharField(
        _("taxation system"),
        max_length=16,
        default="osn",
        help_text=_("osn, usnIncome, usnIncomeOutcome, esn or patent."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("cash register")
        verbose_name_plural = _("cash registers")
        ordering = ["branch", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["branch", "name"], name="billing_cashregister_name_per_branch"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def driver_config(self) -> dict[str, object]:
        return {**self.device_config, "driver": self.driver}


class ShiftState(models.TextChoices):
    OPEN = "open", _("Open")
    CLOSED = "closed", _("Closed")


@track_history()
class CashShift(TimeStampedModel):
    """A cashier's shift at a register: opened and closed with the device's own shift."""

    register = models.ForeignKey(
        CashRegister,
        verbose_name=_("cash register"),
        on_delete=models.PROTECT,
        related_name="shifts",
    )
    cashier = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("cashier"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    state = models.CharField(
        _("state"), max_length=8, choices=ShiftState.choices, default=ShiftState.OPEN
    )
    opened_at = models.DateTimeField(_("opened at"))
    opening_cash = models.DecimalField(
        _("cash at opening"), max_digits=12, decimal_places=2, default=Decimal("0")
    )
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("closed by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    totals = models.JSONField(
        _("totals"), default=dict, blank=True, help_text=_("The shift's own totals at closing.")
    )
    reconciliation = models.JSONField(_("reconciliation with the device"), default=dict, blank=True)

    class Meta:
        verbose_name = _("cash shift")
        verbose_name_plural = _("cash shifts")
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["register"],
                condition=Q(state="open"),
                name="billing_cashshift_one_open_per_register",
            ),
            models.CheckConstraint(
                condition=Q(state="open") | Q(closed_at__isnull=False),
                name="billing_cashshift_closed_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.register} {self.opened_at:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.state == ShiftState.OPEN


class CashMovementKind(models.TextChoices):
    CASH_IN = "cash_in", _("Cash in")
    CASH_OUT = "cash_out", _("Cash out")


@track_history()
class CashMovement(TimeStampedModel):
    """Cash put into or taken out of the drawer (change fund, collection): a final document."""

    shift = models.ForeignKey(
        CashShift, verbose_name=_("cash shift"), on_delete=models.PROTECT, related_name="movements"
    )
    kind = models.CharField(_("kind"), max_length=8, choices=CashMovementKind.choices)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    posted_at = models.DateTimeField(_("posted at"))
    posted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("posted by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("cash in or out")
        verbose_name_plural = _("cash in and out")
        ordering = ["-posted_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="billing_cashmovement_amount_positive"
            )
        ]
        triggers = [
            pgtrigger.Protect(name="billing_cashmovement_is_final", operation=pgtrigger.Update),
            pgtrigger.Protect(name="billing_cashmovement_not_deleted", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount}"


class FiscalOperationKind(models.TextChoices):
    SELL = "sell", _("Sale receipt")
    SELL_RETURN = "sell_return", _("Return receipt")
    CASH_IN = "cash_in", _("Cash in")
    CASH_OUT = "cash_out", _("Cash out")
    OPEN_SHIFT = "open_shift", _("Shift opening")
    CLOSE_SHIFT = "close_shift", _("Shift closing (Z report)")
    REPORT_X = "report_x", _("X report")


class ReceiptState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENT = "sent", _("At the register")
    PRINTED = "printed", _("Printed")
    FAILED = "failed", _("Failed")


class FiscalReceipt(models.Model):
    """One task for the fiscal register: a receipt, a cash in/out or a shift report.

    ``task_uuid`` is the idempotency key the device sees. It is made with the row and reused on
    every retry, so a task that reached the device before a crash is never printed twice; only a
    task the device definitively refused gets a new uuid when the cashier retries it.
    """

    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    register = models.ForeignKey(
        CashRegister, verbose_name=_("cash register"), on_delete=models.PROTECT, related_name="+"
    )
    shift = models.ForeignKey(
        CashShift,
        verbose_name=_("cash shift"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="receipts",
    )
    operation = models.CharField(_("operation"), max_length=12, choices=FiscalOperationKind.choices)
    payment = models.OneToOneField(
        Payment,
        verbose_name=_("payment or refund"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="receipt",
    )
    cash_movement = models.OneToOneField(
        CashMovement,
        verbose_name=_("cash in or out"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="receipt",
    )
    task_uuid = models.UUIDField(_("task uuid"), default=uuid.uuid4, unique=True)
    task = models.JSONField(_("task"), help_text=_("What the register is asked to print."))
    state = models.CharField(
        _("state"), max_length=8, choices=ReceiptState.choices, default=ReceiptState.QUEUED
    )
    outbox_message = models.ForeignKey(
        OutboxMessage,
        verbose_name=_("outbox message"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    fn_number = models.CharField(_("fiscal drive number"), max_length=20, blank=True)
    fiscal_document_number = models.CharField(
        _("fiscal document number"), max_length=20, blank=True
    )
    fiscal_document_sign = models.CharField(_("fiscal sign"), max_length=20, blank=True)
    receipt_number = models.CharField(_("receipt number"), max_length=20, blank=True)
    device_shift_number = models.CharField(_("register's shift number"), max_length=20, blank=True)
    printed_at = models.DateTimeField(_("printed at"), null=True, blank=True)
    report = models.JSONField(_("register's answer"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("fiscal receipt")
        verbose_name_plural = _("fiscal receipts")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["register", "created_at"],
                condition=~Q(state="printed"),
                name="billing_receipt_unprinted",
            ),
            models.Index(
                fields=["shift"], condition=Q(shift__isnull=False), name="billing_receipt_shift"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(operation__in=["sell", "sell_return"]) | Q(payment__isnull=False),
                name="billing_receipt_sale_has_payment",
            ),
            models.CheckConstraint(
                condition=~Q(operation__in=["cash_in", "cash_out"])
                | Q(cash_movement__isnull=False),
                name="billing_receipt_cash_has_movement",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_operation_display()} {self.task_uuid} ({self.get_state_display()})"
