"""The price lookup's query parameters, read once for the desk's fragment and the JSON API.

Every value that cannot be used is refused with a ``BillingError`` naming the field and quoting
the value, so the booking form can show what to fix. Objects are fetched through selectors
scoped to the actor: a branch or contract of another organization is "unknown", never "found
but forbidden".
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from clinic.core.models import Branch
from clinic.core.selectors import branch_list
from scheduling.models import PayerKind

from .errors import BillingError
from .models import Contract, ServiceGroup
from .params import date_param
from .selectors import PriceRow, contract_list, price_lookup, service_group_list

QUERY_MAX_LENGTH = 100


@dataclass(frozen=True)
class LookupParams:
    """What ``billing.selectors.price_lookup`` is asked, as read from the request."""

    branch: Branch
    query: str
    group: ServiceGroup | None
    payer_kind: str
    contract: Contract | None
    on_date: datetime.date

    def rows(self, actor: Any) -> list[PriceRow]:
        """The lookup's rows for these parameters (the page and the API show the same)."""
        return price_lookup(
            actor=actor,
            branch=self.branch,
            query=self.query,
            group_id=self.group.pk if self.group else None,
            payer_kind=self.payer_kind,
            contract=self.contract,
            on_date=self.on_date,
        )


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _by_public_id_or_pk(queryset: QuerySet[Any], value: str) -> Any:
    """The row whose public id (or, for a number, primary key) is ``value``; None if none."""
    public_id = _uuid_or_none(value)
    if public_id is not None:
        return queryset.filter(public_id=public_id).first()
    if value.isdigit() and len(value) <= 18:
        return queryset.filter(pk=int(value)).first()
    return None


def _branch(actor: Any, value: str) -> Branch:
    if not value:
        raise BillingError(
            "required",
            _("The parameter “%(field)s” is required.") % {"field": "branch"},
            field="branch",
        )
    public_id = _uuid_or_none(value)
    branch = branch_list(actor=actor).filter(public_id=public_id).first() if public_id else None
    if branch is None:
        raise BillingError(
            "unknown_branch", _("Unknown branch “%(value)s”.") % {"value": value}, field="branch"
        )
    return branch


def _date(value: str, branch: Branch) -> datetime.date:
    if not value:
        return timezone.localdate(timezone=zoneinfo.ZoneInfo(branch.time_zone))
    return date_param(value, field="date")


def _group(actor: Any, value: str, branch: Branch) -> ServiceGroup | None:
    if not value:
        return None
    group = _by_public_id_or_pk(
        service_group_list(actor=actor).filter(organization_id=branch.organization_id), value
    )
    if group is None:
        raise BillingError(
            "unknown_group",
            _("Unknown service group “%(value)s”.") % {"value": value},
            field="group",
        )
    return group


def _payer_kind(value: str) -> str:
    if value not in PayerKind.values:
        raise BillingError(
            "unknown_payer",
            _("Unknown payer kind “%(value)s”.") % {"value": value},
            field="payer",
        )
    return value


def _contract(actor: Any, value: str, branch: Branch) -> Contract | None:
    if not value:
        return None
    contract: Contract | None = _by_public_id_or_pk(
        contract_list(actor=actor).filter(organization_id=branch.organization_id), value
    )
    if contract is None:
        raise BillingError(
            "unknown_contract",
            _("Unknown contract “%(value)s”.") % {"value": value},
            field="contract",
        )
    return contract


def _check_contract(contract: Contract, payer_kind: str, on_date: datetime.date) -> None:
    if contract.payer_kind != payer_kind:
        raise BillingError(
            "contract_payer_mismatch",
            _("Contract %(number)s is for the payer “%(kind)s”, not “%(value)s”.")
            % {
                "number": contract.number,
                "kind": contract.get_payer_kind_display(),
                "value": PayerKind(payer_kind).label,
            },
            field="contract",
        )
    if not contract.is_valid_on(on_date):
        raise BillingError(
            "contract_not_valid",
            _("Contract %(number)s is not in force on %(date)s.")
            % {"number": contract.number, "date": on_date.isoformat()},
            field="contract",
        )


def lookup_params_from(*, actor: Any, data: Mapping[str, str]) -> LookupParams:
    """Read ``branch``, ``q``, ``group``, ``payer``, ``contract`` and ``date`` from ``data``.

    ``payer`` defaults to the contract's payer kind when a contract is named, else to self-pay;
    ``date`` defaults to today in the branch's time zone. A contract must be of the payer kind
    and in force on the date: quoting a lapsed contract's prices at the desk would be wrong.
    """

    def text(name: str) -> str:
        return (data.get(name) or "").strip()

    branch = _branch(actor, text("branch"))
    query = text("q")
    if len(query) > QUERY_MAX_LENGTH:
        raise BillingError(
            "query_too_long",
            _("The search text is longer than %(limit)d characters.") % {"limit": QUERY_MAX_LENGTH},
            field="q",
        )
    on_date = _date(text("date"), branch)
    group = _group(actor, text("group"), branch)
    contract = _contract(actor, text("contract"), branch)
    default_payer = contract.payer_kind if contract is not None else PayerKind.SELF_PAY
    payer_kind = _payer_kind(text("payer") or default_payer)
    if contract is not None:
        _check_contract(contract, payer_kind, on_date)
    return LookupParams(
        branch=branch,
        query=query,
        group=group,
        payer_kind=payer_kind,
        contract=contract,
        on_date=on_date,
    )
