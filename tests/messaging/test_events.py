"""Messages for facts outside the schedule — lab results ready, a discount card, a waitlist
offer — are planned once per fact for the matching rules, with the fact's parameters."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from clinic.outbox.models import OutboxMessage
from messaging.events import discount_card_issued, lab_results_ready
from messaging.models import Message, RuleEvent
from messaging.notices import waitlist_offer_deliver

from .conftest import Clinic

pytestmark = pytest.mark.django_db


def test_lab_results_ready_plans_one_message_per_visit(clinic: Clinic) -> None:
    rule = clinic.rule(RuleEvent.LAB_READY)
    visit = clinic.book(timezone.localdate() + datetime.timedelta(days=1), "10:00")
    lab_results_ready(visit)
    lab_results_ready(visit)
    message = Message.objects.get(rule=rule)
    assert message.appointment == visit and message.patient == clinic.patient


def test_a_discount_card_is_announced_with_its_number(clinic: Clinic) -> None:
    rule = clinic.rule(RuleEvent.DISCOUNT_CARD)
    discount_card_issued(patient=clinic.patient, branch=clinic.branch, card_number="000123")
    assert Message.objects.get(rule=rule).params == {"card_number": "000123"}


def test_a_waitlist_offer_becomes_a_message_of_the_offer_rules(clinic: Clinic) -> None:
    rule = clinic.rule(RuleEvent.WAITLIST_OFFER)
    other_branch_rule = clinic.rule(RuleEvent.WAITLIST_OFFER)
    other_branch_rule.branch = type(clinic.branch).objects.create(
        organization=clinic.organization, name="Other", time_zone="Europe/Moscow"
    )
    other_branch_rule.save(update_fields=["branch"])
    starts_at = timezone.now().astimezone(clinic.branch.zone) + datetime.timedelta(days=1)
    outbox = OutboxMessage(
        channel="scheduling.waitlist_offer",
        payload={
            "offer": "6d1f0c9e-0000-4000-8000-000000000001",
            "patient": str(clinic.patient.public_id),
            "doctor": "Petrov I. I.",
            "service": "Therapist visit",
            "branch": str(clinic.branch.public_id),
            "starts_at": starts_at.isoformat(),
            "expires_at": starts_at.isoformat(),
        },
    )
    waitlist_offer_deliver(outbox)
    waitlist_offer_deliver(outbox)  # delivered twice
    message = Message.objects.get()
    assert message.rule == rule
    assert message.params["slot_time"] == f"{starts_at:%H:%M}"
    assert message.params["doctor"] == "Petrov I. I."
