"""One HTTP exchange with a register's server, with transport failures turned into
``DeviceUnavailable`` so the drivers only deal with answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from django.utils.translation import gettext as _

from .base import DeviceUnavailable
from .wire import dumps, loads


@dataclass(frozen=True)
class Answer:
    """An HTTP status below 500 and the parsed JSON body (``None`` when the body was empty)."""

    status: int
    body: Any


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Send one request. A refused connection, a timeout, a 5xx answer or a body that is not
    JSON raise ``DeviceUnavailable``: the task may or may not have arrived, and only a retry with
    the same uuid can tell safely."""
    request_headers = {"Accept": "application/json", **(headers or {})}
    data = None
    if body is not None:
        data = dumps(body).encode()
        request_headers["Content-Type"] = "application/json; charset=utf-8"
    try:
        response = session.request(method, url, data=data, headers=request_headers, timeout=timeout)
    except requests.RequestException as error:
        raise DeviceUnavailable(
            _("No answer from %(url)s: %(error)s") % {"url": url, "error": error}
        ) from error
    if response.status_code >= 500:
        raise DeviceUnavailable(
            _("%(url)s answered HTTP %(status)s.") % {"url": url, "status": response.status_code}
        )
    if not response.content:
        return Answer(response.status_code, None)
    try:
        parsed = loads(response.content)
    except ValueError as error:
        raise DeviceUnavailable(
            _("%(url)s answered HTTP %(status)s with a body that is not JSON.")
            % {"url": url, "status": response.status_code}
        ) from error
    return Answer(response.status_code, parsed)
