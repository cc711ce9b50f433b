"""Reads of the patient registry, scoped to the actor's organizations and card-type grants."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.http import Http404
from guardian.shortcuts import get_objects_for_user, get_users_with_perms

from clinic.audit.services import access_log_record
from clinic.core.models import Staff
from clinic.core.selectors import organization_list

from .models import CardType, Consent, ConsentKind, MedicalCard, PaperLocation, Person
from .policies import OPEN_CARD_TYPE, can_open_card


def person_list(*, actor: Any) -> QuerySet[Person]:
    """Living people of the organizations the actor works for."""
    return Person.objects.filter(
        organization__in=organization_list(actor=actor), merged_into__isnull=True
    )


def person_get_for_actor(*, actor: Any, public_id: Any, include_merged: bool = False) -> Person:
    queryset = Person.objects.filter(organization__in=organization_list(actor=actor))
    if not include_merged:
        queryset = queryset.filter(merged_into__isnull=True)
    try:
        return queryset.select_related("organization", "merged_into").get(public_id=public_id)
    except (Person.DoesNotExist, ValueError):
        raise Http404 from None


def card_types_for_actor(actor: Any) -> QuerySet[CardType]:
    """Card types the actor was granted (all for a superuser)."""
    if actor.is_superuser:
        return CardType.objects.filter(is_active=True)
    return get_objects_for_user(
        actor,
        OPEN_CARD_TYPE,
        klass=CardType.objects.filter(is_active=True),
        accept_global_perms=False,
    )


def card_type_granted_staff(card_type: CardType) -> QuerySet[Staff]:
    """Staff whose login holds the per-type grant to open cards of ``card_type``."""
    users = get_users_with_perms(
        card_type, only_with_perms_in=["open_cardtype"], with_group_users=False
    )
    return Staff.objects.filter(user__in=users)


def card_list(*, actor: Any, person: Person) -> QuerySet[MedicalCard]:
    """The person's cards of the types the actor may open; others are not even shown to exist."""
    return (
        MedicalCard.objects.filter(person=person, card_type__in=card_types_for_actor(actor))
        .select_related("card_type", "branch", "issued_to_staff", "issued_to_room")
        .order_by("card_type__name", "number")
    )


def card_get_for_actor(*, actor: Any, public_id: Any, request: Any = None) -> MedicalCard:
    """A card the actor may open, with the read written to the access log (else 404)."""
    try:
        card = MedicalCard.objects.select_related("card_type", "person", "branch").get(
            public_id=public_id, organization__in=organization_list(actor=actor)
        )
    except (MedicalCard.DoesNotExist, ValueError):
        raise Http404 from None
    if not can_open_card(actor, card):
        raise Http404
    access_log_record(user=actor, obj=card, purpose="open card", request=request)
    return card


def cards_out_of_archive(*, actor: Any) -> QuerySet[MedicalCard]:
    """Paper cards currently issued, oldest first (for the archive keeper)."""
    return (
        MedicalCard.objects.filter(
            organization__in=organization_list(actor=actor),
            paper_location=PaperLocation.ISSUED,
            card_type__in=card_types_for_actor(actor),
        )
        .select_related("person", "card_type", "issued_to_staff", "issued_to_room")
        .order_by("issued_at")
    )


def consent_allows(*, person: Person, channel: str) -> bool:
    """May the clinic message this person through ``channel``? One place for every sender.

    Needs an active consent to personal-data processing and one to communications on that channel.
    """
    active = Consent.objects.filter(person=person, revoked_on__isnull=True)
    return (
        active.filter(kind=ConsentKind.PERSONAL_DATA).exists()
        and active.filter(kind=ConsentKind.COMMUNICATION, channel=channel).exists()
    )


def person_with_details(*, actor: Any, person: Person) -> Person:
    """The person with contacts, consents, relations and visible cards prefetched."""
    return (
        Person.objects.filter(pk=person.pk)
        .select_related("organization")
        .prefetch_related(
            "contacts",
            "consents",
            "relations__relative",
            Prefetch(
                "cards", queryset=card_list(actor=actor, person=person), to_attr="visible_cards"
            ),
        )
        .annotate(has_cards=Exists(MedicalCard.objects.filter(person=OuterRef("pk"))))
        .get()
    )
