"""DRF permission classes that ask the policies (clinic/core/policies.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from clinic.core.policies import has_capability


class HasCapability(BasePermission):
    """Allow a view to users whose role grants ``required_capability`` (set on the view)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        capability = getattr(view, "required_capability", None)
        if capability is None:
            return bool(request.user and request.user.is_authenticated)
        return has_capability(request.user, capability)


def capability_required(capability: str) -> type[BasePermission]:
    """A permission class bound to one capability, for views with several actions."""

    class _Required(BasePermission):
        required: ClassVar[str] = capability

        def has_permission(self, request: Request, view: Any) -> bool:
            return has_capability(request.user, self.required)

    _Required.__name__ = f"Requires_{capability}"
    return _Required
