"""The demo's messaging settings: made once, every template valid, every rule's template there."""

from __future__ import annotations

import pytest

from clinic.core.models import Organization
from messaging.demo import messaging_demo_load
from messaging.models import BranchSender, MessageTemplate, ReminderRule
from tests.core.factories import BranchFactory

pytestmark = pytest.mark.django_db


def test_the_demo_settings_are_made_once_and_are_valid() -> None:
    branch = BranchFactory()
    organization: Organization = branch.organization
    assert messaging_demo_load(organization)
    assert not messaging_demo_load(organization)
    assert BranchSender.objects.filter(branch=branch).exists()
    for template in MessageTemplate.objects.all():
        template.full_clean()
    codes = set(MessageTemplate.objects.values_list("code", flat=True))
    rules = ReminderRule.objects.filter(organization=organization)
    assert rules.count() == 5
    assert {rule.template_code for rule in rules} <= codes
