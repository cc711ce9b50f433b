"""Merging two records of one person (patients.merge) and undoing the merge."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pghistory.models
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from clinic.audit.selectors import history_for_object
from clinic.core.models import Organization
from clinic.core.roles import Role
from patients.merge import (
    merge_mover_register,
    merge_movers,
    merge_unhandled_relations,
    person_merge,
    person_resolve,
    person_unmerge,
)
from patients.models import (
    CardType,
    Consent,
    ConsentKind,
    ConsentSource,
    Contact,
    ContactKind,
    IdentityDocumentType,
    MedicalCard,
    Person,
    PersonMerge,
    PersonRelation,
    Relation,
)
from tests.core.factories import BranchFactory, OrganizationFactory, staff_with_role

MERGE_ROLES = {Role.HEAD_OF_REGISTRY, Role.ADMINISTRATOR}
REASON = "Registered twice at the desk"


# --- local helpers (tests/patients/factories.py is written separately) -----------------------


def valid_snils(number: int) -> str:
    """An 11-digit SNILS with a correct check number for the 9-digit ``number``."""
    digits = f"{number:09d}"
    total = sum(int(digit) * weight for digit, weight in zip(digits, range(9, 0, -1), strict=True))
    if total > 101:
        total %= 101
    return f"{digits}{0 if total in (100, 101) else total:02d}"


def make_person(organization: Organization, last_name: str = "Иванов", **fields: Any) -> Person:
    fields.setdefault("first_name", "Иван")
    fields.setdefault("patronymic", "Иванович")
    person = Person(organization=organization, last_name=last_name, **fields)
    person.refresh_name_key()
    person.full_clean()
    person.save()
    return person


def add_contact(person: Person, value: str, kind: str = ContactKind.MOBILE) -> Contact:
    digits = "".join(character for character in value if character.isdigit())
    return Contact.objects.create(person=person, kind=kind, value=value, digits=digits)


def add_consent(person: Person, kind: str = ConsentKind.PERSONAL_DATA) -> Consent:
    return Consent.objects.create(
        person=person, kind=kind, given_on=datetime.date(2024, 3, 1), source=ConsentSource.PAPER
    )


def add_card(person: Person, number: str) -> MedicalCard:
    card_type, _created = CardType.objects.get_or_create(
        organization=None, code="outpatient", defaults={"name": "Outpatient card"}
    )
    return MedicalCard.objects.create(
        person=person,
        organization=person.organization,
        card_type=card_type,
        branch=BranchFactory(organization=person.organization),
        number=number,
    )


def add_relation(person: Person, relative: Person, relation: str) -> PersonRelation:
    return PersonRelation.objects.create(person=person, relative=relative, relation=relation)


def state(person: Person) -> dict[str, Any]:
    """Everything a merge may touch about a person: its columns and the rows that point to it."""
    fresh = Person.objects.get(pk=person.pk)
    return {
        "fields": {
            field.attname: getattr(fresh, field.attname)
            for field in Person._meta.concrete_fields
            if field.name != "updated_at"
        },
        "contacts": sorted(
            Contact.objects.filter(person=fresh).values_list("pk", "kind", "value", "note")
        ),
        "consents": sorted(
            Consent.objects.filter(person=fresh).values_list("pk", "kind", "given_on")
        ),
        "cards": sorted(MedicalCard.objects.filter(person=fresh).values_list("pk", "number")),
        "relations": sorted(
            PersonRelation.objects.filter(person=fresh).values_list("pk", "relative", "relation")
        ),
        "relations_as_relative": sorted(
            PersonRelation.objects.filter(relative=fresh).values_list("pk", "person", "relation")
        ),
    }


def field_errors(error: ValidationError) -> dict[str, list[str | None]]:
    """``{field: [code, ...]}`` of a ValidationError raised with a dict."""
    return {name: [item.code for item in items] for name, items in error.error_dict.items()}


@pytest.fixture
def organization(db: Any) -> Organization:
    return OrganizationFactory()


@pytest.fixture
def head(organization: Organization) -> Any:
    return staff_with_role(Role.HEAD_OF_REGISTRY, organization=organization).user


@pytest.fixture
def scenario(organization: Organization) -> dict[str, Any]:
    """A survivor and a duplicate, each with contacts, consents, cards and relations."""
    survivor = make_person(
        organization,
        birth_date=datetime.date(1980, 5, 17),
        oms_policy="7700000000000001",
        document_type=IdentityDocumentType.PASSPORT_RF,
        document_number="123456",
    )
    merged = make_person(
        organization,
        first_name="Иван",
        birth_date=datetime.date(1980, 5, 17),
        snils=valid_snils(112233445),
        oms_policy="7700000000000002",
        document_type=IdentityDocumentType.PASSPORT_RF,
        document_series="4510",
        document_number="654321",
        document_issued_by="ОВД Тверской",
        registration_address="Москва, ул. Ленина, 1",
        registration_address_parts={"city": "Москва", "street": "Ленина", "house": "1"},
        notes="Came in 2019",
    )
    mother = make_person(organization, last_name="Иванова", first_name="Мария")
    son = make_person(organization, first_name="Пётр")
    return {
        "survivor": survivor,
        "merged": merged,
        "mother": mother,
        "son": son,
        "survivor_phone": add_contact(survivor, "+79161111111"),
        "merged_phone": add_contact(merged, "+79162222222"),
        "merged_email": add_contact(merged, "ivanov@example.org", kind=ContactKind.EMAIL),
        "merged_consent": add_consent(merged),
        "merged_card": add_card(merged, "A-77"),
        "survivor_card": add_card(survivor, "A-78"),
        "merged_mother": add_relation(merged, mother, Relation.MOTHER),
        "son_father": add_relation(son, merged, Relation.FATHER),
    }


# --- merging ------------------------------------------------------------------------------


def test_merge_moves_contacts_consents_cards_and_relations_to_the_survivor(
    head: Any, scenario: dict[str, Any]
) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]

    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    assert set(Contact.objects.filter(person=survivor).values_list("pk", flat=True)) == {
        scenario["survivor_phone"].pk,
        scenario["merged_phone"].pk,
        scenario["merged_email"].pk,
    }
    assert list(Consent.objects.filter(person=survivor).values_list("pk", flat=True)) == [
        scenario["merged_consent"].pk
    ]
    assert set(MedicalCard.objects.filter(person=survivor).values_list("pk", flat=True)) == {
        scenario["merged_card"].pk,
        scenario["survivor_card"].pk,
    }
    assert list(
        PersonRelation.objects.filter(person=survivor).values_list("relative", flat=True)
    ) == [scenario["mother"].pk]
    assert list(
        PersonRelation.objects.filter(relative=survivor).values_list("person", flat=True)
    ) == [scenario["son"].pk]
    assert not Contact.objects.filter(person=merged).exists()
    assert not MedicalCard.objects.filter(person=merged).exists()
    assert merge.moved["rows"] == {
        "contacts": sorted([scenario["merged_phone"].pk, scenario["merged_email"].pk]),
        "consents": [scenario["merged_consent"].pk],
        "medical_cards": [scenario["merged_card"].pk],
        "relations": [scenario["merged_mother"].pk],
        "relations_as_relative": [scenario["son_father"].pk],
        "appointments": [],
        "waitlist_entries": [],
        "planned_calls": [],
        "invoices": [],
        "payments": [],
        "contracts": [],
        "guarantee_letters": [],
        "messages": [],
        "conversations": [],
        "feedback": [],
    }
    assert merge.moved["kept"] == {}
    assert merge.moved["skipped"] == {}
    assert (merge.survivor, merge.merged, merge.reason) == (survivor, merged, REASON)
    assert merge.performed_by == head
    assert merge.undone_at is None


def test_merged_person_becomes_a_tombstone_that_resolves_to_the_survivor(
    head: Any, scenario: dict[str, Any]
) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]

    person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    merged.refresh_from_db()
    assert merged.merged_into == survivor
    assert merged.is_tombstone
    assert person_resolve(merged) == survivor
    assert person_resolve(survivor) == survivor
    assert merged.snils == valid_snils(112233445)  # the tombstone keeps its own data


def test_merge_fills_only_the_survivors_empty_fields(head: Any, scenario: dict[str, Any]) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]

    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    survivor.refresh_from_db()
    assert survivor.snils == valid_snils(112233445)  # was empty
    assert survivor.registration_address == "Москва, ул. Ленина, 1"  # was empty
    assert survivor.registration_address_parts == {
        "city": "Москва",
        "street": "Ленина",
        "house": "1",
    }
    assert survivor.oms_policy == "7700000000000001"  # had its own
    # The survivor had a document: none of the merged person's document fields are mixed in.
    assert (survivor.document_series, survivor.document_number, survivor.document_issued_by) == (
        "",
        "123456",
        "",
    )
    assert survivor.notes == ""  # not a field merges fill
    assert merge.moved["filled"] == {
        "snils": ["", valid_snils(112233445)],
        "registration_address": ["", "Москва, ул. Ленина, 1"],
        "registration_address_parts": [{}, {"city": "Москва", "street": "Ленина", "house": "1"}],
    }


def test_merge_fills_an_empty_birth_date(head: Any, organization: Organization) -> None:
    survivor = make_person(organization)
    merged = make_person(organization, birth_date=datetime.date(1975, 1, 31))

    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    survivor.refresh_from_db()
    assert survivor.birth_date == datetime.date(1975, 1, 31)
    assert merge.moved["filled"] == {"birth_date": [None, "1975-01-31"]}


def test_merge_is_in_the_history_of_every_changed_row_with_its_reason(
    head: Any, scenario: dict[str, Any]
) -> None:
    survivor, merged, card = scenario["survivor"], scenario["merged"], scenario["merged_card"]

    person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    card_events = list(history_for_object(card))
    assert [event.pgh_label for event in card_events] == ["insert", "update"]
    assert card_events[-1].pgh_diff["person_id"] == [merged.pk, survivor.pk]
    merged_events = list(history_for_object(merged))
    assert [event.pgh_label for event in merged_events] == ["insert", "update"]
    assert merged_events[-1].pgh_diff["merged_into_id"] == [None, survivor.pk]
    survivor_events = list(history_for_object(survivor))
    assert survivor_events[-1].pgh_diff["snils"] == ["", valid_snils(112233445)]
    for obj in (scenario["merged_phone"], scenario["merged_consent"], scenario["son_father"]):
        assert [event.pgh_label for event in history_for_object(obj)] == ["insert", "update"]
    context = pghistory.models.Context.objects.get(pk=merged_events[-1].pgh_context_id)
    assert context.metadata["person_merge_reason"] == REASON
    assert card_events[-1].pgh_context_id == context.pk


def test_a_contact_the_survivor_already_has_stays_on_the_tombstone(
    head: Any, organization: Organization
) -> None:
    survivor = make_person(organization)
    merged = make_person(organization)
    survivor_phone = add_contact(survivor, "+79161234567")
    duplicate_phone = add_contact(merged, "+79161234567")
    same_number_other_kind = add_contact(merged, "+79161234567", kind=ContactKind.WHATSAPP)

    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    assert merge.moved["kept"] == {"contacts": [duplicate_phone.pk]}
    assert merge.moved["rows"]["contacts"] == [same_number_other_kind.pk]
    assert list(Contact.objects.filter(person=merged).values_list("pk", flat=True)) == [
        duplicate_phone.pk
    ]
    assert set(Contact.objects.filter(person=survivor).values_list("pk", flat=True)) == {
        survivor_phone.pk,
        same_number_other_kind.pk,
    }

    person_unmerge(actor=head, merge=merge)

    assert set(Contact.objects.filter(person=merged).values_list("pk", flat=True)) == {
        duplicate_phone.pk,
        same_number_other_kind.pk,
    }


def test_a_relation_the_survivor_already_has_is_kept_not_duplicated(
    head: Any, organization: Organization
) -> None:
    survivor, merged = make_person(organization), make_person(organization)
    mother = make_person(organization, last_name="Иванова", first_name="Мария")
    add_relation(survivor, mother, Relation.MOTHER)
    duplicate = add_relation(merged, mother, Relation.MOTHER)

    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    assert merge.moved["kept"] == {"relations": [duplicate.pk]}
    assert PersonRelation.objects.get(pk=duplicate.pk).person == merged


def test_relations_between_the_two_people_are_skipped_not_made_self_links(
    head: Any, organization: Organization
) -> None:
    survivor, merged = make_person(organization), make_person(organization)
    merged_to_survivor = add_relation(merged, survivor, Relation.SPOUSE)
    survivor_to_merged = add_relation(survivor, merged, Relation.SPOUSE)

    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    assert merge.moved["skipped"] == {
        "relations": [merged_to_survivor.pk],
        "relations_as_relative": [survivor_to_merged.pk],
    }
    assert merge.moved["rows"]["relations"] == []
    assert merge.moved["rows"]["relations_as_relative"] == []
    merged_to_survivor.refresh_from_db()
    survivor_to_merged.refresh_from_db()
    assert (merged_to_survivor.person, merged_to_survivor.relative) == (merged, survivor)
    assert (survivor_to_merged.person, survivor_to_merged.relative) == (survivor, merged)


# --- unmerging ----------------------------------------------------------------------------


def test_unmerge_restores_both_people_exactly(head: Any, scenario: dict[str, Any]) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]
    add_contact(survivor, "+79162222222", kind=ContactKind.WHATSAPP)
    add_relation(merged, survivor, Relation.RELATIVE)
    before = {
        "survivor": state(survivor),
        "merged": state(merged),
        "mother": state(scenario["mother"]),
        "son": state(scenario["son"]),
    }
    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)
    assert state(merged) != before["merged"]

    restored = person_unmerge(actor=head, merge=merge)

    assert restored == merged
    assert restored.merged_into is None
    after = {
        "survivor": state(survivor),
        "merged": state(merged),
        "mother": state(scenario["mother"]),
        "son": state(scenario["son"]),
    }
    assert after == before
    merge.refresh_from_db()
    assert merge.undone_by == head
    assert merge.undone_at is not None
    assert merge.moved["not_returned"] == {}
    assert person_resolve(merged) == merged


def test_unmerge_is_in_the_history(head: Any, scenario: dict[str, Any]) -> None:
    survivor, merged, card = scenario["survivor"], scenario["merged"], scenario["merged_card"]
    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)

    person_unmerge(actor=head, merge=merge)

    card_events = list(history_for_object(card))
    assert [event.pgh_diff["person_id"] for event in card_events[1:]] == [
        [merged.pk, survivor.pk],
        [survivor.pk, merged.pk],
    ]
    merged_events = list(history_for_object(merged))
    assert merged_events[-1].pgh_diff["merged_into_id"] == [survivor.pk, None]
    assert merged_events[-1].pgh_context["person_unmerge"] == merge.pk


def test_the_same_people_can_be_merged_again_after_an_unmerge(
    head: Any, scenario: dict[str, Any]
) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]
    person_unmerge(
        actor=head, merge=person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)
    )

    again = person_merge(actor=head, survivor=survivor, merged=merged, reason="Checked again")

    assert PersonMerge.objects.filter(merged=merged).count() == 2
    assert PersonMerge.objects.get(merged=merged, undone_at__isnull=True) == again


def test_unmerge_skips_rows_deleted_since_the_merge(head: Any, scenario: dict[str, Any]) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]
    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)
    email_pk = scenario["merged_email"].pk
    Contact.objects.filter(pk=email_pk).delete()

    person_unmerge(actor=head, merge=merge)

    assert list(Contact.objects.filter(person=merged).values_list("pk", flat=True)) == [
        scenario["merged_phone"].pk
    ]
    merge.refresh_from_db()
    assert merge.moved["not_returned"] == {"contacts": [email_pk]}


def test_unmerge_leaves_a_filled_field_changed_since_the_merge(
    head: Any, scenario: dict[str, Any]
) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]
    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)
    Person.objects.filter(pk=survivor.pk).update(snils=valid_snils(223344556))

    person_unmerge(actor=head, merge=merge)

    survivor.refresh_from_db()
    assert survivor.snils == valid_snils(223344556)
    assert survivor.registration_address == ""  # unchanged since the merge: emptied again


def test_unmerge_of_an_undone_merge_is_refused(head: Any, scenario: dict[str, Any]) -> None:
    merge = person_merge(
        actor=head, survivor=scenario["survivor"], merged=scenario["merged"], reason=REASON
    )
    person_unmerge(actor=head, merge=merge)

    with pytest.raises(ValidationError) as caught:
        person_unmerge(actor=head, merge=merge)

    assert caught.value.code == "merge_undone"


def test_unmerge_is_refused_while_the_survivor_is_merged_into_someone_else(
    head: Any, scenario: dict[str, Any], organization: Organization
) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]
    final = make_person(organization, first_name="Иоанн")
    first = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)
    second = person_merge(actor=head, survivor=final, merged=survivor, reason=REASON)
    merged.refresh_from_db()
    assert person_resolve(merged) == final  # the chain is followed

    with pytest.raises(ValidationError) as caught:
        person_unmerge(actor=head, merge=first)

    assert caught.value.code == "merge_survivor_merged"
    assert caught.value.params == {"survivor": survivor.full_name}
    first.refresh_from_db()
    assert first.undone_at is None

    person_unmerge(actor=head, merge=second)
    person_unmerge(actor=head, merge=first)
    merged.refresh_from_db()
    assert person_resolve(merged) == merged


# --- who may merge ------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(MERGE_ROLES))
def test_roles_with_the_merge_capability_may_merge_and_unmerge(
    role: str, organization: Organization, scenario: dict[str, Any]
) -> None:
    actor = staff_with_role(role, organization=organization).user

    merge = person_merge(
        actor=actor, survivor=scenario["survivor"], merged=scenario["merged"], reason=REASON
    )
    person_unmerge(actor=actor, merge=merge)

    merge.refresh_from_db()
    assert (merge.performed_by, merge.undone_by) == (actor, actor)


@pytest.mark.parametrize("role", sorted(set(Role) - MERGE_ROLES))
def test_other_roles_may_not_merge_and_nothing_changes(
    role: str, organization: Organization, scenario: dict[str, Any]
) -> None:
    actor = staff_with_role(role, organization=organization).user
    survivor, merged = scenario["survivor"], scenario["merged"]
    before = (state(survivor), state(merged))

    with pytest.raises(PermissionDenied):
        person_merge(actor=actor, survivor=survivor, merged=merged, reason=REASON)

    assert (state(survivor), state(merged)) == before
    assert not PersonMerge.objects.exists()


@pytest.mark.parametrize("role", sorted(set(Role) - MERGE_ROLES))
def test_other_roles_may_not_unmerge_and_nothing_changes(
    role: str, organization: Organization, head: Any, scenario: dict[str, Any]
) -> None:
    actor = staff_with_role(role, organization=organization).user
    survivor, merged = scenario["survivor"], scenario["merged"]
    merge = person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)
    before = (state(survivor), state(merged))

    with pytest.raises(PermissionDenied):
        person_unmerge(actor=actor, merge=merge)

    assert (state(survivor), state(merged)) == before
    merge.refresh_from_db()
    assert merge.undone_at is None


def test_staff_of_another_organization_may_not_merge(scenario: dict[str, Any]) -> None:
    outsider = staff_with_role(Role.HEAD_OF_REGISTRY, organization=OrganizationFactory()).user
    survivor, merged = scenario["survivor"], scenario["merged"]
    before = (state(survivor), state(merged))

    with pytest.raises(PermissionDenied):
        person_merge(actor=outsider, survivor=survivor, merged=merged, reason=REASON)

    assert (state(survivor), state(merged)) == before


# --- refused merges -----------------------------------------------------------------------


def test_a_person_cannot_be_merged_into_themselves(head: Any, scenario: dict[str, Any]) -> None:
    survivor = scenario["survivor"]
    before = state(survivor)

    with pytest.raises(ValidationError) as caught:
        person_merge(actor=head, survivor=survivor, merged=survivor, reason=REASON)

    assert field_errors(caught.value) == {"merged": ["merge_self"]}
    assert state(survivor) == before


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_merge_needs_a_reason(head: Any, scenario: dict[str, Any], reason: str) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]
    before = (state(survivor), state(merged))

    with pytest.raises(ValidationError) as caught:
        person_merge(actor=head, survivor=survivor, merged=merged, reason=reason)

    assert field_errors(caught.value) == {"reason": ["required"]}
    assert (state(survivor), state(merged)) == before
    assert not PersonMerge.objects.exists()


def test_a_too_long_reason_is_refused_naming_the_field(head: Any, scenario: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        person_merge(
            actor=head, survivor=scenario["survivor"], merged=scenario["merged"], reason="x" * 501
        )

    assert field_errors(caught.value) == {"reason": ["max_length"]}
    assert not Person.objects.filter(merged_into__isnull=False).exists()


def test_people_of_different_organizations_cannot_be_merged(
    head: Any, scenario: dict[str, Any]
) -> None:
    survivor = scenario["survivor"]
    stranger = make_person(OrganizationFactory())
    before = (state(survivor), state(stranger))

    with pytest.raises(ValidationError) as caught:
        person_merge(actor=head, survivor=survivor, merged=stranger, reason=REASON)

    assert field_errors(caught.value) == {"merged": ["merge_other_organization"]}
    assert (state(survivor), state(stranger)) == before


def test_a_tombstone_cannot_be_merged_again_or_absorb_anyone(
    head: Any, scenario: dict[str, Any], organization: Organization
) -> None:
    survivor, merged = scenario["survivor"], scenario["merged"]
    person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)
    third = make_person(organization, first_name="Иоанн")
    before = (state(survivor), state(merged), state(third))

    with pytest.raises(ValidationError) as as_merged:
        person_merge(actor=head, survivor=third, merged=merged, reason=REASON)
    with pytest.raises(ValidationError) as as_survivor:
        person_merge(actor=head, survivor=merged, merged=third, reason=REASON)

    assert field_errors(as_merged.value) == {"merged": ["merge_tombstone"]}
    assert field_errors(as_survivor.value) == {"survivor": ["merge_tombstone"]}
    assert as_merged.value.error_dict["merged"][0].params == {"name": merged.full_name}
    assert (state(survivor), state(merged), state(third)) == before
    assert PersonMerge.objects.count() == 1


def test_a_stale_instance_is_checked_again_under_the_lock(
    head: Any, scenario: dict[str, Any], organization: Organization
) -> None:
    """The caller's copy says "not merged", the database says otherwise: the database wins."""
    survivor, merged = scenario["survivor"], scenario["merged"]
    stale = Person.objects.get(pk=merged.pk)
    person_merge(actor=head, survivor=survivor, merged=merged, reason=REASON)
    assert stale.merged_into_id is None

    with pytest.raises(ValidationError) as caught:
        person_merge(actor=head, survivor=make_person(organization), merged=stale, reason=REASON)

    assert field_errors(caught.value) == {"merged": ["merge_tombstone"]}


# --- concurrency --------------------------------------------------------------------------


def _merge_in_thread(
    barrier: threading.Barrier, outcomes: list[str], **kwargs: Any
) -> threading.Thread:
    def run() -> None:
        try:
            barrier.wait(timeout=10)
            person_merge(**kwargs)
            outcomes.append("merged")
        except ValidationError as error:
            outcomes.append(f"refused:{sorted(error.error_dict)}")
        except Exception as error:  # a deadlock or an integrity error is the failure sought
            outcomes.append(f"error:{type(error).__name__}:{error}")
        finally:
            connection.close()

    return threading.Thread(target=run)


@pytest.mark.parametrize("opposite", [True, False], ids=["opposite-directions", "same-direction"])
def test_concurrent_merges_of_one_pair_one_succeeds_without_deadlock(
    transactional_db: Any, opposite: bool
) -> None:
    organization = OrganizationFactory()
    actors = [
        staff_with_role(Role.HEAD_OF_REGISTRY, organization=organization).user,
        staff_with_role(Role.ADMINISTRATOR, organization=organization).user,
    ]
    for attempt in range(3):
        first = make_person(organization, first_name=f"Первый{attempt}")
        second = make_person(organization, first_name=f"Второй{attempt}")
        add_contact(first, f"+7916000000{attempt}")
        add_contact(second, f"+7916111111{attempt}")
        pairs = [(first, second), (second, first) if opposite else (first, second)]
        barrier = threading.Barrier(2)
        outcomes: list[str] = []
        threads = [
            _merge_in_thread(
                barrier, outcomes, actor=actor, survivor=survivor, merged=merged, reason=REASON
            )
            for actor, (survivor, merged) in zip(actors, pairs, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert sorted(outcomes)[0] == "merged", outcomes
        assert sorted(outcomes)[1] in ("refused:['merged']", "refused:['survivor']"), outcomes
        assert PersonMerge.objects.filter(merged__in=[first, second]).count() == 1
        merge = PersonMerge.objects.get(merged__in=[first, second])
        assert Person.objects.get(pk=merge.merged_id).merged_into_id == merge.survivor_id
        assert Person.objects.get(pk=merge.survivor_id).merged_into_id is None
        assert Contact.objects.filter(person=merge.survivor_id).count() == 2


# --- the movers registry ------------------------------------------------------------------


def test_every_foreign_key_to_a_person_is_moved_or_deliberately_left() -> None:
    """A new model pointing to Person must register a mover (see patients.merge's docstring)."""
    assert merge_unhandled_relations() == []


def test_default_movers_are_registered_in_order() -> None:
    assert [(mover.label, mover.model, mover.field) for mover in merge_movers()][:5] == [
        ("contacts", Contact, "person"),
        ("consents", Consent, "person"),
        ("medical_cards", MedicalCard, "person"),
        ("relations", PersonRelation, "person"),
        ("relations_as_relative", PersonRelation, "relative"),
    ]


def test_registering_a_mover_again_is_harmless_but_a_taken_label_is_refused() -> None:
    count = len(merge_movers())

    merge_mover_register("contacts", Contact, "person")

    assert len(merge_movers()) == count
    with pytest.raises(ValueError, match="taken"):
        merge_mover_register("contacts", Consent, "person")
    with pytest.raises(ValueError, match="not a foreign key to Person"):
        merge_mover_register("contact_kinds", Contact, "kind")
    assert len(merge_movers()) == count
