"""Organizations, their branches, departments and rooms, and the staff who work in them.

Every later domain row hangs off an organization (and usually a branch); selectors scope queries
to the branches of the acting staff member.
"""

from __future__ import annotations

import uuid
import zoneinfo

import pghistory
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from clinic.audit.history import track_history

from .validators import validate_inn, validate_snils


class TimeStampedModel(models.Model):
    """Base of every domain model: when and by whom a row was created, and a public UUID.

    ``public_id`` is what appears in URLs and the API; sequential ids never leave the server.
    """

    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        abstract = True


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            _("Unknown time zone “%(value)s”: use an IANA name such as Europe/Moscow."),
            code="invalid_time_zone",
            params={"value": value},
        )


digits_validator = RegexValidator(r"^\d+$", _("Only digits are allowed."), code="digits")


@track_history()
class Organization(TimeStampedModel):
    """A legal entity (clinic owner). Several may share one database."""

    name = models.CharField(_("full name"), max_length=300)
    short_name = models.CharField(_("short name"), max_length=120)
    inn = models.CharField(_("INN"), max_length=12, unique=True, validators=[validate_inn])
    kpp = models.CharField(
        _("KPP"),
        max_length=9,
        blank=True,
        validators=[RegexValidator(r"^\d{9}$", _("KPP has 9 digits."), code="kpp")],
    )
    ogrn = models.CharField(
        _("OGRN"),
        max_length=15,
        blank=True,
        validators=[RegexValidator(r"^(\d{13}|\d{15})$", _("OGRN has 13 or 15 digits."))],
    )
    frmo_oid = models.CharField(
        _("FRMO OID"),
        max_length=100,
        blank=True,
        validators=[RegexValidator(r"^\d+(\.\d+)+$", _("An OID looks like 1.2.643.5.1.13."))],
    )
    address = models.TextField(_("legal address"), blank=True)
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="Europe/Moscow", validators=[validate_time_zone]
    )
    currency = models.CharField(_("currency"), max_length=3, default="RUB")
    phone_region = models.CharField(
        _("default phone region"),
        max_length=2,
        default="RU",
        help_text=_("Region used to read phone numbers typed without a country code."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("organization")
        verbose_name_plural = _("organizations")
        ordering = ["short_name"]

    def __str__(self) -> str:
        return self.short_name


@track_history()
class Branch(TimeStampedModel):
    """A site of an organization with its own address, phone and time zone."""

    organization = models.ForeignKey(
        Organization,
        verbose_name=_("organization"),
        on_delete=models.PROTECT,
        related_name="branches",
    )
    name = models.CharField(_("name"), max_length=200)
    address = models.TextField(_("address"))
    time_zone = models.CharField(
        _("time zone"), max_length=64, default="Europe/Moscow", validators=[validate_time_zone]
    )
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("branch")
        verbose_name_plural = _("branches")
        ordering = ["organization__short_name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="core_branch_unique_name_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The branch's time zone: its schedules, grids and printouts are in local time."""
        return zoneinfo.ZoneInfo(self.time_zone)


@track_history()
class Department(TimeStampedModel):
    """A department of a branch (therapy, paediatrics, laboratory, ...)."""

    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="departments"
    )
    name = models.CharField(_("name"), max_length=200)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("department")
        verbose_name_plural = _("departments")
        ordering = ["branch__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["branch", "name"], name="core_department_unique_name_per_branch"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.branch})"


class RoomType(models.TextChoices):
    CONSULTING = "consulting", _("Consulting room")
    PROCEDURE = "procedure", _("Procedure room")
    TREATMENT = "treatment", _("Treatment room")
    DENTAL = "dental", _("Dental surgery")
    IMAGING = "imaging", _("Imaging room")
    ULTRASOUND = "ultrasound", _("Ultrasound room")
    LABORATORY = "laboratory", _("Laboratory")
    SPECIMEN = "specimen", _("Specimen collection")
    OPERATING = "operating", _("Operating room")
    WARD = "ward", _("Ward")
    OTHER = "other", _("Other")


@track_history()
class Room(TimeStampedModel):
    """A room of a branch: number, type and, optionally, the department it belongs to."""

    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="rooms"
    )
    department = models.ForeignKey(
        Department,
        verbose_name=_("department"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="rooms",
    )
    number = models.CharField(_("number"), max_length=20)
    name = models.CharField(_("name"), max_length=200, blank=True)
    room_type = models.CharField(
        _("type"), max_length=20, choices=RoomType.choices, default=RoomType.CONSULTING
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("room")
        verbose_name_plural = _("rooms")
        ordering = ["branch__name", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["branch", "number"], name="core_room_unique_number_per_branch"
            )
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.name}".strip()

    def clean(self) -> None:
        if self.department is not None and self.department.branch_id != self.branch_id:
            raise ValidationError(
                {"department": _("The department belongs to another branch than the room.")}
            )


@track_history()
class Specialty(TimeStampedModel):
    """A medical specialty (reference data): therapist, paediatrician, cardiologist, ..."""

    code = models.CharField(_("code"), max_length=20, unique=True)
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        verbose_name = _("specialty")
        verbose_name_plural = _("specialties")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class StaffStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    DISMISSED = "dismissed", _("Dismissed")


@track_history()
class Staff(TimeStampedModel):
    """A person employed by an organization, linked to the user account they log in with."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.PROTECT,
        related_name="staff",
        null=True,
        blank=True,
    )
    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="staff"
    )
    last_name = models.CharField(_("last name"), max_length=100)
    first_name = models.CharField(_("first name"), max_length=100)
    patronymic = models.CharField(_("patronymic"), max_length=100, blank=True)
    position = models.CharField(_("position"), max_length=200)
    specialty = models.ForeignKey(
        Specialty,
        verbose_name=_("specialty"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="staff",
    )
    snils = models.CharField(_("SNILS"), max_length=14, blank=True, validators=[validate_snils])
    frmr_id = models.CharField(_("FRMR id"), max_length=64, blank=True)
    branches = models.ManyToManyField(Branch, verbose_name=_("branches"), related_name="staff")
    status = models.CharField(
        _("status"), max_length=16, choices=StaffStatus.choices, default=StaffStatus.ACTIVE
    )
    dismissed_on = models.DateField(_("dismissed on"), null=True, blank=True)

    class Meta:
        verbose_name = _("staff member")
        verbose_name_plural = _("staff")
        ordering = ["last_name", "first_name", "patronymic"]
        permissions = [
            # Capabilities of the role matrix (clinic/core/roles.py); not tied to one model.
            ("view_schedule", "Can view the schedule"),
            ("book_appointment", "Can book, move and cancel appointments"),
            ("manage_work_schedule", "Can change work schedules"),
            ("register_patient", "Can register and edit patients"),
            ("merge_patients", "Can merge and unmerge patients"),
            ("force_duplicate_patient", "Can create a patient despite likely duplicates"),
            ("view_medical_card", "Can open medical cards"),
            ("write_medical_record", "Can write medical records"),
            ("sign_medical_record", "Can sign medical records"),
            ("take_payment", "Can take payments"),
            ("refund_payment", "Can refund payments"),
            ("manage_cash_shift", "Can open and close cash shifts"),
            ("manage_price_list", "Can change price lists and contracts"),
            ("view_financial_report", "Can view financial reports"),
            ("receive_specimen", "Can receive lab specimens"),
            ("enter_lab_result", "Can enter and validate lab results"),
            ("manage_staff_access", "Can manage staff, roles and access"),
            ("manage_reference_data", "Can change reference data and settings"),
            ("view_audit_log", "Can view change history and access logs"),
            ("manage_outbox", "Can inspect and re-queue outbox messages"),
            ("review_feedback", "Can read patients' ratings and close their tasks"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="dismissed") | models.Q(dismissed_on__isnull=False),
                name="core_staff_dismissed_has_date",
            )
        ]

    def __str__(self) -> str:
        return self.full_name

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.last_name, self.first_name, self.patronymic) if part)

    @property
    def short_name(self) -> str:
        initials = "".join(f"{part[0]}." for part in (self.first_name, self.patronymic) if part)
        return f"{self.last_name} {initials}".strip()

    @property
    def is_active(self) -> bool:
        return self.status == StaffStatus.ACTIVE

    def clean(self) -> None:
        if self.status == StaffStatus.DISMISSED and not self.dismissed_on:
            raise ValidationError({"dismissed_on": _("Give the date of dismissal.")})


@pghistory.track(
    pghistory.InsertEvent("branch.add"), pghistory.DeleteEvent("branch.remove"), obj_field=None
)
class StaffBranch(Staff.branches.through):  # type: ignore[name-defined]
    """History of which branches a staff member works in (rows of the staff-branch link table)."""

    class Meta:
        proxy = True
        verbose_name = _("staff branch assignment")
        verbose_name_plural = _("staff branch assignments")
