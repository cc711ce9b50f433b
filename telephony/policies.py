"""Who may work with calls: the people who book appointments (registrars, the call centre)."""

from __future__ import annotations

from typing import Any

from clinic.core.policies import has_capability
from clinic.core.roles import Capability


def can_handle_calls(user: Any) -> bool:
    """See the call log and the pop-up, classify calls, plan and close outgoing calls."""
    return has_capability(user, Capability.BOOK_APPOINTMENT)
