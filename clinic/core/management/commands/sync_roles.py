from typing import Any

from django.core.management.base import BaseCommand

from clinic.core.services import roles_sync


class Command(BaseCommand):
    help = "Apply the role matrix of clinic/core/roles.py to the role groups (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for role, count in roles_sync().items():
            self.stdout.write(f"{role}: {count} capabilities")
