"""Twilio's webhooks: delivery reports and patients' messages.

Both are public URLs, so each request must carry Twilio's ``X-Twilio-Signature`` over the URL
Twilio was given (``SITE_URL`` + the path and query) and the form, made with the account's auth
token; anything else is refused with 403 before the body is read further. A body that is not
what Twilio sends is kept in the log and answered 400.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.messaging import ProviderRejected
from integrations.messaging.twilio_provider import inbound_parse, signature_valid, status_parse

from .inbound import delivery_report, inbound_receive
from .sender import site_url

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _auth_token() -> str:
    for config in (getattr(settings, "MESSAGING_PROVIDERS", {}) or {}).values():
        if config.get("provider") == "twilio" and config.get("auth_token"):
            return str(config["auth_token"])
    return ""


def _signed(view: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = {key: request.POST.get(key, "") for key in request.POST}
        url = site_url(request.get_full_path())
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature_valid(url, form, signature, _auth_token()):
            logger.warning(
                "A Twilio webhook with a bad signature from %s", request.META.get("REMOTE_ADDR")
            )
            return HttpResponse(status=403)
        try:
            return view(request)
        except ProviderRejected as refusal:
            logger.warning("An unreadable Twilio webhook kept for review: %s %r", refusal, form)
            return HttpResponse(status=400)

    return csrf_exempt(require_POST(checked))


@_signed
def twilio_status(request: HttpRequest) -> HttpResponse:
    report = status_parse(request.POST)
    delivery_report(
        sid=report.sid,
        status=report.status,
        error_code=report.error_code,
        reference=request.GET.get("client_ref", ""),
    )
    return HttpResponse(status=204)


@_signed
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    inbound_receive(inbound_parse(request.POST))
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
