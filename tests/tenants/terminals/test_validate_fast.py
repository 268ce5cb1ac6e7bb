"""The per-tap validation of the upload path (``validate.tap_validate``, unrolled) gives exactly the
outcome of the tap spec read plainly (``spec.tap_read``, a loop over ``TAP_SPEC``).

Hypothesis feeds both the same taps, valid and broken in every field, and compares the tap or the
(reason, message); the window's edges are compared exhaustively.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.tenants.terminals.ingest.spec import (
    TAP_FIELDS,
    TAPPED_AT_MAX_AGE,
    TAPPED_AT_MAX_AHEAD,
    Reject,
    tap_read,
    tap_window,
)
from citycard.tenants.terminals.ingest.validate import tap_validate
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number

# --- the comparison --------------------------------------------------------------------------------

RECEIVED = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
_SIM = SimTerminal("HZ-T-1", "hangzhou", route="315", terminal_no="330100000001", tac_masters={})
_GOOD = _SIM.tap(SimCard(card_number("330100", 17)), at=RECEIVED - dt.timedelta(hours=1))

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 4, -1, 2**63 - 1, 2**63]),
    st.text(max_size=70),
    st.sampled_from(
        [
            "",
            "complete",
            "torn_resolved",
            "torn" + "x" * 40,
            "purchase",
            "2025-03-01T07:00:00+08:00",
            "2025-03-01T07:00:00",
            "2019-03-01T07:00:00+08:00",
            "2027-03-01T07:00:00Z",
            "2025-03-01T08:10:00+00:00",
            # the window's edges (400 days back, 31 ahead), in Beijing form and in others
            "2024-01-26T07:59:59+08:00",
            "2024-01-26T08:00:00+08:00",
            "2024-01-26T00:00:00+00:00",
            "2024-01-25T23:59:59+00:00",
            "2025-04-01T08:00:00+08:00",
            "2025-04-01T08:00:01+08:00",
            "2025-04-01T00:00:00.000001+00:00",
            "2025-04-01T08:00:00.5+08:00",
            "abcdef012345",
            "ABCDEF012345",
            "a1b2c3d4",
            "a1b2c3d",
            "zz" * 4,
            "3301000000000000017",
            "330100",
            "x" * 21,
            "x" * 41,
            "x" * 61,
            "AB" * 128,
            "ab" * 129,
        ]
    ),
    st.lists(st.one_of(st.text(max_size=32), st.integers()), max_size=3),
    st.lists(st.sampled_from(["elderly", "monthly", "a-b_c", "", "x" * 31, "中文", "a b"]), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_FIELDS = sorted({*_GOOD, *TAP_FIELDS})  # card_trip too, which the simulator does not send
broken_tap = st.dictionaries(st.sampled_from(_FIELDS), odd_values, max_size=4).flatmap(
    lambda changes: st.sets(st.sampled_from(sorted(_GOOD)), max_size=2).map(
        lambda removed: {k: v for k, v in {**_GOOD, **changes}.items() if k not in removed}
    )
)


def _outcome(fn, *args):
    try:
        tap = fn(*args)
    except Reject as exc:
        return ("rejected", exc.reason, exc.message)
    return ("tap", tap)


@settings(max_examples=600, deadline=None)
@given(tap=st.one_of(broken_tap, odd_values))
def test_the_unrolled_check_gives_the_spec_answer(tap):
    expected = _outcome(tap_read, tap, tap_window(RECEIVED))
    got = _outcome(tap_validate, tap, tap_window(RECEIVED))
    if got[0] == "tap":
        # The tap also carries tapped_at as text for the COPY: ISO 8601 naming the same instant (the form
        # sent when it is already YYYY-MM-DDTHH:MM:SS±HH:MM, else isoformat()).
        text = got[1].tapped_at_text
        assert dt.datetime.fromisoformat(text) == got[1].tapped_at
        assert len(text) >= 25 and text[10] == "T" and text[19] in "+-." and text[-6] in "+-"
    assert got == expected


def test_a_good_tap_passes_both():
    assert _outcome(tap_validate, _GOOD, tap_window(RECEIVED))[0] == "tap"
    assert _outcome(tap_read, _GOOD, tap_window(RECEIVED)) == _outcome(
        tap_validate, _GOOD, tap_window(RECEIVED)
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"card_no": "3301000000000000018"}, "bad_card_no"),
        ({"issuer": "330101"}, "issuer_mismatch"),
        ({"card_counter": -1}, "bad_field"),
        ({"amount_fen": -1}, "negative_amount"),
        ({"amount_fen": 2**63}, "bad_field"),
        ({"balance_after_fen": 0}, "balance_mismatch"),
        ({"tapped_at": "2019-03-01T07:00:00+08:00"}, "tapped_at_out_of_range"),
        ({"tapped_at": "2025-03-01T07:00:00"}, "bad_tapped_at"),
        ({"tac": "a1b2c3d"}, "bad_tac"),
        ({"terminal_no": "33010000000z"}, "bad_field"),
        ({"algorithm": 1}, "bad_field"),
        ({"kind": "refund"}, "unsupported_kind"),
        ({"status": "failed"}, "bad_status"),
        ({"categories": ["a b"]}, "bad_field"),
        ({"service": ""}, "bad_field"),
        ({"card_trip": "abc"}, "bad_field"),
    ],
)
def test_each_rule_of_the_spec_rejects_in_both(change, reason):
    """One fault per field of TAP_SPEC: both checks reject it for the spec's reason, with one message."""
    tap = {**_GOOD, **change}
    expected = _outcome(tap_read, tap, tap_window(RECEIVED))
    assert expected[:2] == ("rejected", reason)
    assert _outcome(tap_validate, tap, tap_window(RECEIVED)) == expected


_EDGES = [RECEIVED - TAPPED_AT_MAX_AGE + dt.timedelta(seconds=delta) for delta in (-1, -0.5, 0, 0.25, 1)] + [
    RECEIVED + TAPPED_AT_MAX_AHEAD + dt.timedelta(seconds=delta) for delta in (-1, 0, 0.5, 1)
]


@pytest.mark.parametrize("moment", _EDGES)
@pytest.mark.parametrize("offset_h", [8, 0, -5])
@pytest.mark.parametrize("received_us", [0, 1, 999_999])
@pytest.mark.parametrize("whole", [True, False])
def test_the_window_edges_give_the_reference_answer(moment, offset_h, received_us, whole):
    """Stamps at the edges of the plausible window, in Beijing form (compared as text) and in other
    offsets or with fractions (compared as instants), received at a whole second or not."""
    received = RECEIVED + dt.timedelta(microseconds=received_us)
    moment = moment + dt.timedelta(microseconds=received_us)
    if whole:
        moment = moment.replace(microsecond=0)
    stamp = moment.astimezone(dt.timezone(dt.timedelta(hours=offset_h))).isoformat()
    tap = {**_GOOD, "tapped_at": stamp}
    expected = _outcome(tap_read, tap, tap_window(received))
    got = _outcome(tap_validate, tap, tap_window(received))
    assert got == expected
