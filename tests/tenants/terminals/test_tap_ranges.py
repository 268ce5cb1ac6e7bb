"""One bad tap never costs its batch or its terminal: every number of a tap is checked against its column
(bigint) before anything uses it, and a rejected tap changes nothing of the terminal's: not its
high-water mark, not its gap detection. Its batch is answered, and answered the same when sent again."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.terminals.models import ReviewFlag, TapException, Terminal, Transaction

from .conftest import cards, taps_for
from .test_upload import hz, post  # noqa: F401  (hz is a fixture)

pytestmark = pytest.mark.django_db

BIGINT_MAX = 2**63 - 1
EDGES = [2**62, BIGINT_MAX, 2**63, 2**64, -1]


def _ack(response) -> dict:
    assert response.status_code == 200, response.content
    return json.loads(response.content)["payload"]


def _flags(hangzhou, code: str) -> list[tuple[int, dict]]:
    with tenant_context(hangzhou):
        return sorted(
            (Transaction.objects.get(pk=f.transaction_id).terminal_seq, f.detail)
            for f in ReviewFlag.objects.filter(code=code)
        )


@pytest.mark.parametrize("value", EDGES, ids=["2^62", "2^63-1", "2^63", "2^64", "-1"])
@pytest.mark.parametrize("field", ["terminal_seq", "card_counter", "amount_fen"])
def test_an_edge_value_costs_at_most_its_own_tap(client, hz, now, field, value):  # noqa: F811
    hangzhou, sim = hz
    taps = taps_for(sim, cards("330100", 3), now)  # sequence numbers 1, 2, 3
    odd = dict(taps[1], **{field: value})
    if field == "amount_fen":  # the balances still add up: only the amount's range is in question
        odd["balance_before_fen"], odd["balance_after_fen"] = max(value, 0), max(value, 0) - value
    taps[1] = odd
    body = sim.sign(sim.payload(taps, created_at=now))
    first = post(client, body)
    ack = _ack(first)
    in_range = 0 <= value <= BIGINT_MAX
    reason = "negative_amount" if field == "amount_fen" and value < 0 else "bad_field"
    assert [(r["outcome"], r.get("reason")) for r in ack["results"]] == [
        ("accepted", None),
        ("accepted", None) if in_range else ("rejected", reason),
        ("accepted", None),
    ]
    assert post(client, body).content == first.content  # a resend: the same bytes, nothing else
    with tenant_context(hangzhou):
        stored = Transaction.objects.filter(idx=1).first()
        assert (getattr(stored, field) if stored else None) == (value if in_range else None)
        mark = Terminal.objects.get(terminal_id=sim.terminal_id).last_seq
        assert mark == (value if in_range and field == "terminal_seq" else 3)
        if not in_range:
            (exception,) = TapException.objects.filter(kind="rejected")
            assert (exception.idx, exception.reason, exception.raw[field]) == (1, reason, value)
            assert str(value) in exception.message
    if in_range and field == "amount_fen":  # no card signs an amount beyond 4 bytes: flagged, not failed
        assert [seq for seq, _ in _flags(hangzhou, "tac_invalid")] == [2]
    # A rejected tap's sequence number is not taken: no accepted tap fills it, so it is missing.
    gaps = [] if in_range and field != "terminal_seq" else [(3, {"missing": [2, 2]})]
    if in_range and field == "terminal_seq":
        gaps.append((value, {"missing": [4, value - 1]}))
    assert _flags(hangzhou, "terminal_seq_gap") == gaps


@pytest.mark.parametrize(
    ("after", "outcome"),
    [(-BIGINT_MAX, "accepted"), (-(2**63), "rejected"), (-(2**64), "rejected")],
    ids=["-(2^63-1)", "-2^63", "-2^64"],
)
def test_a_balance_at_the_bottom_of_its_range(client, hz, now, after, outcome):  # noqa: F811
    _, sim = hz
    (tap,) = taps_for(sim, cards("330100", 1), now)
    tap["balance_after_fen"], tap["balance_before_fen"] = after, after + tap["amount_fen"]
    ack = _ack(post(client, sim.sign(sim.payload([tap], created_at=now))))
    assert [(r["outcome"], r.get("reason")) for r in ack["results"]] == [
        (outcome, None if outcome == "accepted" else "bad_field")
    ]


def test_a_rejected_tap_with_a_wild_sequence_number_leaves_the_high_water_mark_and_gap_detection(
    client,
    hz,  # noqa: F811
    now,
):
    """Before, a rejected tap carrying 2**62 raised the mark to it: every later tap of the terminal was a
    'late tap below the mark', and no gap was ever flagged again; 2**63 failed the batch on every resend."""
    hangzhou, sim = hz
    riders = cards("330100", 6)
    _ack(post(client, sim.sign(sim.payload(taps_for(sim, riders[:2], now), created_at=now))))  # 1, 2
    for wild in (2**62, 2**63, 2**64):
        bad = dict(taps_for(sim, riders[2:3], now)[0], terminal_seq=wild, balance_after_fen=0)
        sim.seq -= 1
        body = sim.sign(sim.payload([bad], created_at=now))
        first = post(client, body)
        assert [r["reason"] for r in _ack(first)["results"]] == [
            "bad_field" if wild >= 2**63 else "balance_mismatch"
        ]
        assert post(client, body).content == first.content
    with tenant_context(hangzhou):
        assert Terminal.objects.get(terminal_id=sim.terminal_id).last_seq == 2
    sim.seq += 2  # 3 and 4 never arrive
    _ack(post(client, sim.sign(sim.payload(taps_for(sim, riders[3:5], now), created_at=now))))  # 5, 6
    with tenant_context(hangzhou):
        assert Terminal.objects.get(terminal_id=sim.terminal_id).last_seq == 6
    assert _flags(hangzhou, "terminal_seq_gap") == [(5, {"missing": [3, 4]})]


def test_integers_beyond_64_bits_reject_their_tap_not_the_batch(client, hz, now):  # noqa: F811
    """orjson reads 2**64 and beyond as a float: that is no reason to call the body's number a fraction."""
    _, sim = hz
    taps = taps_for(sim, cards("330100", 2), now)
    taps[0]["card_counter"] = 10**30
    ack = _ack(post(client, sim.sign(sim.payload(taps, created_at=now))))
    assert [(r["outcome"], r.get("reason"), r["card_counter"]) for r in ack["results"]] == [
        ("rejected", "bad_field", 10**30),
        ("accepted", None, 1),
    ]


@pytest.mark.parametrize("offset", ["+05:30:15", "+05:30:15.123456", "+23:59", "-23:59:59.999999", "-12:00"])
def test_a_tap_stamped_with_any_offset_python_reads_is_stored_at_its_instant(client, hz, now, offset):  # noqa: F811
    """Python reads offsets PostgreSQL does not (seconds, fractions, beyond 15:59): the COPY failed the batch."""
    hangzhou, sim = hz
    (tap,) = taps_for(sim, cards("330100", 1), now)
    local = now.replace(tzinfo=None) - dt.timedelta(hours=1)
    tap["tapped_at"] = local.isoformat() + offset
    assert [
        r["outcome"] for r in _ack(post(client, sim.sign(sim.payload([tap], created_at=now))))["results"]
    ] == ["accepted"]
    with tenant_context(hangzhou):
        assert Transaction.objects.get().tapped_at == dt.datetime.fromisoformat(tap["tapped_at"])


@pytest.mark.parametrize(
    ("created_at", "status"),
    [
        ("+05:30:15.5", 200),
        ("+23:59", 200),
        ("9999-12-31T23:59:59-14:00", 400),
        ("0001-01-01T00:00:00+14:00", 400),
    ],
)
def test_a_batch_stamped_with_any_offset_python_reads_is_taken_or_refused_never_failed(
    client,
    hz,  # noqa: F811
    now,
    created_at,
    status,
):
    _, sim = hz
    payload = sim.payload(taps_for(sim, cards("330100", 1), now), created_at=now)
    if created_at.startswith("+"):
        created_at = now.replace(tzinfo=None).isoformat() + created_at
    payload["created_at"] = created_at
    response = post(client, sim.sign(payload))
    assert response.status_code == status, response.content
    if status == 400:
        assert response.json()["error"] == {
            "code": "malformed",
            "message": f"created_at {created_at} is out of range",
        }
