"""The outbox in the admin: read-only messages with their attempts, and "Re-queue"."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from clinic.outbox.models import OutboxAttempt, OutboxMessage, OutboxState
from tests.outbox.factories import (
    DeadOutboxMessageFactory,
    DeliveredOutboxMessageFactory,
    OutboxMessageFactory,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:outbox_outboxmessage_changelist"


def add_attempts(message: OutboxMessage, count: int) -> None:
    now = timezone.now()
    for number in range(1, count + 1):
        OutboxAttempt.objects.create(
            message=message,
            number=number,
            started_at=now,
            finished_at=now,
            succeeded=False,
            error=f"ConnectionError: peer down #{number}",
        )


def run_action(client: Client, action: str, pks: list[Any]) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(pk) for pk in pks], "index": "0"},
        follow=True,
    )


def message_levels(response: Any) -> list[tuple[int, str]]:
    """The admin's messages shown after the action, in order."""
    return [(m.level, str(m)) for m in response.context["messages"]]


def test_requeue_moves_a_dead_message_back_to_pending(admin_client_verified: Client) -> None:
    dead = DeadOutboxMessageFactory.create(attempts=8, idempotency_key="invoice-77-receipt")
    add_attempts(dead, 8)
    before = timezone.now()

    response = run_action(admin_client_verified, "requeue", [dead.pk])

    assert response.status_code == 200
    dead.refresh_from_db()
    assert dead.state == OutboxState.PENDING
    assert dead.attempts == 0
    assert dead.idempotency_key == "invoice-77-receipt"
    assert before <= dead.next_attempt_at <= timezone.now()
    assert dead.attempt_log.count() == 8  # the log of earlier attempts is kept
    assert [level for level, _text in message_levels(response)] == [messages.SUCCESS]


def test_requeue_refuses_delivered_messages_and_reports_both_counts(
    admin_client_verified: Client,
) -> None:
    dead = DeadOutboxMessageFactory.create()
    delivered = DeliveredOutboxMessageFactory.create()
    delivered_at = delivered.delivered_at

    response = run_action(admin_client_verified, "requeue", [dead.pk, delivered.pk])

    dead.refresh_from_db()
    delivered.refresh_from_db()
    assert dead.state == OutboxState.PENDING
    assert delivered.state == OutboxState.DELIVERED
    assert delivered.delivered_at == delivered_at
    reported = message_levels(response)
    assert [level for level, _text in reported] == [messages.SUCCESS, messages.WARNING]
    assert all(text.startswith("1 ") for _level, text in reported)


def test_requeue_leaves_a_message_being_delivered_alone(admin_client_verified: Client) -> None:
    in_flight = OutboxMessageFactory.create(state=OutboxState.IN_PROGRESS, attempts=2)

    response = run_action(admin_client_verified, "requeue", [in_flight.pk])

    in_flight.refresh_from_db()
    assert (in_flight.state, in_flight.attempts) == (OutboxState.IN_PROGRESS, 2)
    assert [level for level, _text in message_levels(response)] == [messages.WARNING]


def test_message_page_shows_escaped_payload_and_attempts_read_only(
    admin_client_verified: Client,
) -> None:
    message = DeadOutboxMessageFactory.create(payload={"text": "<script>alert(1)</script>", "n": 1})
    add_attempts(message, 2)

    response = admin_client_verified.get(
        reverse("admin:outbox_outboxmessage_change", args=[message.pk])
    )

    content = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in content
    assert (
        '<pre class="outbox-payload">{\n  &quot;n&quot;: 1,\n  &quot;text&quot;: '
        "&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;\n}</pre>"
    ) in content
    assert "ConnectionError: peer down #1" in content
    assert "ConnectionError: peer down #2" in content
    assert 'name="_save"' not in content
    inline = response.context["inline_admin_formsets"][0]
    assert not inline.has_add_permission
    assert not inline.has_change_permission
    assert not inline.has_delete_permission


def test_messages_cannot_be_added_changed_or_deleted(admin_client_verified: Client) -> None:
    message = DeadOutboxMessageFactory.create()
    assert admin_client_verified.get(reverse("admin:outbox_outboxmessage_add")).status_code == 403
    delete_url = reverse("admin:outbox_outboxmessage_delete", args=[message.pk])
    assert admin_client_verified.post(delete_url, {"post": "yes"}).status_code == 403
    change_url = reverse("admin:outbox_outboxmessage_change", args=[message.pk])
    response = admin_client_verified.post(change_url, {"state": OutboxState.PENDING})
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.state == OutboxState.DEAD


def test_changelist_filters_by_state_and_channel_and_finds_by_key(
    admin_client_verified: Client,
) -> None:
    dead = DeadOutboxMessageFactory.create(channel="whatsapp", idempotency_key="wa-key-1")
    pending = OutboxMessageFactory.create(channel="sms", idempotency_key="sms-key-1")
    url = reverse(CHANGELIST)

    def listed(params: dict[str, str]) -> set[int]:
        response = admin_client_verified.get(url, params)
        assert response.status_code == 200
        return {m.pk for m in response.context["cl"].result_list}

    assert dead.pk in listed({"state__exact": "dead"})
    assert pending.pk not in listed({"state__exact": "dead"})
    assert listed({"channel": "sms", "q": "sms-key"}) == {pending.pk}
    assert listed({"q": str(dead.public_id)}) == {dead.pk}
    assert listed({"q": str(dead.public_id)[:8]}) == {dead.pk}


def test_changelist_query_count_does_not_grow_with_rows(
    admin_client_verified: Client, django_assert_max_num_queries: Any
) -> None:
    for _ in range(30):
        add_attempts(DeadOutboxMessageFactory.create(), 2)
    with django_assert_max_num_queries(14):
        response = admin_client_verified.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= 30
