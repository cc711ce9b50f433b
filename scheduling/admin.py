"""Admin of the schedule: resources, the service catalogue and its reference data, work
schedules and the production calendar, and read-only views of appointments and the waitlist.

Schedule-type rows (resources, work schedules, exceptions, breaks, shift templates, calendar
days) are written through ``scheduling.rostering``: the same permission check, validation,
history context and "appointments would be stranded" refusal as the API. The form runs the
service once inside a rolled-back transaction while it validates, so a refusal appears next to
the field instead of as an error page; ``save_model`` then runs it for real. Appointments and
the waitlist are changed only through ``scheduling.services`` at the desk: here they are
read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from clinic.audit.admin import HistoryAdminMixin, ReadOnlyAdminMixin
from clinic.core.admin import RECORD_FIELDS, BranchListFilter, CapabilityAdminMixin
from clinic.core.roles import Capability

from . import rostering
from .errors import SchedulingError
from .models import (
    Appointment,
    AppointmentKind,
    AppointmentService,
    AppointmentStatus,
    CalendarDay,
    CancelReason,
    ChannelRule,
    InformationSource,
    Occupancy,
    Quota,
    ReferringAgent,
    Resource,
    ScheduleBreak,
    ScheduleException,
    Service,
    ServiceRequirement,
    ShiftTemplate,
    WaitlistEntry,
    WaitlistOffer,
    WorkSchedule,
)

if TYPE_CHECKING:
    _ModelAdminBase = admin.ModelAdmin[Any]
else:
    _ModelAdminBase = object


class _DryRun(Exception):
    """Raised inside the validation transaction to roll back the trial run of a service."""


# Reference data --------------------------------------------------------------------------------


class ReferenceAdmin(HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Reference data with history (tracked models), edited by administrators."""

    capability = Capability.MANAGE_REFERENCE_DATA
    readonly_fields = RECORD_FIELDS

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class PlainReferenceAdmin(CapabilityAdminMixin, admin.ModelAdmin):
    """Reference lists without history or record fields (statuses, reasons, sources)."""

    capability = Capability.MANAGE_REFERENCE_DATA


class ServiceRequirementInline(CapabilityAdminMixin, admin.TabularInline):
    model = ServiceRequirement
    capability = Capability.MANAGE_REFERENCE_DATA
    extra = 0
    autocomplete_fields = ("resource",)


@admin.register(Service)
class ServiceAdmin(ReferenceAdmin):
    list_display = ("code", "name", "organization", "kind", "duration_minutes", "is_active")
    list_filter = ("is_active", "kind", "organization")
    search_fields = ("code", "name")
    list_select_related = ("organization", "kind")
    inlines = (ServiceRequirementInline,)


@admin.register(AppointmentKind)
class AppointmentKindAdmin(ReferenceAdmin):
    list_display = ("code", "name", "default_duration_minutes", "is_active")
    list_filter = ("is_active",)
    search_fields = ("code", "name")


@admin.register(ChannelRule)
class ChannelRuleAdmin(ReferenceAdmin):
    list_display = ("channel", "organization", "min_notice_minutes", "horizon_days")
    list_filter = ("channel", "organization")
    search_fields = ("organization__short_name",)
    list_select_related = ("organization",)


@admin.register(ReferringAgent)
class ReferringAgentAdmin(ReferenceAdmin):
    list_display = ("name", "organization", "is_active")
    list_filter = ("is_active", "organization")
    search_fields = ("name",)
    list_select_related = ("organization",)


@admin.register(Quota)
class QuotaAdmin(ReferenceAdmin):
    list_display = ("__str__", "organization", "scope", "period", "limit", "is_active")
    list_filter = ("is_active", "scope", "period", "organization")
    search_fields = ("service__name", "resource__name")
    list_select_related = ("organization", "service", "resource")
    autocomplete_fields = ("service", "resource")


@admin.register(AppointmentStatus)
class AppointmentStatusAdmin(PlainReferenceAdmin):
    list_display = ("code", "name", "colour", "occupies", "is_final", "order")
    search_fields = ("code", "name")


@admin.register(CancelReason)
class CancelReasonAdmin(PlainReferenceAdmin):
    list_display = ("code", "name", "is_active")
    list_filter = ("is_active",)
    search_fields = ("code", "name")


@admin.register(InformationSource)
class InformationSourceAdmin(PlainReferenceAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


# Schedule-type rows: written through rostering -------------------------------------------------


class RosteringForm(forms.ModelForm):
    """A schedule form with the two things every rostering change takes besides the fields."""

    change_reason = forms.CharField(
        label=_("Reason for the change"), required=False, max_length=300
    )
    force = forms.BooleanField(
        label=_("Save even if booked appointments fall outside working time"), required=False
    )


class RosteringAdmin(HistoryAdminMixin, CapabilityAdminMixin, _ModelAdminBase):
    """Writes go through a ``rostering`` service (``apply``), never ``Model.save`` directly."""

    capability = Capability.MANAGE_WORK_SCHEDULE
    form = RosteringForm
    readonly_fields = RECORD_FIELDS

    def apply(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        """Call the service for this form; return the saved row."""
        raise NotImplementedError

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)
        model_admin = self

        class ServiceCheckedForm(form_class):  # type: ignore[misc, valid-type]
            def _post_clean(self) -> None:
                super()._post_clean()
                if self.errors:
                    return
                try:
                    with transaction.atomic():
                        model_admin.apply(request, self.instance, self, change)
                        raise _DryRun
                except _DryRun:
                    pass
                except SchedulingError as error:
                    field = error.field if error.field in self.fields else None
                    self.add_error(field, str(error.message))
                except PermissionDenied as denied:
                    self.add_error(None, str(denied))

        return ServiceCheckedForm

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = self.apply(request, obj, form, change)
        if saved is not None and saved is not obj:
            obj.pk = saved.pk
            for field in obj._meta.concrete_fields:
                setattr(obj, field.attname, getattr(saved, field.attname))

    def changes(self, form: Any, allowed: frozenset[str]) -> dict[str, Any]:
        return {name: form.cleaned_data[name] for name in form.changed_data if name in allowed}

    @staticmethod
    def options(form: Any) -> dict[str, Any]:
        return {
            "reason": form.cleaned_data.get("change_reason", ""),
            "force": form.cleaned_data.get("force", False),
        }


@admin.register(Resource)
class ResourceAdmin(RosteringAdmin, admin.ModelAdmin):
    list_display = ("name", "kind", "branch", "equipment_type", "grid_step_minutes", "is_active")
    list_filter = ("is_active", "kind", ("branch", BranchListFilter))
    search_fields = ("name", "equipment_type", "staff__last_name")
    list_select_related = ("branch", "staff")
    raw_id_fields = ("staff", "room")
    exclude = ("organization",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields += ["kind", "staff", "room"]
        return fields

    def apply(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        reason = data.get("change_reason", "")
        if change:
            return rostering.resource_update(
                actor=request.user,
                resource=Resource.objects.get(pk=obj.pk),
                changes=self.changes(form, rostering.RESOURCE_FIELDS),
                reason=reason,
            )
        return rostering.resource_create(
            actor=request.user,
            branch=data["branch"],
            kind=data["kind"],
            name=data["name"],
            staff=data.get("staff"),
            room=data.get("room"),
            equipment_type=data.get("equipment_type", ""),
            grid_step_minutes=data["grid_step_minutes"],
            min_patient_age=data.get("min_patient_age"),
            max_patient_age=data.get("max_patient_age"),
            reason=reason,
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate instead: appointments and history point at resources


@admin.register(WorkSchedule)
class WorkScheduleAdmin(RosteringAdmin, admin.ModelAdmin):
    list_display = (
        "resource",
        "branch",
        "rotation",
        "date_from",
        "date_to",
        "start_time",
        "end_time",
        "follows_calendar",
    )
    list_filter = ("rotation", "follows_calendar", ("branch", BranchListFilter))
    search_fields = ("resource__name",)
    list_select_related = ("resource", "branch")
    autocomplete_fields = ("resource",)
    raw_id_fields = ("room",)
    date_hierarchy = "date_from"

    def apply(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        if change:
            return rostering.schedule_update(
                actor=request.user,
                schedule=WorkSchedule.objects.get(pk=obj.pk),
                changes=self.changes(form, rostering.SCHEDULE_FIELDS),
                **self.options(form),
            )
        return rostering.schedule_create(
            actor=request.user,
            resource=data["resource"],
            branch=data["branch"],
            room=data.get("room"),
            date_from=data["date_from"],
            date_to=data.get("date_to"),
            rotation=data["rotation"],
            weekdays=data.get("weekdays") or [],
            days_on=data["days_on"],
            days_off=data["days_off"],
            start_time=data["start_time"],
            end_time=data["end_time"],
            break_start=data.get("break_start"),
            break_end=data.get("break_end"),
            follows_calendar=data.get("follows_calendar", False),
            **self.options(form),
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # end a schedule (set its last day) instead


class RemovableRosteringAdmin(RosteringAdmin):
    """Rows that are added and withdrawn but not edited (exceptions, breaks)."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_capability(request)

    def remove(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.remove(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.remove(request, obj)


@admin.register(ScheduleException)
class ScheduleExceptionAdmin(RemovableRosteringAdmin, admin.ModelAdmin):
    list_display = ("resource", "kind", "date_from", "date_to", "note")
    list_filter = ("kind", ("resource__branch", BranchListFilter))
    search_fields = ("resource__name", "note")
    list_select_related = ("resource",)
    autocomplete_fields = ("resource",)
    date_hierarchy = "date_from"

    def apply(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        return rostering.exception_add(
            actor=request.user,
            resource=data["resource"],
            kind=data["kind"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            note=data.get("note", ""),
            **self.options(form),
        )

    def remove(self, request: HttpRequest, obj: Any) -> None:
        rostering.exception_remove(actor=request.user, exception=obj)


@admin.register(ScheduleBreak)
class ScheduleBreakAdmin(RemovableRosteringAdmin, admin.ModelAdmin):
    list_display = ("resource", "starts_at", "ends_at", "reason")
    list_filter = (("resource__branch", BranchListFilter),)
    search_fields = ("resource__name", "reason")
    list_select_related = ("resource",)
    autocomplete_fields = ("resource",)
    date_hierarchy = "starts_at"

    def apply(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        return rostering.break_add(
            actor=request.user,
            resource=data["resource"],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            reason=data.get("reason", ""),
            force=data.get("force", False),
        )

    def remove(self, request: HttpRequest, obj: Any) -> None:
        rostering.break_remove(actor=request.user, pause=obj)


@admin.register(ShiftTemplate)
class ShiftTemplateAdmin(RosteringAdmin, admin.ModelAdmin):
    list_display = ("name", "organization", "start_time", "end_time", "break_start", "break_end")
    list_filter = ("organization",)
    search_fields = ("name",)
    list_select_related = ("organization",)

    def apply(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        return rostering.shift_template_create(
            actor=request.user,
            organization=data["organization"],
            name=data["name"],
            start_time=data["start_time"],
            end_time=data["end_time"],
            break_start=data.get("break_start"),
            break_end=data.get("break_end"),
            reason=data.get("change_reason", ""),
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A template is copied into schedules when used: editing it would not change them, so
        it is replaced by a new one instead."""
        return obj is None and super().has_change_permission(request, obj)


@admin.register(CalendarDay)
class CalendarDayAdmin(RosteringAdmin, admin.ModelAdmin):
    list_display = ("date", "day_type", "shortened_by_minutes", "name", "organization")
    list_filter = ("day_type", "organization")
    search_fields = ("name",)
    list_select_related = ("organization",)
    date_hierarchy = "date"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields += ["organization", "date"]
        return fields

    def apply(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> Any:
        data = form.cleaned_data
        return rostering.calendar_day_set(
            actor=request.user,
            organization=data["organization"] if not change else obj.organization,
            date=data["date"] if not change else obj.date,
            day_type=data["day_type"],
            shortened_by_minutes=data["shortened_by_minutes"],
            name=data.get("name", ""),
            **self.options(form),
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_capability(request)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        try:
            rostering.calendar_day_clear(
                actor=request.user, organization=obj.organization, date=obj.date
            )
        except SchedulingError as error:
            messages.error(request, str(error.message))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset.select_related("organization"):
            self.delete_model(request, obj)


# Appointments and the waitlist: read-only ------------------------------------------------------


class ReadOnlyInline(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.TabularInline):
    capability = Capability.VIEW_SCHEDULE
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)


class OccupancyInline(ReadOnlyInline):
    model = Occupancy
    fields = ("resource", "during", "is_active")


class AppointmentServiceInline(ReadOnlyInline):
    model = AppointmentService
    fields = ("service", "quantity")


class ReadOnlyScheduleAdmin(
    ReadOnlyAdminMixin, HistoryAdminMixin, CapabilityAdminMixin, admin.ModelAdmin
):
    """Rows the desk writes through ``scheduling.services``; here they are only looked up."""

    capability = Capability.VIEW_SCHEDULE
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [
            f.name for f in self.model._meta.get_fields() if f.concrete and not f.many_to_many
        ]
        return [*fields, *super().get_readonly_fields(request, obj)]


@admin.register(Appointment)
class AppointmentAdmin(ReadOnlyScheduleAdmin):
    list_display = ("starts_at", "patient_label", "doctor", "branch", "status", "channel")
    list_filter = (
        ("branch", BranchListFilter),
        "status",
        ("starts_at", admin.DateFieldListFilter),
        "channel",
    )
    search_fields = ("patient__last_name", "primary_last_name", "primary_phone")
    list_select_related = ("patient", "doctor", "branch", "status")
    date_hierarchy = "starts_at"
    inlines = (AppointmentServiceInline, OccupancyInline)
    exclude = ("services",)

    @admin.display(description=_("patient"), ordering="patient__last_name")
    def patient_label(self, obj: Appointment) -> str:
        return obj.patient_name


@admin.register(WaitlistEntry)
class WaitlistEntryAdmin(ReadOnlyScheduleAdmin):
    list_display = ("patient", "service", "doctor", "branch", "state", "created_at")
    list_filter = ("state", ("branch", BranchListFilter))
    search_fields = ("patient__last_name", "service__name")
    list_select_related = ("patient", "service", "doctor", "branch")


@admin.register(WaitlistOffer)
class WaitlistOfferAdmin(ReadOnlyAdminMixin, CapabilityAdminMixin, admin.ModelAdmin):
    """Offers have no history of their own (their state is the history); read-only."""

    capability = Capability.VIEW_SCHEDULE
    readonly_fields = ("entry", "doctor", "starts_at", "ends_at", "state", "expires_at", "freed_at")
    exclude = ("outbox_message",)
    list_display = ("entry", "doctor", "starts_at", "state", "expires_at")
    list_filter = ("state",)
    search_fields = ("entry__patient__last_name", "doctor__name")
    list_select_related = ("entry__patient", "entry__service", "doctor")
