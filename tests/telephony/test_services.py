"""The operator's writes: classifying a call, planning and closing outgoing calls."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone, translation

from clinic.core.roles import Role
from patients.merge import person_merge
from telephony.errors import TelephonyError
from telephony.models import Call, CallOutcome, CallPurpose, PlannedCall, PlannedCallStatus
from telephony.services import (
    call_classify,
    planned_call_cancel,
    planned_call_complete,
    planned_call_create,
    telephony_token_set,
)
from tests.core.factories import BranchFactory, staff_with_role
from tests.patients.factories import ContactFactory, PersonFactory

from .factories import appointment, call

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk() -> dict[str, Any]:
    branch = BranchFactory()
    organization = branch.organization
    person = PersonFactory(organization=organization, last_name="Smirnova", first_name="Anna")
    ContactFactory(person=person, value="+79161234567")
    return {
        "branch": branch,
        "organization": organization,
        "person": person,
        "registrar": staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch]),
        "cashier": staff_with_role(Role.CASHIER, organization=organization, branches=[branch]),
    }


def test_classify_records_purpose_outcome_note_and_operator(desk: dict[str, Any]) -> None:
    ringing = call(desk["organization"])
    visit = appointment(desk["person"], desk["branch"])

    classified = call_classify(
        actor=desk["registrar"].user,
        call=ringing,
        purpose=CallPurpose.BOOKING,
        outcome=CallOutcome.BOOKED,
        note="  Booked for Tuesday ",
        appointment=visit,
    )

    stored = Call.objects.get(pk=ringing.pk)
    assert (stored.purpose, stored.outcome, stored.note) == (
        "booking",
        "booked",
        "Booked for Tuesday",
    )
    assert stored.operator == desk["registrar"]
    assert stored.appointment == visit
    assert stored.classified_at is not None
    assert classified.pk == stored.pk


def test_classify_refuses_unknown_purpose_naming_it(desk: dict[str, Any]) -> None:
    ringing = call(desk["organization"])
    with translation.override("en"), pytest.raises(TelephonyError) as refused:
        call_classify(
            actor=desk["registrar"].user, call=ringing, purpose="gossip", outcome="booked"
        )
    assert refused.value.code == "invalid_purpose"
    assert refused.value.field == "purpose"
    assert str(refused.value.message) == "Unknown purpose “gossip”."
    assert Call.objects.get(pk=ringing.pk).purpose == ""


def test_classify_is_refused_to_a_cashier_and_changes_nothing(desk: dict[str, Any]) -> None:
    ringing = call(desk["organization"])
    with pytest.raises(PermissionDenied):
        call_classify(actor=desk["cashier"].user, call=ringing, purpose="booking", outcome="booked")
    stored = Call.objects.get(pk=ringing.pk)
    assert (stored.purpose, stored.outcome, stored.operator) == ("", "", None)


def test_planned_call_uses_the_patients_phone_and_is_completed_with_a_result(
    desk: dict[str, Any],
) -> None:
    due = timezone.now() + datetime.timedelta(days=1)
    planned = planned_call_create(
        actor=desk["registrar"].user,
        patient=desk["person"],
        reason="Tell the test results",
        due_at=due,
        assigned_to=desk["registrar"],
    )
    assert (planned.phone, planned.status, planned.created_by) == (
        "+79161234567",
        PlannedCallStatus.PLANNED,
        desk["registrar"].user,
    )

    with translation.override("en"), pytest.raises(TelephonyError) as refused:
        planned_call_complete(actor=desk["registrar"].user, planned=planned, result_note=" ")
    assert str(refused.value.message) == "Write what came of the call."

    done = planned_call_complete(
        actor=desk["registrar"].user, planned=planned, result_note="Told, will come on Monday"
    )
    assert (done.status, done.result_note) == (PlannedCallStatus.DONE, "Told, will come on Monday")
    assert done.closed_at is not None

    with pytest.raises(TelephonyError) as closed:
        planned_call_cancel(actor=desk["registrar"].user, planned=planned)
    assert closed.value.code == "planned_call_closed"
    assert PlannedCall.objects.get(pk=planned.pk).status == PlannedCallStatus.DONE


def test_planned_call_with_a_bad_number_names_it_and_saves_nothing(desk: dict[str, Any]) -> None:
    with translation.override("en"), pytest.raises(TelephonyError) as refused:
        planned_call_create(
            actor=desk["registrar"].user,
            patient=desk["person"],
            reason="Remind",
            due_at=timezone.now(),
            phone="12-34",
        )
    assert (refused.value.field, str(refused.value.message)) == (
        "phone",
        "“12-34” is not a valid phone number.",
    )
    assert PlannedCall.objects.count() == 0


def test_planned_call_to_a_person_without_phone_asks_for_one(desk: dict[str, Any]) -> None:
    nobody = PersonFactory(
        organization=desk["organization"], last_name="Silent", first_name="Ivan", patronymic=""
    )
    with translation.override("en"), pytest.raises(TelephonyError) as refused:
        planned_call_create(
            actor=desk["registrar"].user, patient=nobody, reason="Remind", due_at=timezone.now()
        )
    assert str(refused.value.message) == "Silent Ivan has no phone: give the number to call."


def test_planned_call_is_refused_to_a_cashier(desk: dict[str, Any]) -> None:
    with pytest.raises(PermissionDenied):
        planned_call_create(
            actor=desk["cashier"].user, patient=desk["person"], reason="X", due_at=timezone.now()
        )
    assert PlannedCall.objects.count() == 0


def test_short_token_is_refused(desk: dict[str, Any]) -> None:
    with translation.override("en"), pytest.raises(TelephonyError) as refused:
        telephony_token_set(organization=desk["organization"], token="short")
    assert str(refused.value.message) == "The token must be at least 24 characters long."
    generated = telephony_token_set(organization=desk["organization"])
    assert len(generated) >= 40


def test_a_merged_patient_s_planned_calls_follow_the_survivor(db: Any) -> None:
    head = staff_with_role(Role.HEAD_OF_REGISTRY)
    organization = head.organization
    survivor = PersonFactory(organization=organization, last_name="Ivanova")
    duplicate = PersonFactory(organization=organization, last_name="Ivanova")
    planned = planned_call_create(
        actor=head.user,
        patient=duplicate,
        phone="+79161234567",
        reason="results",
        due_at=timezone.now() + datetime.timedelta(days=1),
    )
    person_merge(actor=head.user, survivor=survivor, merged=duplicate, reason="same person")
    assert PlannedCall.objects.get(pk=planned.pk).patient_id == survivor.pk
