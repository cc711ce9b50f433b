"""Writes of the patient registry. Every create path checks for duplicates first."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pghistory
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from guardian.shortcuts import assign_perm, remove_perm

from clinic.core.models import Branch, Organization, Room, Staff
from clinic.core.validators import normalize_snils, validate_snils

from . import policies
from .dedup import Candidate, PersonFacts, duplicate_candidates
from .models import (
    PHONE_KINDS,
    CardNumberSequence,
    CardStatus,
    CardType,
    Consent,
    ConsentKind,
    ConsentSource,
    Contact,
    ContactKind,
    MedicalCard,
    PaperCardMovement,
    PaperLocation,
    Person,
    PersonRelation,
    Sex,
)
from .normalizers import (
    normalize_name_part,
    normalize_phone,
    phone_digits,
    sex_from_patronymic,
)


class DuplicatePersonError(Exception):
    """Likely duplicates exist; the caller shows them (the API answers 409)."""

    def __init__(self, candidates: list[Candidate]) -> None:
        super().__init__(_("This person may already be registered."))
        self.candidates = candidates


@dataclass
class ContactInput:
    kind: str
    value: str
    note: str = ""


@dataclass
class PersonInput:
    """What a create or edit path was given, before normalisation."""

    last_name: str
    first_name: str
    patronymic: str = ""
    birth_date: datetime.date | None = None
    sex: str = ""
    snils: str = ""
    oms_policy: str = ""
    contacts: list[ContactInput] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _normalized_contacts(contacts: Iterable[ContactInput], region: str) -> list[ContactInput]:
    """Phones to E.164, e-mails lowercased; errors name the field and what was typed."""
    result = []
    seen: set[tuple[str, str]] = set()
    errors: list[ValidationError] = []
    for contact in contacts:
        value = contact.value.strip()
        if not value:
            continue
        if contact.kind in PHONE_KINDS:
            try:
                value = normalize_phone(value, region=region)
            except ValidationError as error:
                errors.append(error)
                continue
        elif contact.kind == ContactKind.EMAIL:
            from django.core.validators import validate_email

            try:
                validate_email(value)
            except ValidationError:
                errors.append(
                    ValidationError(
                        _("“%(value)s” is not an e-mail address."),
                        code="email_invalid",
                        params={"value": value},
                    )
                )
                continue
            value = value.lower()
        else:
            raise ValidationError(
                {"contacts": _("Unknown contact kind “%(value)s”.") % {"value": contact.kind}}
            )
        if (contact.kind, value) in seen:
            continue  # the same number typed twice in different ways
        seen.add((contact.kind, value))
        result.append(ContactInput(kind=contact.kind, value=value, note=contact.note))
    if errors:
        raise ValidationError({"contacts": errors})
    return result


def _checked_snils(typed: str) -> str:
    """The SNILS digits, after checking what was typed (letters are an error, not dropped)."""
    typed = typed.strip()
    if not typed:
        return ""
    try:
        validate_snils(typed)
    except ValidationError as error:
        raise ValidationError({"snils": error}) from None
    return normalize_snils(typed)


def person_facts(data: PersonInput, contacts: list[ContactInput]) -> PersonFacts:
    return PersonFacts(
        last_name=normalize_name_part(data.last_name),
        first_name=normalize_name_part(data.first_name),
        patronymic=normalize_name_part(data.patronymic),
        birth_date=data.birth_date,
        phones=tuple(c.value for c in contacts if c.kind in PHONE_KINDS),
        snils=_checked_snils(data.snils),
        oms_policy=data.oms_policy.strip().replace(" ", ""),
    )


@transaction.atomic
def person_create(
    *,
    actor: Any,
    organization: Organization,
    data: PersonInput,
    force_reason: str = "",
    personal_data_consent: str = "",
) -> Person:
    """Register a person after looking for duplicates.

    Raises ``DuplicatePersonError`` with the candidates unless ``force_reason`` is given by a
    role allowed to force creation (the reason is kept in the history context). With
    ``personal_data_consent`` (a ``ConsentSource``), the consent to processing personal data is
    recorded in the same transaction.
    """
    if not policies.can_register_patient(actor):
        raise PermissionDenied
    contacts = _normalized_contacts(data.contacts, organization.phone_region)
    facts = person_facts(data, contacts)
    sex = data.sex or sex_from_patronymic(facts.patronymic) or Sex.UNKNOWN
    person = Person(
        organization=organization,
        last_name=facts.last_name,
        first_name=facts.first_name,
        patronymic=facts.patronymic,
        birth_date=facts.birth_date,
        sex=sex,
        snils=facts.snils,
        oms_policy=facts.oms_policy,
        created_by=_user_or_none(actor),
        **data.extra,
    )
    person.refresh_name_key()
    person.full_clean()  # invalid input is a field error even when it resembles someone
    candidates = duplicate_candidates(organization=organization, facts=facts)
    if candidates:
        if not force_reason.strip():
            raise DuplicatePersonError(candidates)
        if not policies.can_force_duplicate(actor):
            raise PermissionDenied(_("Your role may not register a person despite duplicates."))
    with pghistory.context(duplicate_override_reason=force_reason.strip() or None):
        person.save()
        for contact in contacts:
            _contact_save(person, contact)
        if personal_data_consent:
            consent_give(
                actor=actor,
                person=person,
                kind=ConsentKind.PERSONAL_DATA,
                source=personal_data_consent,
                given_on=timezone.localdate(),
            )
    return person


def _contact_save(person: Person, contact: ContactInput) -> Contact:
    """Store an already-normalised contact with its digits for searching by phone fragment."""
    return Contact.objects.create(
        person=person,
        kind=contact.kind,
        value=contact.value,
        note=contact.note,
        digits=phone_digits(contact.value) if contact.kind in PHONE_KINDS else "",
    )


def _user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


EDITABLE_FIELDS = (
    "last_name",
    "first_name",
    "patronymic",
    "birth_date",
    "sex",
    "snils",
    "oms_policy",
    "document_type",
    "document_series",
    "document_number",
    "document_issued_by",
    "document_issued_on",
    "registration_address",
    "registration_address_parts",
    "registration_fias",
    "actual_address",
    "actual_address_parts",
    "actual_fias",
    "preferred_channel",
    "notes",
    "is_vip",
)


@transaction.atomic
def person_update(*, actor: Any, person: Person, changes: dict[str, Any]) -> Person:
    """Change a person's fields (validated together; nothing saved on any error)."""
    if not policies.can_edit_person(actor, person):
        raise PermissionDenied
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: _("This field cannot be changed here.") for name in unknown})
    locked = Person.objects.select_for_update().get(pk=person.pk)
    for name, value in changes.items():
        if name in ("last_name", "first_name", "patronymic"):
            value = normalize_name_part(value)
        if name == "snils":
            value = _checked_snils(value)
        setattr(locked, name, value)
    locked.refresh_name_key()
    locked.full_clean()
    locked.save(update_fields=[*changes, "name_key", "updated_at"])
    return locked


@transaction.atomic
def contact_add(*, actor: Any, person: Person, kind: str, value: str, note: str = "") -> Contact:
    if not policies.can_edit_person(actor, person):
        raise PermissionDenied
    [contact] = _normalized_contacts(
        [ContactInput(kind, value, note)], person.organization.phone_region
    )
    return _contact_save(person, contact)


@transaction.atomic
def consent_give(
    *,
    actor: Any,
    person: Person,
    kind: str,
    source: str,
    given_on: datetime.date,
    channel: str = "",
    document_title: str = "",
) -> Consent:
    """Record a consent. Verbal consents name the staff member who recorded them."""
    if source != ConsentSource.PORTAL and not policies.can_edit_person(actor, person):
        raise PermissionDenied
    consent = Consent(
        person=person,
        kind=kind,
        channel=channel,
        source=source,
        given_on=given_on,
        document_title=document_title,
        recorded_by=_user_or_none(actor),
        created_by=_user_or_none(actor),
    )
    if kind == ConsentKind.COMMUNICATION and not channel:
        raise ValidationError({"channel": _("Say which channel the consent is for.")})
    consent.full_clean()
    consent.save()
    return consent


@transaction.atomic
def consent_revoke(
    *, actor: Any, consent: Consent, revoked_on: datetime.date, source: str
) -> Consent:
    if source != ConsentSource.PORTAL and not policies.can_edit_person(actor, consent.person):
        raise PermissionDenied
    locked = Consent.objects.select_for_update().get(pk=consent.pk)
    if locked.revoked_on is not None:
        return locked
    locked.revoked_on = revoked_on
    locked.revocation_source = source
    locked.revoked_by = _user_or_none(actor)
    locked.full_clean()
    locked.save(update_fields=["revoked_on", "revocation_source", "revoked_by", "updated_at"])
    return locked


@transaction.atomic
def relation_add(
    *,
    actor: Any,
    person: Person,
    relative: Person,
    relation: str,
    is_legal_representative: bool = False,
    authorising_document: str = "",
    valid_until: datetime.date | None = None,
) -> PersonRelation:
    if not policies.can_edit_person(actor, person):
        raise PermissionDenied
    if is_legal_representative and not authorising_document.strip():
        raise ValidationError(
            {"authorising_document": _("Name the document that authorises the representative.")}
        )
    link = PersonRelation(
        person=person,
        relative=relative,
        relation=relation,
        is_legal_representative=is_legal_representative,
        authorising_document=authorising_document.strip(),
        valid_until=valid_until,
    )
    link.full_clean()
    link.save()
    return link


def _next_card_number(organization: Organization, card_type: CardType) -> str:
    """Take the next number of the (organization, type) sequence under a row lock."""
    sequence, _created = CardNumberSequence.objects.get_or_create(
        organization=organization, card_type=card_type
    )
    sequence = CardNumberSequence.objects.select_for_update().get(pk=sequence.pk)
    number = sequence.next_value
    while MedicalCard.objects.filter(
        organization=organization, card_type=card_type, number=f"{card_type.number_prefix}{number}"
    ).exists():
        number += 1  # a number typed by hand or imported earlier is skipped
    sequence.next_value = number + 1
    sequence.save(update_fields=["next_value"])
    return f"{card_type.number_prefix}{number}"


@transaction.atomic
def card_open(
    *,
    actor: Any,
    person: Person,
    card_type: CardType,
    branch: Branch,
    number: str = "",
    opened_on: datetime.date | None = None,
) -> MedicalCard:
    """Open a medical card; without a number, the next one of the organization's sequence."""
    if not policies.can_create_card(actor, card_type):
        raise PermissionDenied
    if person.is_tombstone:
        raise ValidationError(_("This person was merged into another; open the card there."))
    if card_type.organization_id not in (None, person.organization_id):
        raise ValidationError({"card_type": _("This card type belongs to another organization.")})
    if branch.organization_id != person.organization_id:
        raise ValidationError({"branch": _("The branch belongs to another organization.")})
    card = MedicalCard(
        person=person,
        organization=person.organization,
        card_type=card_type,
        branch=branch,
        number=number.strip() or _next_card_number(person.organization, card_type),
        opened_on=opened_on or timezone.localdate(),
        created_by=_user_or_none(actor),
    )
    card.full_clean()
    card.save()
    return card


@transaction.atomic
def card_close(*, actor: Any, card: MedicalCard, closed_on: datetime.date) -> MedicalCard:
    if not policies.can_create_card(actor, card.card_type):
        raise PermissionDenied
    card.status = CardStatus.CLOSED
    card.closed_on = closed_on
    card.full_clean()
    card.save(update_fields=["status", "closed_on", "updated_at"])
    return card


@transaction.atomic
def paper_card_issue(
    *, actor: Any, card: MedicalCard, to_staff: Staff | None = None, to_room: Room | None = None
) -> MedicalCard:
    """Hand a paper card out of the archive to a staff member or a room."""
    if not policies.can_move_paper_card(actor, card):
        raise PermissionDenied
    if to_staff is None and to_room is None:
        raise ValidationError({"to_staff": _("Say to whom or to which room the card goes.")})
    locked = MedicalCard.objects.select_for_update().get(pk=card.pk)
    if locked.paper_location == PaperLocation.ISSUED:
        raise ValidationError(_("The card is already out of the archive; return it first."))
    now = timezone.now()
    locked.paper_location = PaperLocation.ISSUED
    locked.issued_to_staff = to_staff
    locked.issued_to_room = to_room
    locked.issued_at = now
    locked.save(
        update_fields=[
            "paper_location",
            "issued_to_staff",
            "issued_to_room",
            "issued_at",
            "updated_at",
        ]
    )
    PaperCardMovement.objects.create(
        card=locked,
        action=PaperCardMovement.Action.ISSUED,
        to_staff=to_staff,
        to_room=to_room,
        occurred_at=now,
        performed_by=actor,
    )
    return locked


@transaction.atomic
def paper_card_return(*, actor: Any, card: MedicalCard) -> MedicalCard:
    if not policies.can_move_paper_card(actor, card):
        raise PermissionDenied
    locked = MedicalCard.objects.select_for_update().get(pk=card.pk)
    if locked.paper_location != PaperLocation.ISSUED:
        raise ValidationError(_("The card is in the archive already."))
    locked.paper_location = PaperLocation.ARCHIVE
    locked.issued_to_staff = None
    locked.issued_to_room = None
    locked.issued_at = None
    locked.save(
        update_fields=[
            "paper_location",
            "issued_to_staff",
            "issued_to_room",
            "issued_at",
            "updated_at",
        ]
    )
    PaperCardMovement.objects.create(
        card=locked, action=PaperCardMovement.Action.RETURNED, performed_by=actor
    )
    return locked


def card_type_grant(*, actor: Any, staff: Staff, card_type: CardType) -> None:
    """Let a staff member open cards of a type (administrators manage grants)."""
    from clinic.core.policies import can_manage_staff

    if not can_manage_staff(actor):
        raise PermissionDenied
    if staff.user is None:
        raise ValidationError(_("This staff member has no login to grant access to."))
    assign_perm(policies.OPEN_CARD_TYPE, staff.user, card_type)


def card_type_revoke(*, actor: Any, staff: Staff, card_type: CardType) -> None:
    from clinic.core.policies import can_manage_staff

    if not can_manage_staff(actor):
        raise PermissionDenied
    if staff.user is not None:
        remove_perm(policies.OPEN_CARD_TYPE, staff.user, card_type)


@transaction.atomic
def card_type_grants_set(*, actor: Any, card_type: CardType, staff: list[Staff]) -> None:
    """Make exactly ``staff`` the people who may open cards of ``card_type``."""
    from .selectors import card_type_granted_staff

    current = set(card_type_granted_staff(card_type))
    wanted = set(staff)
    for member in wanted - current:
        card_type_grant(actor=actor, staff=member, card_type=card_type)
    for member in current - wanted:
        card_type_revoke(actor=actor, staff=member, card_type=card_type)
