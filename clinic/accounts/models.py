"""The user account staff and patients log in with."""

import pghistory
from django.contrib.auth.models import AbstractUser
from django.utils.translation import gettext_lazy as _

from clinic.audit.history import track_history


@track_history(exclude=("password", "last_login"))
class User(AbstractUser):
    """A login. Staff members link to one through ``Staff.user``; roles are its groups."""

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]
        verbose_name = _("user")
        verbose_name_plural = _("users")
        swappable = "AUTH_USER_MODEL"


@pghistory.track(
    pghistory.InsertEvent("role.add"), pghistory.DeleteEvent("role.remove"), obj_field=None
)
class UserRole(User.groups.through):  # type: ignore[name-defined]
    """History of role grants and withdrawals (rows of the user-group link table)."""

    class Meta:
        proxy = True
        verbose_name = _("role grant")
        verbose_name_plural = _("role grants")
