from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = _("Patient messaging")

    def ready(self) -> None:
        from .notices import notice_channels_register

        notice_channels_register()
