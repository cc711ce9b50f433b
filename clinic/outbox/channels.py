"""Channels that ship with the core. Integrations register their own in their AppConfig.ready.

``webhook``: POST the message's ``body`` as JSON to its ``url`` with an ``Idempotency-Key``
header, for peers that accept plain HTTP callbacks (and as the reference handler for new ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

from .registry import PermanentDeliveryError

if TYPE_CHECKING:
    from .models import OutboxMessage

WEBHOOK_TIMEOUT_SECONDS = 15
# Answers that mean "try again later"; any other 4xx means the peer will never accept it.
RETRYABLE_CLIENT_ERRORS = {408, 409, 425, 429}


def webhook_deliver(message: OutboxMessage) -> None:
    url = message.payload.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise PermanentDeliveryError(f"The webhook message has no http(s) url: {url!r}.")
    response = requests.post(
        url,
        json=message.payload.get("body", {}),
        headers={"Idempotency-Key": message.idempotency_key},
        timeout=WEBHOOK_TIMEOUT_SECONDS,
    )
    if response.ok:
        return
    summary = f"HTTP {response.status_code} from {url}: {response.text[:200]}"
    if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_CLIENT_ERRORS:
        raise PermanentDeliveryError(summary)
    raise ConnectionError(summary)
