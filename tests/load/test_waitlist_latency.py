"""Benchmark: how soon a cancelled slot reaches the waitlist as committed offers in the outbox.

Fifty cancellations against two hundred waiting entries, with real commits: the offers are made
in ``transaction.on_commit`` of each cancellation, so the latency measured runs from the
cancellation's commit to the commit of the offers' outbox rows. Prints p50/p95/max; asserts the
offers are right and only a generous bound on time.
"""

from __future__ import annotations

import datetime
import statistics
import time
from typing import Any

import pytest
from django.db import transaction

from clinic.core.roles import Role
from clinic.outbox.models import OutboxMessage
from scheduling import waitlist
from scheduling.models import BookingChannel, CancelReason, WaitlistOffer
from scheduling.services import BookingRequest, appointment_book, appointment_cancel
from tests.core.factories import BranchFactory, SpecialtyFactory, staff_with_role
from tests.patients.factories import PersonFactory
from tests.scheduling.factories import doctor, local, service_for, tomorrow, works

pytestmark = [pytest.mark.load, pytest.mark.django_db(transaction=True)]

DOCTORS = 5
SLOTS = ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30", "12:00", "12:30", "14:00", "14:30"]
ENTRIES = 200  # four per slot of each doctor


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def test_waitlist_offer_latency(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("clinic.outbox.services._kick_relay", lambda channel: None)
    branch = BranchFactory()
    organization = branch.organization
    specialty = SpecialtyFactory()
    service = service_for(specialty, organization=organization)
    registrar = staff_with_role(Role.REGISTRAR, organization=organization, branches=[branch])
    actor = registrar.user
    doctors = []
    for index in range(DOCTORS):
        resource = doctor(branch, specialty=specialty, name=f"Dr {index}")
        works(resource)
        doctors.append(resource)
    appointments = [
        appointment_book(
            actor=actor,
            request=BookingRequest(
                branch=branch,
                services=[service],
                starts_at=local(tomorrow(), hhmm),
                channel=BookingChannel.DESK,
                patient=PersonFactory(organization=organization),
                doctor=resource,
            ),
        )
        for resource in doctors
        for hhmm in SLOTS
    ]
    parse = datetime.time.fromisoformat
    for index in range(ENTRIES):
        hhmm = SLOTS[(index // DOCTORS) % len(SLOTS)]
        start = parse(hhmm)
        end = (datetime.datetime.combine(tomorrow(), start) + datetime.timedelta(minutes=30)).time()
        waitlist.waitlist_add(
            actor=actor,
            branch=branch,
            patient=PersonFactory(organization=organization),
            service=service,
            doctor=doctors[index % DOCTORS],
            time_from=start,
            time_to=end,
        )

    original = waitlist.waitlist_offer_freed_slot
    committed_at: list[float] = []
    offered: list[list[int]] = []

    def timed(**kwargs: Any) -> list[int]:
        ids = original(**kwargs)  # returns after its transaction committed
        committed_at.append(time.perf_counter())
        offered.append(ids)
        return ids

    monkeypatch.setattr(waitlist, "waitlist_offer_freed_slot", timed)
    reason = CancelReason.objects.get(code="patient_request")
    latencies_ms: list[float] = []
    totals_ms: list[float] = []
    cancel_committed_at: list[float] = []

    def mark_commit() -> None:
        cancel_committed_at.append(time.perf_counter())

    for appointment in appointments:
        started = time.perf_counter()
        with transaction.atomic():
            # Registered first, so it runs first: the moment right after the commit.
            transaction.on_commit(mark_commit)
            appointment_cancel(actor=actor, appointment=appointment, reason=reason)
        finished = time.perf_counter()
        latencies_ms.append((committed_at[-1] - cancel_committed_at[-1]) * 1000)
        totals_ms.append((finished - started) * 1000)

    assert len(offered) == len(appointments)
    assert [len(ids) for ids in offered] == [ENTRIES // len(appointments)] * len(appointments)
    assert WaitlistOffer.objects.count() == ENTRIES
    assert OutboxMessage.objects.filter(channel=waitlist.OFFER_CHANNEL).count() == ENTRIES
    assert not WaitlistOffer.objects.filter(outbox_message__isnull=True).exists()
    # A generous bound: the offers of one freed slot are committed well within a second.
    assert percentile(latencies_ms, 0.95) < 1000

    with capsys.disabled():
        print()
        print(
            f"waitlist: {len(appointments)} cancellations, {ENTRIES} waiting entries, "
            f"{ENTRIES // len(appointments)} offers per slot"
        )
        print(
            "waitlist: cancel commit -> offers' outbox rows committed: "
            f"p50 {statistics.median(latencies_ms):.1f} ms, "
            f"p95 {percentile(latencies_ms, 0.95):.1f} ms, max {max(latencies_ms):.1f} ms"
        )
        print(
            "waitlist: whole appointment_cancel call incl. offers: "
            f"p50 {statistics.median(totals_ms):.1f} ms, "
            f"p95 {percentile(totals_ms, 0.95):.1f} ms, max {max(totals_ms):.1f} ms"
        )
