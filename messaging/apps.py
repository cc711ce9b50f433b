from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = _("Patient messaging")

    def ready(self) -> None:
        from patients.merge import merge_mover_register

        from .models import Conversation, Feedback, Message
        from .notices import notice_channels_register

        notice_channels_register()
        # A merge moves the patient's messages, conversations and ratings to the survivor.
        merge_mover_register("messages", Message, "patient")
        merge_mover_register("conversations", Conversation, "patient")
        merge_mover_register("feedback", Feedback, "patient")
