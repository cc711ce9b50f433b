"""Admin of the user accounts: Django's user admin, made to work with ``accounts.User``.

Django's stock user forms are bound to ``auth.User`` (swapped out here), so the forms are
re-declared for this model. Managing users is for roles with ``manage_staff_access``; only a
superuser may grant or change superuser status and direct permissions.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm, UsernameField
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from clinic.audit.admin import HistoryAdminMixin
from clinic.core.admin import CapabilityAdminMixin
from clinic.core.roles import Capability

from .models import User


class UserCreationForm(AdminUserCreationForm):
    """Django's admin creation form (password optional), bound to ``accounts.User``."""

    class Meta:
        model = User
        fields = ("username",)
        field_classes = {"username": UsernameField}


class UserEditForm(UserChangeForm):
    """Django's user change form, bound to ``accounts.User``."""

    class Meta:
        model = User
        fields = "__all__"
        field_classes = {"username": UsernameField}


class StaffLinkFilter(admin.SimpleListFilter):
    title = _("staff record")
    parameter_name = "has_staff"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Linked to a staff member")), ("no", _("No staff record"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(staff__isnull=False)
        if self.value() == "no":
            return queryset.filter(staff__isnull=True)
        return queryset


SUPERUSER_ONLY_FIELDS = ("is_superuser", "user_permissions")


@admin.register(User)
class UserAdmin(HistoryAdminMixin, CapabilityAdminMixin, DjangoUserAdmin):
    capability = Capability.MANAGE_STAFF_ACCESS
    form = UserEditForm
    add_form = UserCreationForm
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "staff_link",
        "is_active",
        "is_staff",
        "is_superuser",
        "last_login",
    )
    list_filter = (
        "is_active",
        "is_staff",
        "is_superuser",
        "groups",
        StaffLinkFilter,
        "staff__organization",
    )
    search_fields = (
        "username",
        "first_name",
        "last_name",
        "email",
        "staff__last_name",
        "staff__snils",
    )
    list_select_related = ("staff",)
    readonly_fields = ("staff_link", "last_login", "date_joined")
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        (_("Staff record"), {"fields": ("staff_link",)}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields.extend(f for f in SUPERUSER_ONLY_FIELDS if f not in fields)
        return fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Only a superuser edits a superuser's account (and so its password)."""
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description=_("staff member"), ordering="staff__last_name")
    def staff_link(self, user: User) -> SafeString | str:
        staff = getattr(user, "staff", None)
        if staff is None:
            return "—"
        url = reverse("admin:core_staff_change", args=[staff.pk])
        return format_html(
            '<a href="{}">{}</a> ({})', url, staff.full_name, staff.get_status_display()
        )
