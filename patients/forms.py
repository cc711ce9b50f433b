"""Forms of the desk's patient pages.

They only read what was typed; the services normalise and validate it (phones, SNILS, dates of
birth) and their errors are put back next to the field where the value was typed
(``add_service_errors``), so every rule lives in one place.
"""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import (
    Channel,
    ConsentKind,
    ConsentSource,
    ContactKind,
    IdentityDocumentType,
    Relation,
    Sex,
)
from .normalizers import parse_date, validate_birth_date
from .services import ContactInput, PersonInput

# What a person at the desk can record a consent from (the portal records its own).
DESK_CONSENT_SOURCES = [
    (ConsentSource.PAPER.value, ConsentSource.PAPER.label),
    (ConsentSource.VERBAL.value, ConsentSource.VERBAL.label),
]

FORCE_ACTION = "force"


class TypedDateField(forms.DateField):
    """A date typed as 31.12.1980 or sent by ``<input type=date>`` as 1980-12-31.

    The error names what was typed (the shared ``normalizers.parse_date``).
    """

    widget = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")

    def to_python(self, value: Any) -> datetime.date | None:
        if value in self.empty_values:
            return None
        return parse_date(value)


def _text(label: Any, *, max_length: int, required: bool = False, **attrs: Any) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=max_length,
        required=required,
        widget=forms.TextInput(attrs=attrs),
    )


def _blank_choice(choices: list[tuple[str, Any]], label: Any = "—") -> list[tuple[str, Any]]:
    return [("", label), *choices]


class SearchForm(forms.Form):
    q = forms.CharField(
        label=_("Find a patient"),
        required=False,
        max_length=100,
        help_text=_("Name, phone, birth date (31.12.1980), card number, SNILS or OMS policy."),
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "autocomplete": "off",
                "autofocus": True,
                "spellcheck": "false",
            }
        ),
    )


class RegistrationForm(forms.Form):
    """A new person at the desk: name, birth date, sex, contacts, identifiers, consent."""

    last_name = _text(_("Last name"), max_length=100, required=True, autocomplete="off")
    first_name = _text(_("First name"), max_length=100, required=True, autocomplete="off")
    patronymic = _text(_("Patronymic"), max_length=100, autocomplete="off")
    # The service checks the birth date too, but its error names no field; checked here first
    # (with the same normaliser) so that it appears next to the date.
    birth_date = TypedDateField(
        label=_("Birth date"), required=False, validators=[validate_birth_date]
    )
    sex = forms.ChoiceField(
        label=_("Sex"),
        required=False,
        choices=_blank_choice(list(Sex.choices), _("From the patronymic")),
    )
    phone = _text(_("Mobile phone"), max_length=40, type="tel", inputmode="tel", autocomplete="off")
    other_phone = _text(
        _("Other phone"), max_length=40, type="tel", inputmode="tel", autocomplete="off"
    )
    email = _text(_("E-mail"), max_length=254, type="email", autocomplete="off")
    snils = _text(_("SNILS"), max_length=20, inputmode="numeric", autocomplete="off")
    oms_policy = _text(_("OMS policy number"), max_length=30, autocomplete="off")
    consent_personal_data = forms.BooleanField(
        label=_("The patient consents to the processing of personal data"), required=False
    )
    consent_source = forms.ChoiceField(
        label=_("How the consent was given"),
        choices=DESK_CONSENT_SOURCES,
        initial=ConsentSource.PAPER,
        required=False,
    )
    force_reason = forms.CharField(
        label=_("Why register a new person anyway"),
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    # Which typed field each contact came from, to put a contact's error next to it.
    contact_fields = (
        ("phone", ContactKind.MOBILE),
        ("other_phone", ContactKind.HOME),
        ("email", ContactKind.EMAIL),
    )

    @property
    def wants_force(self) -> bool:
        """The "Create anyway" button was pressed (its reason is checked by the view)."""
        return self.data.get("action") == FORCE_ACTION

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("consent_personal_data") and not cleaned.get("consent_source"):
            self.add_error("consent_source", _("Say how the consent was given."))
        return cleaned

    def person_input(self) -> PersonInput:
        data = self.cleaned_data
        return PersonInput(
            last_name=data["last_name"],
            first_name=data["first_name"],
            patronymic=data["patronymic"],
            birth_date=data["birth_date"],
            sex=data["sex"],
            snils=data["snils"],
            oms_policy=data["oms_policy"],
            contacts=[
                ContactInput(kind=kind, value=data[name])
                for name, kind in self.contact_fields
                if data[name].strip()
            ],
        )


class PersonEditForm(forms.Form):
    """The editable fields of a person (``services.EDITABLE_FIELDS`` less the structured ones)."""

    last_name = _text(_("Last name"), max_length=100, required=True)
    first_name = _text(_("First name"), max_length=100, required=True)
    patronymic = _text(_("Patronymic"), max_length=100)
    birth_date = TypedDateField(
        label=_("Birth date"), required=False, validators=[validate_birth_date]
    )
    sex = forms.ChoiceField(label=_("Sex"), choices=Sex.choices)
    snils = _text(_("SNILS"), max_length=20, inputmode="numeric")
    oms_policy = _text(_("OMS policy number"), max_length=20)
    document_type = forms.ChoiceField(
        label=_("Identity document"),
        required=False,
        choices=_blank_choice(list(IdentityDocumentType.choices)),
    )
    document_series = _text(_("Series"), max_length=20)
    document_number = _text(_("Number"), max_length=30)
    document_issued_by = _text(_("Issued by"), max_length=300)
    document_issued_on = TypedDateField(label=_("Issued on"), required=False)
    registration_address = forms.CharField(
        label=_("Registration address"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    actual_address = forms.CharField(
        label=_("Actual address"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    preferred_channel = forms.ChoiceField(
        label=_("Preferred channel"), required=False, choices=_blank_choice(list(Channel.choices))
    )
    notes = forms.CharField(
        label=_("Notes"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    is_vip = forms.BooleanField(label=_("VIP"), required=False)

    def changes(self) -> dict[str, Any]:
        """Only what was changed, so the history shows exactly that."""
        return {name: self.cleaned_data[name] for name in self.changed_data}


class ContactAddForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=ContactKind.choices)
    value = _text(_("Phone or e-mail"), max_length=254, required=True, autocomplete="off")
    note = _text(_("Note"), max_length=200)


class ConsentGiveForm(forms.Form):
    kind = forms.ChoiceField(label=_("Consent"), choices=ConsentKind.choices)
    channel = forms.ChoiceField(
        label=_("Channel"),
        required=False,
        choices=_blank_choice(list(Channel.choices)),
        help_text=_("For consents to communications."),
    )
    source = forms.ChoiceField(label=_("Source"), choices=DESK_CONSENT_SOURCES)
    given_on = TypedDateField(label=_("Given on"))
    document_title = _text(_("Document"), max_length=300)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"given_on": timezone.localdate()})
        super().__init__(*args, **kwargs)


class ConsentRevokeForm(forms.Form):
    revoked_on = TypedDateField(label=_("Revoked on"))
    source = forms.ChoiceField(label=_("Source"), choices=DESK_CONSENT_SOURCES)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"revoked_on": timezone.localdate()})
        super().__init__(*args, **kwargs)


class RelationAddForm(forms.Form):
    """A relative or representative chosen among the search results (by public id)."""

    relative = forms.UUIDField(label=_("Relative or representative"), widget=forms.RadioSelect)
    relation = forms.ChoiceField(label=_("Relation"), choices=Relation.choices)
    is_legal_representative = forms.BooleanField(label=_("Legal representative"), required=False)
    authorising_document = _text(
        _("Authorising document"),
        max_length=300,
    )
    valid_until = TypedDateField(label=_("Valid until"), required=False)

    def __init__(
        self, *args: Any, relatives: list[tuple[str, str]], person_name: str, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["relative"].widget.choices = relatives
        # "Mother" of whom: the chosen person is the patient's mother, not the other way round.
        self.fields["relation"].label = gettext("Who they are to %(name)s") % {"name": person_name}
        self.fields["authorising_document"].help_text = _(
            "For a legal representative: e.g. a birth certificate or a power of attorney."
        )


class CardOpenForm(forms.Form):
    """Open a card: the types come from the actor's grants, the branches from their own."""

    card_type: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        label=_("Card type"), queryset=None, to_field_name="public_id", empty_label=None
    )
    branch: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        label=_("Branch"), queryset=None, to_field_name="public_id", empty_label=None
    )
    number = _text(_("Number"), max_length=40, autocomplete="off")

    def __init__(self, *args: Any, card_types: Any, branches: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["card_type"].queryset = card_types  # type: ignore[attr-defined]
        self.fields["branch"].queryset = branches  # type: ignore[attr-defined]
        self.fields["number"].help_text = _("Leave empty to take the next number.")
        self.card_types = card_types

    def has_card_types(self) -> bool:
        """Whether the actor may open any card type at all (else the form is not shown)."""
        return bool(self.card_types.exists())


class PaperCardIssueForm(forms.Form):
    """Whom (a staff member) or where (a room) a paper card goes: one list, two groups.

    The choices are built once per page (``recipient_choices``) so that rendering this form for
    every card costs no query.
    """

    to = forms.ChoiceField(label=_("Issue to"))

    def __init__(self, *args: Any, recipients: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to"].choices = recipients  # type: ignore[attr-defined]

    def recipient(self) -> tuple[str, str]:
        """("staff" | "room", public id)."""
        kind, _separator, public_id = self.cleaned_data["to"].partition(":")
        return kind, public_id


def recipient_choices(staff: Any, rooms: Any) -> list[Any]:
    return [
        ("", _("Choose…")),
        (_("Staff"), [(f"staff:{member.public_id}", member.full_name) for member in staff]),
        (_("Rooms"), [(f"room:{room.public_id}", str(room)) for room in rooms]),
    ]


class MergeForm(forms.Form):
    """Merge one of a pair into the other: the survivor is chosen, the other one is merged."""

    first = forms.UUIDField(widget=forms.HiddenInput)
    second = forms.UUIDField(widget=forms.HiddenInput)
    survivor = forms.UUIDField(label=_("Keep"), widget=forms.RadioSelect)
    reason = forms.CharField(label=_("Reason"), max_length=500)

    def __init__(self, *args: Any, choices: list[tuple[str, str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if choices is not None:
            self.fields["survivor"].widget.choices = choices

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        survivor = cleaned.get("survivor")
        if survivor is not None and survivor not in (cleaned.get("first"), cleaned.get("second")):
            self.add_error("survivor", _("Choose one of the two people."))
        return cleaned

    def merged_id(self) -> Any:
        data = self.cleaned_data
        return data["second"] if data["survivor"] == data["first"] else data["first"]


def add_service_errors(
    form: forms.Form, error: ValidationError, *, contact_fields: tuple[str, ...] = ()
) -> None:
    """Put a service's ``ValidationError`` next to the fields it names.

    Errors of ``contacts`` name the value that was typed; each goes to the field (of
    ``contact_fields``) holding that value. Anything the form has no field for is shown above it.
    """
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, errors in error.error_dict.items():
        for item in errors:
            target: str | None = name if name in form.fields else None
            if name == "contacts":
                target = _field_holding(form, item, contact_fields)
            if name == NON_FIELD_ERRORS:
                target = None
            form.add_error(target, item)


def _field_holding(form: forms.Form, error: ValidationError, names: tuple[str, ...]) -> str | None:
    typed = str((error.params or {}).get("value", "")).strip()
    for name in names:
        if typed and str(form.data.get(name, "")).strip().lower() == typed.lower():
            return name
    return None
