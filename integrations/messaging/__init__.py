"""Patient messaging providers: WhatsApp and SMS through Twilio, e-mail through SMTP.

``provider_for(config)`` picks the driver from a messaging settings block; see ``base`` for the
contract (``send`` answers the accepted message or raises ``ProviderUnavailable`` or
``ProviderRejected``; delivery reports only move a message forward, see ``status_advances``).
Webhook parsing and signature checks are provider-specific and live with the driver
(``twilio_provider.inbound_parse``, ``status_parse``, ``signature_valid``).
"""

from .base import (
    DRIVERS,
    Channel,
    DeliveryStatus,
    InboundMessage,
    MessagingError,
    MessagingProvider,
    OutgoingMessage,
    ProviderRejected,
    ProviderUnavailable,
    SentMessage,
    StatusUpdate,
    provider_for,
    status_advances,
)

__all__ = [
    "DRIVERS",
    "Channel",
    "DeliveryStatus",
    "InboundMessage",
    "MessagingError",
    "MessagingProvider",
    "OutgoingMessage",
    "ProviderRejected",
    "ProviderUnavailable",
    "SentMessage",
    "StatusUpdate",
    "provider_for",
    "status_advances",
]
