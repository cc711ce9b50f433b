"""The client's address: the connection's own unless trusted proxies are configured, so a client
cannot pick its address for rate limits with a forged X-Forwarded-For."""

from __future__ import annotations

from typing import Any

from django.test import RequestFactory

from clinic.core.net import client_ip


def request(forwarded: str = "") -> Any:
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", **extra)


def test_without_proxies_the_header_is_ignored(settings: Any) -> None:
    settings.NUM_PROXIES = 0
    assert client_ip(request("1.2.3.4")) == "10.0.0.5"


def test_behind_one_proxy_its_appended_entry_counts(settings: Any) -> None:
    settings.NUM_PROXIES = 1
    assert client_ip(request("6.6.6.6, 203.0.113.7")) == "203.0.113.7"
    assert client_ip(request()) == "10.0.0.5"


def test_more_proxies_than_entries_take_the_first(settings: Any) -> None:
    settings.NUM_PROXIES = 3
    assert client_ip(request("203.0.113.7")) == "203.0.113.7"
