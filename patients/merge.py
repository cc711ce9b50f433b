"""Merging two records of one person into one, and undoing the merge.

A merge keeps the *survivor* and turns the *merged* person into a tombstone
(``merged.merged_into = survivor``); ``person_resolve`` follows tombstones to the living record.
Everything else that points to the merged person is moved by *movers*, and the primary keys of
exactly the rows moved are kept in ``PersonMerge.moved`` so that ``person_unmerge`` can move those
rows back and no others. Every change is a tracked row change (pghistory), grouped in one history
context that carries the merge's reason.

Movers
------
Each app whose rows point to a person registers how to move them, once, from its
``AppConfig.ready()``::

    from patients.merge import merge_mover_register

    class AppointmentsConfig(AppConfig):
        def ready(self) -> None:
            from .models import Appointment

            merge_mover_register("appointments", Appointment, "patient")

Future apps are expected to register theirs this way: appointments (patient, payer), invoices
(payer, patient), messages (recipient), documents (person). ``merge_unhandled_relations()`` lists
the foreign keys to ``Person`` that are neither moved nor deliberately left (``NOT_MOVED``); a test
keeps that list empty, so a new foreign key to ``Person`` without a mover fails the suite.

A mover moves every row whose ``field`` is the merged person to the survivor, except rows that
would break one of the model's unique constraints on the survivor (such as a contact the survivor
already has): those are *kept* on the tombstone and are there again after an unmerge. With
``skip_links_via`` naming the model's other foreign key to ``Person``, rows that link the two
people to each other are *skipped* rather than turned into a link of the survivor to itself.

``PersonMerge.moved`` holds::

    {
        "rows": {label: [pk, ...]},        # moved to the survivor; unmerge moves them back
        "kept": {label: [pk, ...]},        # left on the tombstone: duplicates of the survivor's
        "skipped": {label: [pk, ...]},     # left on the tombstone: links between the two people
        "filled": {field: [before, after]},  # the survivor's empty fields filled from the merged
        "not_returned": {label: [pk, ...]},  # written by unmerge: rows that could not go back
    }
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pghistory
import pghistory.models
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.selectors import organization_list

from . import policies
from .models import Consent, Contact, MedicalCard, Person, PersonMerge, PersonRelation

# The survivor's fields filled from the merged person when empty. A group is filled only when
# all of the survivor's fields in it are empty, so one document or address is never a mixture
# of two.
FILL_GROUPS: tuple[tuple[str, ...], ...] = (
    ("snils",),
    ("oms_policy",),
    ("birth_date",),
    (
        "document_type",
        "document_series",
        "document_number",
        "document_issued_by",
        "document_issued_on",
    ),
    ("registration_address", "registration_address_parts", "registration_fias"),
    ("actual_address", "actual_address_parts", "actual_fias"),
)

# Foreign keys to Person that a merge deliberately leaves where they are.
NOT_MOVED: frozenset[str] = frozenset(
    {
        # Older tombstones pointing to the merged person: person_resolve follows the chain.
        "patients.Person.merged_into",
        # The log of merges itself.
        "patients.PersonMerge.survivor",
        "patients.PersonMerge.merged",
        # What an import did at the time (related_name "+", so not listed by Django anyway).
        "patients.ImportRow.person",
    }
)

# A chain of tombstones longer than this is a data error rather than history.
MAX_MERGE_CHAIN = 100


@dataclass(frozen=True)
class Mover:
    """How rows of one model that point to a person move to another person."""

    label: str
    model: type[models.Model]
    field: str
    skip_links_via: str = ""


_movers: dict[str, Mover] = {}


def merge_mover_register(
    label: str, model: type[models.Model], field: str, *, skip_links_via: str = ""
) -> Mover:
    """Have merges move ``model`` rows whose ``field`` is the merged person (see the module doc).

    ``label`` names the rows in ``PersonMerge.moved``; it must stay the same for as long as merges
    recorded with it may be undone. Registering the same mover again is harmless; another mover
    under a label already taken is an error.
    """
    for name in (field, skip_links_via):
        if not name:
            continue
        model_field = model._meta.get_field(name)
        if getattr(model_field, "related_model", None) is not Person:
            raise ValueError(f"{model._meta.label}.{name} is not a foreign key to Person.")
    mover = Mover(label=label, model=model, field=field, skip_links_via=skip_links_via)
    registered = _movers.get(label)
    if registered is not None and registered != mover:
        raise ValueError(f"The merge mover label {label!r} is taken by {registered}.")
    _movers[label] = mover
    return mover


MergeHook = Callable[[Person, Person], None]
_hooks: dict[str, MergeHook] = {}
_hook_relations: set[str] = set()


def merge_hook_register(label: str, hook: MergeHook, *, handles: tuple[str, ...] = ()) -> None:
    """Have merges and unmerges call ``hook(survivor, merged)`` after the rows have moved, in
    the same transaction: for what is derived from the rows rather than moved with them (a
    balance recomputed from the documents). ``handles`` names the foreign keys to Person
    (``app.Model.field``) the hook takes care of, so that they do not count as forgotten."""
    _hooks[label] = hook
    _hook_relations.update(handles)


def _run_hooks(survivor: Person, merged: Person) -> None:
    for hook in _hooks.values():
        hook(survivor, merged)


def merge_movers() -> list[Mover]:
    """The registered movers, in the order merges apply them (unmerge goes in reverse)."""
    return list(_movers.values())


def merge_unhandled_relations() -> list[str]:
    """Foreign keys to Person (``app.Model.field``) that merges neither move nor leave alone."""
    handled = {f"{mover.model._meta.label}.{mover.field}" for mover in _movers.values()}
    unhandled = []
    for relation in Person._meta.related_objects:
        model = relation.related_model
        if not isinstance(model, type) or issubclass(model, pghistory.models.Event):
            continue
        name = f"{model._meta.label}.{relation.field.name}"
        if name not in handled and name not in NOT_MOVED and name not in _hook_relations:
            unhandled.append(name)
    return sorted(unhandled)


merge_mover_register("contacts", Contact, "person")
merge_mover_register("consents", Consent, "person")
merge_mover_register("medical_cards", MedicalCard, "person")
merge_mover_register("relations", PersonRelation, "person", skip_links_via="relative")
merge_mover_register("relations_as_relative", PersonRelation, "relative", skip_links_via="person")


@transaction.atomic
def person_merge(*, actor: Any, survivor: Person, merged: Person, reason: str) -> PersonMerge:
    """Merge ``merged`` into ``survivor``: one transaction, undone by ``person_unmerge``.

    Both people are locked (in primary-key order, so that two merges of the same pair, in either
    direction, wait for each other instead of deadlocking) and checked again under the lock.
    """
    if not policies.can_merge_people(actor):
        raise PermissionDenied
    reason = reason.strip()
    if not reason:
        raise _field_error("reason", _("Say why these records are the same person."), "required")
    if survivor.pk == merged.pk:
        raise _field_error("merged", _("A person cannot be merged into themselves."), "merge_self")
    survivor, merged = _lock_people(survivor.pk, merged.pk)
    if survivor.organization_id != merged.organization_id:
        raise _field_error(
            "merged",
            _("The two people are registered in different organizations."),
            "merge_other_organization",
        )
    _check_organization_access(actor, survivor)
    for field, person in (("survivor", survivor), ("merged", merged)):
        if person.is_tombstone:
            raise _field_error(
                field,
                _("%(name)s was already merged into another person."),
                "merge_tombstone",
                name=person.full_name,
            )
    merge = PersonMerge(
        survivor=survivor,
        merged=merged,
        reason=reason,
        merged_snapshot=_snapshot(merged),
        performed_by=actor,
    )
    merge.full_clean(exclude=["moved", "merged_snapshot"])

    with pghistory.context(person_merge_reason=reason):
        filled = _fill_empty_fields(survivor, merged)
        moved: dict[str, Any] = {"rows": {}, "kept": {}, "skipped": {}, "filled": filled}
        for mover in merge_movers():
            result = _move_rows(mover, source=merged, target=survivor)
            moved["rows"][mover.label] = result.moved
            if result.kept:
                moved["kept"][mover.label] = result.kept
            if result.skipped:
                moved["skipped"][mover.label] = result.skipped
        merged.merged_into = survivor
        merged.save(update_fields=["merged_into", "updated_at"])
        merge.moved = moved
        merge.save()
        _run_hooks(survivor, merged)
    return merge


@transaction.atomic
def person_unmerge(*, actor: Any, merge: PersonMerge) -> Person:
    """Undo a merge: the recorded rows go back, the filled fields are emptied, the person returns.

    Rows deleted since the merge (or no longer on the survivor) are left alone and listed under
    ``not_returned``. Refused when the merge was undone already or when the survivor has since
    been merged into someone else (undo that later merge first). Returns the restored person.
    """
    if not policies.can_merge_people(actor):
        raise PermissionDenied
    merge = PersonMerge.objects.select_for_update().get(pk=merge.pk)
    if merge.undone_at is not None:
        raise ValidationError(_("This merge has already been undone."), code="merge_undone")
    survivor, merged = _lock_people(merge.survivor_id, merge.merged_id)
    _check_organization_access(actor, survivor)
    if survivor.is_tombstone:
        raise ValidationError(
            _("%(survivor)s has since been merged into another person: undo that merge first."),
            code="merge_survivor_merged",
            params={"survivor": survivor.full_name},
        )
    if merged.merged_into_id != survivor.pk:
        raise ValidationError(
            _("%(merged)s is no longer merged into %(survivor)s."),
            code="merge_inconsistent",
            params={"merged": merged.full_name, "survivor": survivor.full_name},
        )

    with pghistory.context(person_unmerge=merge.pk):
        moved = dict(merge.moved)
        not_returned: dict[str, list[Any]] = {}
        for label, pks in reversed(list(moved.get("rows", {}).items())):
            mover = _movers.get(label)
            if mover is None:
                if pks:
                    not_returned[label] = pks
                continue
            result = _move_rows(mover, source=survivor, target=merged, only=pks)
            left = sorted(set(pks) - set(result.moved), key=str)
            if left:
                not_returned[label] = left
        _clear_filled_fields(survivor, moved.get("filled", {}))
        _restore(merged, merge.merged_snapshot)
        _run_hooks(survivor, merged)
        moved["not_returned"] = not_returned
        merge.moved = moved
        merge.undone_at = timezone.now()
        merge.undone_by = actor
        merge.save(update_fields=["moved", "undone_at", "undone_by"])
    return merged


def person_resolve(person: Person) -> Person:
    """The living person a tombstone was merged into (through any chain); else ``person``.

    Starts from ``person`` as loaded: a living instance costs no query, each hop costs one.
    """
    current = person
    for _hop in range(MAX_MERGE_CHAIN):
        if current.merged_into_id is None:
            return current
        current = Person.objects.get(pk=current.merged_into_id)
    raise ValueError(f"Person {person.pk} is merged through more than {MAX_MERGE_CHAIN} people.")


@dataclass
class _MoveResult:
    moved: list[Any]
    kept: list[Any]
    skipped: list[Any]


def _field_error(field: str, message: str, code: str, **params: Any) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code, params=params or None)})


def _lock_people(first_pk: int, second_pk: int) -> tuple[Person, Person]:
    """Lock both rows, lower primary key first, and return them in the order asked."""
    locked = {
        pk: Person.objects.select_for_update().get(pk=pk) for pk in sorted((first_pk, second_pk))
    }
    return locked[first_pk], locked[second_pk]


def _check_organization_access(actor: Any, person: Person) -> None:
    if not organization_list(actor=actor).filter(pk=person.organization_id).exists():
        raise PermissionDenied


def _move_rows(
    mover: Mover, *, source: Person, target: Person, only: list[Any] | None = None
) -> _MoveResult:
    """Point ``mover``'s rows from ``source`` to ``target`` (only the ``only`` pks, if given)."""
    manager = mover.model._base_manager
    rows = manager.filter(**{mover.field: source})
    if only is not None:
        rows = rows.filter(pk__in=only)
    candidates = list(rows.select_for_update().order_by("pk").values_list("pk", flat=True))
    if not candidates:
        return _MoveResult(moved=[], kept=[], skipped=[])
    skipped: set[Any] = set()
    if mover.skip_links_via:
        skipped = set(rows.filter(**{mover.skip_links_via: target}).values_list("pk", flat=True))
    kept = _colliding_rows(mover, rows.exclude(pk__in=skipped), target) - skipped
    moving = [pk for pk in candidates if pk not in skipped and pk not in kept]
    if moving:
        changes: dict[str, Any] = {mover.field: target}
        if any(field.name == "updated_at" for field in mover.model._meta.concrete_fields):
            changes["updated_at"] = timezone.now()
        manager.filter(pk__in=moving).update(**changes)
    return _MoveResult(
        moved=[_json_pk(pk) for pk in moving],
        kept=[_json_pk(pk) for pk in candidates if pk in kept],
        skipped=[_json_pk(pk) for pk in candidates if pk in skipped],
    )


def _colliding_rows(mover: Mover, rows: models.QuerySet[Any], target: Person) -> set[Any]:
    """Rows that would break a unique constraint if their ``mover.field`` became ``target``."""
    colliding: set[Any] = set()
    for fields, condition in _unique_field_sets(mover.model, mover.field):
        clash = mover.model._base_manager.filter(**{mover.field: target})
        candidates = rows
        if condition is not None:
            clash = clash.filter(condition)
            candidates = candidates.filter(condition)
        clash = clash.filter(**{name: OuterRef(name) for name in fields if name != mover.field})
        colliding |= set(candidates.filter(Exists(clash)).values_list("pk", flat=True))
    return colliding


def _unique_field_sets(
    model: type[models.Model], field: str
) -> list[tuple[tuple[str, ...], Q | None]]:
    """The model's unique field sets that include ``field``, with their conditions."""
    meta = model._meta
    sets: list[tuple[tuple[str, ...], Q | None]] = []
    if meta.get_field(field).unique:  # type: ignore[union-attr]
        sets.append(((field,), None))
    for together in meta.unique_together:
        if field in together:
            sets.append((tuple(together), None))
    for constraint in meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and field in constraint.fields:
            sets.append((tuple(constraint.fields), constraint.condition))
    return sets


def _fill_empty_fields(survivor: Person, merged: Person) -> dict[str, list[Any]]:
    """Copy field groups empty on the survivor from the merged person: ``{field: [old, new]}``."""
    filled: dict[str, list[Any]] = {}
    for group in FILL_GROUPS:
        if not all(_is_empty(getattr(survivor, name)) for name in group):
            continue
        for name in group:
            value = getattr(merged, name)
            if _is_empty(value):
                continue
            filled[name] = [_to_json(getattr(survivor, name)), _to_json(value)]
            setattr(survivor, name, value)
    if filled:
        unchanged = [
            field.name for field in Person._meta.concrete_fields if field.name not in filled
        ]
        survivor.full_clean(exclude=unchanged, validate_unique=False, validate_constraints=False)
        survivor.save(update_fields=[*filled, "updated_at"])
    return filled


def _clear_filled_fields(survivor: Person, filled: dict[str, list[Any]]) -> None:
    """Give back the survivor's old (empty) values, unless a field was changed since the merge."""
    changed = []
    for name, (before, after) in filled.items():
        field = _concrete_field(name)
        if _to_json(getattr(survivor, name)) != after:
            continue
        setattr(survivor, name, field.to_python(before))
        changed.append(name)
    if changed:
        survivor.save(update_fields=[*changed, "updated_at"])


def _concrete_field(name: str) -> models.Field[Any, Any]:
    field = Person._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _snapshot(person: Person) -> dict[str, Any]:
    """Every column of the person as JSON, to restore it exactly on unmerge."""
    return {
        field.attname: _to_json(getattr(person, field.attname))
        for field in Person._meta.concrete_fields
    }


def _restore(person: Person, snapshot: dict[str, Any]) -> None:
    """Put back the snapshot's values (all but the primary key and ``updated_at``)."""
    changed = []
    for field in Person._meta.concrete_fields:
        if field.primary_key or field.name == "updated_at" or field.attname not in snapshot:
            continue
        value = field.to_python(snapshot[field.attname])
        if getattr(person, field.attname) != value:
            setattr(person, field.attname, value)
            changed.append(field.name)
    person.merged_into = None
    if "merged_into" not in changed:
        changed.append("merged_into")
    person.save(update_fields=[*changed, "updated_at"])


def _is_empty(value: Any) -> bool:
    return value is None or value in ("", {}, [])


def _to_json(value: Any) -> Any:
    """A column value as JSON without losing precision (microseconds, decimals)."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    return value


def _json_pk(pk: Any) -> Any:
    return pk if isinstance(pk, int) else str(pk)
