"""Who is calling: the people of a number and their next appointments, in fixed queries."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from clinic.core.models import Organization
from clinic.core.roles import Role
from scheduling.models import AppointmentStatus
from telephony.models import CallOutcome, CallPurpose, PlannedCallStatus
from telephony.selectors import (
    call_log,
    call_popup,
    caller_matches,
    matched_names,
    planned_calls,
    ringing_calls,
)
from telephony.services import planned_call_cancel, planned_call_create
from tests.core.factories import BranchFactory, OrganizationFactory, staff_with_role
from tests.patients.factories import ContactFactory, PersonFactory

from .factories import appointment, call

pytestmark = pytest.mark.django_db

NUMBER = "+79161234567"


def family(organization: Organization, branch: Any, size: int, visits: int) -> list[Any]:
    """``size`` people sharing one home phone, each with ``visits`` future visits."""
    people = []
    for index in range(size):
        person = PersonFactory(organization=organization, last_name=f"Petrova{index}")
        ContactFactory(person=person, value=NUMBER)
        for day in range(visits):
            appointment(person, branch, in_days=day + 1)
        people.append(person)
    return people


def test_matches_people_with_their_next_three_future_not_cancelled_appointments() -> None:
    branch = BranchFactory()
    organization = branch.organization
    person = PersonFactory(organization=organization, last_name="Smirnova")
    ContactFactory(person=person, value=NUMBER)
    appointment(person, branch, in_days=-1)  # past
    appointment(person, branch, in_days=0.5, status=AppointmentStatus.CANCELLED)
    soon = [appointment(person, branch, in_days=days) for days in (3, 1, 2, 4)]

    matches = caller_matches(organization=organization, phone="8 916 123-45-67")

    assert [m.person for m in matches] == [person]
    assert matches[0].phones == [NUMBER]
    assert matches[0].next_appointments == [soon[1], soon[2], soon[0]]


def test_does_not_match_other_organizations_merged_people_or_non_phones() -> None:
    organization = OrganizationFactory()
    other = OrganizationFactory()
    stranger = PersonFactory(organization=other)
    ContactFactory(person=stranger, value=NUMBER)
    survivor = PersonFactory(organization=organization, last_name="Survivor")
    tombstone = PersonFactory(organization=organization, merged_into=survivor)
    ContactFactory(person=tombstone, value=NUMBER)
    emailer = PersonFactory(organization=organization)
    ContactFactory(person=emailer, kind="email", value="79161234567@example.org")

    assert caller_matches(organization=organization, phone=NUMBER) == []
    assert caller_matches(organization=organization, phone="not a phone") == []


def test_a_person_with_the_number_twice_is_listed_once() -> None:
    organization = OrganizationFactory()
    person = PersonFactory(organization=organization)
    ContactFactory(person=person, value=NUMBER)
    ContactFactory(person=person, value=NUMBER, kind="whatsapp")
    matches = caller_matches(organization=organization, phone=NUMBER)
    assert [m.person for m in matches] == [person]


@pytest.mark.parametrize(("size", "visits"), [(1, 1), (6, 5)])
def test_query_count_does_not_grow_with_people_or_appointments(
    django_assert_num_queries: Any, size: int, visits: int
) -> None:
    branch = BranchFactory()
    family(branch.organization, branch, size, visits)
    with django_assert_num_queries(3):
        matches = caller_matches(organization=branch.organization, phone=NUMBER)
        shown = [
            (m.person.full_name, m.phones, [a.branch.name for a in m.next_appointments])
            for m in matches
        ]
    assert len(shown) == size
    assert all(len(visits_shown) == min(visits, 3) for _name, _phones, visits_shown in shown)


def test_popup_shows_the_caller_and_matches() -> None:
    branch = BranchFactory()
    people = family(branch.organization, branch, 2, 1)
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization)
    ringing = call(branch.organization)

    popup = call_popup(actor=registrar.user, call=ringing)

    assert popup.number == NUMBER
    assert [m.person for m in popup.matches] == people
    assert popup.is_unknown_caller is False
    unknown = call_popup(
        actor=registrar.user, call=call(branch.organization, number="+79990001122")
    )
    assert unknown.is_unknown_caller is True


def test_matched_names_for_a_page_of_calls_in_one_query(django_assert_num_queries: Any) -> None:
    organization = OrganizationFactory()
    first = PersonFactory(organization=organization)
    ContactFactory(person=first, value=NUMBER)
    second = PersonFactory(organization=organization)
    ContactFactory(person=second, value="+79160000001")
    with django_assert_num_queries(1):
        found = matched_names(
            organization=organization, numbers=[NUMBER, "+79160000001", "+79990000000"]
        )
    assert found == {NUMBER: [first], "+79160000001": [second]}


def test_call_log_filters_by_period_operator_purpose_and_outcome() -> None:
    branch = BranchFactory()
    organization = branch.organization
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    other = staff_with_role(Role.CALL_CENTRE, organization=organization, branches=[branch])
    now = timezone.now()
    booked = call(
        organization,
        operator=registrar,
        purpose=CallPurpose.BOOKING,
        outcome=CallOutcome.BOOKED,
        started_at=now,
    )
    old = call(organization, operator=other, started_at=now - datetime.timedelta(days=10))
    foreign = call(OrganizationFactory(), started_at=now)
    actor = registrar.user

    assert list(call_log(actor=actor)) == [booked, old]
    assert foreign not in call_log(actor=actor)
    assert list(call_log(actor=actor, operator=other)) == [old]
    assert list(call_log(actor=actor, purpose=CallPurpose.BOOKING)) == [booked]
    assert list(call_log(actor=actor, outcome="none")) == [old]
    today = timezone.localdate()
    assert list(call_log(actor=actor, date_from=today, date_to=today)) == [booked]
    assert list(call_log(actor=actor, date_to=today - datetime.timedelta(days=5))) == [old]


def test_planned_calls_lists_open_ones_most_urgent_first() -> None:
    branch = BranchFactory()
    organization = branch.organization
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    person = PersonFactory(organization=organization)
    ContactFactory(person=person, value=NUMBER)
    now = timezone.now()
    later = planned_call_create(
        actor=registrar.user, patient=person, reason="Results", due_at=now + datetime.timedelta(2)
    )
    sooner = planned_call_create(
        actor=registrar.user, patient=person, reason="Remind", due_at=now + datetime.timedelta(1)
    )
    dropped = planned_call_create(actor=registrar.user, patient=person, reason="X", due_at=now)
    planned_call_cancel(actor=registrar.user, planned=dropped)

    assert list(planned_calls(actor=registrar.user)) == [sooner, later]
    assert list(planned_calls(actor=registrar.user, status=PlannedCallStatus.CANCELLED)) == [
        dropped
    ]


def test_ringing_calls_are_the_recent_unanswered_ones_of_the_actors_organization() -> None:
    branch = BranchFactory()
    organization = branch.organization
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    now = timezone.now()
    ringing = call(organization, started_at=now)
    call(organization, started_at=now, state="answered")
    call(organization, started_at=now - datetime.timedelta(minutes=30))
    call(OrganizationFactory(), started_at=now)
    assert list(ringing_calls(actor=registrar.user)) == [ringing]
