from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = _("Online portal")

    def ready(self) -> None:
        from .codes import code_channel_register
        from .notices import notice_channels_register

        code_channel_register()
        notice_channels_register()
