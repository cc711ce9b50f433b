"""Individual contracts made from model agreements, and the admin that fills the same terms."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

from billing.contracts import contract_from_template
from billing.errors import BillingError
from billing.models import Contract, ContractTemplate, CounterpartyKind
from clinic.core.roles import Role
from scheduling.models import PayerKind
from tests.admin_site.conftest import login_verified
from tests.core.factories import BranchFactory, UserFactory, staff_with_role

from .factories import CounterpartyFactory, PriceListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_agreement():
    branch = BranchFactory()
    organization = branch.organization
    price_list = PriceListFactory(organization=organization, payer_kind=PayerKind.CONTRACT)
    template = ContractTemplate.objects.create(
        organization=organization,
        name="Corporate medical care",
        payer_kind=PayerKind.CONTRACT,
        price_list=price_list,
        term_days=365,
        requires_guarantee_letter=True,
    )
    admin = staff_with_role(Role.ADMINISTRATOR, organization=organization, branches=[branch])
    company = CounterpartyFactory(
        organization=organization, kind=CounterpartyKind.COMPANY, name="Horns and Hooves LLC"
    )
    return template, admin.user, company, branch


def test_a_contract_takes_the_model_agreements_terms(model_agreement):
    template, admin, company, _branch = model_agreement
    contract = contract_from_template(
        actor=admin,
        template=template,
        number="K-2026/01",
        valid_from=datetime.date(2026, 1, 1),
        counterparty=company,
    )
    assert contract.payer_kind == PayerKind.CONTRACT
    assert contract.price_list == template.price_list
    assert contract.requires_guarantee_letter is True
    assert contract.valid_to == datetime.date(2026, 12, 31)
    assert contract.name == "Corporate medical care"
    assert contract.counterparty_name == "Horns and Hooves LLC"
    # The contract keeps its own terms when the model changes later.
    ContractTemplate.objects.filter(pk=template.pk).update(term_days=30, price_list=None)
    contract.refresh_from_db()
    assert contract.valid_to == datetime.date(2026, 12, 31)
    assert contract.price_list is not None


def test_refusals(model_agreement):
    template, admin, company, branch = model_agreement
    contract_from_template(
        actor=admin,
        template=template,
        number="K-1",
        valid_from=datetime.date(2026, 1, 1),
        counterparty=company,
    )
    with pytest.raises(BillingError) as taken:
        contract_from_template(
            actor=admin,
            template=template,
            number="K-1",
            valid_from=datetime.date(2026, 2, 1),
            counterparty=company,
        )
    assert taken.value.code == "contract_number_taken" and taken.value.field == "number"
    registrar = staff_with_role(
        Role.REGISTRAR, organization=branch.organization, branches=[branch]
    ).user
    with pytest.raises(PermissionDenied):
        contract_from_template(
            actor=registrar,
            template=template,
            number="K-2",
            valid_from=datetime.date(2026, 1, 1),
            counterparty=company,
        )
    assert Contract.objects.count() == 1


def test_the_admin_fills_a_new_contract_from_its_model_agreement(model_agreement):
    template, _admin, company, _branch = model_agreement
    superuser = UserFactory.create(username="root", is_superuser=True, is_staff=True)
    client = login_verified(Client(HTTP_ACCEPT_LANGUAGE="en"), superuser)
    response = client.post(
        reverse("admin:billing_contract_add"),
        {
            "organization": template.organization_id,
            "number": "K-7",
            "name": "Horns and Hooves: medical care",
            "payer_kind": PayerKind.CONTRACT,
            "counterparty": company.pk,
            "template": template.pk,
            "valid_from": "2026-03-01",
            "is_active": "on",
            "payment_schedule-TOTAL_FORMS": "1",
            "payment_schedule-INITIAL_FORMS": "0",
            "payment_schedule-0-due_on": "2026-04-01",
            "payment_schedule-0-amount": "150000.00",
        },
    )
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    contract = Contract.objects.get(number="K-7")
    assert contract.valid_to == datetime.date(2027, 2, 28)
    assert contract.price_list == template.price_list
    assert contract.requires_guarantee_letter is True
    assert contract.payment_schedule.get().amount == Decimal("150000.00")
