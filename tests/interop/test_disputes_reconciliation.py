"""Reconciliation files (totals first, details on a mismatch) and disputes → adjustments in a later cycle."""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib

import pytest
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingRecord, CycleState, Dispute, ReconciliationFile
from citycard.interop.services.cycles import cycle_get_or_create, cycle_run
from citycard.interop.services.disputes import dispute_raise, dispute_resolve
from citycard.platform.errors import DomainError
from citycard.tenants.exchange.models import InboxMessage
from citycard.tenants.exchange.selectors import reconciliation_file
from citycard.tenants.exchange.services import dispute_send, reconciliation_check, reconciliation_parse

from .conftest import DAY, at, record

pytestmark = pytest.mark.django_db
NEXT = DAY + dt.timedelta(days=1)


@pytest.fixture
def settled(yrd_transit, send, collect):
    records = [
        record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=1, amount=300),
        record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=2, amount=500),
        record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=3, bad_tac=True),
        record(acquirer="hangzhou", issuer="jiaxing", issuer_division="330400", serial=4, amount=100),
    ]
    send("jiaxing", records[:3])
    send("hangzhou", records[3:])
    collect("jiaxing")
    collect("hangzhou")
    cycle = cycle_run(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY), now=at(NEXT, 5)
    )
    return cycle, records


def test_each_participant_gets_a_reconciliation_file_in_its_inbox(settled, tenant):
    cycle, _records = settled
    files = {f.participant: f for f in ReconciliationFile.objects.filter(cycle=cycle)}
    assert sorted(files) == ["hangzhou", "jiaxing", "yrd-operator"]  # 500 fen × 10 bps = 0.5 → 1 fen
    with tenant_context(tenant("jiaxing")):
        message = InboxMessage.objects.get(kind="clearing.reconciliation")
        manifest, text = reconciliation_file(message_id=message.message_id)
    # The signed message is a manifest: the file's digest, size, rows and totals, not its text.
    assert "csv" not in message.body and manifest == message.body
    assert manifest["sha256"] == files["jiaxing"].sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert manifest["bytes"] == len(text.encode()) and manifest["totals"] == files["jiaxing"].totals
    totals, details = reconciliation_parse(text)
    assert manifest["detail_rows"] == len(details)
    assert totals["cycle"] == "yrd-transit-2026-11-21" and totals["participant"] == "jiaxing"
    assert (int(totals["acquired_records"]), int(totals["acquired_amount_fen"])) == (2, 800)
    assert (int(totals["issued_records"]), int(totals["issued_amount_fen"])) == (1, 100)
    assert (int(totals["rejected_records"]), int(totals["rejected_amount_fen"])) == (1, 200)
    assert int(totals["net_fen"]) == cycle.positions.get(participant="jiaxing").net_fen
    assert len(details) == 4 and {d["status"] for d in details} == {"valid", "rejected"}
    assert sum(f.totals["net_fen"] for f in files.values()) == 0


def test_a_file_not_matching_its_signed_manifest_is_refused(settled, tenant):
    cycle, _records = settled
    stored = ReconciliationFile.objects.get(cycle=cycle, participant="jiaxing")
    # The platform's stored copy altered after the manifest was signed: one amount changed.
    altered = stored.csv.replace(",300,", ",30,", 1)
    assert altered != stored.csv
    ReconciliationFile.objects.filter(pk=stored.pk).update(csv_zlib=zlib.compress(altered.encode()))
    with tenant_context(tenant("jiaxing")):
        message_id = InboxMessage.objects.get(kind="clearing.reconciliation").message_id
        with pytest.raises(DomainError) as info:
            reconciliation_check(message_id=message_id, actor="test", now=at(NEXT, 6))
    assert info.value.code == "digest_mismatch"


def test_confirmation_at_totals_level_and_mismatch_drilldown(settled, tenant, collect):
    cycle, records = settled
    with tenant_context(tenant("jiaxing")):
        message_id = InboxMessage.objects.get(kind="clearing.reconciliation").message_id
        reconciliation_check(message_id=message_id, actor="test", now=at(NEXT, 6))
    collect("jiaxing", now=at(NEXT, 7))
    assert ReconciliationFile.objects.get(cycle=cycle, participant="jiaxing").state == "confirmed"
    # Hangzhou's file says 100 fen for its record; tamper with hangzhou's own view to force a mismatch.
    with tenant_context(tenant("hangzhou")):
        from citycard.tenants.exchange.models import OutboxMessage

        message = OutboxMessage.objects.get(kind="clearing.records")
        envelope = message.envelope
        envelope["payload"]["body"]["records"][0]["amount_fen"] = 150
        OutboxMessage.objects.filter(pk=message.pk).update(envelope=envelope)
        inbox_id = InboxMessage.objects.get(kind="clearing.reconciliation").message_id
        reconciliation_check(message_id=inbox_id, actor="test", now=at(NEXT, 6))
    collect("hangzhou", now=at(NEXT, 7))
    answer = ReconciliationFile.objects.get(cycle=cycle, participant="hangzhou")
    assert answer.state == "mismatch"
    assert answer.answer["answers"]["hangzhou"]["mismatched"] == [
        {"record_id": f"hangzhou-{records[3]['source_tx_id']}", "file_fen": 100, "own_fen": 150}
    ]


def test_dispute_inside_the_window_becomes_an_adjustment_in_a_later_cycle(settled, tenant, collect, send):
    cycle, records = settled
    target = f"jiaxing-{records[1]['source_tx_id']}"
    with tenant_context(tenant("hangzhou")):
        dispute_send(record_id=target, reason="passenger says charged twice", actor="test", now=at(NEXT, 8))
    collect("hangzhou", now=at(NEXT, 9))
    dispute = Dispute.objects.get()
    assert dispute.raised_by == "hangzhou" and dispute.state == "open"
    cycle.refresh_from_db()
    assert cycle.state == CycleState.DISPUTED
    dispute_resolve(
        dispute_id=dispute.pk, accept=True, resolution="refund", actor="clearing", now=at(NEXT, 10)
    )
    cycle.refresh_from_db()
    assert cycle.state == CycleState.SETTLED
    adjustment = ClearingRecord.objects.get(adjusts=target)
    original = ClearingRecord.objects.get(record_id=target)
    assert adjustment.cycle.business_date == NEXT and adjustment.kind == "adjustment"
    assert (adjustment.amount_fen, adjustment.issuer_fee_fen) == (
        -original.amount_fen,
        -original.issuer_fee_fen,
    )
    assert original.amount_fen == 500  # the settled record is never edited
    later = cycle_run(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=NEXT),
        now=at(NEXT + dt.timedelta(days=1), 5),
    )
    nets = dict(later.positions.values_list("participant", "net_fen"))
    # The reversal of 500 fen: issuer fee 2.5 → 3, network fee 0.5 → 1, each given back.
    assert nets == {"hangzhou": 500 - 3, "jiaxing": -(500 - 3 - 1), "yrd-operator": -1}


def test_disputes_outside_the_window_or_by_strangers_are_refused(settled):
    _cycle, records = settled
    target = f"jiaxing-{records[0]['source_tx_id']}"
    with pytest.raises(DomainError) as info:
        dispute_raise(
            record_id=target, raised_by="hangzhou", reason="late", now=at(NEXT, 5) + dt.timedelta(days=31)
        )
    assert info.value.code == "window_closed"
    with pytest.raises(DomainError) as info:
        dispute_raise(record_id=target, raised_by="shanghai", reason="?", now=at(NEXT, 6))
    assert info.value.code == "not_a_party"
    dispute = dispute_raise(record_id=target, raised_by="jiaxing", reason="check", now=at(NEXT, 6))
    dispute_resolve(
        dispute_id=dispute.pk, accept=False, resolution="valid tap", actor="clearing", now=at(NEXT, 7)
    )
    assert not ClearingRecord.objects.filter(adjusts=target).exists()


def test_a_citys_file_is_checked_by_its_counties_for_their_own_taps(yrd_transit, send, collect, tenant):
    own = record(acquirer="hangzhou", issuer="jiaxing", issuer_division="330400", serial=11, amount=300)
    county = record(acquirer="hangzhou", issuer="jiaxing", issuer_division="330400", serial=12, amount=400)
    send("hangzhou", [own])
    send("tonglu", [county])  # a Tonglu bus: Hangzhou acquires, the record comes from Tonglu's outbox
    collect("hangzhou")
    collect("tonglu")
    cycle = cycle_run(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY), now=at(NEXT, 5)
    )
    file = ReconciliationFile.objects.get(cycle=cycle, participant="hangzhou")
    assert file.answer["expected"] == ["hangzhou", "tonglu"] and file.totals["acquired_amount_fen"] == 700
    for code in ("hangzhou", "tonglu"):
        with tenant_context(tenant(code)):
            message_id = InboxMessage.objects.get(kind="clearing.reconciliation").message_id
            reconciliation_check(message_id=message_id, actor="test", now=at(NEXT, 6))
        collect(code, now=at(NEXT, 7))
        file.refresh_from_db()
        assert file.state == ("sent" if code == "hangzhou" else "confirmed")
    assert file.answer["answers"]["tonglu"]["totals"] == {"acquired_records": 1, "acquired_amount_fen": 400}
