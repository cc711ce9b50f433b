"""Admin of the core: organizations, branches, departments, rooms, specialties and staff.

Reference data is edited here by administrators (the ``manage_reference_data`` capability), staff
records by those who manage staff and access (``manage_staff_access``). Dismissal goes through
``staff_dismiss``, so the login is deactivated together with the record.
"""

from __future__ import annotations

import zoneinfo
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AdminTextareaWidget
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet, Value
from django.db.models.functions import Replace
from django.forms import ModelMultipleChoiceField
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from clinic.audit.admin import HistoryAdminMixin

from .models import Branch, Department, Organization, Room, Specialty, Staff, StaffStatus
from .policies import can_manage_staff, has_capability
from .roles import Capability
from .services import staff_dismiss
from .validators import normalize_snils

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts

    _ModelAdminBase = admin.ModelAdmin[Any]
else:
    _ModelAdminBase = object

RECORD_FIELDS: tuple[str, ...] = ("public_id", "created_at", "updated_at", "created_by")
RECORD_OPTIONS: _FieldOpts = {"classes": ("collapse",), "fields": RECORD_FIELDS}
RECORD_FIELDSET = (_("Record"), RECORD_OPTIONS)


class CapabilityAdminMixin(_ModelAdminBase):
    """Opens a model admin (or inline) to the role whose capability covers the model.

    Roles are groups with capability permissions (``roles.py``), not Django's per-model
    permissions, so without this an administrator would see an empty admin. Delete stays with
    Django's model permission (superusers): reference data is deactivated, not deleted.
    """

    capability: str | None = None

    def has_capability(self, request: HttpRequest) -> bool:
        return self.capability is not None and has_capability(request.user, self.capability)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or self.has_capability(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or self.has_capability(request)

    def has_add_permission(self, request: HttpRequest, *args: Any, **kwargs: Any) -> bool:
        return super().has_add_permission(request, *args, **kwargs) or self.has_capability(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) or self.has_capability(request)


class CoreModelAdmin(HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Base of the core's admins: record fields read-only, author set, change history shown."""

    capability = Capability.MANAGE_REFERENCE_DATA
    readonly_fields = RECORD_FIELDS

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        instances = formset.save(commit=False)
        for instance in instances:
            if instance.pk is None and getattr(instance, "created_by_id", False) is None:
                instance.created_by = request.user
            instance.save()
        for deleted in formset.deleted_objects:
            deleted.delete()
        formset.save_m2m()


class CoreInline(CapabilityAdminMixin, admin.TabularInline):
    capability = Capability.MANAGE_REFERENCE_DATA
    extra = 0
    show_change_link = True

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def branch_label(branch: Branch) -> str:
    """A branch's name with its organization: two organizations may both have a "Central"."""
    return f"{branch.organization.short_name} — {branch.name}"


class BranchListFilter(admin.RelatedFieldListFilter):
    """Branches with their organization's name, fetched in one query."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[Any]:
        branches = Branch.objects.select_related("organization").order_by(
            "organization__short_name", "name"
        )
        return [(branch.pk, branch_label(branch)) for branch in branches]


# Organizations ---------------------------------------------------------------------------------


class BranchInline(CoreInline):
    model = Branch
    fields = ("name", "address", "time_zone", "phone", "is_active")
    formfield_overrides = {models.TextField: {"widget": AdminTextareaWidget(attrs={"rows": 2})}}


@admin.register(Organization)
class OrganizationAdmin(CoreModelAdmin):
    list_display = (
        "short_name",
        "name",
        "inn",
        "kpp",
        "ogrn",
        "time_zone",
        "currency",
        "is_active",
    )
    list_display_links = ("short_name", "name")
    list_filter = ("is_active", "time_zone", "currency")
    search_fields = ("short_name", "name", "inn", "ogrn", "frmo_oid")
    fieldsets = (
        (None, {"fields": ("name", "short_name", "is_active")}),
        (_("Registration"), {"fields": ("inn", "kpp", "ogrn", "frmo_oid", "address")}),
        (_("Settings"), {"fields": ("time_zone", "currency", "phone_region")}),
        RECORD_FIELDSET,
    )
    inlines = (BranchInline,)


# Branches --------------------------------------------------------------------------------------


class DepartmentInline(CoreInline):
    model = Department
    fields = ("name", "is_active")


class RoomInline(CoreInline):
    model = Room
    fields = ("number", "name", "room_type", "department", "is_active")

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "department":
            # Only the departments of the branch being edited (Room.clean insists on it).
            object_id = (
                request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
            )
            kwargs["queryset"] = (
                Department.objects.filter(branch_id=unquote(object_id))
                if object_id
                else Department.objects.none()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Branch)
class BranchAdmin(CoreModelAdmin):
    list_display = ("name", "organization", "address", "time_zone", "phone", "is_active")
    list_filter = ("is_active", "organization", "time_zone")
    search_fields = ("name", "address", "phone", "organization__short_name", "organization__inn")
    list_select_related = ("organization",)
    autocomplete_fields = ("organization",)
    fieldsets = (
        (None, {"fields": ("organization", "name", "is_active")}),
        (_("Contacts"), {"fields": ("address", "phone", "time_zone")}),
        RECORD_FIELDSET,
    )
    inlines = (DepartmentInline, RoomInline)


@admin.register(Department)
class DepartmentAdmin(CoreModelAdmin):
    list_display = ("name", "branch", "organization", "is_active")
    list_filter = ("is_active", ("branch", BranchListFilter), "branch__organization")
    search_fields = ("name", "branch__name", "branch__organization__short_name")
    list_select_related = ("branch__organization",)
    autocomplete_fields = ("branch",)
    fieldsets = ((None, {"fields": ("branch", "name", "is_active")}), RECORD_FIELDSET)

    @admin.display(description=_("organization"), ordering="branch__organization__short_name")
    def organization(self, department: Department) -> str:
        return str(department.branch.organization)


@admin.register(Room)
class RoomAdmin(CoreModelAdmin):
    list_display = ("number", "name", "room_type", "branch", "department", "is_active")
    list_filter = (
        "is_active",
        "room_type",
        ("branch", BranchListFilter),
        "branch__organization",
    )
    search_fields = ("number", "name", "branch__name", "department__name")
    list_select_related = ("branch", "department__branch")
    autocomplete_fields = ("branch", "department")
    fieldsets = (
        (None, {"fields": ("branch", "department", "number", "name", "room_type", "is_active")}),
        RECORD_FIELDSET,
    )


@admin.register(Specialty)
class SpecialtyAdmin(CoreModelAdmin):
    list_display = ("code", "name", "updated_at")
    list_filter = (("updated_at", admin.DateFieldListFilter),)
    search_fields = ("code", "name")
    fieldsets = ((None, {"fields": ("code", "name")}), RECORD_FIELDSET)


# Staff -----------------------------------------------------------------------------------------


@admin.register(Staff)
class StaffAdmin(CoreModelAdmin):
    """Staff members. Status and the dismissal date change only through the "Dismiss" action."""

    capability = Capability.MANAGE_STAFF_ACCESS
    list_display = (
        "full_name",
        "position",
        "specialty",
        "organization",
        "branch_list",
        "login",
        "status",
        "dismissed_on",
    )
    list_filter = (
        "status",
        "specialty",
        "organization",
        ("branches", BranchListFilter),
    )
    search_fields = (
        "last_name",
        "first_name",
        "patronymic",
        "snils",
        "frmr_id",
        "position",
        "user__username",
    )
    list_select_related = ("organization", "specialty", "user")
    autocomplete_fields = ("user", "organization", "specialty")
    filter_horizontal = ("branches",)
    readonly_fields = ("status", "dismissed_on", *RECORD_FIELDS)
    fieldsets = (
        (None, {"fields": ("last_name", "first_name", "patronymic", "user")}),
        (
            _("Employment"),
            {
                "fields": (
                    "organization",
                    "branches",
                    "position",
                    "specialty",
                    "status",
                    "dismissed_on",
                )
            },
        ),
        (_("Registries"), {"fields": ("snils", "frmr_id")}),
        RECORD_FIELDSET,
    )
    actions = ("dismiss",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Staff]:
        return super().get_queryset(request).prefetch_related("branches")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Staff], search_term: str
    ) -> tuple[QuerySet[Staff], bool]:
        """Also match SNILS however it was typed or stored ("112-233-445 95" or "11223344595")."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = normalize_snils(search_term)
        if len(digits) >= 3 and set(search_term.strip()) <= set("0123456789- "):
            snils_digits = Replace(Replace("snils", Value("-"), Value("")), Value(" "), Value(""))
            by_snils = queryset.alias(snils_digits=snils_digits).filter(
                snils_digits__contains=digits
            )
            results = results | queryset.filter(pk__in=by_snils.values("pk"))
        return results, may_have_duplicates

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Staff records stay (with their history); dismiss instead."""
        return False

    def has_dismiss_permission(self, request: HttpRequest) -> bool:
        return can_manage_staff(request.user)

    def formfield_for_manytomany(
        self, db_field: models.ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "branches":
            kwargs["queryset"] = Branch.objects.select_related("organization").order_by(
                "organization__short_name", "name"
            )
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name == "branches" and isinstance(formfield, ModelMultipleChoiceField):
            formfield.label_from_instance = branch_label  # type: ignore[method-assign, assignment]
        return formfield

    @admin.display(description=_("full name"), ordering="last_name")
    def full_name(self, staff: Staff) -> str:
        return staff.full_name

    @admin.display(description=_("branches"))
    def branch_list(self, staff: Staff) -> str:
        return ", ".join(branch.name for branch in staff.branches.all())

    @admin.display(description=_("login"), ordering="user__username")
    def login(self, staff: Staff) -> SafeString | str:
        if staff.user is None:
            return "—"
        url = reverse("admin:accounts_user_change", args=[staff.user.pk])
        if not staff.user.is_active:
            return format_html(
                '<a href="{}">{}</a> ({})', url, staff.user.get_username(), gettext("inactive")
            )
        return format_html('<a href="{}">{}</a>', url, staff.user.get_username())

    @admin.action(
        description=_("Dismiss the selected staff members (their logins are deactivated)"),
        permissions=["dismiss"],
    )
    def dismiss(self, request: HttpRequest, queryset: QuerySet[Staff]) -> None:
        """Dismiss each selected active staff member today (in their organization's time zone)."""
        dismissed: list[Staff] = []
        skipped = 0
        errors: list[tuple[str, str]] = []
        for staff in queryset.select_related("organization", "user"):
            if staff.status == StaffStatus.DISMISSED:
                skipped += 1
                continue
            if staff.user_id is not None and staff.user_id == request.user.pk:
                errors.append((staff.full_name, gettext("you cannot dismiss yourself")))
                continue
            today = timezone.localdate(timezone=zoneinfo.ZoneInfo(staff.organization.time_zone))
            try:
                staff_dismiss(staff=staff, on=today)
            except ValidationError as exc:
                errors.append((staff.full_name, "; ".join(exc.messages)))
                continue
            self.log_change(request, staff, [{"changed": {"fields": ["status", "dismissed_on"]}}])
            dismissed.append(staff)
        if dismissed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d staff member dismissed; their login is deactivated.",
                    "%(count)d staff members dismissed; their logins are deactivated.",
                    len(dismissed),
                )
                % {"count": len(dismissed)},
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d staff member was already dismissed.",
                    "%(count)d staff members were already dismissed.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )
        if errors:
            self.message_user(
                request,
                format_html(
                    "{}<ul>{}</ul>",
                    gettext("Not dismissed:"),
                    format_html_join("", "<li>{}: {}</li>", errors),
                ),
                messages.ERROR,
            )
