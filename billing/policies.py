"""Who may do what with prices."""

from __future__ import annotations

from typing import Any

from clinic.core.policies import has_capability
from clinic.core.roles import Capability


def can_look_up_prices(user: Any) -> bool:
    """Those who book (to quote the price) and those who take payments see the price list."""
    return has_capability(user, Capability.BOOK_APPOINTMENT) or has_capability(
        user, Capability.TAKE_PAYMENT
    )
