"""Payers and their agreements: counterparties, model and individual contracts, payment
schedules, insurers' guarantee letters, and discount or markup rules.

A visit is paid by the patient (self-pay) or under a contract with a company, a voluntary
insurer (DMS) or the compulsory insurance fund (OMS). Contracts are made from a model agreement
(``ContractTemplate``) that gives the defaults; the individual contract then keeps its own
terms. The services a contract covers, and at what prices, are its price list.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from clinic.audit.history import track_history
from clinic.core.models import Organization, TimeStampedModel
from patients.models import Person
from scheduling.models import PayerKind, Service

from .catalogue import PriceList, ServiceGroup, check_dates, valid_on


class CounterpartyKind(models.TextChoices):
    COMPANY = "company", _("Company (corporate client)")
    DMS_INSURER = "dms_insurer", _("Voluntary insurer (DMS)")
    OMS_FUND = "oms_fund", _("Compulsory insurance fund (OMS)")


@track_history()
class Counterparty(TimeStampedModel):
    """A legal entity that pays for patients' visits: a company or an insurer."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=CounterpartyKind.choices)
    name = models.CharField(_("full name"), max_length=300)
    inn = models.CharField(_("INN"), max_length=12, blank=True)
    kpp = models.CharField(_("KPP"), max_length=9, blank=True)
    address = models.CharField(_("legal address"), max_length=500, blank=True)
    bank_details = models.TextField(_("bank details"), blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("counterparty")
        verbose_name_plural = _("counterparties")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "inn", "kpp"],
                condition=~Q(inn=""),
                name="billing_counterparty_unique_inn_kpp",
            )
        ]

    def __str__(self) -> str:
        return self.name


@track_history()
class ContractTemplate(TimeStampedModel):
    """A model agreement: the defaults an individual contract is created from."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(_("name"), max_length=300)
    payer_kind = models.CharField(_("payer"), max_length=16, choices=PayerKind.choices)
    price_list = models.ForeignKey(
        PriceList,
        verbose_name=_("price list"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    term_days = models.PositiveIntegerField(
        _("term in days"), default=365, help_text=_("How long a contract made from it runs.")
    )
    requires_guarantee_letter = models.BooleanField(
        _("guarantee letter required"),
        default=False,
        help_text=_("Visits under the contract need a valid guarantee letter of the insurer."),
    )
    terms = models.TextField(
        _("terms"), blank=True, help_text=_("The agreement's text, printed on the contract.")
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("model agreement")
        verbose_name_plural = _("model agreements")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


@track_history()
class Contract(TimeStampedModel):
    """An individual agreement with a payer: a company, an insurer (DMS, OMS) or a patient.

    While it is valid, visits under it are priced by its own price list (when it has one).
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    number = models.CharField(_("number"), max_length=60)
    name = models.CharField(_("name"), max_length=300)
    payer_kind = models.CharField(_("payer"), max_length=16, choices=PayerKind.choices)
    counterparty = models.ForeignKey(
        Counterparty,
        verbose_name=_("counterparty"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="contracts",
        help_text=_("The company or insurer; empty for a contract with a patient."),
    )
    patient = models.ForeignKey(
        Person,
        verbose_name=_("patient"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("For a contract for paid medical services signed by the patient."),
    )
    template = models.ForeignKey(
        ContractTemplate,
        verbose_name=_("model agreement"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="contracts",
    )
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(
        _("valid to"), null=True, blank=True, help_text=_("Empty: until further notice.")
    )
    price_list = models.ForeignKey(
        PriceList,
        verbose_name=_("price list"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="contracts",
        help_text=_("Empty: the organization's price list of the payer kind applies."),
    )
    requires_guarantee_letter = models.BooleanField(_("guarantee letter required"), default=False)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("contract")
        verbose_name_plural = _("contracts")
        ordering = ["-valid_from", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "number"], name="billing_contract_number_per_org"
            ),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=F("valid_from")),
                name="billing_contract_dates_in_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.name}"

    @property
    def counterparty_name(self) -> str:
        if self.counterparty is not None:
            return self.counterparty.name
        return self.patient.full_name if self.patient is not None else ""

    def is_valid_on(self, day: datetime.date) -> bool:
        return self.is_active and valid_on(self.valid_from, self.valid_to, day)

    def clean(self) -> None:
        check_dates(self.valid_from, self.valid_to)
        if self.payer_kind and self.payer_kind != PayerKind.SELF_PAY and self.counterparty is None:
            raise ValidationError(
                {"counterparty": _("A contract with a company or an insurer names it.")}
            )
        if self.price_list is not None and self.organization_id:
            if self.price_list.organization_id != self.organization_id:
                raise ValidationError(
                    {"price_list": _("The price list belongs to another organization.")}
                )
            if self.payer_kind and self.price_list.payer_kind != self.payer_kind:
                raise ValidationError(
                    {
                        "price_list": _("The price list is for another payer (%(value)s).")
                        % {"value": self.price_list.get_payer_kind_display()}
                    }
                )


class ContractPayment(models.Model):
    """A line of a contract's payment schedule: how much the payer owes by a date."""

    contract = models.ForeignKey(
        Contract,
        verbose_name=_("contract"),
        on_delete=models.CASCADE,
        related_name="payment_schedule",
    )
    due_on = models.DateField(_("due on"))
    amount = models.DecimalField(
        _("amount"),
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("scheduled payment")
        verbose_name_plural = _("payment schedule")
        ordering = ["contract", "due_on"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="billing_contractpayment_amount_positive"
            )
        ]

    def __str__(self) -> str:
        return f"{self.due_on}: {self.amount}"


@track_history()
class GuaranteeLetter(TimeStampedModel):
    """An insurer's promise to pay for a patient's services under a contract, up to a limit."""

    contract = models.ForeignKey(
        Contract,
        verbose_name=_("contract"),
        on_delete=models.PROTECT,
        related_name="guarantee_letters",
    )
    patient = models.ForeignKey(
        Person, verbose_name=_("patient"), on_delete=models.PROTECT, related_name="+"
    )
    number = models.CharField(_("number"), max_length=60)
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(_("valid to"))
    limit_amount = models.DecimalField(
        _("coverage limit"),
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
    )
    services = models.ManyToManyField(
        Service,
        verbose_name=_("services"),
        blank=True,
        related_name="+",
        help_text=_("Empty: every service the contract covers."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("guarantee letter")
        verbose_name_plural = _("guarantee letters")
        ordering = ["-valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["contract", "number"], name="billing_guarantee_number_per_contract"
            ),
            models.CheckConstraint(
                condition=Q(valid_to__gte=F("valid_from")), name="billing_guarantee_dates_in_order"
            ),
            models.CheckConstraint(
                condition=Q(limit_amount__gt=0), name="billing_guarantee_limit_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.number

    def is_valid_on(self, day: datetime.date) -> bool:
        return self.is_active and valid_on(self.valid_from, self.valid_to, day)

    def clean(self) -> None:
        check_dates(self.valid_from, self.valid_to)


class AdjustmentKind(models.TextChoices):
    DISCOUNT = "discount", _("Discount")
    MARKUP = "markup", _("Markup")


class AdjustmentMethod(models.TextChoices):
    PERCENT = "percent", _("Percent")
    AMOUNT = "amount", _("Amount per line")


@track_history()
class DiscountRule(TimeStampedModel):
    """A discount or markup on invoice lines, automatic or chosen by staff within its limit.

    An automatic rule applies to every matching line (a contract's markup, a group's discount);
    a manual one is offered at the desk and the POS, where staff may set a value up to
    ``max_value`` (the rule's limit for registrars and cashiers).
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(
        _("kind"), max_length=8, choices=AdjustmentKind.choices, default=AdjustmentKind.DISCOUNT
    )
    method = models.CharField(
        _("method"),
        max_length=8,
        choices=AdjustmentMethod.choices,
        default=AdjustmentMethod.PERCENT,
    )
    value = models.DecimalField(
        _("value"), max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    max_value = models.DecimalField(
        _("largest value staff may set"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Manual rules only; empty: staff apply the value as it is."),
    )
    is_automatic = models.BooleanField(_("applied automatically"), default=False)
    contract = models.ForeignKey(
        Contract,
        verbose_name=_("contract"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="discount_rules",
        help_text=_("Empty: for every payer."),
    )
    group = models.ForeignKey(
        ServiceGroup,
        verbose_name=_("service group"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    service = models.ForeignKey(
        Service,
        verbose_name=_("service"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(_("valid to"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("discount or markup rule")
        verbose_name_plural = _("discount and markup rules")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(value__gte=0), name="billing_discountrule_value_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(kind="discount", method="percent") | Q(value__lte=100),
                name="billing_discountrule_percent_at_most_100",
            ),
            models.CheckConstraint(
                condition=Q(max_value__isnull=True) | Q(max_value__gte=F("value")),
                name="billing_discountrule_limit_covers_value",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def is_valid_on(self, day: datetime.date) -> bool:
        return self.is_active and valid_on(self.valid_from, self.valid_to, day)

    def clean(self) -> None:
        check_dates(self.valid_from, self.valid_to)
        if self.is_automatic and self.max_value is not None:
            raise ValidationError(
                {"max_value": _("An automatic rule has no limit for staff: leave it empty.")}
            )
