"""Admin of the patient registry, and the "Import patients" page.

People and their records are registered and changed at the desk, where duplicates are shown and
the services keep the rules; here administrators look them up (``policies.can_view_people``), with
the change history, and see medical cards only of the types they were granted, as at the desk.
What the admin may change goes through the same services: a person's fields (``person_update``,
for roles that register patients), card types (reference data) and the next number of a card
numbering. Merges and import reports are evidence and read-only.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from clinic.audit.admin import HistoryAdminMixin, ReadOnlyAdminMixin
from clinic.audit.services import access_log_record
from clinic.core.admin import (
    RECORD_FIELDS,
    RECORD_FIELDSET,
    BranchListFilter,
    CapabilityAdminMixin,
    CoreModelAdmin,
)
from clinic.core.models import Organization, Staff, StaffStatus
from clinic.core.roles import Capability
from clinic.core.selectors import organization_list
from clinic.core.validators import normalize_snils

from . import policies
from .importing import (
    DEFAULT_MAPPING,
    ImportFileError,
    ImportInProgressError,
    mapping_parse,
    patients_import,
)
from .models import (
    CardNumberSequence,
    CardType,
    Consent,
    Contact,
    ImportOutcome,
    ImportRow,
    ImportRun,
    MedicalCard,
    PaperCardMovement,
    Person,
    PersonMerge,
    PersonRelation,
)
from .selectors import card_type_granted_staff, card_types_for_actor
from .services import EDITABLE_FIELDS, card_type_grants_set, person_update

IMPORT_REPORT_ROWS = 100
IMPORT_FILE_SUFFIXES = (".csv", ".txt", ".xlsx")


def _cards_visible(request: HttpRequest, cards: QuerySet[MedicalCard]) -> QuerySet[MedicalCard]:
    """Cards of the types the user may open: like the desk, others are not shown to exist."""
    if request.user.is_superuser:
        return cards
    return cards.filter(card_type__in=card_types_for_actor(request.user))


def _admin_link(obj: Any) -> SafeString | str:
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj)


class PeopleViewMixin(CapabilityAdminMixin):
    """Opens people's records to whoever may view people (``policies.can_view_people``)."""

    def has_capability(self, request: HttpRequest) -> bool:
        return policies.can_view_people(request.user)


class RegistryViewAdmin(HistoryAdminMixin, ReadOnlyAdminMixin, PeopleViewMixin, admin.ModelAdmin):
    """A registry record shown with its change history; it is changed at the desk."""

    show_full_result_count = False


class EvidenceAdmin(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Rows that document what happened (merges, imports, paper movements): never edited."""

    capability = Capability.MANAGE_REFERENCE_DATA
    show_full_result_count = False


class ReadOnlyInline(ReadOnlyAdminMixin, PeopleViewMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)


# People ----------------------------------------------------------------------------------------


class ContactInline(ReadOnlyInline):
    model = Contact
    fields = ("kind", "value", "note", "created_at")


class RelationInline(ReadOnlyInline):
    model = PersonRelation
    fk_name = "person"
    fields = (
        "relative",
        "relation",
        "is_legal_representative",
        "authorising_document",
        "valid_until",
    )


class MedicalCardInline(ReadOnlyInline):
    model = MedicalCard
    fields = ("card_type", "number", "branch", "status", "opened_on", "paper_location")

    def get_queryset(self, request: HttpRequest) -> QuerySet[MedicalCard]:
        cards = super().get_queryset(request).select_related("card_type", "branch")
        return _cards_visible(request, cards)


class ConsentInline(ReadOnlyInline):
    model = Consent
    fields = ("kind", "channel", "source", "given_on", "revoked_on")


class PersonAdminForm(forms.ModelForm):
    """Takes the SNILS however it is typed ("112-233-445 95"); it is stored as digits."""

    snils = forms.CharField(label=_("SNILS"), max_length=14, required=False)

    def clean_snils(self) -> str:
        return normalize_snils(self.cleaned_data["snils"])


@admin.register(Person)
class PersonAdmin(HistoryAdminMixin, PeopleViewMixin, admin.ModelAdmin):
    """People: looked up by administrators, edited (through ``person_update``) by registrars."""

    form = PersonAdminForm
    list_display = (
        "full_name",
        "birth_date",
        "sex",
        "snils",
        "oms_policy",
        "organization",
        "is_vip",
        "merged_into",
        "created_at",
    )
    list_filter = (
        "organization",
        "sex",
        "is_vip",
        ("merged_into", admin.EmptyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = (
        "last_name",
        "first_name",
        "patronymic",
        "snils",
        "oms_policy",
        "document_number",
        "contacts__value",
    )
    list_select_related = ("organization", "merged_into")
    show_full_result_count = False
    readonly_fields = ("organization", "merged_into", *RECORD_FIELDS)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "organization",
                    "last_name",
                    "first_name",
                    "patronymic",
                    "birth_date",
                    "sex",
                    "is_vip",
                    "merged_into",
                )
            },
        ),
        (
            _("Documents"),
            {
                "fields": (
                    "snils",
                    "oms_policy",
                    "document_type",
                    "document_series",
                    "document_number",
                    "document_issued_by",
                    "document_issued_on",
                )
            },
        ),
        (
            _("Addresses"),
            {
                "classes": ("collapse",),
                "fields": (
                    "registration_address",
                    "registration_fias",
                    "actual_address",
                    "actual_fias",
                ),
            },
        ),
        (_("Communication"), {"fields": ("preferred_channel", "notes")}),
        RECORD_FIELDSET,
    )
    inlines = (ContactInline, RelationInline, MedicalCardInline, ConsentInline)

    @admin.display(description=_("full name"), ordering="last_name")
    def full_name(self, person: Person) -> str:
        return person.full_name

    def has_add_permission(self, request: HttpRequest) -> bool:
        """People are registered at the desk, where possible duplicates are shown first."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return policies.can_register_patient(request.user)
        return policies.can_edit_person(request.user, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changes = {
            name: form.cleaned_data[name] for name in form.changed_data if name in EDITABLE_FIELDS
        }
        if changes:
            person_update(actor=request.user, person=obj, changes=changes)


@admin.register(Contact)
class ContactAdmin(RegistryViewAdmin):
    list_display = ("value", "kind", "person", "note", "created_at")
    list_filter = ("kind", "person__organization", ("created_at", admin.DateFieldListFilter))
    search_fields = ("value", "digits", "person__last_name", "person__first_name")
    list_select_related = ("person",)


@admin.register(Consent)
class ConsentAdmin(RegistryViewAdmin):
    list_display = ("person", "kind", "channel", "source", "given_on", "revoked_on")
    list_filter = (
        "kind",
        "channel",
        "source",
        ("revoked_on", admin.EmptyFieldListFilter),
        ("given_on", admin.DateFieldListFilter),
    )
    search_fields = ("person__last_name", "person__first_name", "document_title")
    list_select_related = ("person",)


@admin.register(PersonRelation)
class PersonRelationAdmin(RegistryViewAdmin):
    list_display = ("person", "relation", "relative", "is_legal_representative", "valid_until")
    list_filter = ("relation", "is_legal_representative")
    search_fields = ("person__last_name", "relative__last_name", "authorising_document")
    list_select_related = ("person", "relative")


# Cards -----------------------------------------------------------------------------------------


class CardTypeForm(forms.ModelForm):
    """The card type plus the staff granted to open its cards (django-guardian permissions)."""

    granted_staff = forms.ModelMultipleChoiceField(
        label=_("Staff who may open these cards"),
        queryset=Staff.objects.filter(user__isnull=False, status=StaffStatus.ACTIVE),
        required=False,
        widget=FilteredSelectMultiple(_("staff"), is_stacked=False),
    )

    class Meta:
        model = CardType
        fields = ("organization", "code", "name", "number_prefix", "is_active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["granted_staff"].initial = card_type_granted_staff(self.instance)


@admin.register(CardType)
class CardTypeAdmin(CoreModelAdmin):
    """Card types are reference data: administrators add them, deactivate them and decide who
    may open cards of each type."""

    form = CardTypeForm
    list_display = ("name", "code", "number_prefix", "organization", "is_active")
    list_filter = ("is_active", "organization")
    search_fields = ("name", "code")
    list_select_related = ("organization",)
    autocomplete_fields = ("organization",)
    fieldsets = (
        (None, {"fields": ("organization", "code", "name", "number_prefix", "is_active")}),
        (_("Access"), {"fields": ("granted_staff",)}),
        RECORD_FIELDSET,
    )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        card_type_grants_set(
            actor=request.user,
            card_type=form.instance,
            staff=list(form.cleaned_data["granted_staff"]),
        )


@admin.register(CardNumberSequence)
class CardNumberSequenceAdmin(CapabilityAdminMixin, admin.ModelAdmin):
    """The next card number of each type: set it to continue an old numbering."""

    capability = Capability.MANAGE_REFERENCE_DATA
    list_display = ("card_type", "organization", "next_value")
    list_filter = ("organization", "card_type")
    search_fields = ("card_type__name", "card_type__code", "organization__short_name")
    list_select_related = ("card_type", "organization")
    fields = ("organization", "card_type", "next_value")
    readonly_fields = ("organization", "card_type")

    def has_add_permission(self, request: HttpRequest) -> bool:
        """A numbering starts with the first card of its type."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PaperCardMovementInline(ReadOnlyInline):
    model = PaperCardMovement
    fields = ("occurred_at", "action", "to_staff", "to_room", "performed_by")
    show_change_link = False


@admin.register(MedicalCard)
class MedicalCardAdmin(RegistryViewAdmin):
    """Cards are opened, closed and moved by the registry's services; each view is logged."""

    list_display = (
        "number",
        "card_type",
        "person",
        "organization",
        "branch",
        "status",
        "paper_location",
        "opened_on",
    )
    list_filter = (
        "card_type",
        "status",
        "paper_location",
        "organization",
        ("branch", BranchListFilter),
    )
    search_fields = ("number", "person__last_name", "person__first_name")
    list_select_related = ("card_type", "person", "organization", "branch")
    inlines = (PaperCardMovementInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[MedicalCard]:
        return _cards_visible(request, super().get_queryset(request))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        card = getattr(response, "context_data", {}).get("original")
        if isinstance(card, MedicalCard):
            access_log_record(user=request.user, obj=card, purpose="admin", request=request)
        return response


@admin.register(PaperCardMovement)
class PaperCardMovementAdmin(EvidenceAdmin):
    list_display = ("occurred_at", "card", "action", "to_staff", "to_room", "performed_by")
    list_filter = ("action", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("card__number", "card__person__last_name")
    list_select_related = (
        "card__card_type",
        "to_staff",
        "to_room",
        "performed_by",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[PaperCardMovement]:
        movements = super().get_queryset(request)
        return movements.filter(card__in=_cards_visible(request, MedicalCard.objects.all()))


@admin.register(PersonMerge)
class PersonMergeAdmin(EvidenceAdmin):
    list_display = ("merged", "survivor", "reason", "performed_at", "performed_by", "undone_at")
    list_filter = (
        ("undone_at", admin.EmptyFieldListFilter),
        ("performed_at", admin.DateFieldListFilter),
    )
    search_fields = ("merged__last_name", "survivor__last_name", "reason")
    list_select_related = ("merged", "survivor", "performed_by", "undone_by")


# Imports ---------------------------------------------------------------------------------------


class ImportRowInline(ReadOnlyInline):
    """The first rows of the report, rejected ones first; the whole report is a link away."""

    model = ImportRow
    fields = ("row_number", "outcome", "person_link", "message")
    show_change_link = False
    verbose_name_plural = _("report (the first rows, rejected ones first)")

    @admin.display(description=_("person"))
    def person_link(self, row: ImportRow) -> SafeString | str:
        return _admin_link(row.person)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ImportRow]:
        object_id = (
            request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        )
        if not object_id:
            return ImportRow.objects.none()
        rejected_first = Case(
            When(outcome=ImportOutcome.REJECTED, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        shown = (
            ImportRow.objects.filter(run__pk=unquote(object_id))
            .order_by(rejected_first, "row_number")
            .values("pk")[:IMPORT_REPORT_ROWS]
        )
        return (
            super()
            .get_queryset(request)
            .filter(pk__in=shown)
            .select_related("person")
            .order_by(rejected_first, "row_number")
        )


class PatientImportForm(forms.Form):
    organization = forms.ModelChoiceField(
        label=_("Organization"), queryset=Organization.objects.none()
    )
    file = forms.FileField(
        label=_("File"),
        help_text=_(
            "CSV (UTF-8 or Windows-1251; comma, semicolon or tab separated) or XLSX (the first "
            "sheet). The first row holds the column headers."
        ),
    )
    mapping = forms.CharField(
        label=_("Column mapping"),
        widget=forms.Textarea(attrs={"rows": 14, "cols": 60}),
        help_text=_(
            "JSON: field name → column header. Fields: last_name and first_name (required), "
            "patronymic, birth_date, sex, phone, email, snils, oms_policy, card_number, "
            "card_type, address."
        ),
    )
    dry_run = forms.BooleanField(
        label=_("Dry run"),
        label_suffix="",
        required=False,
        help_text=_("Compute and report everything without changing the registry."),
    )

    def __init__(self, *args: Any, organizations: QuerySet[Organization], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["organization"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = organizations

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if Path(upload.name).suffix.lower() not in IMPORT_FILE_SUFFIXES:
            raise forms.ValidationError(_("Upload a .csv or .xlsx file."), code="file_type")
        return upload

    def clean_mapping(self) -> dict[str, str]:
        try:
            return mapping_parse(self.cleaned_data["mapping"])
        except ImportFileError as error:
            raise forms.ValidationError(str(error), code="mapping") from None


def default_mapping_json() -> str:
    return json.dumps(DEFAULT_MAPPING, ensure_ascii=False, indent=2)


@admin.register(ImportRun)
class ImportRunAdmin(EvidenceAdmin):
    """Import reports; the "Import patients" page starts a new import (or resumes one)."""

    list_display = (
        "file_name",
        "organization",
        "status",
        "dry_run",
        "rows_total",
        "rows_done",
        "created_count",
        "matched_count",
        "merged_count",
        "rejected_count",
        "started_at",
        "started_by",
    )
    list_filter = ("status", "dry_run", "organization", ("started_at", admin.DateFieldListFilter))
    search_fields = ("file_name", "file_checksum")
    list_select_related = ("organization", "started_by")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "organization",
                    "file_name",
                    "file_checksum",
                    "status",
                    "dry_run",
                    "started_at",
                    "finished_at",
                    "started_by",
                )
            },
        ),
        (
            _("Totals"),
            {
                "fields": (
                    "rows_total",
                    "rows_done",
                    "created_count",
                    "matched_count",
                    "merged_count",
                    "rejected_count",
                    "report_links",
                )
            },
        ),
        (_("Column mapping"), {"classes": ("collapse",), "fields": ("mapping_json",)}),
    )
    readonly_fields = ("report_links", "mapping_json")
    inlines = (ImportRowInline,)

    @admin.display(description=_("whole report"))
    def report_links(self, run: ImportRun) -> SafeString:
        url = reverse("admin:patients_importrow_changelist")
        every = urlencode({"run__id__exact": run.pk})
        rejected = urlencode(
            {"run__id__exact": str(run.pk), "outcome__exact": str(ImportOutcome.REJECTED)}
        )
        return format_html(
            '<a href="{}?{}">{}</a> · <a href="{}?{}">{}</a>',
            url,
            every,
            gettext("all rows"),
            url,
            rejected,
            gettext("rejected rows"),
        )

    @admin.display(description=_("column mapping"))
    def mapping_json(self, run: ImportRun) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(run.mapping, ensure_ascii=False, indent=2))

    def get_urls(self) -> list[URLPattern]:
        import_url = path(
            "import/",
            self.admin_site.admin_view(self.import_view),
            name="patients_importrun_import",
        )
        return [import_url, *super().get_urls()]

    def has_import_permission(self, request: HttpRequest) -> bool:
        return policies.can_import_patients(request.user)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_import": self.has_import_permission(request)}
        return super().changelist_view(request, extra_context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a file and import it now; then show the run's report."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        organizations = organization_list(actor=request.user).order_by("short_name")
        if request.method == "POST":
            form = PatientImportForm(request.POST, request.FILES, organizations=organizations)
            if form.is_valid():
                try:
                    run = self._import_upload(request, form.cleaned_data)
                except (ImportFileError, ImportInProgressError) as error:
                    form.add_error(None, str(error))
                else:
                    self.message_user(request, self._summary(run), messages.SUCCESS)
                    return redirect("admin:patients_importrun_change", run.pk)
        else:
            initial: dict[str, Any] = {"mapping": default_mapping_json()}
            if organizations.count() == 1:
                initial["organization"] = organizations.get()
            form = PatientImportForm(initial=initial, organizations=organizations)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Import patients"),
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/patients/importrun/import_form.html", context)

    def _import_upload(self, request: HttpRequest, data: dict[str, Any]) -> ImportRun:
        upload = data["file"]
        with tempfile.NamedTemporaryFile(suffix=Path(upload.name).suffix.lower()) as stored:
            for chunk in upload.chunks():
                stored.write(chunk)
            stored.flush()
            return patients_import(
                organization=data["organization"],
                path=stored.name,
                mapping=data["mapping"],
                actor=request.user,
                dry_run=data["dry_run"],
                file_name=Path(upload.name).name,
            )

    def _summary(self, run: ImportRun) -> str:
        text = gettext(
            "%(file)s: %(total)d rows; created %(created)d, matched %(matched)d, "
            "merged %(merged)d, rejected %(rejected)d."
        ) % {
            "file": run.file_name,
            "total": run.rows_done,
            "created": run.created_count,
            "matched": run.matched_count,
            "merged": run.merged_count,
            "rejected": run.rejected_count,
        }
        if run.dry_run:
            text += " " + gettext("Dry run: nothing was written to the registry.")
        return text


@admin.register(ImportRow)
class ImportRowAdmin(EvidenceAdmin):
    list_display = ("run", "row_number", "outcome", "person_link", "message")
    list_filter = ("outcome", ("run", admin.RelatedOnlyFieldListFilter))
    search_fields = ("run__file_name", "message", "person__last_name")
    list_select_related = ("run", "person")
    list_per_page = 100

    @admin.display(description=_("person"), ordering="person__last_name")
    def person_link(self, row: ImportRow) -> SafeString | str:
        return _admin_link(row.person)
