"""The fake register run as its own process (as the reliability tests and the demo run it),
steered over HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from devices.fiscal import FiscalOperation, FiscalRejected, FiscalState, driver_for
from devices.fiscal.wire import loads

from .conftest import free_port, receipt, service_task

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devices.fake_atol", "--port", str(port)],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    assert banner.strip() == f"Fake ATOL register listening on http://127.0.0.1:{port}"
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    assert process.wait(timeout=30) == 0


def test_a_fake_in_its_own_process_is_steered_over_http(fake_process: str) -> None:
    driver = driver_for(
        {"driver": "atol_web", "url": fake_process, "poll_seconds": 5, "poll_interval": 0.01}
    )
    switched = requests.post(f"{fake_process}/__fake__/mode", json={"mode": "fail"}, timeout=5)
    assert switched.json() == {"mode": "fail"}

    with pytest.raises(FiscalRejected) as rejected:
        driver.submit(service_task(FiscalOperation.OPEN_SHIFT))
    requests.post(f"{fake_process}/__fake__/mode", json={"mode": "ok"}, timeout=5)
    opened = driver.submit(service_task(FiscalOperation.OPEN_SHIFT))
    sold = receipt()
    sell = driver.submit(sold)
    driver.submit(sold)
    state = loads(requests.get(f"{fake_process}/__fake__/state", timeout=5).content)

    assert rejected.value.code == "44"
    assert (opened.state, sell.state) == (FiscalState.DONE, FiscalState.DONE)
    assert state["mode"] == "ok"
    assert [(document["type"], document["total"]) for document in state["printed"]] == [
        ("openShift", None),
        ("sell", Decimal("1500.00")),
    ]
    assert state["printed"][1]["uuid"] == sold.uuid
    assert [entry["status"] for entry in state["sent"] if entry["method"] == "POST"] == [
        201,
        201,
        201,
        409,
    ]
    assert state["shift"]["totals"]["receipts"]["sell"]["count"] == 1
