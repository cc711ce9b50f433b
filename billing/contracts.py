"""Contracts made from model agreements."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from clinic.core.policies import has_capability
from clinic.core.roles import Capability
from patients.models import Person

from .errors import BillingError
from .models import Contract, ContractTemplate, Counterparty


def contract_take_template_terms(contract: Contract) -> None:
    """Fill the terms a new contract leaves empty from its model agreement: the price list, the
    guarantee-letter rule and the end date after the agreement's term."""
    template = contract.template
    if template is None:
        return
    contract.payer_kind = contract.payer_kind or template.payer_kind
    contract.name = contract.name or template.name
    contract.price_list = contract.price_list or template.price_list
    contract.requires_guarantee_letter = (
        contract.requires_guarantee_letter or template.requires_guarantee_letter
    )
    if contract.valid_to is None and template.term_days and contract.valid_from:
        contract.valid_to = contract.valid_from + datetime.timedelta(days=template.term_days - 1)


@transaction.atomic
def contract_from_template(
    *,
    actor: Any,
    template: ContractTemplate,
    number: str,
    valid_from: datetime.date,
    counterparty: Counterparty | None = None,
    patient: Person | None = None,
    name: str = "",
) -> Contract:
    """An individual contract with the model agreement's payer, price list, guarantee-letter
    rule and term; it keeps them as its own, so a later change of the model does not touch it."""
    if not has_capability(actor, Capability.MANAGE_PRICE_LIST):
        raise PermissionDenied
    if not template.is_active:
        raise BillingError(
            "template_inactive",
            _("The model agreement “%(value)s” is no longer used.") % {"value": template.name},
            field="template",
        )
    party = counterparty.organization_id if counterparty is not None else None
    if party is not None and party != template.organization_id:
        raise BillingError(
            "counterparty_not_found",
            _("The counterparty %(value)s belongs to another organization.")
            % {"value": counterparty.name if counterparty else ""},
            field="counterparty",
        )
    contract = Contract(
        organization_id=template.organization_id,
        number=number.strip(),
        name=name.strip(),
        counterparty=counterparty,
        patient=patient,
        template=template,
        valid_from=valid_from,
        created_by=actor,
    )
    contract_take_template_terms(contract)
    contract.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            contract.save()
    except IntegrityError as exc:
        raise BillingError(
            "contract_number_taken",
            _("The contract number %(value)s is already used.") % {"value": contract.number},
            field="number",
        ) from exc
    return contract
