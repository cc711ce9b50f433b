"""The channel-neutral contract: delivery status ordering and picking a driver."""

from __future__ import annotations

import pytest
from django.utils import translation
from django.utils.module_loading import import_string
from hypothesis import given
from hypothesis import strategies as st

from integrations.messaging import DRIVERS, DeliveryStatus, provider_for, status_advances

FORWARD = [
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.READ,
]
FAILURES = [DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED, DeliveryStatus.CANCELED]


@pytest.mark.parametrize(
    ("old", "new", "advances"),
    [
        (None, DeliveryStatus.SENT, True),
        (DeliveryStatus.QUEUED, DeliveryStatus.SENT, True),
        (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, True),
        (DeliveryStatus.QUEUED, DeliveryStatus.READ, True),
        (DeliveryStatus.DELIVERED, DeliveryStatus.READ, True),
        (DeliveryStatus.SENT, DeliveryStatus.SENT, False),
        (DeliveryStatus.DELIVERED, DeliveryStatus.SENT, False),
        (DeliveryStatus.READ, DeliveryStatus.DELIVERED, False),
        (DeliveryStatus.QUEUED, DeliveryStatus.FAILED, True),
        (DeliveryStatus.SENT, DeliveryStatus.UNDELIVERED, True),
        (DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, False),
        (DeliveryStatus.READ, DeliveryStatus.FAILED, False),
        (DeliveryStatus.FAILED, DeliveryStatus.DELIVERED, False),
        (DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED, False),
        (DeliveryStatus.CANCELED, DeliveryStatus.SENT, False),
    ],
)
def test_status_advances_only_forward(
    old: DeliveryStatus | None, new: DeliveryStatus, advances: bool
) -> None:
    assert status_advances(old, new) is advances


def test_final_and_failed_statuses() -> None:
    assert [status for status in DeliveryStatus if status.is_failure] == FAILURES
    assert [status for status in DeliveryStatus if status.is_final] == [
        DeliveryStatus.READ,
        *FAILURES,
    ]


@st.composite
def progress(draw: st.DrawFn) -> list[DeliveryStatus]:
    """The reports a provider makes for one message: a run of forward steps, perhaps ending
    in a failure before delivery."""
    steps = sorted(draw(st.sets(st.sampled_from(FORWARD), min_size=1)), key=FORWARD.index)
    if draw(st.booleans()):
        steps = [step for step in steps if FORWARD.index(step) < 3]
        steps.append(draw(st.sampled_from(FAILURES)))
    return steps


@given(st.data())
def test_reports_in_any_order_end_in_the_last_reported_status(data: st.DataObject) -> None:
    reports = data.draw(progress())
    arrived = data.draw(st.permutations(reports))
    recorded: DeliveryStatus | None = None

    for status in arrived:
        if status_advances(recorded, status):
            recorded = status

    assert recorded is reports[-1]


@translation.override("en")  # the messages are compared in English
def test_provider_for_refuses_an_unknown_provider() -> None:
    with pytest.raises(ValueError, match="Unknown messaging provider 'carrier-pigeon'"):
        provider_for({"provider": "carrier-pigeon"})
    with pytest.raises(ValueError, match="Unknown messaging provider None"):
        provider_for({})


def test_every_driver_is_importable_and_configurable() -> None:
    drivers = {name: import_string(path) for name, path in DRIVERS.items()}

    assert sorted(drivers) == ["smtp", "twilio"]
    assert all(callable(getattr(driver, "from_config", None)) for driver in drivers.values())
