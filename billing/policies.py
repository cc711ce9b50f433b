"""Who may do what with prices, invoices, payments and cash shifts."""

from __future__ import annotations

from typing import Any

from clinic.core.policies import can_view_branch, has_capability
from clinic.core.roles import Capability


def can_look_up_prices(user: Any) -> bool:
    """Those who book (to quote the price) and those who take payments see the price list."""
    return has_capability(user, Capability.BOOK_APPOINTMENT) or has_capability(
        user, Capability.TAKE_PAYMENT
    )


def can_prepare_invoices(user: Any, branch: Any) -> bool:
    """Registrars make invoices from visits; cashiers make them at the POS."""
    return can_look_up_prices(user) and can_view_branch(user, branch)


def can_apply_discount(user: Any) -> bool:
    """Staff who prepare invoices may apply manual discount rules, within each rule's limit."""
    return can_look_up_prices(user)


def can_take_payment(user: Any, branch: Any) -> bool:
    return has_capability(user, Capability.TAKE_PAYMENT) and can_view_branch(user, branch)


def can_refund(user: Any, branch: Any) -> bool:
    return has_capability(user, Capability.REFUND_PAYMENT) and can_view_branch(user, branch)


def can_manage_shift(user: Any, register: Any) -> bool:
    return has_capability(user, Capability.MANAGE_CASH_SHIFT) and can_view_branch(
        user, register.branch
    )


def can_view_financial_reports(user: Any) -> bool:
    return has_capability(user, Capability.VIEW_FINANCIAL_REPORT)
