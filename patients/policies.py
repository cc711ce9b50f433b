"""Who may do what with people and their medical cards."""

from __future__ import annotations

from typing import Any

from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from clinic.core.selectors import organization_list

from .models import CardType, MedicalCard, Person

OPEN_CARD_TYPE = "patients.open_cardtype"


def can_register_patient(user: Any) -> bool:
    return has_capability(user, Capability.REGISTER_PATIENT)


def can_search_people(user: Any) -> bool:
    """Registration staff and clinicians find people; other roles do not browse the registry."""
    return has_capability(user, Capability.REGISTER_PATIENT) or has_capability(
        user, Capability.VIEW_MEDICAL_CARD
    )


def can_view_people(user: Any) -> bool:
    """Who opens a patient page: those who search the registry, and those who merge people
    (they must see a merged record to undo the merge)."""
    return can_search_people(user) or can_merge_people(user)


def can_edit_person(user: Any, person: Person) -> bool:
    """Registration staff edit people; a merged person (tombstone) is read-only."""
    return can_register_patient(user) and not person.is_tombstone


def can_force_duplicate(user: Any) -> bool:
    return has_capability(user, Capability.FORCE_DUPLICATE_PATIENT)


def can_merge_people(user: Any) -> bool:
    return has_capability(user, Capability.MERGE_PATIENTS)


def can_open_card_type(user: Any, card_type: CardType) -> bool:
    """Opening a card of a type needs the per-type grant (and a clinical or registry role)."""
    if not (
        has_capability(user, Capability.VIEW_MEDICAL_CARD)
        or has_capability(user, Capability.REGISTER_PATIENT)
    ):
        return False
    return bool(user.is_superuser or user.has_perm(OPEN_CARD_TYPE, card_type))


def can_open_card(user: Any, card: MedicalCard) -> bool:
    return can_open_card_type(user, card.card_type)


def can_create_card(user: Any, card_type: CardType) -> bool:
    return can_register_patient(user) and can_open_card_type(user, card_type)


def can_move_paper_card(user: Any, card: MedicalCard) -> bool:
    return can_register_patient(user) and can_open_card(user, card)


def can_import_patients(user: Any, organization: Any = None) -> bool:
    """Migration imports are an administrator's job (the admin's "Import patients" page).

    With an organization, the user must also work for it (superusers work for all).
    """
    if not has_capability(user, Capability.MANAGE_REFERENCE_DATA):
        return False
    return organization is None or organization_list(actor=user).filter(pk=organization.pk).exists()
