"""Live updates of the schedule grid: the Redis publisher, the version to poll, and the
Server-Sent Events stream under WSGI (the test client) and under ASGI (a real uvicorn)."""

from __future__ import annotations

import datetime
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import translation
from redis.backoff import NoBackoff
from redis.retry import Retry

from clinic.core.roles import Role
from desk import live as desk_live
from scheduling import live
from tests.core.factories import BranchFactory, staff_with_role
from tests.scheduling.factories import doctor

EVENTS = "/desk/schedule/events/"
VERSION = "/desk/schedule/version/"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


def _clinic() -> dict[str, Any]:
    branch = BranchFactory(name="Central")
    registrar = staff_with_role(Role.REGISTRAR, organization=branch.organization, branches=[branch])
    return {"branch": branch, "doctor": doctor(branch, name="Dr Avdeev"), "user": registrar.user}


@pytest.fixture
def clinic(db: Any) -> dict[str, Any]:
    return _clinic()


def _subscribe(branch_public_id: Any) -> Any:
    pubsub = _redis().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(live.channel_name(branch_public_id))
    return pubsub


def _next_message(pubsub: Any, seconds: float = 2.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None and message["type"] == "message":
            return dict(json.loads(message["data"]))
    return None


def _unreachable_redis() -> redis.Redis:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on a port that was free a moment ago and is closed again.
    return redis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )


# --- the publisher -----------------------------------------------------------------------------


def test_change_is_published_on_commit_with_local_days_and_a_new_version(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    branch, resource = clinic["branch"], clinic["doctor"]
    pubsub = _subscribe(branch.public_id)
    before = live.schedule_version(branch.public_id)
    # 21:30 UTC on 2 March is already 3 March in Moscow, the branch's zone.
    late = datetime.datetime(2031, 3, 2, 21, 30, tzinfo=datetime.UTC)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        live.schedule_changed(
            branch_id=branch.pk,
            resource_ids=[resource.pk, resource.pk],
            days=[late, datetime.date(2031, 3, 1)],
            kind="booked",
        )
        assert _next_message(pubsub, seconds=0.3) is None  # not before the commit
    assert len(callbacks) == 1
    assert _next_message(pubsub) == {
        "kind": "booked",
        "branch": str(branch.public_id),
        "resources": [str(resource.public_id)],
        "days": ["2031-03-01", "2031-03-03"],
        "version": before + 1,
    }
    assert live.schedule_version(branch.public_id) == before + 1
    pubsub.close()


def test_rolled_back_change_is_not_published(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    branch, resource = clinic["branch"], clinic["doctor"]
    pubsub = _subscribe(branch.public_id)
    before = live.schedule_version(branch.public_id)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        live.schedule_changed(
            branch_id=branch.pk,
            resource_ids=[resource.pk],
            days=[datetime.date(2031, 3, 1)],
            kind="cancelled",
        )
        raise RuntimeError("the write failed")
    assert callbacks == []
    assert _next_message(pubsub, seconds=0.5) is None
    assert live.schedule_version(branch.public_id) == before
    pubsub.close()


def test_hold_without_a_branch_is_told_to_the_resources_home_branch(
    clinic: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    """A slot hold knows only resources: their home branch's grids hear of it."""
    branch, resource = clinic["branch"], clinic["doctor"]
    pubsub = _subscribe(branch.public_id)
    with django_capture_on_commit_callbacks(execute=True):
        live.schedule_changed(
            branch_id=None,
            resource_ids=[resource.pk],
            days=[datetime.date(2031, 3, 1)],
            kind="hold",
        )
    message = _next_message(pubsub)
    assert message is not None
    assert (message["kind"], message["resources"]) == ("hold", [str(resource.public_id)])
    pubsub.close()


def test_unknown_kind_is_refused_at_once(clinic: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="teleported"):
        live.schedule_changed(
            branch_id=clinic["branch"].pk, resource_ids=[], days=[], kind="teleported"
        )


def test_unreachable_redis_logs_a_warning_and_does_not_fail_the_write(
    clinic: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(live, "_client", _unreachable_redis)
    with (
        caplog.at_level(logging.WARNING, logger="scheduling.live"),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        live.schedule_changed(
            branch_id=clinic["branch"].pk,
            resource_ids=[clinic["doctor"].pk],
            days=[datetime.date(2031, 3, 1)],
            kind="moved",
        )
    assert len(callbacks) == 1
    assert "Could not announce a schedule change" in caplog.text


# --- the version to poll -----------------------------------------------------------------------


def test_version_endpoint_returns_the_counter(
    clinic: dict[str, Any], client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    branch = clinic["branch"]
    client.force_login(clinic["user"])
    before = client.get(VERSION, {"branch": str(branch.public_id)})
    assert before.status_code == 200
    assert before["Cache-Control"] == "no-cache, no-store"
    with django_capture_on_commit_callbacks(execute=True):
        live.schedule_changed(
            branch_id=branch.pk, resource_ids=[], days=[datetime.date(2031, 3, 1)], kind="schedule"
        )
    after = client.get(VERSION, {"branch": str(branch.public_id)})
    assert after.json() == {"version": before.json()["version"] + 1}


def test_version_endpoint_answers_503_when_redis_is_down(
    clinic: dict[str, Any], client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "_client", _unreachable_redis)
    client.force_login(clinic["user"])
    with translation.override("en"):
        response = client.get(
            VERSION, {"branch": str(clinic["branch"].public_id)}, HTTP_ACCEPT_LANGUAGE="en"
        )
    assert response.status_code == 503
    assert "Live updates are unavailable" in response.json()["error"]


# --- who may listen ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [EVENTS, VERSION])
def test_cashier_is_refused(clinic: dict[str, Any], client: Client, url: str) -> None:
    branch = clinic["branch"]
    cashier = staff_with_role(Role.CASHIER, organization=branch.organization, branches=[branch])
    client.force_login(cashier.user)
    assert client.get(url, {"branch": str(branch.public_id)}).status_code == 403


@pytest.mark.parametrize("url", [EVENTS, VERSION])
def test_branch_the_user_does_not_work_in_is_not_found(
    clinic: dict[str, Any], client: Client, url: str
) -> None:
    other = BranchFactory(organization=clinic["branch"].organization, name="Northern")
    client.force_login(clinic["user"])
    assert client.get(url, {"branch": str(other.public_id)}).status_code == 404


@pytest.mark.parametrize("url", [EVENTS, VERSION])
def test_branch_that_is_not_an_id_is_named_in_a_400(
    clinic: dict[str, Any], client: Client, url: str
) -> None:
    client.force_login(clinic["user"])
    with translation.override("en"):
        response = client.get(url, {"branch": "central"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert response.content.decode() == "The branch “central” is not a branch id."


@pytest.mark.parametrize("url", [EVENTS, VERSION])
def test_missing_branch_is_named_in_a_400(clinic: dict[str, Any], client: Client, url: str) -> None:
    client.force_login(clinic["user"])
    with translation.override("en"):
        response = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert response.content.decode() == (
        "The branch is missing: add ?branch= with the branch's public id."
    )


@pytest.mark.parametrize("url", [EVENTS, VERSION])
def test_anonymous_is_sent_to_log_in(clinic: dict[str, Any], client: Client, url: str) -> None:
    response = client.get(url, {"branch": str(clinic["branch"].public_id)})
    assert response.status_code == 302
    assert "/login" in response["Location"]


# --- the stream under WSGI ---------------------------------------------------------------------


def test_stream_under_wsgi_delivers_a_published_change(
    clinic: dict[str, Any], client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    branch, resource = clinic["branch"], clinic["doctor"]
    client.force_login(clinic["user"])
    version = live.schedule_version(branch.public_id)
    response = client.get(EVENTS, {"branch": str(branch.public_id)})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    chunks = iter(response.streaming_content)  # type: ignore[attr-defined]
    assert next(chunks) == b"retry: 1000\n\n"  # subscribed by now
    assert next(chunks) == (f'event: version\ndata: {{"version": {version}}}\n\n'.encode())
    with django_capture_on_commit_callbacks(execute=True):
        live.schedule_changed(
            branch_id=branch.pk,
            resource_ids=[resource.pk],
            days=[datetime.date(2031, 3, 1)],
            kind="status",
        )
    event = next(chunks).decode()
    response.close()
    name, event_id, data = event.rstrip("\n").split("\n")
    assert (name, event_id) == ("event: schedule", f"id: {version + 1}")
    assert json.loads(data.removeprefix("data: ")) == {
        "kind": "status",
        "branch": str(branch.public_id),
        "resources": [str(resource.public_id)],
        "days": ["2031-03-01"],
        "version": version + 1,
    }


# --- the stream under ASGI, served by uvicorn ----------------------------------------------------


@pytest.fixture
def asgi_server(transactional_db: Any) -> Iterator[str]:
    """The project's ASGI application in a real uvicorn on a free port, in a thread of this
    process, so it uses the test database and settings."""
    import uvicorn
    from django.core.asgi import get_asgi_application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            get_asgi_application(),
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _sse_events(response: requests.Response) -> Iterator[tuple[str, str]]:
    """(event name, data) of each event as it arrives; comments yield ("", comment)."""
    buffer = ""
    for chunk in response.iter_content(chunk_size=None):
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(
                line.split(": ", 1) if ": " in line else (line, "") for line in block.split("\n")
            )
            yield fields.get("event", ""), fields.get("data", block)


def test_stream_under_asgi_delivers_a_published_change_within_a_second(
    asgi_server: str, client: Client, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def no_thread_per_stream(branch_public_id: str) -> Iterator[str]:
        raise AssertionError("the WSGI stream was used under ASGI")

    monkeypatch.setattr(desk_live, "_wsgi_stream", no_thread_per_stream)
    c = _clinic()
    branch, resource = c["branch"], c["doctor"]
    client.force_login(c["user"])
    session = requests.Session()
    session.cookies.set(
        settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value
    )
    with session.get(
        f"{asgi_server}{EVENTS}",
        params={"branch": str(branch.public_id)},
        stream=True,
        timeout=(3, 5),
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        events = _sse_events(response)
        assert next(events) == ("", "retry: 1000")
        assert next(events) == ("version", json.dumps({"version": 0}))
        published = time.monotonic()
        live.schedule_changed(  # autocommit here: published at once
            branch_id=branch.pk,
            resource_ids=[resource.pk],
            days=[datetime.date(2031, 3, 1)],
            kind="moved",
        )
        name, data = next(events)
        latency = time.monotonic() - published
    assert name == "schedule"
    assert json.loads(data) == {
        "kind": "moved",
        "branch": str(branch.public_id),
        "resources": [str(resource.public_id)],
        "days": ["2031-03-01"],
        "version": 1,
    }
    with capsys.disabled():
        print(f"\nlive update publish -> receive under ASGI (uvicorn): {latency * 1000:.1f} ms")
