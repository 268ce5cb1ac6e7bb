"""The upload endpoint: acceptance, refusals (nothing written), idempotency, conflicts, duplicates, flags."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from citycard.platform.audit.models import AuditEntry
from citycard.platform.keys import tenant_verify
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.checks import Flag
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import Batch, ReviewFlag, TapException, Transaction
from citycard.tenants.terminals.partitions import forget_known
from citycard.tenants.terminals.simulate import SimTerminal

from .conftest import cards, taps_for

pytestmark = pytest.mark.django_db
URL = "/terminal/v1/batches"


def post(client, body: bytes, host: str = "hangzhou", content_type: str = "application/json"):
    return client.post(URL, body, content_type=content_type, HTTP_HOST=f"{host}.localhost")


def snapshot(tenant) -> dict:
    with tenant_context(tenant), connection.cursor() as cur:
        counts = {}
        for table in (
            "terminals_batch",
            "terminals_transaction",
            "terminals_reviewflag",
            "terminals_tapexception",
            "audit_auditentry",
        ):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT last_seq FROM terminals_terminal ORDER BY id")
        counts["last_seq"] = [r[0] for r in cur.fetchall()]
        return counts


@pytest.fixture
def hz(tenant, register):
    hangzhou = tenant("hangzhou")
    sim = SimTerminal("HZ-BUS-0001", "hangzhou", route="315")
    with tenant_context(hangzhou):
        register(sim)
    return hangzhou, sim


def test_batch_accepted_and_stored_end_to_end(client, hz, now):
    hangzhou, sim = hz
    card_list = cards("330100", 4)
    taps = taps_for(sim, card_list, now - dt.timedelta(minutes=10))
    response = post(client, sim.sign(sim.payload(taps, created_at=now)))
    assert response.status_code == 200, response.content
    signer, ack = tenant_verify(document=json.loads(response.content))
    assert signer.code == "hangzhou"
    assert (ack["accepted"], ack["duplicates"], ack["rejected"]) == (4, 0, 0)
    assert [r["outcome"] for r in ack["results"]] == ["accepted"] * 4
    assert ack["results"][2] == {
        "index": 2,
        "card_no": card_list[2].card_no,
        "card_counter": 1,
        "terminal_seq": 3,
        "outcome": "accepted",
    }
    with tenant_context(hangzhou):
        rows = list(Transaction.objects.order_by("terminal_seq"))
        assert [r.card_no for r in rows] == [c.card_no for c in card_list]
        first = rows[0]
        assert (first.amount_fen, first.balance_before_fen, first.balance_after_fen) == (200, 100_000, 99_800)
        assert (first.routing, first.acquirer, first.issuer_tenant, first.route) == (
            "own",
            "hangzhou",
            "hangzhou",
            "315",
        )
        assert first.tapped_at == dt.datetime.fromisoformat(taps[0]["tapped_at"])
        batch = Batch.objects.get()
        assert (batch.accepted, batch.tap_count, batch.terminal.last_seq) == (4, 4, 4)
        assert not ReviewFlag.objects.exists()


def test_resend_returns_the_same_bytes_and_changes_nothing(client, hz, now):
    hangzhou, sim = hz
    body = sim.sign(sim.payload(taps_for(sim, cards("330100", 5), now), created_at=now))
    first = post(client, body)
    before = snapshot(hangzhou)
    for _ in range(3):
        again = post(client, body)
        assert again.status_code == 200
        assert again.content == first.content
    assert snapshot(hangzhou) == before
    with tenant_context(hangzhou):
        assert Transaction.objects.count() == 5


def test_a_resend_with_every_kind_of_outcome_gets_the_same_bytes_from_a_small_stored_record(client, hz, now):
    """The acknowledgement is rebuilt from the resent taps and what the batch kept (its non-accepted
    outcomes, received time and signature): byte for byte the first answer, for duplicates and rejected
    taps of every shape too; and the conversion of a stored acknowledgement gives the same record."""
    import importlib

    hangzhou, sim = hz
    earlier = taps_for(sim, cards("330100", 2, start=70), now)
    post(client, sim.sign(sim.payload(earlier, created_at=now)))
    taps = taps_for(sim, cards("330100", 3), now)
    odd = dict(taps[2], card_no="33010 0", terminal_seq="7")  # a card number and counter of the wrong shape
    mixed = [*taps, dict(taps[0]), earlier[1], odd, "not a tap", {"card_no": None}]
    body = sim.sign(sim.payload(mixed, created_at=now))
    first = post(client, body)
    ack = json.loads(first.content)
    assert [r["outcome"] for r in ack["payload"]["results"]] == [
        "accepted", "accepted", "accepted", "duplicate", "duplicate", "rejected", "rejected", "rejected"
    ]  # fmt: skip
    for _ in range(2):
        assert post(client, body).content == first.content
    with tenant_context(hangzhou):
        batch = Batch.objects.get(batch_id=json.loads(body)["payload"]["batch_id"])
        assert len(batch.ack_parts) < 700
        tenant_verify(tenant=hangzhou, document=ack)
    migration = importlib.import_module("citycard.tenants.terminals.migrations.0006_batch_ack_parts")
    assert migration.parts_of_ack(first.content.decode()) == batch.ack_parts


def test_same_batch_id_other_content_is_a_logged_conflict(client, hz, now):
    hangzhou, sim = hz
    card_list = cards("330100", 2)
    payload = sim.payload(taps_for(sim, card_list, now), created_at=now)
    assert post(client, sim.sign(payload)).status_code == 200
    changed = json.loads(json.dumps(payload))
    changed["transactions"][0]["amount_fen"] = 100
    changed["transactions"][0]["balance_after_fen"] += 100
    before = snapshot(hangzhou)
    response = post(client, sim.sign(changed))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "batch_conflict"
    after = snapshot(hangzhou)
    assert after["audit_auditentry"] == before["audit_auditentry"] + 1
    assert {k: v for k, v in after.items() if k != "audit_auditentry"} == {
        k: v for k, v in before.items() if k != "audit_auditentry"
    }
    with tenant_context(hangzhou):
        entry = AuditEntry.objects.order_by("-seq").first()
        assert (entry.action, entry.object_id) == ("terminal.batch_conflict", payload["batch_id"])


def test_duplicates_within_and_across_batches_are_reported_not_counted(client, hz, now):
    hangzhou, sim = hz
    taps = taps_for(sim, cards("330100", 3), now)
    body = sim.payload([*taps, dict(taps[1])], created_at=now)
    ack = json.loads(post(client, sim.sign(body)).content)["payload"]
    assert [r["outcome"] for r in ack["results"]] == ["accepted", "accepted", "accepted", "duplicate"]
    assert ack["results"][3]["reason"] == "repeated in this batch"
    # The same taps again under a new batch id (a terminal that lost its acknowledgement), plus one new.
    extra = taps_for(sim, cards("330100", 1, start=50), now)
    ack2 = json.loads(post(client, sim.sign(sim.payload([*taps, *extra], created_at=now))).content)["payload"]
    assert [r["outcome"] for r in ack2["results"]] == ["duplicate", "duplicate", "duplicate", "accepted"]
    assert (ack2["accepted"], ack2["duplicates"]) == (1, 3)
    with tenant_context(hangzhou):
        assert Transaction.objects.count() == 4
        assert sum(Transaction.objects.values_list("amount_fen", flat=True)) == 800


def test_taps_sharing_a_terminal_sequence_number_are_told_apart_by_the_whole_key(client, hz, now):
    """A faulty terminal that repeats a sequence number for different cards: each tap is its own (the
    natural key includes the card), and which of them were stored before is known by the whole key."""
    hangzhou, sim = hz
    riders = cards("330100", 3)
    first = taps_for(sim, riders[:1], now)
    post(client, sim.sign(sim.payload(first, created_at=now)))
    again = dict(first[0])  # stored already
    other = dict(sim.tap(riders[1], at=now), terminal_seq=first[0]["terminal_seq"])  # same seq, other card
    third = dict(sim.tap(riders[2], at=now), terminal_seq=first[0]["terminal_seq"])
    ack = json.loads(post(client, sim.sign(sim.payload([other, again, third], created_at=now))).content)[
        "payload"
    ]
    assert [(r["card_no"], r["outcome"]) for r in ack["results"]] == [
        (riders[1].card_no, "accepted"),
        (riders[0].card_no, "duplicate"),
        (riders[2].card_no, "accepted"),
    ]
    with tenant_context(hangzhou):
        stored = Transaction.objects.filter(terminal_seq=first[0]["terminal_seq"]).values_list(
            "card_no", "idx"
        )
        assert sorted(stored) == sorted(
            [(riders[0].card_no, 0), (riders[1].card_no, 0), (riders[2].card_no, 2)]
        )


def test_amount_and_field_errors_are_rejected_with_reasons(client, hz, now):
    hangzhou, sim = hz
    taps = taps_for(sim, cards("330100", 6), now)
    taps[0]["amount_fen"] = -5
    taps[0]["balance_after_fen"] = taps[0]["balance_before_fen"] + 5
    taps[1]["balance_after_fen"] -= 1
    taps[2]["card_no"] = taps[2]["card_no"][:-1] + str((int(taps[2]["card_no"][-1]) + 1) % 10)
    taps[3]["issuer"] = "330400"
    taps[4]["tapped_at"] = "2025-01-01T08:00:00"  # no offset
    ack = json.loads(post(client, sim.sign(sim.payload(taps, created_at=now))).content)["payload"]
    reasons = [(r["outcome"], r.get("reason")) for r in ack["results"]]
    assert reasons == [
        ("rejected", "negative_amount"),
        ("rejected", "balance_mismatch"),
        ("rejected", "bad_card_no"),
        ("rejected", "issuer_mismatch"),
        ("rejected", "bad_tapped_at"),
        ("accepted", None),
    ]
    with tenant_context(hangzhou):
        assert Transaction.objects.count() == 1
        kept = TapException.objects.filter(kind="rejected").order_by("idx")
        assert [e.reason for e in kept] == [r[1] for r in reasons[:5]]
        assert kept[0].raw["amount_fen"] == -5
        # Rejected taps still used their sequence numbers: no gap is flagged for them.
        assert not ReviewFlag.objects.filter(code="terminal_seq_gap").exists()


def test_counter_and_sequence_gaps_are_flagged(client, hz, now):
    hangzhou, sim = hz
    card = cards("330100", 1)[0]
    first = [sim.tap(card, at=now)]
    post(client, sim.sign(sim.payload(first, created_at=now)))
    card.counter += 2  # two taps of this card happened elsewhere and have not arrived
    sim.seq += 3  # three terminal sequence numbers never reached the back office
    second = [sim.tap(card, at=now + dt.timedelta(minutes=1))]
    post(client, sim.sign(sim.payload(second, created_at=now)))
    with tenant_context(hangzhou):
        flags = {f.code: f.detail for f in ReviewFlag.objects.all()}
    assert flags == {"card_counter_gap": {"missing": [2, 3]}, "terminal_seq_gap": {"missing": [2, 4]}}


def test_counter_gaps_follow_the_counters_not_the_terminal_clocks(client, hz, now):
    """The previous counter is the highest one stored below the tap's, whatever the taps' times say: a
    clock set back, a tap a month earlier (another partition), a late tap that fills a gap."""
    hangzhou, sim = hz

    def upload(counter: int, at: dt.datetime) -> None:
        card.counter = counter - 1  # the card's next tap gets ``counter``
        tap = sim.tap(card, at=at)
        assert tap["card_counter"] == counter
        post(client, sim.sign(sim.payload([tap], created_at=now)))

    card = cards("330100", 1)[0]
    upload(1, now - dt.timedelta(days=40))  # last month's partition: found across partitions
    upload(2, now)
    upload(5, now - dt.timedelta(days=60))  # the terminal's clock was set back: 3 and 4 are missing
    upload(3, now + dt.timedelta(minutes=2))  # arrives late: fills, no gap below it
    upload(4, now + dt.timedelta(minutes=3))
    upload(7, now + dt.timedelta(minutes=4))  # 6 missing
    with tenant_context(hangzhou):
        gaps = sorted(
            (Transaction.objects.get(pk=f.transaction_id).card_counter, f.detail["missing"])
            for f in ReviewFlag.objects.filter(code="card_counter_gap")
        )
    assert gaps == [(5, [3, 4]), (7, [6, 6])]


def test_a_tac_the_issuer_key_does_not_give_is_flagged_and_kept(client, hz, now):
    hangzhou, sim = hz
    taps = taps_for(sim, cards("330100", 3), now)
    taps[1]["tac"] = f"{int(taps[1]['tac'], 16) ^ 1:08x}"  # one bit off
    taps[2]["amount_fen"] += 100  # the record claims more than the card signed for
    taps[2]["balance_after_fen"] -= 100
    ack = json.loads(post(client, sim.sign(sim.payload(taps, created_at=now))).content)["payload"]
    assert ack["accepted"] == 3
    with tenant_context(hangzhou):
        flagged = {
            Transaction.objects.get(pk=f.transaction_id).terminal_seq: f.detail
            for f in ReviewFlag.objects.filter(code="tac_invalid")
        }
    assert flagged == {2: {"tac": taps[1]["tac"]}, 3: {"tac": taps[2]["tac"]}}


def test_a_torn_tap_the_terminal_could_not_prove_is_flagged_unproven_with_the_cards_log(client, hz, now):
    hangzhou, sim = hz
    taps = taps_for(sim, cards("330100", 2), now)
    at = dt.datetime.fromisoformat(taps[0]["tapped_at"]).astimezone(dt.timezone(dt.timedelta(hours=8)))
    log = (
        taps[0]["card_counter"].to_bytes(2, "big")
        + bytes(3)
        + taps[0]["amount_fen"].to_bytes(4, "big")
        + b"\x06"
        + bytes.fromhex(taps[0]["terminal_no"])
        + bytes.fromhex(at.strftime("%Y%m%d%H%M%S"))
    )
    taps[0].update(status="torn_unproven", tac=log.hex())  # the card's log record, not a TAC
    taps[1].update(status="torn_undecided", tac="00000000")
    ack = json.loads(post(client, sim.sign(sim.payload(taps, created_at=now))).content)["payload"]
    assert ack["accepted"] == 2
    with tenant_context(hangzhou):
        flags = {f.card_no: (f.code, f.detail) for f in ReviewFlag.objects.all()}
    assert flags == {
        taps[0]["card_no"]: (
            "unproven",
            {
                "status": "torn_unproven",
                "card_log": {
                    "card_counter": taps[0]["card_counter"],
                    "amount_fen": taps[0]["amount_fen"],
                    "type": 6,
                    "terminal_no": taps[0]["terminal_no"],
                    "at": at.strftime("%Y%m%dT%H%M%S"),
                },
            },
        ),
        taps[1]["card_no"]: ("unproven", {"status": "torn_undecided", "card_log": None}),
    }


def test_a_county_terminal_checks_its_citys_cards_with_the_citys_key(client, tenant, register, now):
    tonglu = tenant("tonglu")
    sim = SimTerminal("TL-BUS-1", "tonglu")
    with tenant_context(tonglu):
        register(sim)
    assert sim.tac_masters.keys() == {"330100"}  # Tonglu issues no cards: Hangzhou's key
    taps = taps_for(sim, cards("330100", 2), now)
    taps[0]["tac"] = "00000000"
    ack = json.loads(post(client, sim.sign(sim.payload(taps, created_at=now)), host="tonglu").content)
    assert ack["payload"]["accepted"] == 2
    with tenant_context(tonglu):
        assert list(ReviewFlag.objects.values_list("code", "card_no")) == [
            ("tac_invalid", taps[0]["card_no"])
        ]


def test_clock_skew_is_flagged_not_dropped(client, hz, now):
    hangzhou, sim = hz
    skewed = now + dt.timedelta(hours=2)
    taps = taps_for(sim, cards("330100", 2), skewed)
    ack = json.loads(post(client, sim.sign(sim.payload(taps, created_at=skewed))).content)["payload"]
    assert ack["accepted"] == 2
    with tenant_context(hangzhou):
        flags = list(ReviewFlag.objects.filter(code="clock_skew"))
        assert len(flags) == 2
        assert 7190 <= flags[0].detail["skew_s"] <= 7210
        assert Batch.objects.get().clock_skew_s >= 7190


def test_a_tap_in_a_month_without_partition_gets_one(client, hz, now):
    hangzhou, sim = hz
    old = now - dt.timedelta(days=330)
    name = f"terminals_transaction_y{old.year:04d}m{old.month:02d}"
    with tenant_context(hangzhou), connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [f"hangzhou.{name}"])
        assert cur.fetchone()[0] is None
    post(client, sim.sign(sim.payload(taps_for(sim, cards("330100", 1), old), created_at=now)))
    with tenant_context(hangzhou), connection.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text FROM terminals_transaction")
        assert cur.fetchone()[0].split(".")[-1] == name


def test_a_check_flags_new_taps_once(client, hz, now, monkeypatch):
    """A check is a function over the new taps of a batch; its flags are stored, and a resend runs none."""
    hangzhou, sim = hz
    seen = []

    def fare_recheck(ctx, taps):
        seen.append((ctx.batch_id, len(taps)))
        return [
            Flag(t, "fare_mismatch", {"expected_fen": 180, "charged_fen": t.amount_fen}) for t in taps[:1]
        ]

    monkeypatch.setattr(checks, "BATCH_CHECKS", [*checks.BATCH_CHECKS, fare_recheck])
    taps = taps_for(sim, cards("330100", 3), now)
    payload = sim.payload(taps, created_at=now)
    post(client, sim.sign(payload))
    post(client, sim.sign(payload))  # the resend runs no checks
    assert seen == [(payload["batch_id"], 3)]
    with tenant_context(hangzhou):
        flag = ReviewFlag.objects.get(code="fare_mismatch")
        assert flag.detail == {"expected_fen": 180, "charged_fen": 200}
        assert Transaction.objects.get(pk=flag.transaction_id).terminal_seq == 1


def _upload_queries(hangzhou, sim, n, now):
    start = now - dt.timedelta(hours=1)
    taps = taps_for(sim, cards("330100", n, start=sim.seq + 1), start, step=dt.timedelta(seconds=1))
    body = sim.sign(sim.payload(taps, created_at=now))
    with tenant_context(hangzhou), CaptureQueriesContext(connection) as queries:
        result = batch_ingest(tenant=hangzhou, body=body)
    assert result.accepted == n
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("mode", ["deferred", "inline"])
def test_query_count_does_not_grow_with_the_batch(hz, now, settings, mode):
    settings.TERMINAL_VERIFY = mode
    hangzhou, sim = hz
    # This month's partition is known to a process that created the tenant (after the commit): forgotten,
    # so the count is the same whichever process made the session's tenants.
    forget_known()
    _upload_queries(hangzhou, sim, 2, now)  # warms the route cache
    small = _upload_queries(hangzhou, sim, 5, now)
    large = _upload_queries(hangzhou, sim, 400, now)
    # 7 for the upload itself: SET search_path (tenant_context), the lookup (terminal key, a stored batch of
    # that id, the tenant's signing key, the issuer's card TAC key, the new batch's id), SAVEPOINT, the
    # partition listing (never cached here: the test never commits), the natural keys (which also give
    # the new taps their ids), the last writes in one round trip (the batch row with its acknowledgement,
    # flags, exceptions, high-water mark), RELEASE; the COPY of the rows is not a query Django sees.
    # Inline, the stored-data checks add theirs (per batch, never per tap): +1 card_counter_gap_check's
    # probe, +1 fare_recheck's rule documents in force (none published here), +1 hotlist_check,
    # +2 purse_shadow_follow.
    # Was 18 before the key reads were folded into the lookup and the checks moved to the verification stage.
    expected = {"deferred": 7, "inline": 12}[mode]
    assert len(small) == len(large) == expected, [q[:60] for q in large]
