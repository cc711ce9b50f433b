from clinic.outbox.models import OutboxMessage, OutboxState
from clinic.outbox.registry import channel_register, channel_unregister, PermanentDeliveryError
from clinic.outbox.services import outbox_enqueue, outbox_relay, outbox_requeue
from tests.core.factories import UserFactory


def test_bug(db):
    calls = []
    def fail(m):
        calls.append(1)
        raise PermanentDeliveryError("nope")
    channel_register("scratch", fail)
    try:
        m = outbox_enqueue(channel="scratch", payload={})
        print(outbox_relay(channel="scratch"))
        m.refresh_from_db(); assert m.state == OutboxState.DEAD
        root = UserFactory(username="r", is_superuser=True, is_staff=True)
        outbox_requeue(message=m, actor=root)
        channel_register("scratch", lambda msg: None)
        print(outbox_relay(channel="scratch"))
        m.refresh_from_db(); print(m.state, m.attempts)
    finally:
        channel_unregister("scratch")
