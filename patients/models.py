"""People, patients and their medical cards.

A *person* is anyone the clinic knows (a payer parent, a patient); a *patient* is a person with at
least one medical card. A merged person stays as a tombstone pointing to the survivor.
"""

from __future__ import annotations

import datetime
import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from clinic.audit.history import track_history
from clinic.core.models import Branch, Organization, Room, Staff, TimeStampedModel
from clinic.core.validators import validate_snils

from .normalizers import search_key

ADULT_AGE_YEARS = 18


class Sex(models.TextChoices):
    MALE = "male", _("Male")
    FEMALE = "female", _("Female")
    UNKNOWN = "unknown", _("Not stated")


class IdentityDocumentType(models.TextChoices):
    PASSPORT_RF = "passport_rf", _("Russian passport")
    BIRTH_CERTIFICATE = "birth_certificate", _("Birth certificate")
    FOREIGN_PASSPORT = "foreign_passport", _("Foreign passport")
    RESIDENCE_PERMIT = "residence_permit", _("Residence permit")
    OTHER = "other", _("Other document")


class Channel(models.TextChoices):
    SMS = "sms", _("SMS")
    WHATSAPP = "whatsapp", _("WhatsApp")
    EMAIL = "email", _("E-mail")
    CALL = "call", _("Phone call")


@track_history()
class Person(TimeStampedModel):
    """Someone the clinic knows: demographics, documents, addresses."""

    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    last_name = models.CharField(_("last name"), max_length=100)
    first_name = models.CharField(_("first name"), max_length=100)
    patronymic = models.CharField(_("patronymic"), max_length=100, blank=True)
    birth_date = models.DateField(_("birth date"), null=True, blank=True)
    sex = models.CharField(_("sex"), max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    snils = models.CharField(
        _("SNILS"), max_length=11, blank=True, validators=[validate_snils], db_index=True
    )
    document_type = models.CharField(
        _("identity document"), max_length=24, choices=IdentityDocumentType.choices, blank=True
    )
    document_series = models.CharField(_("series"), max_length=20, blank=True)
    document_number = models.CharField(_("number"), max_length=30, blank=True)
    document_issued_by = models.CharField(_("issued by"), max_length=300, blank=True)
    document_issued_on = models.DateField(_("issued on"), null=True, blank=True)
    oms_policy = models.CharField(_("OMS policy number"), max_length=20, blank=True, db_index=True)
    registration_address = models.TextField(_("registration address"), blank=True)
    registration_address_parts = models.JSONField(
        _("registration address (structured)"), default=dict, blank=True
    )
    registration_fias = models.CharField(_("registration FIAS code"), max_length=36, blank=True)
    actual_address = models.TextField(_("actual address"), blank=True)
    actual_address_parts = models.JSONField(
        _("actual address (structured)"), default=dict, blank=True
    )
    actual_fias = models.CharField(_("actual address FIAS code"), max_length=36, blank=True)
    preferred_channel = models.CharField(
        _("preferred channel"), max_length=16, choices=Channel.choices, blank=True
    )
    notes = models.TextField(_("notes"), blank=True)
    is_vip = models.BooleanField(_("VIP"), default=False)
    name_key = models.CharField(_("name for search"), max_length=320, editable=False, default="")
    merged_into = models.ForeignKey(
        "self",
        verbose_name=_("merged into"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="merged_from",
    )

    class Meta:
        verbose_name = _("person")
        verbose_name_plural = _("people")
        ordering = ["last_name", "first_name", "patronymic"]
        indexes = [
            GinIndex(
                name="patients_person_name_trgm", fields=["name_key"], opclasses=["gin_trgm_ops"]
            ),
            models.Index(fields=["organization", "birth_date"], name="patients_person_org_birth"),
            # The search box matches typed words against the words of name_key (patients.search
            # spells the same expressions): surname-led and first-name-led, binary order.
            models.Index(
                *[
                    models.Func(
                        models.F("name_key"),
                        template=f"split_part(%(expressions)s COLLATE \"C\", ' ', {position})",
                        output_field=models.CharField(),
                    )
                    for position in (1, 2, 3)
                ],
                name="patients_person_name_words",
            ),
            models.Index(
                *[
                    models.Func(
                        models.F("name_key"),
                        template=f"split_part(%(expressions)s COLLATE \"C\", ' ', {position})",
                        output_field=models.CharField(),
                    )
                    for position in (2, 3)
                ],
                name="patients_person_first_names",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(merged_into=models.F("id")), name="patients_person_not_merged_self"
            )
        ]

    def __str__(self) -> str:
        return self.full_name

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.last_name, self.first_name, self.patronymic) if part)

    def age_on(self, day: datetime.date) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))

    @property
    def is_minor(self) -> bool:
        age = self.age_on(timezone.localdate())
        return age is not None and age < ADULT_AGE_YEARS

    @property
    def is_tombstone(self) -> bool:
        return self.merged_into_id is not None

    def refresh_name_key(self) -> None:
        self.name_key = search_key(self.last_name, self.first_name, self.patronymic)

    def clean(self) -> None:
        from .normalizers import validate_birth_date

        if self.birth_date is not None:
            try:
                validate_birth_date(self.birth_date)
            except ValidationError as error:
                raise ValidationError({"birth_date": error}) from None
        if (
            self.document_issued_on
            and self.birth_date
            and self.document_issued_on < self.birth_date
        ):
            raise ValidationError(
                {"document_issued_on": _("The document is dated before the birth date.")}
            )


class ContactKind(models.TextChoices):
    MOBILE = "mobile", _("Mobile phone")
    HOME = "home", _("Home phone")
    WORK = "work", _("Work phone")
    EMAIL = "email", _("E-mail")
    WHATSAPP = "whatsapp", _("WhatsApp")


PHONE_KINDS = (ContactKind.MOBILE, ContactKind.HOME, ContactKind.WORK, ContactKind.WHATSAPP)


@track_history()
class Contact(TimeStampedModel):
    """A phone (E.164) or e-mail address of a person."""

    person = models.ForeignKey(
        Person, verbose_name=_("person"), on_delete=models.CASCADE, related_name="contacts"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=ContactKind.choices)
    value = models.CharField(_("value"), max_length=254)
    digits = models.CharField(_("digits"), max_length=20, blank=True, editable=False)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ["person", "kind"]
        indexes = [
            GinIndex(
                name="patients_contact_digits_trgm", fields=["digits"], opclasses=["gin_trgm_ops"]
            ),
            models.Index(fields=["value"], name="patients_contact_value"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["person", "kind", "value"], name="patients_contact_unique_per_person"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class ConsentKind(models.TextChoices):
    PERSONAL_DATA = "personal_data", _("Processing of personal data")
    COMMUNICATION = "communication", _("Communications")
    INFORMED_VOLUNTARY = "informed_voluntary", _("Informed voluntary consent")


class ConsentSource(models.TextChoices):
    PAPER = "paper", _("Signed on paper")
    PORTAL = "portal", _("Given on the portal")
    VERBAL = "verbal", _("Verbal, recorded by staff")


@track_history()
class Consent(TimeStampedModel):
    """A consent with its source; revoking it keeps the row (who revoked, when, how)."""

    person = models.ForeignKey(
        Person, verbose_name=_("person"), on_delete=models.CASCADE, related_name="consents"
    )
    kind = models.CharField(_("kind"), max_length=24, choices=ConsentKind.choices)
    channel = models.CharField(
        _("channel"),
        max_length=16,
        choices=Channel.choices,
        blank=True,
        help_text=_("For consents to communications: which channel."),
    )
    document_title = models.CharField(_("document"), max_length=300, blank=True)
    given_on = models.DateField(_("given on"))
    source = models.CharField(_("source"), max_length=16, choices=ConsentSource.choices)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("recorded by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    revoked_on = models.DateField(_("revoked on"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("revoked by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    revocation_source = models.CharField(
        _("revocation source"), max_length=16, choices=ConsentSource.choices, blank=True
    )

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        ordering = ["person", "kind", "-given_on"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="communication") | ~Q(channel=""),
                name="patients_consent_communication_has_channel",
            ),
            models.CheckConstraint(
                condition=~Q(source="verbal") | Q(recorded_by__isnull=False),
                name="patients_consent_verbal_has_recorder",
            ),
            models.CheckConstraint(
                condition=Q(revoked_on__isnull=True) | Q(revoked_on__gte=models.F("given_on")),
                name="patients_consent_revoked_after_given",
            ),
        ]

    def __str__(self) -> str:
        label = self.get_kind_display()
        if self.channel:
            label = f"{label} ({self.get_channel_display()})"
        return label

    @property
    def is_active(self) -> bool:
        return self.revoked_on is None


class Relation(models.TextChoices):
    MOTHER = "mother", _("Mother")
    FATHER = "father", _("Father")
    GUARDIAN = "guardian", _("Guardian")
    TRUSTEE = "trustee", _("Trustee")
    SPOUSE = "spouse", _("Spouse")
    CHILD = "child", _("Child")
    RELATIVE = "relative", _("Relative")
    OTHER = "other", _("Other")


@track_history()
class PersonRelation(TimeStampedModel):
    """A family link, or a legal representative with the document that authorises them."""

    person = models.ForeignKey(
        Person, verbose_name=_("person"), on_delete=models.CASCADE, related_name="relations"
    )
    relative = models.ForeignKey(
        Person,
        verbose_name=_("relative or representative"),
        on_delete=models.PROTECT,
        related_name="relations_as_relative",
    )
    relation = models.CharField(_("relation"), max_length=16, choices=Relation.choices)
    is_legal_representative = models.BooleanField(_("legal representative"), default=False)
    authorising_document = models.CharField(_("authorising document"), max_length=300, blank=True)
    valid_until = models.DateField(_("valid until"), null=True, blank=True)

    class Meta:
        verbose_name = _("relation")
        verbose_name_plural = _("relations")
        constraints = [
            models.UniqueConstraint(
                fields=["person", "relative", "relation"], name="patients_relation_unique"
            ),
            models.CheckConstraint(
                condition=~Q(person=models.F("relative")), name="patients_relation_not_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.relative} — {self.get_relation_display()} ({self.person})"


@track_history()
class CardType(TimeStampedModel):
    """A type of medical card (outpatient, dental, venereology, ...): reference data.

    Staff open only the card types they are granted (django-guardian object permission
    ``patients.open_cardtype``). A type with no organization is available to all organizations.
    """

    organization = models.ForeignKey(
        Organization,
        verbose_name=_("organization"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    code = models.SlugField(_("code"), max_length=40)
    name = models.CharField(_("name"), max_length=200)
    number_prefix = models.CharField(_("number prefix"), max_length=10, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("card type")
        verbose_name_plural = _("card types")
        ordering = ["name"]
        permissions = [("open_cardtype", "Can open medical cards of this type")]
        constraints = [
            models.UniqueConstraint(
                fields=["code"],
                condition=Q(organization__isnull=True),
                name="patients_cardtype_unique_global_code",
            ),
            models.UniqueConstraint(
                fields=["organization", "code"], name="patients_cardtype_unique_code_per_org"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CardNumberSequence(models.Model):
    """The next card number of one card type in one organization (taken under a row lock)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    card_type = models.ForeignKey(CardType, on_delete=models.CASCADE, related_name="+")
    next_value = models.PositiveIntegerField(default=1)

    class Meta:
        verbose_name = _("card numbering")
        verbose_name_plural = _("card numbering")
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "card_type"], name="patients_card_sequence_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.card_type}: {self.next_value}"


class CardStatus(models.TextChoices):
    OPEN = "open", _("Open")
    CLOSED = "closed", _("Closed")


class PaperLocation(models.TextChoices):
    ARCHIVE = "archive", _("In the archive")
    ISSUED = "issued", _("Issued")
    NONE = "none", _("No paper card")


@track_history()
class MedicalCard(TimeStampedModel):
    """A medical card of one type, numbered within its organization and type."""

    person = models.ForeignKey(
        Person, verbose_name=_("patient"), on_delete=models.PROTECT, related_name="cards"
    )
    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    card_type = models.ForeignKey(
        CardType, verbose_name=_("card type"), on_delete=models.PROTECT, related_name="cards"
    )
    branch = models.ForeignKey(
        Branch, verbose_name=_("branch"), on_delete=models.PROTECT, related_name="+"
    )
    number = models.CharField(_("number"), max_length=40)
    opened_on = models.DateField(_("opened on"), default=datetime.date.today)
    closed_on = models.DateField(_("closed on"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=8, choices=CardStatus.choices, default=CardStatus.OPEN
    )
    paper_location = models.CharField(
        _("paper card"),
        max_length=8,
        choices=PaperLocation.choices,
        default=PaperLocation.ARCHIVE,
    )
    issued_to_staff = models.ForeignKey(
        Staff,
        verbose_name=_("issued to"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    issued_to_room = models.ForeignKey(
        Room,
        verbose_name=_("issued to room"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    issued_at = models.DateTimeField(_("issued at"), null=True, blank=True)

    class Meta:
        verbose_name = _("medical card")
        verbose_name_plural = _("medical cards")
        ordering = ["card_type__name", "number"]
        indexes = [models.Index(fields=["number"], name="patients_card_number")]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "card_type", "number"],
                name="patients_card_unique_number",
            ),
            models.CheckConstraint(
                condition=~Q(status="closed") | Q(closed_on__isnull=False),
                name="patients_card_closed_has_date",
            ),
            models.CheckConstraint(
                condition=~Q(paper_location="issued") | Q(issued_at__isnull=False),
                name="patients_card_issued_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_type} №{self.number}"


class PaperCardMovement(models.Model):
    """One movement of a paper card: issued to someone or some room, or returned."""

    class Action(models.TextChoices):
        ISSUED = "issued", _("Issued")
        RETURNED = "returned", _("Returned")

    card = models.ForeignKey(
        MedicalCard, verbose_name=_("card"), on_delete=models.CASCADE, related_name="movements"
    )
    action = models.CharField(_("action"), max_length=8, choices=Action.choices)
    to_staff = models.ForeignKey(
        Staff,
        verbose_name=_("to"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    to_room = models.ForeignKey(
        Room,
        verbose_name=_("to room"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    occurred_at = models.DateTimeField(_("when"), default=timezone.now)
    performed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by"),
        on_delete=models.PROTECT,
        null=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("paper card movement")
        verbose_name_plural = _("paper card movements")
        ordering = ["card", "-occurred_at"]

    def __str__(self) -> str:
        return f"{self.card}: {self.get_action_display()} {self.occurred_at:%Y-%m-%d %H:%M}"


class PersonMerge(models.Model):
    """A merge of two people: what moved from the merged person to the survivor, to undo it."""

    survivor = models.ForeignKey(
        Person, verbose_name=_("survivor"), on_delete=models.PROTECT, related_name="merges_kept"
    )
    merged = models.ForeignKey(
        Person,
        verbose_name=_("merged person"),
        on_delete=models.PROTECT,
        related_name="merges_absorbed",
    )
    reason = models.CharField(_("reason"), max_length=500)
    moved = models.JSONField(_("moved records"), default=dict)
    merged_snapshot = models.JSONField(_("merged person before"), default=dict)
    performed_at = models.DateTimeField(_("merged at"), auto_now_add=True)
    performed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("merged by"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    undone_at = models.DateTimeField(_("unmerged at"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("unmerged by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("merge of people")
        verbose_name_plural = _("merges of people")
        ordering = ["-performed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["merged"],
                condition=Q(undone_at__isnull=True),
                name="patients_merge_one_active_per_merged",
            )
        ]

    def __str__(self) -> str:
        return f"{self.merged} → {self.survivor}"


class ImportStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")


class ImportRun(models.Model):
    """One import of a patient file. An unfinished run of the same file is resumed, not redone."""

    public_id = models.UUIDField(_("public id"), unique=True, editable=False, default=uuid.uuid4)
    organization = models.ForeignKey(
        Organization, verbose_name=_("organization"), on_delete=models.PROTECT, related_name="+"
    )
    file_name = models.CharField(_("file"), max_length=300)
    file_checksum = models.CharField(_("file checksum (SHA-256)"), max_length=64, db_index=True)
    mapping = models.JSONField(_("column mapping"), default=dict)
    dry_run = models.BooleanField(_("dry run"), default=False)
    status = models.CharField(
        _("status"), max_length=12, choices=ImportStatus.choices, default=ImportStatus.RUNNING
    )
    rows_total = models.PositiveIntegerField(_("rows"), default=0)
    rows_done = models.PositiveIntegerField(_("rows processed"), default=0)
    created_count = models.PositiveIntegerField(_("created"), default=0)
    matched_count = models.PositiveIntegerField(_("matched"), default=0)
    merged_count = models.PositiveIntegerField(_("merged"), default=0)
    rejected_count = models.PositiveIntegerField(_("rejected"), default=0)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("started by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("patient import")
        verbose_name_plural = _("patient imports")
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_status_display()})"


class ImportOutcome(models.TextChoices):
    CREATED = "created", pgettext_lazy("import outcome", "Created")
    MATCHED = "matched", _("Matched an existing person")
    MERGED = "merged", _("Merged into an existing person")
    REJECTED = "rejected", _("Rejected")


class ImportRow(models.Model):
    """What happened to one row of an import, with the reason when it was rejected."""

    run = models.ForeignKey(
        ImportRun, verbose_name=_("import"), on_delete=models.CASCADE, related_name="rows"
    )
    row_number = models.PositiveIntegerField(_("row"))
    outcome = models.CharField(_("outcome"), max_length=10, choices=ImportOutcome.choices)
    person = models.ForeignKey(
        Person,
        verbose_name=_("person"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    message = models.TextField(_("message"), blank=True)

    class Meta:
        verbose_name = _("import row")
        verbose_name_plural = _("import rows")
        ordering = ["run", "row_number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "row_number"], name="patients_import_row_unique")
        ]

    def __str__(self) -> str:
        return f"{self.row_number}: {self.get_outcome_display()}"
