"""Forms of the call pages: they read what was typed; the services decide."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import CallDirection, CallOutcome, CallPurpose, CallState

NOT_CLASSIFIED = "none"


def _blank(choices: list[tuple[str, Any]], label: Any = "—") -> list[tuple[str, Any]]:
    return [("", label), *choices]


class CallFilterForm(forms.Form):
    """The call log's filters (all optional, sent as GET)."""

    date_from = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    operator = forms.ChoiceField(label=_("Operator"), required=False)
    purpose = forms.ChoiceField(
        label=_("Purpose"),
        required=False,
        choices=_blank([*CallPurpose.choices, (NOT_CLASSIFIED, _("Not classified"))], _("Any")),
    )
    outcome = forms.ChoiceField(
        label=_("Outcome"),
        required=False,
        choices=_blank([*CallOutcome.choices, (NOT_CLASSIFIED, _("Not classified"))], _("Any")),
    )
    direction = forms.ChoiceField(
        label=_("Direction"), required=False, choices=_blank(CallDirection.choices, _("Any"))
    )
    state = forms.ChoiceField(
        label=_("State"), required=False, choices=_blank(CallState.choices, _("Any"))
    )

    def __init__(self, *args: Any, operators: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["operator"]).choices = _blank(operators, _("Anyone"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and end < start:
            self.add_error(
                "date_to",
                _("The end date %(end)s is before the start date %(start)s.")
                % {"end": end.strftime("%d.%m.%Y"), "start": start.strftime("%d.%m.%Y")},
            )
        return data


class CallClassifyForm(forms.Form):
    purpose = forms.ChoiceField(label=_("Purpose"), choices=_blank(CallPurpose.choices))
    outcome = forms.ChoiceField(label=_("Outcome"), choices=_blank(CallOutcome.choices))
    note = forms.CharField(
        label=_("Note"), required=False, max_length=1000, widget=forms.TextInput()
    )


class PlannedCallForm(forms.Form):
    """A call to plan: the patient is given by the phone (or the public id from a link)."""

    patient = forms.CharField(
        label=_("Patient"),
        max_length=100,
        help_text=_("The patient's phone number."),
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
    )
    phone = forms.CharField(
        label=_("Number to call"),
        required=False,
        max_length=32,
        help_text=_("Leave empty to call the patient's phone."),
        widget=forms.TextInput(attrs={"type": "tel"}),
    )
    reason = forms.CharField(label=_("Reason"), max_length=300)
    due_at = forms.DateTimeField(
        label=_("Call by"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    assigned_to = forms.ChoiceField(label=_("Assigned to"), required=False)

    def __init__(self, *args: Any, operators: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["assigned_to"]).choices = _blank(operators, _("Anyone"))


class PlannedCallCloseForm(forms.Form):
    result_note = forms.CharField(
        label=_("Result"), required=False, max_length=1000, widget=forms.TextInput()
    )
