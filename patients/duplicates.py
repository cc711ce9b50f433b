"""The report of people registered twice: likely duplicate pairs, for the head of registry.

``patients.dedup`` answers "who may this new person be?" for one person; this module answers
"which pairs of living people are probably one person?" for a whole organization, with the same
reasons and the same ranking (one point per reason plus the trigram similarity of the names).

The pairs come from one SQL statement of self-joins on indexed columns (a contact's ``value``,
``snils``, ``oms_policy``, and ``(organization, birth_date)`` for the name comparison), so the work
grows with the number of matching pairs, not with the square of the number of people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import connection

from clinic.core.selectors import organization_list

from . import policies
from .dedup import NAME_SIMILARITY_THRESHOLD, REASON_LABELS
from .models import PHONE_KINDS, Contact, Person

REASON_ORDER = ("phone", "snils", "oms_policy", "name_birth_date")


@dataclass(frozen=True)
class DuplicatePair:
    """Two living people of one organization who are probably one person (``first.pk`` lower)."""

    first: Person
    second: Person
    reasons: tuple[str, ...]
    name_similarity: float

    @property
    def score(self) -> float:
        return len(self.reasons) + self.name_similarity

    @property
    def reason_labels(self) -> list[str]:
        return [str(REASON_LABELS[reason]) for reason in self.reasons]


def duplicate_pairs(*, actor: Any, limit: int = 200) -> list[DuplicatePair]:
    """Likely duplicate pairs among the living people of the actor's organizations, best first.

    For those who may merge people (the report is their work list). Each pair appears once, lower
    primary key first, with every reason that applies; three queries in all.
    """
    if not policies.can_merge_people(actor):
        raise PermissionDenied
    organization_ids = list(organization_list(actor=actor).values_list("pk", flat=True))
    if not organization_ids or limit <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _PAIRS_SQL.format(person=Person._meta.db_table, contact=Contact._meta.db_table),
            {
                "organizations": organization_ids,
                "phone_kinds": [str(kind) for kind in PHONE_KINDS],
                "threshold": NAME_SIMILARITY_THRESHOLD,
                "limit": limit,
            },
        )
        rows = cursor.fetchall()
    people = Person.objects.in_bulk([pk for row in rows for pk in row[:2]])
    return [
        DuplicatePair(
            first=people[first_id],
            second=people[second_id],
            reasons=tuple(reason for reason in REASON_ORDER if reason in reasons),
            name_similarity=float(similarity),
        )
        for first_id, second_id, reasons, similarity in rows
    ]


# Each branch yields (lower pk, higher pk, reason) of living people of one organization; the
# outer query joins the reasons of a pair and ranks the pairs. Names are compared only within
# one organization and birth date, which the (organization, birth_date) index finds.
_PAIRS_SQL = """
WITH pairs (first_id, second_id, reason) AS (
    SELECT DISTINCT first_person.id, second_person.id, 'phone'
    FROM {contact} first_contact
    JOIN {contact} second_contact
        ON second_contact.value = first_contact.value
        AND second_contact.person_id > first_contact.person_id
    JOIN {person} first_person ON first_person.id = first_contact.person_id
    JOIN {person} second_person ON second_person.id = second_contact.person_id
    WHERE first_contact.kind = ANY(%(phone_kinds)s::text[])
        AND second_contact.kind = ANY(%(phone_kinds)s::text[])
        AND first_person.organization_id = ANY(%(organizations)s::bigint[])
        AND second_person.organization_id = first_person.organization_id
        AND first_person.merged_into_id IS NULL
        AND second_person.merged_into_id IS NULL
  UNION ALL
    SELECT first_person.id, second_person.id, 'snils'
    FROM {person} first_person
    JOIN {person} second_person
        ON second_person.snils = first_person.snils
        AND second_person.id > first_person.id
        AND second_person.organization_id = first_person.organization_id
    WHERE first_person.snils <> ''
        AND first_person.organization_id = ANY(%(organizations)s::bigint[])
        AND first_person.merged_into_id IS NULL
        AND second_person.merged_into_id IS NULL
  UNION ALL
    SELECT first_person.id, second_person.id, 'oms_policy'
    FROM {person} first_person
    JOIN {person} second_person
        ON second_person.oms_policy = first_person.oms_policy
        AND second_person.id > first_person.id
        AND second_person.organization_id = first_person.organization_id
    WHERE first_person.oms_policy <> ''
        AND first_person.organization_id = ANY(%(organizations)s::bigint[])
        AND first_person.merged_into_id IS NULL
        AND second_person.merged_into_id IS NULL
  UNION ALL
    SELECT first_person.id, second_person.id, 'name_birth_date'
    FROM {person} first_person
    JOIN {person} second_person
        ON second_person.organization_id = first_person.organization_id
        AND second_person.birth_date = first_person.birth_date
        AND second_person.id > first_person.id
    WHERE first_person.birth_date IS NOT NULL
        AND first_person.organization_id = ANY(%(organizations)s::bigint[])
        AND first_person.merged_into_id IS NULL
        AND second_person.merged_into_id IS NULL
        AND similarity(first_person.name_key, second_person.name_key) >= %(threshold)s
)
SELECT
    pairs.first_id,
    pairs.second_id,
    array_agg(DISTINCT pairs.reason) AS reasons,
    similarity(first_person.name_key, second_person.name_key) AS name_similarity
FROM pairs
JOIN {person} first_person ON first_person.id = pairs.first_id
JOIN {person} second_person ON second_person.id = pairs.second_id
GROUP BY pairs.first_id, pairs.second_id, first_person.name_key, second_person.name_key
ORDER BY
    count(DISTINCT pairs.reason) + similarity(first_person.name_key, second_person.name_key) DESC,
    pairs.first_id,
    pairs.second_id
LIMIT %(limit)s
"""
