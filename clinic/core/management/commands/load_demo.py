from typing import Any

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from clinic.core.demo import demo_load, demo_logins


class Command(BaseCommand):
    help = "Create the demo organization, branches, rooms, doctors and one login per role."

    def handle(self, *args: Any, **options: Any) -> None:
        created = demo_load()
        self.stdout.write(_("Demo data created.") if created else _("Demo data already present."))
        self.stdout.write(_("Demo logins (user name / password):"))
        for login in demo_logins():
            self.stdout.write(f"  {login.role:<18} {login.username:<14} {login.password}")
        self.stdout.write(
            _(
                "The administrator and head of registry set up an authenticator app (TOTP) "
                "at their first login."
            )
        )
