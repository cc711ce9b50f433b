"""Forms of the desk's grid: booking a slot, changing an appointment, the waitlist."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from patients.normalizers import normalize_phone, validate_birth_date
from scheduling.models import (
    AppointmentKind,
    AppointmentStatus,
    CancelReason,
    InformationSource,
    PayerKind,
    Service,
)


class BookingForm(forms.Form):
    """A booking at a chosen slot: a registered patient, or a new one by name, phone and birth
    date; the services; and what the desk records about the booking."""

    patient = forms.UUIDField(required=False, widget=forms.HiddenInput)
    last_name = forms.CharField(label=_("Last name"), max_length=100, required=False)
    first_name = forms.CharField(label=_("First name"), max_length=100, required=False)
    patronymic = forms.CharField(label=_("Patronymic"), max_length=100, required=False)
    phone = forms.CharField(label=_("Phone"), max_length=32, required=False)
    birth_date = forms.DateField(label=_("Birth date"), required=False)
    services = forms.ModelMultipleChoiceField(
        label="",
        queryset=Service.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        to_field_name="code",  # the price list's "choose" ticks a service by its code
    )
    kind = forms.ModelChoiceField(
        label=_("Kind"), queryset=AppointmentKind.objects.filter(is_active=True), required=False
    )
    information_source = forms.ModelChoiceField(
        label=_("Source"), queryset=InformationSource.objects.order_by("name"), required=False
    )
    payer_kind = forms.ChoiceField(
        label=_("Payer"), choices=PayerKind.choices, initial=PayerKind.SELF_PAY
    )
    note = forms.CharField(
        label=_("Note"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, services: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if services is not None:
            self.fields["services"].queryset = services  # type: ignore[attr-defined]

    def clean_phone(self) -> str:
        raw: str = self.cleaned_data["phone"].strip()
        return normalize_phone(raw) if raw else ""

    def clean_birth_date(self) -> datetime.date | None:
        value: datetime.date | None = self.cleaned_data["birth_date"]
        if value is not None:
            validate_birth_date(value)
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("patient") and not (data.get("last_name") and data.get("phone")):
            raise ValidationError(
                _("Choose a patient, or give the new patient's last name and phone."),
                code="no_patient",
            )
        return data


class StatusChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.label)


class StatusForm(forms.Form):
    status = StatusChoiceField(
        label=_("Status"),
        queryset=AppointmentStatus.objects.exclude(code=AppointmentStatus.CANCELLED).order_by(
            "order"
        ),
        to_field_name="code",
    )


class CancelForm(forms.Form):
    reason = forms.ModelChoiceField(
        label=_("Reason"), queryset=CancelReason.objects.filter(is_active=True).order_by("name")
    )


class MoveForm(forms.Form):
    """Where an appointment goes: a start (branch-local), a doctor, a duration; any of them."""

    starts_at = forms.DateTimeField(label=_("Starts at"), required=False)
    doctor = forms.UUIDField(label=_("Doctor"), required=False)
    duration_minutes = forms.IntegerField(
        label=_("Duration, minutes"), required=False, min_value=5, max_value=24 * 60
    )
    reason = forms.CharField(label=_("Reason"), max_length=200, required=False)


class CopyForm(forms.Form):
    starts_at = forms.DateTimeField(label=_("Starts at"))
    doctor = forms.UUIDField(label=_("Doctor"))


class DetailsForm(forms.Form):
    """What the desk records about a visit, edited from the appointment's dialog."""

    note = forms.CharField(
        label=_("Note"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    information_source = forms.ModelChoiceField(
        label=_("Source"), queryset=InformationSource.objects.order_by("name"), required=False
    )
    payer_kind = forms.ChoiceField(label=_("Payer"), choices=PayerKind.choices)
