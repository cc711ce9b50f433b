"""The billing admin: every page renders with real rows, and a price list is saved with its
prices from the inline."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import models
from django.test import Client
from django.urls import reverse

from billing.models import Contract, Price, PriceList, ServiceBilling, ServiceGroup
from tests.admin_site.conftest import login_verified
from tests.core.factories import OrganizationFactory, UserFactory
from tests.scheduling.factories import ServiceFactory

from .factories import ContractFactory, PriceFactory, ServiceBillingFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    superuser = UserFactory.create(username="root", is_superuser=True, is_staff=True)
    return login_verified(Client(HTTP_ACCEPT_LANGUAGE="en"), superuser)


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:billing_{model._meta.model_name}_{view}", args=args)


def test_changelist_search_and_change_page_of_every_billing_model(admin_client: Client) -> None:
    price: Price = PriceFactory(amount=Decimal("10.00"))
    billing: ServiceBilling = ServiceBillingFactory(service=price.service)
    assert billing.group is not None
    contract: Contract = ContractFactory(
        organization=price.price_list.organization, price_list=price.price_list
    )
    rows: dict[type[models.Model], tuple[models.Model, str]] = {
        ServiceGroup: (billing.group, billing.group.name),
        ServiceBilling: (billing, billing.service.code),
        PriceList: (price.price_list, price.price_list.name),
        Contract: (contract, contract.number),
    }
    for model, (row, term) in rows.items():
        response = admin_client.get(admin_url(model, "changelist"), {"q": term})
        assert response.status_code == 200, model
        assert row in list(response.context["cl"].result_list), model
        response = admin_client.get(admin_url(model, "change", row.pk))
        assert response.status_code == 200, model


def test_a_price_list_is_saved_with_its_prices(admin_client: Client) -> None:
    organization = OrganizationFactory()
    service = ServiceFactory(organization=organization)
    response = admin_client.post(
        admin_url(PriceList, "add"),
        {
            "organization": organization.pk,
            "name": "Self-pay 2026",
            "payer_kind": "self_pay",
            "valid_from": "2026-01-01",
            "is_active": "on",
            "prices-TOTAL_FORMS": "1",
            "prices-INITIAL_FORMS": "0",
            "prices-0-service": service.pk,
            "prices-0-amount": "1500.50",
        },
    )

    assert response.status_code == 302, response.context["errors"] if response.context else ""
    price_list = PriceList.objects.get(name="Self-pay 2026")
    assert [(p.service_id, p.amount) for p in Price.objects.filter(price_list=price_list)] == [
        (service.pk, Decimal("1500.50"))
    ]
    assert price_list.created_by is not None
    assert Price.objects.get(price_list=price_list).created_by == price_list.created_by


def test_the_admin_refuses_a_negative_price(admin_client: Client) -> None:
    organization = OrganizationFactory()
    service = ServiceFactory(organization=organization)
    response = admin_client.post(
        admin_url(PriceList, "add"),
        {
            "organization": organization.pk,
            "name": "Broken",
            "payer_kind": "self_pay",
            "valid_from": "2026-01-01",
            "prices-TOTAL_FORMS": "1",
            "prices-INITIAL_FORMS": "0",
            "prices-0-service": service.pk,
            "prices-0-amount": "-1",
        },
    )

    assert response.status_code == 200
    assert not PriceList.objects.filter(name="Broken").exists()


def test_the_money_documents_are_listed_and_never_edited_in_the_admin(admin_client: Client) -> None:
    from billing.models import (
        CashRegister,
        CashShift,
        ContractTemplate,
        Counterparty,
        DiscountRule,
        DocumentTemplate,
        FiscalReceipt,
        GuaranteeLetter,
        Invoice,
        Payment,
        ServiceBundleItem,
    )

    for model in (
        Counterparty,
        ContractTemplate,
        GuaranteeLetter,
        DiscountRule,
        CashRegister,
        DocumentTemplate,
        ServiceBundleItem,
        Invoice,
        Payment,
        CashShift,
        FiscalReceipt,
    ):
        response = admin_client.get(admin_url(model, "changelist"))
        assert response.status_code == 200, model
    for model in (Invoice, Payment, CashShift, FiscalReceipt):
        assert admin_client.get(admin_url(model, "add")).status_code == 403, model


def test_a_new_document_template_starts_from_the_shipped_one(admin_client: Client) -> None:
    from billing.documents import shipped_template_source
    from billing.models import DocumentTemplate

    response = admin_client.get(admin_url(DocumentTemplate, "add"), {"kind": "invoice"})
    assert response.status_code == 200
    assert response.context["adminform"].form.initial["body"] == shipped_template_source("invoice")
