"""The billing catalogue: service groups, price lists with their prices, and payers' contracts.

The services themselves are ``scheduling.Service`` (code, name, duration): the desk books them
and the cashier sells them, so there is one catalogue, not two kept in step. What only billing
needs about a service (its group in the price list tree, its VAT mode, whether it may be sold)
lives in ``ServiceBilling``, one row per service, so that the scheduling app does not depend on
billing. A service without that row is sold ungrouped, without VAT.

A price is found through a price list: a contract's own list when the visit is paid under a
valid contract, otherwise the organization's list for the payer kind (self-pay, DMS, OMS,
corporate), a branch's own list before the all-branch one. ``billing.selectors.price_for`` holds
that rule. Money is ``Decimal`` with two places; the database refuses a negative price.
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
from clinic.core.models import Branch, Organization, TimeStampedModel
from scheduling.models import PayerKind, Service


class TaxMode(models.TextChoices):
    """The VAT of a service as the fiscal receipt states it (medical services are mostly exempt)."""

    NO_VAT = "no_vat", _("No VAT")
    VAT_0 = "vat0", _("VAT 0%")
    VAT_10 = "vat10", _("VAT 10%")
    VAT_20 = "vat20", _("VAT 20%")
    VAT_22 = "vat22", _("VAT 22%")


def valid_on(valid_from: datetime.date, valid_to: datetime.date | None, day: datetime.date) -> bool:
    return valid_from <= day and (valid_to is None or day <= valid_to)


def check_dates(valid_from: datetime.date | None, valid_to: datetime.date | None) -> None:
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        raise ValidationError(
            {
                "valid_to": _("The end date %(value)s is before the start date.")
                % {"value": valid_to.isoformat()}
            }
        )


@track_history()
class ServiceGroup(TimeStampedModel):
    """A node of the price list tree ("Consultations", "Ultrasound" › "Abdomen"): how services are
    grouped on the price list, the booking form's filter and the revenue reports."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(_("name"), max_length=200)
    parent = models.ForeignKey(
        "self",
        verbose_name=_("parent group"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
    )
    order = models.PositiveSmallIntegerField(
        _("order"), default=0, help_text=_("Smaller numbers come first among siblings.")
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("service group")
        verbose_name_plural = _("service groups")
        ordering = ["order", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "parent", "name"],
                name="billing_servicegroup_unique_name_per_parent",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=~Q(parent=F("id")), name="billing_servicegroup_not_own_parent"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.parent is None:
            return
        if self.organization_id and self.parent.organization_id != self.organization_id:
            raise ValidationError(
                {"parent": _("The parent group belongs to another organization.")}
            )
        ancestor: ServiceGroup | None = self.parent
        seen: set[int] = set()
        while ancestor is not None and ancestor.pk not in seen:
            if self.pk is not None and ancestor.pk == self.pk:
                raise ValidationError(
                    {"parent": _("A group cannot be inside itself or its own subgroup.")}
                )
            seen.add(ancestor.pk)
            ancestor = ancestor.parent


@track_history()
class ServiceBilling(TimeStampedModel):
    """What billing adds to a scheduling service: its group, VAT mode and whether it is sold.

    A one-to-one extension instead of columns on ``scheduling.Service``: the schedule does not
    need (or own) any of it, and the price list tree can change without touching the schedule.
    """

    service = models.OneToOneField(
        Service, verbose_name=_("service"), on_delete=models.PROTECT, related_name="billing"
    )
    group = models.ForeignKey(
        ServiceGroup,
        verbose_name=_("group"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="services",
    )
    tax_mode = models.CharField(
        _("tax mode"), max_length=8, choices=TaxMode.choices, default=TaxMode.NO_VAT
    )
    is_sellable = models.BooleanField(
        _("sellable"),
        default=True,
        help_text=_("Untick to keep the service out of the price lookup and of new invoices."),
    )
    lab_unavailable = models.BooleanField(
        _("temporarily unavailable at the lab"),
        default=False,
        help_text=_(
            "Tick while the external lab cannot perform the service: the desk and the POS "
            "refuse to sell it."
        ),
    )
    lab_unavailable_note = models.CharField(
        _("unavailability note"),
        max_length=200,
        blank=True,
        help_text=_("Shown to the registrar and the cashier, e.g. until when."),
    )

    class Meta:
        verbose_name = _("service billing settings")
        verbose_name_plural = _("service billing settings")
        ordering = ["service__code"]

    def __str__(self) -> str:
        return str(self.service)

    def clean(self) -> None:
        if (
            self.group is not None
            and self.service_id
            and self.group.organization_id != self.service.organization_id
        ):
            raise ValidationError({"group": _("The group belongs to another organization.")})


@track_history()
class PriceList(TimeStampedModel):
    """The prices of one payer kind from a date on, for one branch or (branch empty) for all.

    Lists are not edited back in time: a new price level is a new list with a later
    ``valid_from``; the latest one valid on a date wins.
    """

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
        help_text=_("Empty: the list is for all branches of the organization."),
    )
    name = models.CharField(_("name"), max_length=200)
    payer_kind = models.CharField(
        _("payer"), max_length=16, choices=PayerKind.choices, default=PayerKind.SELF_PAY
    )
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(
        _("valid to"), null=True, blank=True, help_text=_("Empty: until further notice.")
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("price list")
        verbose_name_plural = _("price lists")
        ordering = ["-valid_from", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=F("valid_from")),
                name="billing_pricelist_dates_in_order",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "payer_kind", "valid_from"],
                name="billing_pricelist_lookup",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def is_valid_on(self, day: datetime.date) -> bool:
        return self.is_active and valid_on(self.valid_from, self.valid_to, day)

    def clean(self) -> None:
        check_dates(self.valid_from, self.valid_to)
        if (
            self.branch is not None
            and self.organization_id
            and self.branch.organization_id != self.organization_id
        ):
            raise ValidationError({"branch": _("The branch belongs to another organization.")})


@track_history()
class Price(TimeStampedModel):
    """The amount of one service in one price list."""

    price_list = models.ForeignKey(
        PriceList, verbose_name=_("price list"), on_delete=models.CASCADE, related_name="prices"
    )
    service = models.ForeignKey(
        Service, verbose_name=_("service"), on_delete=models.PROTECT, related_name="+"
    )
    amount = models.DecimalField(
        _("amount"),
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0"))],
    )

    class Meta:
        verbose_name = _("price")
        verbose_name_plural = _("prices")
        ordering = ["service__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["price_list", "service"], name="billing_price_one_per_service"
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="billing_price_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service_id}: {self.amount}"

    def clean(self) -> None:
        if (
            self.price_list_id
            and self.service_id
            and self.price_list.organization_id != self.service.organization_id
        ):
            raise ValidationError(
                {"service": _("The service belongs to another organization than the list.")}
            )


class ServiceBundleItem(models.Model):
    """A part of a complex service ("check-up" = visit + tests + ultrasound).

    The bundle is sold as one line at its own price; its composition is what the act of
    services rendered lists and what the performers are paid for.
    """

    bundle = models.ForeignKey(
        Service, verbose_name=_("complex service"), on_delete=models.CASCADE, related_name="+"
    )
    component = models.ForeignKey(
        Service, verbose_name=_("included service"), on_delete=models.PROTECT, related_name="+"
    )
    quantity = models.PositiveSmallIntegerField(_("quantity"), default=1)

    class Meta:
        verbose_name = _("complex service item")
        verbose_name_plural = _("complex service items")
        ordering = ["bundle", "component__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["bundle", "component"], name="billing_bundle_component_once"
            ),
            models.CheckConstraint(
                condition=~Q(bundle=F("component")), name="billing_bundle_not_own_component"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bundle_id} ⊃ {self.component_id} × {self.quantity}"

    def clean(self) -> None:
        if (
            self.bundle_id
            and self.component_id
            and self.bundle.organization_id != self.component.organization_id
        ):
            raise ValidationError(
                {"component": _("The service belongs to another organization than the bundle.")}
            )


class DocumentKind(models.TextChoices):
    PAID_SERVICES_CONTRACT = "paid_services_contract", _("Contract for paid medical services")
    INVOICE = "invoice", _("Invoice")
    ACT = "act", _("Act of services rendered")
    TAX_CERTIFICATE = "tax_certificate", _("Certificate of payment for the tax deduction")
    RECEIPT_COPY = "receipt_copy", _("Receipt copy")
    CASH_BOOK = "cash_book", _("Cash book sheet")


@track_history()
class DocumentTemplate(TimeStampedModel):
    """An organization's own wording of a printed document (a Django template in HTML).

    Without one the shipped template of the kind is used; the admin shows it as the starting
    point, so a clinic edits its contract's text without touching the code.
    """

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(_("document"), max_length=32, choices=DocumentKind.choices)
    body = models.TextField(
        _("template"),
        help_text=_("HTML with Django template tags; the shipped template lists the fields."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("document template")
        verbose_name_plural = _("document templates")
        ordering = ["organization", "kind"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "kind"],
                condition=Q(is_active=True),
                name="billing_documenttemplate_one_active_per_kind",
            )
        ]

    def __str__(self) -> str:
        return self.get_kind_display()
