from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("Billing")

    def ready(self) -> None:
        from .balances import merge_handling_register
        from .fiscal import fiscal_channel_register
        from .slips import slip_channel_register

        fiscal_channel_register()
        slip_channel_register()
        merge_handling_register()
