"""Money documents: invoices with their lines, payments and refunds, and patients' balances.

An invoice is a draft while the desk fills it and becomes immutable once posted; a mistake in a
posted invoice is put right by cancelling it (only while nothing is paid on it) and issuing a new
one. Payments and refunds are documents written once, at posting, and never updated or deleted
(a database trigger refuses it): a correction is a new document that points at the one it
corrects. ``PatientAccount`` keeps each patient's debt and advance up to date in the posting
transaction, so the desk grid and the POS read them without summing history.
"""

from __future__ import annotations

from decimal import Decimal

import pgtrigger
from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clinic.audit.history import track_history
from clinic.core.models import Branch, Organization, TimeStampedModel
from patients.models import Person
from scheduling.models import Appointment, PayerKind, Resource, Service

from .catalogue import TaxMode
from .contracts import Contract, DiscountRule, GuaranteeLetter


class InvoiceState(models.TextChoices):
    DRAFT = "draft", _("Draft")
    POSTED = "posted", _("Posted")
    CANCELLED = "cancelled", _("Cancelled")


@track_history()
class Invoice(TimeStampedModel):
    """What a payer owes for services: lines imported from appointments or added at the desk.

    Without a patient it is an anonymous order (a walk-in paying for tests), personalised later.
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="+"
    )
    patient = models.ForeignKey(
        Person,
        verbose_name=_("patient"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="invoices",
    )
    payer_kind = models.CharField(
        _("payer"), max_length=16, choices=PayerKind.choices, default=PayerKind.SELF_PAY
    )
    contract = models.ForeignKey(
        Contract,
        verbose_name=_("contract"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="invoices",
    )
    guarantee_letter = models.ForeignKey(
        GuaranteeLetter,
        verbose_name=_("guarantee letter"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="invoices",
    )
    state = models.CharField(
        _("state"), max_length=12, choices=InvoiceState.choices, default=InvoiceState.DRAFT
    )
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2, default=Decimal("0"))
    discount_total = models.DecimalField(
        _("discounts"), max_digits=12, decimal_places=2, default=Decimal("0")
    )
    note = models.CharField(_("note"), max_length=500, blank=True)
    online_priced = models.BooleanField(
        _("priced for paying online"),
        default=False,
        db_default=False,
        help_text=_(
            "Made on the portal at the price for paying online in advance: cancelled when that "
            "payment fails, so that the visit is invoiced at its normal price."
        ),
    )
    posted_at = models.DateTimeField(_("posted at"), null=True, blank=True)
    posted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("posted by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    cancelled_at = models.DateTimeField(_("cancelled at"), null=True, blank=True)

    class Meta:
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["patient", "state"], name="billing_invoice_patient_state"),
            models.Index(fields=["organization", "posted_at"], name="billing_invoice_posted"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state="draft") | Q(posted_at__isnull=False),
                name="billing_invoice_posted_has_time",
            ),
        ]
        triggers = [
            # A posted invoice's money is settled: only its state (to cancelled) and the patient
            # of an anonymous order may change afterwards.
            pgtrigger.Protect(
                name="billing_invoice_posted_is_final",
                operation=pgtrigger.Update,
                condition=pgtrigger.Q(old__state="posted")
                & (
                    pgtrigger.Q(new__total__df=pgtrigger.F("old__total"))
                    | pgtrigger.Q(new__discount_total__df=pgtrigger.F("old__discount_total"))
                    | pgtrigger.Q(new__payer_kind__df=pgtrigger.F("old__payer_kind"))
                    | pgtrigger.Q(new__contract_id__df=pgtrigger.F("old__contract_id"))
                    | pgtrigger.Q(new__posted_at__df=pgtrigger.F("old__posted_at"))
                ),
            ),
            pgtrigger.Protect(
                name="billing_invoice_not_deleted_once_posted",
                operation=pgtrigger.Delete,
                condition=~pgtrigger.Q(old__state="draft"),
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def number(self) -> str:
        return f"{self.pk:08d}" if self.pk else ""

    @property
    def is_draft(self) -> bool:
        return self.state == InvoiceState.DRAFT


class InvoiceLine(models.Model):
    """A service on an invoice, with the price it was sold at and who performed it."""

    invoice = models.ForeignKey(
        Invoice, verbose_name=_("invoice"), on_delete=models.CASCADE, related_name="lines"
    )
    position = models.PositiveSmallIntegerField(_("position"))
    service = models.ForeignKey(
        Service, verbose_name=_("service"), on_delete=models.PROTECT, related_name="+"
    )
    service_code = models.CharField(_("code"), max_length=40)
    service_name = models.CharField(_("service"), max_length=300)
    appointment = models.ForeignKey(
        Appointment,
        verbose_name=_("appointment"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    performer = models.ForeignKey(
        Resource,
        verbose_name=_("performed by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("The doctor who performed the service (for payroll)."),
    )
    quantity = models.PositiveSmallIntegerField(_("quantity"), default=1)
    unit_price = models.DecimalField(
        _("price"), max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    adjustment_rule = models.ForeignKey(
        DiscountRule,
        verbose_name=_("discount or markup"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    adjustment = models.DecimalField(
        _("discount (−) or markup (+)"),
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text=_("Added to price × quantity; a discount is negative."),
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    tax_mode = models.CharField(
        _("tax mode"), max_length=8, choices=TaxMode.choices, default=TaxMode.NO_VAT
    )

    class Meta:
        verbose_name = _("invoice line")
        verbose_name_plural = _("invoice lines")
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "position"], name="billing_invoiceline_position_once"
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="billing_invoiceline_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="billing_invoiceline_quantity_positive"
            ),
        ]
        indexes = [
            models.Index(
                fields=["appointment"],
                condition=Q(appointment__isnull=False),
                name="billing_invoiceline_appt",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service_code} {self.service_name} × {self.quantity} = {self.amount}"


class PaymentKind(models.TextChoices):
    PAYMENT = "payment", _("Payment")
    REFUND = "refund", _("Refund")


class PaymentMethod(models.TextChoices):
    CASH = "cash", _("Cash")
    CARD = "card", _("Card (terminal)")
    ONLINE = "online", _("Online")
    ADVANCE = "advance", _("From advance")


@track_history()
class Payment(TimeStampedModel):
    """A payment or a refund: written once when posted, never changed or deleted.

    Its parts say how the money moved (cash, card, online, the patient's advance); its
    allocations say which invoice lines it paid or refunded. What is neither allocated nor drawn
    from the advance goes to (or, for a refund, comes from) the patient's advance.
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(_("kind"), max_length=8, choices=PaymentKind.choices)
    patient = models.ForeignKey(
        Person,
        verbose_name=_("patient"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payments",
    )
    invoice = models.ForeignKey(
        Invoice,
        verbose_name=_("invoice"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payments",
    )
    shift = models.ForeignKey(
        "billing.CashShift",
        verbose_name=_("cash shift"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payments",
        help_text=_("Empty for an online payment, which no cash desk takes."),
    )
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2)
    corrects = models.ForeignKey(
        "self",
        verbose_name=_("corrects"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="corrections",
    )
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
    idempotency_key = models.CharField(
        _("idempotency key"), max_length=100, null=True, blank=True, editable=False
    )
    is_correction = models.BooleanField(
        _("correction"),
        default=False,
        editable=False,
        help_text=_(
            "A refund that gives back a payment entered with the wrong methods: its services "
            "were rendered and are paid again by the payment that replaces it."
        ),
    )

    class Meta:
        verbose_name = _("payment or refund")
        verbose_name_plural = _("payments and refunds")
        ordering = ["-posted_at"]
        indexes = [
            models.Index(fields=["patient", "posted_at"], name="billing_payment_patient"),
            models.Index(fields=["organization", "posted_at"], name="billing_payment_posted"),
            models.Index(
                fields=["shift"], condition=Q(shift__isnull=False), name="billing_payment_shift"
            ),
            models.Index(
                fields=["invoice"],
                condition=Q(invoice__isnull=False),
                name="billing_payment_invoice",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total__gt=0), name="billing_payment_total_positive"),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="billing_payment_idempotency_key",
            ),
        ]
        triggers = [
            # Final, but for whose it is: merging duplicate patients moves it to the survivor.
            pgtrigger.Protect(
                name="billing_payment_is_final",
                operation=pgtrigger.Update,
                condition=pgtrigger.AnyChange(exclude=["patient", "updated_at"]),
            ),
            pgtrigger.Protect(name="billing_payment_not_deleted", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.number} {self.total}"

    @property
    def number(self) -> str:
        return f"{self.pk:08d}" if self.pk else ""

    @property
    def sign(self) -> int:
        return -1 if self.kind == PaymentKind.REFUND else 1


class PaymentPart(models.Model):
    """How much of a payment moved by one method (a mixed payment has several parts)."""

    payment = models.ForeignKey(
        Payment, verbose_name=_("payment"), on_delete=models.PROTECT, related_name="parts"
    )
    method = models.CharField(_("method"), max_length=8, choices=PaymentMethod.choices)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)
    card_rrn = models.CharField(
        _("terminal reference (RRN)"), max_length=32, blank=True, help_text=_("Card payments.")
    )
    card_auth_code = models.CharField(_("authorisation code"), max_length=16, blank=True)

    class Meta:
        verbose_name = _("payment part")
        verbose_name_plural = _("payment parts")
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="billing_paymentpart_amount_positive"
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="billing_paymentpart_is_final", operation=pgtrigger.Update),
            pgtrigger.Protect(name="billing_paymentpart_not_deleted", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.get_method_display()} {self.amount}"


class PaymentAllocation(models.Model):
    """The part of a payment (or refund) that settles (or gives back) one invoice line."""

    payment = models.ForeignKey(
        Payment, verbose_name=_("payment"), on_delete=models.PROTECT, related_name="allocations"
    )
    line = models.ForeignKey(
        InvoiceLine,
        verbose_name=_("invoice line"),
        on_delete=models.PROTECT,
        related_name="allocations",
    )
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)

    class Meta:
        verbose_name = _("payment allocation")
        verbose_name_plural = _("payment allocations")
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="billing_allocation_amount_positive"
            ),
            models.UniqueConstraint(fields=["payment", "line"], name="billing_allocation_once"),
        ]
        indexes = [models.Index(fields=["line"], name="billing_allocation_line")]
        triggers = [
            pgtrigger.Protect(name="billing_allocation_is_final", operation=pgtrigger.Update),
            pgtrigger.Protect(name="billing_allocation_not_deleted", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.line_id}: {self.amount}"


class PatientAccount(models.Model):
    """A patient's running balance with an organization, kept by the posting services.

    ``debt`` is what posted self-pay invoices still lack; ``advance`` is money paid in and not
    yet spent. The row is also the lock that orders concurrent postings for one patient.
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    patient = models.ForeignKey(
        Person, verbose_name=_("patient"), on_delete=models.PROTECT, related_name="+"
    )
    debt = models.DecimalField(_("debt"), max_digits=12, decimal_places=2, default=Decimal("0"))
    advance = models.DecimalField(
        _("advance"), max_digits=12, decimal_places=2, default=Decimal("0")
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("patient balance")
        verbose_name_plural = _("patient balances")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "patient"], name="billing_account_one_per_patient"
            ),
            models.CheckConstraint(
                condition=Q(debt__gte=0), name="billing_account_debt_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(advance__gte=0), name="billing_account_advance_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id}: −{self.debt} / +{self.advance}"
