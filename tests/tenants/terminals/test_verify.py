"""The verification stage: stored-data checks after the upload answered, once per batch, all or nothing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation
from django_tenants.utils import tenant_context

from citycard.tenants.cards import services as cards
from citycard.tenants.cards.pii import id_number_build
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import Batch, ReviewFlag
from citycard.tenants.terminals.simulate import SimCard, SimTerminal
from citycard.tenants.terminals.tasks import batches_verify_all as verify_task
from citycard.tenants.terminals.verify import batches_verify, batches_verify_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def hz(tenant, register):
    hangzhou = tenant("hangzhou")
    sim = SimTerminal("HZ-BUS-0200", "hangzhou", route="9")
    with tenant_context(hangzhou):
        register(sim)
        cards.schemes_seed(actor="t")
        issued = []
        for n in range(4):
            holder = cards.cardholder_register(
                name=f"乘客{n}",
                id_number=id_number_build(division="330106", birth_date=dt.date(1980, 1, 1), sequence=n),
                local_hukou=True,
                actor="t",
            )
            issued.append(cards.card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="t").card_no)
    return hangzhou, sim, issued


def _scenario(hangzhou, sim, issued, now) -> None:
    """Two batches that between them trip every stored-data check and a batch check."""
    lost, rider, forged, loaded = issued
    with tenant_context(hangzhou):
        cards.card_report_lost(card_no=lost, actor="t", at=now - dt.timedelta(hours=2))
    start = now - dt.timedelta(minutes=30)
    card = SimCard(rider, balance_fen=5000)
    purse = SimCard(loaded, balance_fen=5000)
    first = [
        sim.tap(SimCard(lost), at=start),
        sim.tap(card, at=start + dt.timedelta(minutes=1)),
        sim.tap(SimCard(forged), at=start + dt.timedelta(minutes=2)),
        sim.tap(purse, at=start + dt.timedelta(minutes=3)),
    ]
    first[2]["tac"] = f"{int(first[2]['tac'], 16) ^ 1:08x}"
    card.counter += 2  # two taps elsewhere that have not arrived
    card.balance_fen += 1000  # (not compared after a gap: the missing taps explain any difference)
    purse.balance_fen += 1000  # a load the back office never saw, between two consecutive taps
    sim.seq += 1  # a terminal sequence number lost
    second = [
        sim.tap(card, at=start + dt.timedelta(minutes=5)),
        sim.tap(purse, at=start + dt.timedelta(minutes=6)),
    ]
    with tenant_context(hangzhou):
        for taps in (first, second):
            batch_ingest(tenant=hangzhou, body=sim.sign(sim.payload(taps, created_at=now)))


def _flags(hangzhou) -> set[tuple[str, str]]:
    with tenant_context(hangzhou):
        return {(f.card_no, f.code) for f in ReviewFlag.objects.all()}


EXPECTED = {"hotlisted", "tac_invalid", "card_counter_gap", "shadow_divergence", "terminal_seq_gap"}


@pytest.mark.parametrize("mode", ["inline", "deferred"])
def test_both_modes_flag_the_same_taps(hz, now, settings, mode):
    settings.TERMINAL_VERIFY = mode
    settings.HOTLIST_GRACE_MINUTES = 10
    hangzhou, sim, (lost, rider, forged, loaded) = hz
    _scenario(hangzhou, sim, [lost, rider, forged, loaded], now)
    if mode == "deferred":
        # At upload only the batch's own checks ran; the batches wait for the verification stage.
        assert _flags(hangzhou) == {(rider, "terminal_seq_gap")}
        with tenant_context(hangzhou):
            assert Batch.objects.filter(verified_at__isnull=True).count() == 2
            done = batches_verify_all(tenant=hangzhou)
        assert (done.batches, done.taps, done.flags) == (2, 6, 4)
    assert _flags(hangzhou) == {
        (lost, "hotlisted"),
        (forged, "tac_invalid"),
        (rider, "card_counter_gap"),
        (loaded, "shadow_divergence"),
        (rider, "terminal_seq_gap"),
    }
    with tenant_context(hangzhou):
        assert not Batch.objects.filter(verified_at__isnull=True).exists()
        detail = ReviewFlag.objects.get(code="shadow_divergence").detail
    assert detail == {"shadow_fen": 4800, "balance_before_fen": 5800}  # 5000 − 200, then loaded 1000


def test_a_verified_batch_is_never_checked_again(hz, now, settings):
    settings.TERMINAL_VERIFY = "deferred"
    settings.HOTLIST_GRACE_MINUTES = 10
    hangzhou, sim, issued = hz
    _scenario(hangzhou, sim, issued, now)
    with tenant_context(hangzhou):
        batches_verify_all(tenant=hangzhou)
        before = ReviewFlag.objects.count()
        again = batches_verify_all(tenant=hangzhou)
        assert (again.batches, again.flags) == (0, 0)
        assert ReviewFlag.objects.count() == before == 5


def test_a_failing_check_leaves_the_batches_unverified_and_nothing_written(hz, now, settings, monkeypatch):
    settings.TERMINAL_VERIFY = "deferred"
    hangzhou, sim, issued = hz
    _scenario(hangzhou, sim, issued, now)

    def broken(ctx, taps):
        raise RuntimeError("the fare rules could not be read")

    monkeypatch.setattr(checks, "STORED_CHECKS", [*checks.STORED_CHECKS, broken])
    with tenant_context(hangzhou):
        flags_before = ReviewFlag.objects.count()
        with pytest.raises(RuntimeError):
            batches_verify(tenant=hangzhou)
        assert ReviewFlag.objects.count() == flags_before
        assert Batch.objects.filter(verified_at__isnull=True).count() == 2
    monkeypatch.setattr(checks, "STORED_CHECKS", checks.STORED_CHECKS[:-1])
    with tenant_context(hangzhou):
        assert batches_verify_all(tenant=hangzhou).batches == 2


def test_runs_take_the_oldest_batches_first_a_limited_number_at_a_time(hz, now, settings):
    settings.TERMINAL_VERIFY = "deferred"
    hangzhou, sim, issued = hz
    card = SimCard(issued[1])
    with tenant_context(hangzhou):
        for i in range(5):
            taps = [sim.tap(card, at=now - dt.timedelta(minutes=10 - i))]
            batch_ingest(tenant=hangzhou, body=sim.sign(sim.payload(taps, created_at=now)))
        ids = list(Batch.objects.order_by("id").values_list("id", flat=True))
        assert batches_verify(tenant=hangzhou, limit=2).batches == 2
        assert set(Batch.objects.filter(verified_at__isnull=False).values_list("id", flat=True)) == set(
            ids[:2]
        )
        assert batches_verify_all(tenant=hangzhou, limit=2).batches == 3


def test_a_run_costs_the_same_queries_for_two_batches_or_twenty(hz, now, settings):
    settings.TERMINAL_VERIFY = "deferred"
    hangzhou, sim, issued = hz
    card = SimCard(issued[2])

    def queries(n: int) -> int:
        with tenant_context(hangzhou):
            for i in range(n):
                taps = [sim.tap(card, at=now - dt.timedelta(minutes=60 - i))]
                batch_ingest(tenant=hangzhou, body=sim.sign(sim.payload(taps, created_at=now)))
            with CaptureQueriesContext(connection) as captured:
                assert batches_verify(tenant=hangzhou, limit=50).batches == n
        return len(captured.captured_queries)

    # SAVEPOINT, the advisory lock, the pending batches, their taps, the counter probe, the card TAC key
    # from the vault, the rule documents in force (none here), the hotlist probe, the shadows locked and
    # written, the flags and verified_at, RELEASE: fixed whatever the number of batches.
    assert queries(2) == queries(20) == 12


def test_an_upload_with_nothing_new_is_stored_verified(hz, now, settings):
    settings.TERMINAL_VERIFY = "deferred"
    hangzhou, sim, issued = hz
    taps = [sim.tap(SimCard(issued[0]), at=now - dt.timedelta(minutes=1))]
    with tenant_context(hangzhou):
        batch_ingest(tenant=hangzhou, body=sim.sign(sim.payload(taps, created_at=now)))
        resent = sim.sign(sim.payload(taps, created_at=now))  # the same taps under a new batch id
        ack = json.loads(batch_ingest(tenant=hangzhou, body=resent).body)["payload"]
        assert ack["duplicates"] == 1
        assert list(Batch.objects.order_by("id").values_list("verified_at", flat=True))[1] is not None


def test_the_beat_task_verifies_every_tenant_and_reports_what_it_did(hz, now, settings):
    settings.TERMINAL_VERIFY = "deferred"
    settings.HOTLIST_GRACE_MINUTES = 10
    hangzhou, sim, issued = hz
    _scenario(hangzhou, sim, issued, now)
    done = verify_task.run()
    assert done == {"hangzhou": {"batches": 2, "taps": 6, "flags": 4, "busy": False}}
    assert verify_task.run() == {}
    assert connection.schema_name == "public"


def test_deferred_roaming_taps_reach_the_outbox_in_one_envelope_once(hz, now, settings):
    from citycard.tenants.exchange.models import OutboxMessage
    from citycard.tenants.terminals.models import Transaction

    from .conftest import cards

    settings.TERMINAL_VERIFY = "deferred"
    hangzhou, sim, issued = hz
    with tenant_context(hangzhou):
        for visitors in (cards("330400", 2), cards("310000", 1)):
            taps = [sim.tap(c, at=now - dt.timedelta(minutes=5)) for c in [SimCard(issued[0]), *visitors]]
            batch_ingest(tenant=hangzhou, body=sim.sign(sim.payload(taps, created_at=now)))
        # Stored and routed at upload, waiting for the verification stage.
        assert sorted(Transaction.objects.values_list("routing", "outbox_state")) == [
            ("own", ""),
            ("own", ""),
            ("roaming", "pending"),
            ("roaming", "pending"),
            ("roaming", "pending"),
        ]
        assert not OutboxMessage.objects.exists()
        batches_verify_all(tenant=hangzhou)
        batches_verify_all(tenant=hangzhou)
        message = OutboxMessage.objects.get()
        records = message.envelope["payload"]["body"]["records"]
        assert sorted((r["issuer"], r["network"], r["batch_id"][-6:]) for r in records) == [
            ("jiaxing", "yrd", "000001"),
            ("jiaxing", "yrd", "000001"),
            ("shanghai", "yrd", "000002"),
        ]
        assert set(Transaction.objects.filter(routing="roaming").values_list("outbox_state", flat=True)) == {
            "sent"
        }


def test_the_cli_runs_the_stage_for_one_tenant(hz, now, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.TERMINAL_VERIFY = "deferred"
    settings.HOTLIST_GRACE_MINUTES = 10
    hangzhou, sim, issued = hz
    _scenario(hangzhou, sim, issued, now)
    out = StringIO()
    with translation.override("zh-hans"):
        call_command("terminal", "--tenant", "hangzhou", "verify", stdout=out)
    assert out.getvalue().strip() == "已验证 2 批、6 笔刷卡：4 个待复核标记"
