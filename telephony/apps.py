from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = _("Telephony")

    def ready(self) -> None:
        from patients.merge import merge_mover_register

        from .models import PlannedCall

        # A merged patient's planned calls follow them to the surviving record.
        merge_mover_register("planned_calls", PlannedCall, "patient")
