"""The booking form's price lookup: the desk's htmx fragment and the JSON API."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from clinic.core.roles import Role
from scheduling.models import PayerKind
from tests.core.factories import BranchFactory, staff_with_role
from tests.scheduling.factories import ServiceFactory

from .factories import (
    ContractFactory,
    PriceFactory,
    PriceListFactory,
    ServiceBillingFactory,
    ServiceGroupFactory,
)

pytestmark = pytest.mark.django_db

DAY = "2026-03-10"


@pytest.fixture
def clinic() -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    organization = branch.organization
    group = ServiceGroupFactory(organization=organization, name="Visits")
    therapist = ServiceFactory(organization=organization, code="B01.047.001", name="Therapist")
    ServiceBillingFactory(service=therapist, group=group)
    ServiceFactory(
        organization=organization, code="A04.16.001", name="Ultrasound", duration_minutes=20
    )
    self_pay = PriceListFactory(organization=organization)
    PriceFactory(price_list=self_pay, service=therapist, amount=Decimal("2200.00"))
    dms_list = PriceListFactory(organization=organization, payer_kind=PayerKind.DMS)
    PriceFactory(price_list=dms_list, service=therapist, amount=Decimal("1980.50"))
    contract = ContractFactory(organization=organization, number="DMS-17", price_list=dms_list)
    return {
        "branch": branch,
        "group": group,
        "contract": contract,
        "registrar": staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch]),
        "cashier": staff_with_role(Role.CASHIER, organization=organization, branches=[branch]),
        "lab": staff_with_role(Role.LAB_TECHNICIAN, organization=organization, branches=[branch]),
    }


def page_client(user: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def api_client(user: Any) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_authenticate(user)
    return client


def fragment(c: dict[str, Any], role: str = "registrar", **params: Any) -> Any:
    query = {"branch": str(c["branch"].public_id), "date": DAY, **params}
    return page_client(c[role].user).get(reverse("billing:price_lookup"), query)


def api(c: dict[str, Any], role: str = "registrar", **params: Any) -> Any:
    query = {"branch": str(c["branch"].public_id), "date": DAY, **params}
    return api_client(c[role].user).get(reverse("billing-price-lookup"), query)


# The fragment ---------------------------------------------------------------------------------


def test_fragment_lists_services_with_a_choose_button(clinic: dict[str, Any]) -> None:
    response = fragment(clinic)

    assert response.status_code == 200
    html = response.content.decode()
    buttons = re.findall(r"<button[^>]*data-choose-service[^>]*>", html)
    assert len(buttons) == 2
    therapist = next(b for b in buttons if 'data-service-code="B01.047.001"' in b)
    ultrasound = next(b for b in buttons if 'data-service-code="A04.16.001"' in b)
    assert 'data-price="2200.00"' in therapist
    assert 'data-price=""' in ultrasound
    assert "no price" in html
    assert "Visits" in html


def test_cashier_may_use_the_fragment(clinic: dict[str, Any]) -> None:
    assert fragment(clinic, role="cashier", q="ther").status_code == 200


def test_fragment_filters_by_text_group_and_contract(clinic: dict[str, Any]) -> None:
    html = fragment(clinic, q="ULTRA").content.decode()
    assert 'data-service-code="A04.16.001"' in html
    assert 'data-service-code="B01.047.001"' not in html

    html = fragment(clinic, group=str(clinic["group"].public_id)).content.decode()
    assert 'data-service-code="B01.047.001"' in html
    assert 'data-service-code="A04.16.001"' not in html

    html = fragment(clinic, contract=str(clinic["contract"].public_id), q="B01").content.decode()
    assert 'data-price="1980.50"' in html
    assert "contract DMS-17" in html


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"branch": "nope"}, "Unknown branch “nope”."),
        ({"branch": str(uuid.UUID(int=1))}, f"Unknown branch “{uuid.UUID(int=1)}”."),
        ({"date": "2026-13-01"}, "The parameter “date”: “2026-13-01” is not a date (YYYY-MM-DD)."),
        ({"payer": "barter"}, "Unknown payer kind “barter”."),
        ({"group": "999999"}, "Unknown service group “999999”."),
        ({"contract": "XYZ"}, "Unknown contract “XYZ”."),
    ],
)
def test_fragment_names_a_bad_value(
    clinic: dict[str, Any], params: dict[str, str], message: str
) -> None:
    response = fragment(clinic, **params)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert "data-choose-service" not in response.content.decode()


def test_fragment_refuses_a_contract_of_another_payer_or_out_of_date(
    clinic: dict[str, Any],
) -> None:
    contract = str(clinic["contract"].public_id)
    response = fragment(clinic, contract=contract, payer=PayerKind.SELF_PAY)
    assert response.status_code == 400
    assert "Contract DMS-17 is for the payer" in response.content.decode()

    response = fragment(clinic, contract=contract, date="2019-12-31")
    assert response.status_code == 400
    assert "Contract DMS-17 is not in force on 2019-12-31." in response.content.decode()


def test_lab_technician_is_refused_the_fragment(clinic: dict[str, Any]) -> None:
    assert fragment(clinic, role="lab").status_code == 403


def test_fragment_needs_a_login(clinic: dict[str, Any]) -> None:
    response = Client().get(reverse("billing:price_lookup"))
    assert response.status_code == 302


def test_fragment_costs_a_fixed_number_of_queries(
    clinic: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    """Sixty more services cost no more queries than two (session and permissions included)."""
    client = page_client(clinic["registrar"].user)
    url = reverse("billing:price_lookup")
    query = {"branch": str(clinic["branch"].public_id), "group": str(clinic["group"].pk)}
    client.get(url, query)  # the first request of a session also writes it
    with CaptureQueriesContext(connection) as baseline:
        client.get(url, query)
    organization = clinic["branch"].organization
    for number in range(60):
        ServiceBillingFactory(
            service=ServiceFactory(organization=organization, code=f"S{number:03d}"),
            group=clinic["group"],
        )

    with django_assert_max_num_queries(len(baseline)):
        response = client.get(url, query)
    assert response.content.decode().count("data-choose-service") == 61
    assert len(baseline) <= 14


# The JSON API ---------------------------------------------------------------------------------


def test_api_returns_rows_with_exact_amounts(clinic: dict[str, Any]) -> None:
    response = api(clinic, contract=str(clinic["contract"].public_id))

    assert response.status_code == 200
    body = response.json()
    assert body["date"] == DAY
    assert body["payer"] == PayerKind.DMS  # the contract's payer kind
    assert body["contract"] == str(clinic["contract"].public_id)
    assert body["limited"] is False
    by_code = {row["code"]: row for row in body["results"]}
    assert by_code["B01.047.001"] == {
        "group": "Visits",
        "service": by_code["B01.047.001"]["service"],
        "code": "B01.047.001",
        "name": "Therapist",
        "duration_minutes": 30,
        "price": "1980.50",
    }
    assert by_code["A04.16.001"]["price"] is None
    assert Decimal(by_code["B01.047.001"]["price"]) == Decimal("1980.50")


def test_api_names_a_bad_value(clinic: dict[str, Any]) -> None:
    response = api(clinic, payer="barter")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "unknown_payer",
            "message": "Unknown payer kind “barter”.",
            "fields": {"payer": ["Unknown payer kind “barter”."]},
        }
    }


def test_api_needs_the_branch(clinic: dict[str, Any]) -> None:
    response = api_client(clinic["registrar"].user).get(reverse("billing-price-lookup"))

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"branch": ["The parameter “branch” is required."]}


def test_api_refuses_a_lab_technician(clinic: dict[str, Any]) -> None:
    response = api(clinic, role="lab")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_api_hides_another_organizations_branch(clinic: dict[str, Any]) -> None:
    other = BranchFactory()
    response = api(clinic, branch=str(other.public_id))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_branch"


def test_api_date_defaults_to_today_at_the_branch(clinic: dict[str, Any]) -> None:
    response = api_client(clinic["registrar"].user).get(
        reverse("billing-price-lookup"), {"branch": str(clinic["branch"].public_id)}
    )

    assert response.status_code == 200
    today = timezone.localdate(timezone=zoneinfo.ZoneInfo(clinic["branch"].time_zone))
    assert response.json()["date"] == today.isoformat()
