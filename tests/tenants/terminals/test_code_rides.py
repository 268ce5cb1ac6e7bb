"""A ride paid by the citizen code (电子市民码, fare medium 04) at ingestion: the upload carries the code the
terminal scanned (stored as sent, by the common form and the general path alike; anything but a code's
characters refused), the verification stage checks it in a fixed number of queries whatever the number of
rides, and the chip checks leave it alone: no card-counter gap, before or after it, and no chip tap's gap
filled by it."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import tenant_context

from citycard.platform.keys import tenant_public_keys
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import CodeNonce, ReviewFlag, TapException, Transaction
from citycard.tenants.terminals.services import CODE_NONCE_KEEP, code_nonces_purge
from citycard.tenants.terminals.simulate import SimCard, SimTerminal
from citycard.terminal_kit.ecode import CodeIssuer, EcodeVerifier
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.tap import Validator
from tests.terminal_kit import kit

from .test_card_checks import hz  # noqa: F401

pytestmark = pytest.mark.django_db


def _ride(sim: SimTerminal, card_no: str, at: dt.datetime, **extra) -> dict:
    tap = sim.tap(SimCard(card_no, balance_fen=0), at=at, amount_fen=200)
    code = citizen_code_issue(card_no=card_no, at=at - dt.timedelta(seconds=3))
    return {**tap, "card_scheme": "04", "card_counter": 0, "code": code, **extra}


def _upload(hangzhou, sim, taps, at, *, compact: bool = True):
    body = sim.sign(sim.payload(taps, created_at=at))
    if not compact:  # whitespace: the general path reads it
        body = json.dumps(json.loads(body), indent=1).encode()
    return batch_ingest(tenant=hangzhou, body=body)


def test_the_code_is_stored_as_sent_by_both_paths_and_refused_when_it_is_no_code(hz, now):  # noqa: F811
    hangzhou, sim, issued = hz
    with tenant_context(hangzhou):
        start = now - dt.timedelta(minutes=20)
        compact = _ride(sim, issued[0], start)
        general = _ride(sim, issued[1], start + dt.timedelta(seconds=1))
        assert _upload(hangzhou, sim, [compact], start + dt.timedelta(minutes=1)).accepted == 1
        assert _upload(hangzhou, sim, [general], start + dt.timedelta(minutes=1), compact=False).accepted == 1
        stored = dict(Transaction.objects.values_list("card_no", "code"))
        assert stored == {issued[0]: compact["code"], issued[1]: general["code"]}
        assert not ReviewFlag.objects.filter(code__startswith="code_").exists()
        bad = [
            _ride(sim, issued[2], start + dt.timedelta(seconds=2), code="CC1.a b.c.d"),
            _ride(sim, issued[2], start + dt.timedelta(seconds=3), code="x" * 1025),
            _ride(sim, issued[2], start + dt.timedelta(seconds=4), code=7),
        ]
        result = _upload(hangzhou, sim, bad, start + dt.timedelta(minutes=1))
        assert result.accepted == 0 and result.rejected == 3
        assert set(TapException.objects.values_list("reason", flat=True)) == {"bad_field"}


def test_the_code_check_costs_the_same_queries_for_two_rides_or_twenty(hz, now):  # noqa: F811
    hangzhou, sim, issued = hz
    with tenant_context(hangzhou):
        start = now - dt.timedelta(minutes=40)
        counts = []
        for n, offset in ((2, 0), (20, 100)):
            # warm: the first batch pays for the caches (keys, routes, terminal)
            taps = [_ride(sim, issued[i % 3], start + dt.timedelta(seconds=offset + i)) for i in range(n)]
            _upload(hangzhou, sim, taps[:1], start + dt.timedelta(minutes=5))
            with CaptureQueriesContext(connection) as queries:
                assert _upload(hangzhou, sim, taps[1:], start + dt.timedelta(minutes=5)).accepted == n - 1
            counts.append(len(queries.captured_queries))
        assert counts[0] == counts[1], counts
        assert not ReviewFlag.objects.filter(code__startswith="code_").exists()


def test_code_rides_leave_the_chip_counters_alone(hz, now):  # noqa: F811
    hangzhou, sim, issued = hz
    card = issued[0]
    with tenant_context(hangzhou):
        start = now - dt.timedelta(minutes=30)
        chip = SimCard(card, balance_fen=5000)
        first = sim.tap(chip, at=start)
        taps = [
            first,
            # a code ride with a made-up counter far above the chip's: no gap before nor after it
            _ride(sim, card, start + dt.timedelta(minutes=1), card_counter=first["card_counter"] + 50),
            sim.tap(chip, at=start + dt.timedelta(minutes=2)),
        ]
        assert _upload(hangzhou, sim, taps, start + dt.timedelta(minutes=3)).accepted == 3
        assert not ReviewFlag.objects.filter(code="card_counter_gap").exists()
        # a chip tap that skips a counter is still a gap, even with a code ride between
        chip.counter += 1  # a lost chip tap
        later = [
            _ride(sim, card, start + dt.timedelta(minutes=4)),
            sim.tap(chip, at=start + dt.timedelta(minutes=5)),
        ]
        assert _upload(hangzhou, sim, later, start + dt.timedelta(minutes=6)).accepted == 2
        gaps = list(ReviewFlag.objects.filter(code="card_counter_gap").values_list("detail", flat=True))
        assert gaps == [{"missing": [taps[2]["card_counter"] + 1, taps[2]["card_counter"] + 1]}]


def test_spent_codes_are_forgotten_once_no_replay_could_be_accepted(hz, now):  # noqa: F811
    hangzhou, sim, issued = hz
    with tenant_context(hangzhou):
        start = now - dt.timedelta(minutes=10)
        assert _upload(
            hangzhou, sim, [_ride(sim, issued[0], start)], start + dt.timedelta(minutes=1)
        ).accepted
        assert CodeNonce.objects.count() == 1
        assert code_nonces_purge() == 0
        # a replay must be uploaded within TAPPED_AT_MAX_AGE of its ride: past that, the code is forgotten
        assert code_nonces_purge(now=timezone.now() + CODE_NONCE_KEEP - dt.timedelta(days=1)) == 0
        assert code_nonces_purge(now=timezone.now() + CODE_NONCE_KEEP + dt.timedelta(minutes=1)) == 1
        assert not CodeNonce.objects.exists()


def test_the_terminal_kits_code_rides_go_up_as_the_back_office_expects(hz, now, tmp_path, register):  # noqa: F811
    """The validator's own code scanner (terminal_kit ``Validator.ride_code``), not a simulator: its queued
    rides, signed into a batch by the kit's store, are accepted by both upload paths and verified without a
    flag; the same code taken by a second validator (its own nonce memory) is caught here as replayed."""
    hangzhou, sim, issued = hz
    with tenant_context(hangzhou):
        issuers = [CodeIssuer("hangzhou", frozenset({"330100"}), tenant_public_keys(tenant=hangzhou))]
        other_bus = SimTerminal("HZ-BUS-0101", "hangzhou", route="7")
        register(other_bus)
        start = now - dt.timedelta(minutes=15)
        codes = [citizen_code_issue(card_no=card, at=start) for card in issued[:2]]

        def validator(folder: str) -> Validator:
            v = kit.validator(InProcessReader(), tmp_path / folder, fare=200)
            v.codes = EcodeVerifier(issuers=issuers, store=v.store)
            v.clock = lambda: start + dt.timedelta(seconds=5)
            return v

        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first, second = validator("a"), validator("b")
        rides = [first.ride_code(c) for c in codes]
        assert [r.outcome for r in rides] == ["approved", "approved"]
        replay = second.ride_code(codes[0])  # another bus: its queue never saw the code
        assert replay.outcome == "approved"

        def upload(v: Validator, bus: SimTerminal):
            document = v.store.batch_open(
                terminal_id=bus.terminal_id,
                tenant="hangzhou",
                key=bus.private_key,
                key_id=bus.key_id,
                rule_version=1,
                hotlist_version=1,
                now=now,
            )
            return batch_ingest(tenant=hangzhou, body=json.dumps(document, ensure_ascii=False).encode())

        done = upload(first, sim)
        assert done.accepted == 2, list(TapException.objects.values_list("reason", "message"))
        stored = dict(Transaction.objects.values_list("card_no", "code"))
        assert stored == {issued[0]: codes[0], issued[1]: codes[1]}
        assert set(Transaction.objects.values_list("card_scheme", flat=True)) == {"04"}
        assert list(ReviewFlag.objects.values_list("code", "detail")) == []
        assert upload(second, other_bus).accepted == 1
        assert list(ReviewFlag.objects.values_list("card_no", "code")) == [(issued[0], "code_replayed")]
