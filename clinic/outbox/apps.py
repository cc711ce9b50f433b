from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OutboxConfig(AppConfig):
    name = "clinic.outbox"
    label = "outbox"
    verbose_name = _("Outbox")

    def ready(self) -> None:
        from .channels import webhook_deliver
        from .registry import channel_register

        channel_register("webhook", webhook_deliver)
