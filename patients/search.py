"""The registry's one search box: people by name, phone, birth date, card number, SNILS or OMS.

A query is read into tokens: dates become a birth-date filter, runs of digits become identifiers
(SNILS, OMS policy, phone fragment or card number, whichever fits), letter-and-digit tokens are
card numbers and the remaining words are a name. Every part must match (``Иванов 31.12.1980`` is
a name *and* a birth date). A card number is searched only among the card types the actor may
open; otherwise the search would reveal that such a card exists.

Names are matched word by word against the words of ``Person.name_key`` (surname, first name,
patronymic), in tiers that each cost one index scan and stop once the page is full:

1. exact: the typed words are the leading name words (``Иванов Иван``);
2. prefix: they start the leading name words (``иванов ив``, ``Иванов И.П.``, ``петр``);
3. any order: they start other name words (``Иван Петрович``, ``Иван Иванов``);
4. one typo: one typed word is one edit (letter wrong, missing, extra or swapped) away from the
   name word (``Ивонов Иван``); looked up as exact words in the same b-tree, so it costs a few
   hundred index probes instead of a trigram scan of every "Иван";
5. similar: trigram word similarity on ``name_key`` (GIN index), only when nothing else matched.

The typo and similar tiers run only when no name matched as typed (with digits in the query,
only when no name matched exactly): a name found as typed is not a typo.
"""

from __future__ import annotations

import datetime
import itertools
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.contrib.postgres.search import TrigramStrictWordSimilarity
from django.core.exceptions import ValidationError
from django.db.models import (
    CharField,
    F,
    Func,
    Prefetch,
    Q,
    QuerySet,
    Value,
    prefetch_related_objects,
)
from django.utils import timezone

from clinic.core.validators import snils_is_valid

from .models import PHONE_KINDS, Contact, MedicalCard, Person
from .normalizers import parse_date, phone_digits, search_key
from .selectors import card_types_for_actor, person_list

MatchedOn = Literal["snils", "oms_policy", "card_number", "phone", "birth_date", "name"]

# The most specific reason first: a hit reports the first of these it matched on.
MATCH_PRIORITY: tuple[MatchedOn, ...] = (
    "snils",
    "oms_policy",
    "card_number",
    "phone",
    "birth_date",
    "name",
)

MAX_QUERY_LENGTH = 200
MAX_NAME_WORDS = 5
# Name words with their own index columns (see the Person indexes); more words are checked on
# the whole name_key.
INDEXED_NAME_WORDS = 3
# Shorter words are not corrected for typos: one edit away from "иван" is half the registry.
MIN_TYPO_WORD_LENGTH = 4
MIN_PHONE_DIGITS = 4
MAX_PHONE_DIGITS = 15
SNILS_DIGITS = 11
OMS_DIGITS = 16
NATIONAL_PHONE_DIGITS = 10
# A phone fragment of four digits matches hundreds of numbers; beyond this many owners the rest
# are dropped (the desk types more digits).
MAX_IDENTIFIER_OWNERS = 2000
# Similar names must share at least this strict word similarity with the typed name.
MIN_SIMILARITY = 0.3

# Scores: identifiers outrank any name match; among names exact > prefix > any order > typo.
EXACT_IDENTIFIER_SCORE = 3.0
PHONE_NUMBER_SCORE = 2.5
PHONE_FRAGMENT_SCORE = 2.0
BIRTH_DATE_SCORE = 1.0
EXACT_NAME_SCORE = 1.0
PREFIX_NAME_SCORE = 0.8
ANY_ORDER_NAME_SCORE = 0.6
# A typo or a similar name scores this much times its strict word similarity (so below 0.5).
SIMILAR_NAME_WEIGHT = 0.5

CYRILLIC_LOWERCASE = "абвгдежзийклмнопрстуфхцчшщъыьэюя"  # no "ё": name_key reads it as "е"

_DATE = re.compile(r"(?<![\w./-])(\d{1,4}[./-]\d{1,2}[./-]\d{2,4})(?![\w./-])")
_SPLIT = re.compile(r"[\s,;]+")
_NUMERIC = re.compile(r"\+?[\d()\-.]*\d[\d()\-.]*")
_SNILS_FORMAT = re.compile(r"\d{3}-\d{3}-\d{3}[ -]\d{2}")
_NAME_PIECE = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")
_CARD_TOKEN = re.compile(r"[^\W_]+(?:[-/][^\W_]+)*")
_EDGE_PUNCTUATION = "()[]{}\"'«»<>!?:"
# Latin letters that look like Cyrillic ones, typed with the wrong keyboard layout.
_CYRILLIC_LOOKALIKES = str.maketrans("ABCEHKMOPTXYaceopxy", "АВСЕНКМОРТХУасеорху")
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


def name_word(position: int) -> Func:
    """Word ``position`` (from 1) of ``name_key`` in binary order, spelt as the name-words
    indexes of ``Person`` spell it (a query uses those indexes only if it spells it the same).

    The collation goes inside (``split_part(name_key COLLATE "C", ...)``) so that the word
    itself is in binary order: b-tree prefix ranges, and the planner's statistics of the
    indexed expression apply to the query's expression.
    """
    return Func(
        F("name_key"),
        template=f"split_part(%(expressions)s COLLATE \"C\", ' ', {position})",
        output_field=CharField(),
    )


# Name order: surname, first name, patronymic (the order of the name-words index), then id.
_NAME_ORDER = (name_word(1), name_word(2), name_word(3), "pk")


@dataclass(frozen=True)
class SearchHit:
    """One found person, the most specific reason they matched and a rank (higher is better)."""

    person: Person
    matched_on: MatchedOn
    score: float


@dataclass(frozen=True)
class NumberGroup:
    """Digits typed together ("+7 916 123-45-67", "112-233-445 95", "12345")."""

    typed: str
    digits: str

    @property
    def is_snils_format(self) -> bool:
        return bool(_SNILS_FORMAT.fullmatch(self.typed))

    @property
    def may_be_snils(self) -> bool:
        return len(self.digits) == SNILS_DIGITS and snils_is_valid(self.digits)

    @property
    def may_be_oms_policy(self) -> bool:
        return len(self.digits) == OMS_DIGITS and not self.is_snils_format

    @property
    def phone_variants(self) -> tuple[str, ...]:
        """Digit strings to look for in stored phone digits ("8 916..." is "+7 916...")."""
        digits = self.digits
        if self.is_snils_format or not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS:
            return ()
        if (
            len(digits) == SNILS_DIGITS
            and digits.startswith("8")
            and not self.typed.startswith("+")
        ):
            return ("7" + digits[1:],)
        return (digits,)

    @property
    def may_be_card_number(self) -> bool:
        return not (self.is_snils_format or self.typed.startswith("+"))


@dataclass(frozen=True)
class ParsedQuery:
    """What a typed query asks for; all parts must match."""

    name_words: tuple[str, ...] = ()
    birth_dates: frozenset[datetime.date] = frozenset()
    numbers: tuple[NumberGroup, ...] = ()
    card_numbers: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.name_words or self.birth_dates or self.numbers or self.card_numbers)

    @property
    def birth_date(self) -> datetime.date | None:
        return next(iter(self.birth_dates)) if len(self.birth_dates) == 1 else None


def parse_query(query: str) -> ParsedQuery:
    """Split a typed query into name words, birth dates, digit groups and card numbers."""
    text = query.strip()[:MAX_QUERY_LENGTH]
    birth_dates: set[datetime.date] = set()

    def take_date(match: re.Match[str]) -> str:
        day = _read_date(match.group(1))
        if day is None:
            return match.group(0)
        birth_dates.add(day)
        return " "

    text = _DATE.sub(take_date, text)
    name_words: list[str] = []
    numbers: list[NumberGroup] = []
    card_numbers: list[str] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            typed = " ".join(run)
            numbers.append(NumberGroup(typed=typed, digits=phone_digits(typed)))
            run.clear()

    for raw in _SPLIT.split(text):
        token = raw.strip(_EDGE_PUNCTUATION)
        if not token:
            continue
        if token.startswith("№"):
            close_run()
            card = token.lstrip("№ ")
            if _CARD_TOKEN.fullmatch(card):
                card_numbers.append(card)
            continue
        if _NUMERIC.fullmatch(token):
            run.append(token)
            continue
        close_run()
        if any(character.isdigit() for character in token):
            if _CARD_TOKEN.fullmatch(token):
                card_numbers.append(token)
            continue
        for piece in _NAME_PIECE.findall(token):
            name_words.append(_cyrillic_word(search_key(piece)))
    close_run()
    return ParsedQuery(
        name_words=tuple(name_words[:MAX_NAME_WORDS]),
        birth_dates=frozenset(birth_dates),
        numbers=tuple(numbers),
        card_numbers=tuple(card_numbers),
    )


def _cyrillic_word(word: str) -> str:
    """A Cyrillic word with a stray Latin look-alike ("Ивaнов" with a Latin a) put right."""
    return word.translate(_CYRILLIC_LOOKALIKES) if _CYRILLIC.search(word) else word


def _read_date(typed: str) -> datetime.date | None:
    try:
        day = parse_date(typed)
    except ValidationError:
        return None
    if day is None:
        return None
    if day > timezone.localdate() and len(re.split(r"[./-]", typed)[-1]) == 2:
        day = day.replace(year=day.year - 100)  # "05.03.45" is 1945, not 2045
    return day


@dataclass
class _Match:
    """Why one person matched: the kinds and the score so far."""

    kinds: set[MatchedOn] = field(default_factory=set)
    score: float = 0.0

    @property
    def matched_on(self) -> MatchedOn:
        return next(kind for kind in MATCH_PRIORITY if kind in self.kinds)


def person_search(*, actor: Any, query: str, limit: int = 20) -> list[SearchHit]:
    """Living people of the actor's organizations matching ``query``, best first.

    Costs a handful of queries whatever the registry's size: for digits, the card types the
    actor may open and the owners of the typed identifiers; one per name tier until ``limit``
    people are found; the people (with their organization); their contacts (prefetched, shown
    next to each name). The actor's organizations are a subquery of each (``person_list``).
    """
    parsed = parse_query(query)
    if parsed.is_empty or limit <= 0 or len(parsed.birth_dates) > 1:
        return []
    people = person_list(actor=actor)
    matches: dict[int, _Match] = {}
    if parsed.numbers or parsed.card_numbers:
        owners = _identifier_owners(actor, people, parsed)
        if not owners:
            return []
        people = people.filter(pk__in=list(owners))
        for person_id, (kinds, score) in owners.items():
            matches[person_id] = _Match(kinds=set(kinds), score=score)
    if parsed.birth_date is not None:
        people = people.filter(birth_date=parsed.birth_date)

    if parsed.name_words:
        # With identifiers every tier is read: a stronger identifier may sit in a weaker tier.
        found = _name_matches(people, parsed.name_words, limit, read_every_tier=bool(matches))
        for person_id, name_score in found:
            match = matches.setdefault(person_id, _Match())
            match.kinds.add("name")
            match.score += name_score
        found_ids = [person_id for person_id, _score in found]
    else:
        found_ids = list(
            people.order_by(*_NAME_ORDER).values_list("pk", flat=True)[: max(limit, len(matches))]
        )
    if parsed.birth_date is not None:
        for person_id in found_ids:
            match = matches.setdefault(person_id, _Match())
            match.kinds.add("birth_date")
            match.score += BIRTH_DATE_SCORE
    # Sorting is stable: equal scores keep the order of the tiers (by name within a tier).
    ranked_ids = sorted(found_ids, key=lambda person_id: -matches[person_id].score)[:limit]
    by_id = Person.objects.select_related("organization").in_bulk(ranked_ids)
    ranked = [by_id[person_id] for person_id in ranked_ids]
    prefetch_related_objects(
        ranked, Prefetch("contacts", queryset=Contact.objects.order_by("kind", "pk"))
    )
    return [
        SearchHit(
            person=person,
            matched_on=matches[person.pk].matched_on,
            score=round(matches[person.pk].score, 4),
        )
        for person in ranked
    ]


def _name_matches(
    people: QuerySet[Person], words: tuple[str, ...], limit: int, read_every_tier: bool
) -> list[tuple[int, float]]:
    """Ids of people whose name matches ``words`` with their name score, best tier first.

    Unless ``read_every_tier``, stops as soon as ``limit`` people are found. The typo and
    similarity tiers run only when no name matched as typed (exact, prefix or any order) —
    except with ``read_every_tier``, where only an exact match stops them.
    """
    people = people.alias(**{f"word{n}": name_word(n) for n in range(1, INDEXED_NAME_WORDS + 1)})
    found: list[tuple[int, float]] = []
    seen: set[int] = set()

    def room() -> int:
        return limit if read_every_tier else limit - len(found)

    def take(rows: Iterable[tuple[int, float]]) -> None:
        for person_id, score in rows:
            if person_id not in seen:
                seen.add(person_id)
                found.append((person_id, score))

    for exact, score in ((True, EXACT_NAME_SCORE), (False, PREFIX_NAME_SCORE)):
        if room() <= 0:
            return found
        tier = people.filter(_words_match(words, exact=exact)).exclude(pk__in=seen)
        ids = tier.order_by(*_NAME_ORDER).values_list("pk", flat=True)[: room()]
        take((person_id, score) for person_id in ids)
    exact_found = any(score == EXACT_NAME_SCORE for _id, score in found)
    if room() > 0:
        take(_any_order(people, words, seen, room()))
    if room() <= 0 or exact_found or (found and not read_every_tier):
        return found
    take(_one_typo(people, words, seen, room()))
    if room() <= 0 or (found and not read_every_tier):
        return found
    take(_similar(people, words, seen, room()))
    return found


def _words_match(words: Sequence[str], *, exact: bool) -> Q:
    """The typed words are (``exact``) or start the leading name words, in order."""
    condition = Q()
    for position, word in enumerate(words[:INDEXED_NAME_WORDS], start=1):
        lookup = "exact" if exact else "startswith"
        condition &= Q(**{f"word{position}__{lookup}": word})
    if len(words) > INDEXED_NAME_WORDS:
        separator = " " if exact else r"\S* "
        pattern = "^" + separator.join(_regex_escape(word) for word in words)
        condition &= Q(name_key__regex=pattern + ("( |$)" if exact else ""))
    return condition


def _any_order(
    people: QuerySet[Person], words: tuple[str, ...], seen: set[int], room: int
) -> list[tuple[int, float]]:
    """The typed words start name words other than in name order ("Иван Петрович").

    One index scan per arrangement of the words over the name words, each led by the surname
    or the first name (a patronymic alone is not searched), in one UNION ALL.
    """
    if len(words) > INDEXED_NAME_WORDS:
        return []
    in_order = tuple(range(1, len(words) + 1))
    scans = []
    for positions in itertools.permutations(range(1, INDEXED_NAME_WORDS + 1), len(words)):
        if positions == in_order or not {1, 2} & set(positions):
            continue
        condition = Q(
            **{
                f"word{position}__startswith": word
                for position, word in zip(positions, words, strict=True)
            }
        )
        leading = min(positions)
        order = [name_word(n) for n in range(leading, INDEXED_NAME_WORDS + 1)]
        scans.append(
            people.filter(condition)
            .exclude(pk__in=seen)
            .order_by(*order, "pk")
            .values_list("pk", "name_key")[:room]
        )
    rows = _union(scans)
    # Each scan is a page in its own index order; together they are shown in name order.
    return [(person_id, ANY_ORDER_NAME_SCORE) for person_id, _key in sorted(rows, key=_by_key)]


def _one_typo(
    people: QuerySet[Person], words: tuple[str, ...], seen: set[int], room: int
) -> list[tuple[int, float]]:
    """Names where one typed word is one edit away from its name word, the others as typed.

    The misspelt word's corrections are looked up as exact words (``= ANY``) in the name-words
    index: a few hundred index probes, whatever the size of the registry.
    """
    if len(words) > INDEXED_NAME_WORDS:
        return []
    key = " ".join(words)
    scans = []
    for position, word in enumerate(words, start=1):
        if len(word) < MIN_TYPO_WORD_LENGTH:
            continue
        condition = Q(**{f"word{position}__in": sorted(_one_edit_away(word))})
        for other, other_word in enumerate(words, start=1):
            if other != position:
                condition &= Q(**{f"word{other}__startswith": other_word})
        scans.append(
            people.filter(condition)
            .exclude(pk__in=seen)
            .order_by(*_NAME_ORDER)
            .annotate(similarity=TrigramStrictWordSimilarity(key, "name_key"))
            .values_list("pk", "similarity")[:room]
        )
    rows = _union(scans)
    best_first = sorted(rows, key=lambda row: -row[1])
    return [(person_id, SIMILAR_NAME_WEIGHT * similarity) for person_id, similarity in best_first]


def _similar(
    people: QuerySet[Person], words: tuple[str, ...], seen: set[int], room: int
) -> list[tuple[int, float]]:
    """Names similar to the typed one by trigrams (more than one typo, words run together).

    ``name_key %> typed`` (word similarity at pg_trgm's threshold, 0.6) finds the candidates in
    the GIN trigram index; strict word similarity (whole words) ranks them, so "Смирнов Иван" is
    not as close to "Ивонов Иван" as "Иванов Иван" is.
    """
    key = " ".join(words)
    rows = (
        people.filter(name_key__trigram_word_similar=key)
        .exclude(pk__in=seen)
        .annotate(similarity=TrigramStrictWordSimilarity(key, "name_key"))
        .filter(similarity__gte=MIN_SIMILARITY)
        .order_by("-similarity", *_NAME_ORDER)
        .values_list("pk", "similarity")[:room]
    )
    return [(person_id, SIMILAR_NAME_WEIGHT * similarity) for person_id, similarity in rows]


def _union(scans: list[QuerySet[Any]]) -> list[Any]:
    if not scans:
        return []
    first, *rest = scans
    return list(first.union(*rest, all=True) if rest else first)


def _by_key(row: tuple[int, str]) -> tuple[str, int]:
    return row[1], row[0]


def _one_edit_away(word: str) -> set[str]:
    """Every word one letter deleted, swapped with the next, replaced or inserted away."""
    alphabet = CYRILLIC_LOWERCASE if _CYRILLIC.search(word) else string.ascii_lowercase
    splits = [(word[:index], word[index:]) for index in range(len(word) + 1)]
    deleted = {head + tail[1:] for head, tail in splits if tail}
    swapped = {head + tail[1] + tail[0] + tail[2:] for head, tail in splits if len(tail) > 1}
    replaced = {head + letter + tail[1:] for head, tail in splits if tail for letter in alphabet}
    inserted = {head + letter + tail for head, tail in splits for letter in alphabet}
    return (deleted | swapped | replaced | inserted) - {word}


def _regex_escape(word: str) -> str:
    """A name word as a literal in a PostgreSQL regular expression."""
    return "".join(character if character.isalnum() else "\\" + character for character in word)


def _identifier_owners(
    actor: Any, people: QuerySet[Person], parsed: ParsedQuery
) -> dict[int, tuple[frozenset[MatchedOn], float]]:
    """People in ``people`` matching every digit group and card number: kinds and score.

    A group matches a person through any of its readings (an 11-digit group may be a SNILS or
    a phone); the best reading counts. Card numbers are read among visible card types only.
    One query for all readings (UNION ALL), after one for the visible card types if needed.
    """
    visible_types: list[tuple[int, str]] = []
    if parsed.card_numbers or any(group.may_be_card_number for group in parsed.numbers):
        visible_types = list(card_types_for_actor(actor).values_list("pk", "number_prefix"))
    type_ids = [pk for pk, _prefix in visible_types]
    prefixes = sorted({prefix for _pk, prefix in visible_types if prefix})
    in_scope = people.values("pk")

    scans: list[QuerySet[Any]] = []
    conditions: list[tuple[str, ...]] = []  # per typed group: the readings that satisfy it

    def scan(reading: str, owners: QuerySet[Any]) -> None:
        rows = owners.annotate(reading=Value(reading)).order_by().values_list("reading", "owner")
        scans.append(rows[:MAX_IDENTIFIER_OWNERS])

    def cards(numbers: list[str]) -> QuerySet[MedicalCard]:
        return MedicalCard.objects.filter(
            card_type_id__in=type_ids, number__in=numbers, person__in=in_scope
        ).annotate(owner=F("person_id"))

    own_people = people.annotate(owner=F("pk"))
    for index, group in enumerate(parsed.numbers):
        readings: list[str] = []
        if group.may_be_snils:
            readings.append(f"{index}:snils")
            scan(readings[-1], own_people.filter(snils=group.digits))
        if group.may_be_oms_policy:
            readings.append(f"{index}:oms_policy")
            scan(readings[-1], own_people.filter(oms_policy=group.digits))
        for variant in group.phone_variants:
            phones = Contact.objects.filter(
                kind__in=PHONE_KINDS, digits__contains=variant, person__in=in_scope
            ).annotate(owner=F("person_id"))
            if len(variant) >= NATIONAL_PHONE_DIGITS:
                readings.append(f"{index}:phone_number")
                scan(readings[-1], phones.filter(digits__endswith=variant))
            readings.append(f"{index}:phone")
            scan(readings[-1], phones)
        if group.may_be_card_number and type_ids:
            readings.append(f"{index}:card_number")
            scan(readings[-1], cards(_card_number_variants(group.digits, prefixes)))
        if not readings:
            return {}
        conditions.append(tuple(readings))
    for index, typed in enumerate(parsed.card_numbers, start=len(parsed.numbers)):
        if not type_ids:
            return {}
        conditions.append((f"{index}:card_number",))
        scan(conditions[-1][0], cards(_card_number_variants(typed, prefixes)))

    readings_by_person: dict[int, set[str]] = {}
    for reading, person_id in _union(scans):
        readings_by_person.setdefault(person_id, set()).add(reading)
    owners: dict[int, tuple[frozenset[MatchedOn], float]] = {}
    for person_id, readings_found in readings_by_person.items():
        kinds: set[MatchedOn] = set()
        score = 0.0
        for condition in conditions:
            best = [
                _READING_SCORES[reading.split(":", 1)[1]]
                for reading in condition
                if reading in readings_found
            ]
            if not best:
                break
            kind, points = max(best, key=lambda scored: scored[1])
            kinds.add(kind)
            score += points
        else:
            owners[person_id] = (frozenset(kinds), score)
    return owners


_READING_SCORES: dict[str, tuple[MatchedOn, float]] = {
    "snils": ("snils", EXACT_IDENTIFIER_SCORE),
    "oms_policy": ("oms_policy", EXACT_IDENTIFIER_SCORE),
    "card_number": ("card_number", EXACT_IDENTIFIER_SCORE),
    "phone_number": ("phone", PHONE_NUMBER_SCORE),
    "phone": ("phone", PHONE_FRAGMENT_SCORE),
}


def _card_number_variants(typed: str, prefixes: Iterable[str]) -> list[str]:
    """A typed card number as it may be stored: upper case, Cyrillic prefix, no separator.

    Bare digits are also tried with the prefix of each visible card type ("100" is "А100").
    """
    upper = typed.upper()
    variants = {typed, upper, upper.translate(_CYRILLIC_LOOKALIKES)}
    variants |= {variant.replace("-", "").replace("/", "") for variant in variants}
    if typed.isdigit():
        variants |= {prefix + typed for prefix in prefixes}
    return sorted(variants)
