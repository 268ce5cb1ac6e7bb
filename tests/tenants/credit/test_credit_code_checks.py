"""The back office checks a citizen-code ride's code again before its fare is booked (电子市民码, fare medium
04): the issuer's signature with the keys it published, the code's card is the ride's card, the ride within
the code's validity, and the code spent once across every terminal. A ride failing a check is flagged for a
clerk (in Chinese) and never charged; a code ride has no chip counter, so it trips no chip check; the
booking reads the code rides through their partial index, from a cursor, on a beat schedule."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from citycard.platform.reasons import reason_text
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.credit import services as credit
from citycard.tenants.credit import tasks as credit_tasks
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import CodeNonce, ReviewFlag, Transaction
from citycard.tenants.terminals.partitions import partitions_ahead
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal
from citycard.tenants.terminals.verify import batches_verify_all
from citycard.terminal_kit.beijing import BEIJING
from tests.tenants.credit.test_credit import assert_balanced
from tests.tenants.credit.test_credit_fares import _bus, _code_ride

pytestmark = pytest.mark.django_db

LATER = dt.timedelta(hours=1)  # past the cursor's lag


def _upload(sim, taps, at):
    return batch_ingest(tenant=connection.tenant, body=sim.sign(sim.payload(taps, created_at=at)))


def _flags() -> dict[int, str]:
    return dict(ReviewFlag.objects.filter(code__startswith="code_").values_list("transaction_id", "code"))


def _tx(card_no: str) -> list[int]:
    return list(Transaction.objects.filter(card_no=card_no).order_by("id").values_list("id", flat=True))


def _forged(code: str) -> str:
    prefix, payload, signature, key_id = code.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 1
    return ".".join([prefix, payload, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode(), key_id])


def test_rides_whose_code_does_not_prove_them_are_flagged_and_not_charged(city, rules, insured_card):
    cards = {name: insured_card() for name in ("good", "forged", "other", "expired", "missing", "future")}
    for i, card in enumerate(cards.values()):
        accounts.account_topup(card_no=card, amount_fen=1000, idempotency_key=f"chk-top-{i}", actor="t")
    sim = _bus(city)
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=30)
    taps = [
        _code_ride(sim, cards["good"], at=now, amount_fen=200),
        _code_ride(
            sim,
            cards["forged"],
            at=now,
            amount_fen=200,
            code=_forged(citizen_code_issue(card_no=cards["forged"], at=now)),
        ),
        # a valid code, but another cardholder's: the code's card is not the ride's
        _code_ride(
            sim,
            cards["other"],
            at=now,
            amount_fen=200,
            code=citizen_code_issue(card_no=cards["good"], at=now),
        ),
        # shown ten minutes before the ride: a code lives a minute
        _code_ride(
            sim,
            cards["expired"],
            at=now,
            amount_fen=200,
            code=citizen_code_issue(card_no=cards["expired"], at=now - dt.timedelta(minutes=10)),
        ),
        _code_ride(
            sim,
            cards["future"],
            at=now,
            amount_fen=200,
            code=citizen_code_issue(card_no=cards["future"], at=now + dt.timedelta(minutes=10)),
        ),
        {**_code_ride(sim, cards["missing"], at=now, amount_fen=200), "code": None},
    ]
    assert _upload(sim, taps, now + dt.timedelta(minutes=1)).accepted == 6
    flags = _flags()
    assert {card: flags.get(_tx(card)[0]) for card in cards.values()} == {
        cards["good"]: None,
        cards["forged"]: "code_invalid",
        cards["other"]: "code_other_card",
        cards["expired"]: "code_expired",
        cards["future"]: "code_expired",
        cards["missing"]: "code_missing",
    }
    forged = ReviewFlag.objects.get(code="code_invalid")
    assert forged.detail["refusal"] == "bad_signature"
    # what a clerk reads, in Chinese first
    assert reason_text("code_invalid").endswith("(code_invalid)")
    assert reason_text("code_invalid") != "code_invalid"

    counts = credit.online_fares_book(actor="t", now=timezone.now() + LATER)
    assert (counts["charged"], counts["held"]) == (1, 5)
    balances = dict(
        LedgerAccount.objects.filter(card_no__in=cards.values()).values_list("card_no", "balance_fen")
    )
    assert balances == {c: (800 if c == cards["good"] else 1000) for c in cards.values()}
    # held for good: the next runs do not charge them either
    assert credit.online_fares_book(actor="t", now=timezone.now() + LATER)["charged"] == 0
    assert credit.online_fares_book(actor="t", since=now - dt.timedelta(days=1))["charged"] == 0
    assert_balanced()


def test_a_code_replayed_on_two_terminals_is_charged_once_and_flagged(city, rules, insured_card):
    card = insured_card()
    accounts.account_topup(card_no=card, amount_fen=1000, idempotency_key="replay-top", actor="t")
    first = _bus(city)
    second = SimTerminal("JX-BUS-QR2", city.code, service="bus", route="K2")
    terminal_register(
        terminal_id=second.terminal_id,
        operator="嘉兴公交",
        department="transport",
        service=second.service,
        route=second.route,
        public_key=second.public_key,
        actor="t",
    )
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=30)
    code = citizen_code_issue(card_no=card, at=now)
    # the same code twice in one batch, and again on another bus 20 seconds later (a screenshot passed on)
    _upload(
        first,
        [
            _code_ride(first, card, at=now + dt.timedelta(seconds=5), amount_fen=200, code=code),
            _code_ride(first, card, at=now + dt.timedelta(seconds=6), amount_fen=200, code=code),
        ],
        now + dt.timedelta(minutes=1),
    )
    _upload(
        second,
        [_code_ride(second, card, at=now + dt.timedelta(seconds=20), amount_fen=200, code=code)],
        now + dt.timedelta(minutes=1),
    )
    ids = _tx(card)
    flags = _flags()
    assert [flags.get(i) for i in ids] == [None, "code_replayed", "code_replayed"]
    assert {f.detail["first"] for f in ReviewFlag.objects.filter(code="code_replayed")} == {f"tap:{ids[0]}"}
    assert CodeNonce.objects.get().claimed_by == f"tap:{ids[0]}"
    counts = credit.online_fares_book(actor="t", now=timezone.now() + LATER)
    assert (counts["charged"], counts["held"]) == (1, 2)
    assert LedgerAccount.objects.get(card_no=card).balance_fen == 800
    assert_balanced()


def test_code_rides_trip_no_chip_check_and_wait_for_verification(city, rules, insured_card, settings):
    """No chip counter: a code ride (counter 0) is no gap and leaves no gap for the card's chip taps; in
    deferred verification its fare waits until its batch is verified."""
    settings.TERMINAL_VERIFY = "deferred"
    card = insured_card()
    accounts.account_topup(card_no=card, amount_fen=1000, idempotency_key="chip-top", actor="t")
    sim = _bus(city)
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=30)
    chip = SimCard(card, balance_fen=5000)
    taps = [
        sim.tap(chip, at=now, amount_fen=200),
        _code_ride(sim, card, at=now + dt.timedelta(minutes=1), amount_fen=200),
        sim.tap(chip, at=now + dt.timedelta(minutes=2), amount_fen=200),
        _code_ride(sim, card, at=now + dt.timedelta(minutes=3), amount_fen=200),
    ]
    assert taps[0]["card_counter"] + 1 == taps[2]["card_counter"]
    assert _upload(sim, taps, now + dt.timedelta(minutes=4)).accepted == 4
    later = timezone.now() + LATER
    counts = credit.online_fares_book(actor="t", now=later)
    assert (counts["charged"], counts["waiting"]) == (0, 2)
    batches_verify_all(tenant=city)
    assert not ReviewFlag.objects.filter(code__in=["card_counter_gap", "code_replayed"]).exists()
    assert not ReviewFlag.objects.filter(code__startswith="code_").exists()
    counts = credit.online_fares_book(actor="t", now=later)
    assert (counts["charged"], counts["waiting"]) == (2, 0)
    assert LedgerAccount.objects.get(card_no=card).balance_fen == 600


def test_the_booking_reads_code_rides_through_their_index_on_a_beat_schedule(city, rules):
    assert (
        settings.CELERY_BEAT_SCHEDULE["credit-online-fares-book"]["task"]
        == credit_tasks.online_fares_book_all.name
    )
    query = credit._ONLINE_FARES_SQL.format(window=credit._CURSOR_WINDOW)
    partitions_ahead()  # a new tenant has no month partition until taps or the beat task make them
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute(
            "EXPLAIN " + query,
            {
                "key": "fare-online:tap:",
                "flags": ["code_invalid"],
                "own": "own",
                "merchant": "merchant",
                "through": 0,
                "pending": [],
                "since": None,
            },
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
        # each month partition's copy of the partial index (named by PostgreSQL after the partition)
        cur.execute(
            "SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid"
            " WHERE h.inhparent = to_regclass('transaction_code_rides')"
        )
        copies = {row[0] for row in cur.fetchall()}
    assert copies and any(f"using {name} " in plan for name in copies), plan
    assert "card_scheme" not in plan  # the index's predicate: no tap of another medium is read
    # the beat task runs the booking in every tenant
    assert isinstance(credit_tasks.online_fares_book_all(), dict)
