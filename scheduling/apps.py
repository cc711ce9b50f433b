from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = _("Scheduling")

    def ready(self) -> None:
        from patients.merge import merge_mover_register

        from .models import Appointment, WaitlistEntry

        # A merged patient's visits and waitlist places follow them to the surviving record.
        merge_mover_register("appointments", Appointment, "patient")
        merge_mover_register("waitlist_entries", WaitlistEntry, "patient")
