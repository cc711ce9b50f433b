"""Finding people who are probably the same person: every create path asks here first.

A candidate shares a normalised phone, the SNILS or the OMS policy number, or has a similar name
(trigram similarity, ё read as е) and the same birth date.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.postgres.search import TrigramSimilarity
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clinic.core.models import Organization

from .models import PHONE_KINDS, Contact, Person
from .normalizers import search_key

NAME_SIMILARITY_THRESHOLD = 0.55

REASON_LABELS = {
    "phone": _("same phone"),
    "snils": _("same SNILS"),
    "oms_policy": _("same OMS policy"),
    "name_birth_date": _("similar name, same birth date"),
}


@dataclass
class Candidate:
    person: Person
    reasons: list[str] = field(default_factory=list)
    name_similarity: float = 0.0

    @property
    def score(self) -> float:
        return len(self.reasons) + self.name_similarity

    @property
    def reason_labels(self) -> list[str]:
        return [str(REASON_LABELS[reason]) for reason in self.reasons]


@dataclass(frozen=True)
class PersonFacts:
    """What is known of a person about to be created (already normalised)."""

    last_name: str
    first_name: str
    patronymic: str = ""
    birth_date: datetime.date | None = None
    phones: tuple[str, ...] = ()
    snils: str = ""
    oms_policy: str = ""


def duplicate_candidates(
    *, organization: Organization, facts: PersonFacts, exclude: Iterable[int] = ()
) -> list[Candidate]:
    """Living (not merged) people of the organization who may be this person, best first."""
    people = Person.objects.filter(organization=organization, merged_into__isnull=True).exclude(
        pk__in=list(exclude)
    )
    found: dict[int, Candidate] = {}

    def add(person: Person, reason: str, similarity: float = 0.0) -> None:
        candidate = found.setdefault(person.pk, Candidate(person=person))
        if reason not in candidate.reasons:
            candidate.reasons.append(reason)
        candidate.name_similarity = max(candidate.name_similarity, similarity)

    if facts.phones:
        phone_owner_ids = Contact.objects.filter(
            kind__in=PHONE_KINDS, value__in=list(facts.phones)
        ).values("person_id")
        for person in people.filter(pk__in=phone_owner_ids):
            add(person, "phone")
    identity = Q()
    if facts.snils:
        identity |= Q(snils=facts.snils)
    if facts.oms_policy:
        identity |= Q(oms_policy=facts.oms_policy)
    if identity:
        for person in people.filter(identity):
            if facts.snils and person.snils == facts.snils:
                add(person, "snils")
            if facts.oms_policy and person.oms_policy == facts.oms_policy:
                add(person, "oms_policy")
    if facts.birth_date is not None:
        key = search_key(facts.last_name, facts.first_name, facts.patronymic)
        similar = (
            people.filter(birth_date=facts.birth_date)
            .annotate(similarity=TrigramSimilarity("name_key", key))
            .filter(similarity__gte=NAME_SIMILARITY_THRESHOLD)
        )
        for person in similar:
            add(person, "name_birth_date", float(person.similarity))
    for candidate in found.values():
        if candidate.name_similarity == 0.0:
            candidate.name_similarity = _similarity(candidate.person, facts)
    return sorted(found.values(), key=lambda candidate: candidate.score, reverse=True)


def _similarity(person: Person, facts: PersonFacts) -> float:
    """A cheap in-Python similarity for ranking candidates found by other reasons."""
    mine = set(name_trigrams(person.name_key))
    theirs = set(name_trigrams(search_key(facts.last_name, facts.first_name, facts.patronymic)))
    if not mine or not theirs:
        return 0.0
    return len(mine & theirs) / len(mine | theirs)


def name_trigrams(text: str) -> list[str]:
    """pg_trgm's trigrams of a name key (each word padded), for similarity in Python."""
    grams: list[str] = []
    for word in text.split():
        padded = f"  {word} "
        grams.extend(padded[index : index + 3] for index in range(len(padded) - 2))
    return grams
