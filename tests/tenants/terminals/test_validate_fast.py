"""The per-tap validation of the upload path gives exactly the outcome of its first, plainer version.

The reference below is that version, kept verbatim (it called a helper per field); hypothesis feeds both
the same taps, valid and broken in every field, and compares the tap or the (reason, message).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.tenants.terminals.checks import Tap
from citycard.tenants.terminals.ingest import (
    TAP_STATUSES_PREFIX,
    TAPPED_AT_MAX_AGE,
    TAPPED_AT_MAX_AHEAD,
    _Reject,
    _validate,
    tap_window,
)
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number

# --- the reference (the first version of ingest._validate) -----------------------------------------


def _parse_time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO 8601 string with an offset")
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no UTC offset")
    return moment


_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(number: str) -> bool:
    digits = [ord(c) - 48 for c in number]
    return (sum(digits[-1::-2]) + sum(_LUHN_DOUBLE[d] for d in digits[-2::-2])) % 10 == 0


_HEX = frozenset("0123456789abcdefABCDEF")
_ALGORITHMS = frozenset((0, 4))


def _is_hex(text: str) -> bool:
    return _HEX.issuperset(text)


def _codes(tap: dict, name: str) -> list[str]:
    codes = tap.get(name) or []
    if not isinstance(codes, list) or not all(
        isinstance(c, str) and 0 < len(c) <= 30 and c.replace("_", "").replace("-", "").isalnum()
        for c in codes
    ):
        raise _Reject("bad_field", f"{name} must be a list of short codes")
    return codes


_INT_MAX = 2**63 - 1
_TEXT_LIMITS = {"service": 20, "route": 40, "card_scheme": 40, "fare_rule_id": 60}


def _int(tap: dict, name: str, *, minimum: int = 0) -> int:
    value = tap.get(name)
    if type(value) is not int:
        raise _Reject("bad_field", f"{name} must be an integer")
    if value < minimum or value > _INT_MAX:
        # (since: an amount above the range is a bad field, not a negative amount; the message names the range)
        reason = "negative_amount" if name == "amount_fen" and value < 0 else "bad_field"
        raise _Reject(reason, f"{name} {value} is out of range ({minimum} to {_INT_MAX})")
    return value


def _text(tap: dict, name: str, *, required: bool = True) -> str:
    value = tap.get(name, "" if not required else None)
    if value is None and not required:
        return ""
    if type(value) is int and name == "fare_rule_id":
        value = str(value)
    if not isinstance(value, str) or (required and not value and name != "route"):
        raise _Reject("bad_field", f"{name} must be a non-empty string")
    if len(value) > _TEXT_LIMITS.get(name, 64):
        raise _Reject("bad_field", f"{name} is longer than {_TEXT_LIMITS.get(name, 64)} characters")
    return value


def _validate_reference(tap: Any, received_at: dt.datetime) -> Tap:
    """One tap of the payload, checked completely, or _Reject naming what is wrong."""
    if not isinstance(tap, dict):
        raise _Reject("malformed", "a transaction must be a JSON object")
    card_no = tap.get("card_no")
    if not isinstance(card_no, str) or not (12 <= len(card_no) <= 19) or not card_no.isascii():
        raise _Reject("bad_card_no", "card_no must be 12 to 19 digits")
    if not card_no.isdigit() or not luhn_valid(card_no):
        raise _Reject("bad_card_no", f"card_no {card_no} fails its Luhn check digit")
    issuer = tap.get("issuer")
    if issuer != card_no[:6]:
        raise _Reject("issuer_mismatch", f"issuer {issuer!r} is not the card number's prefix {card_no[:6]}")
    counter = _int(tap, "card_counter")
    seq = _int(tap, "terminal_seq")
    amount = _int(tap, "amount_fen")
    before = _int(tap, "balance_before_fen", minimum=-_INT_MAX)
    after = _int(tap, "balance_after_fen", minimum=-_INT_MAX)
    if before - amount != after:
        raise _Reject(
            "balance_mismatch",
            f"balance_before_fen {before} − amount_fen {amount} ≠ balance_after_fen {after}",
        )
    try:
        tapped_at = _parse_time(tap.get("tapped_at"), "tapped_at")
    except ValueError as exc:
        raise _Reject("bad_tapped_at", str(exc)) from None
    if tapped_at < received_at - TAPPED_AT_MAX_AGE or tapped_at > received_at + TAPPED_AT_MAX_AHEAD:
        raise _Reject("tapped_at_out_of_range", f"tapped_at {tapped_at.isoformat()} is implausible")
    tac = tap.get("tac")
    if not isinstance(tac, str) or not (8 <= len(tac) <= 64) or len(tac) % 2:
        raise _Reject("bad_tac", "tac must be 8 to 64 hex digits")
    if not _is_hex(tac):
        raise _Reject("bad_tac", "tac is not hexadecimal")
    terminal_no = tap.get("terminal_no")
    if not isinstance(terminal_no, str) or len(terminal_no) != 12 or not _is_hex(terminal_no):
        raise _Reject("bad_field", "terminal_no must be the SAM's 6-byte terminal number in 12 hex digits")
    algorithm = tap.get("algorithm")
    if algorithm not in _ALGORITHMS or type(algorithm) is not int:
        raise _Reject("bad_field", f"algorithm {algorithm!r} is not a card algorithm id (4 SM4, 0 3DES)")
    kind = tap.get("kind")
    if kind != "purchase":
        raise _Reject("unsupported_kind", f"kind {kind!r} is not taken here (only 'purchase')")
    status = tap.get("status")
    if not isinstance(status, str) or not (status == "complete" or status.startswith(TAP_STATUSES_PREFIX)):
        raise _Reject("bad_status", f"status {status!r} is neither 'complete' nor a torn-resolved variant")
    if len(status) > 30:
        raise _Reject("bad_status", "status is longer than 30 characters")
    categories = _codes(tap, "categories")
    passes = _codes(tap, "passes")
    return Tap(
        index=0,
        card_no=card_no,
        issuer=issuer,
        card_counter=counter,
        terminal_seq=seq,
        amount_fen=amount,
        balance_before_fen=before,
        balance_after_fen=after,
        tapped_at=tapped_at,
        service=_text(tap, "service"),
        route=_text(tap, "route"),
        tac=tac.lower(),
        terminal_no=terminal_no.lower(),
        algorithm=algorithm,
        kind=kind,
        status=status,
        card_scheme=_text(tap, "card_scheme", required=False),
        categories=categories,
        passes=passes,
        fare_rule_id=_text(tap, "fare_rule_id", required=False),
    )


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
        ]
    ),
    st.lists(st.one_of(st.text(max_size=32), st.integers()), max_size=3),
    st.lists(st.sampled_from(["elderly", "monthly", "a-b_c", "", "x" * 31, "中文", "a b"]), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
broken_tap = st.dictionaries(st.sampled_from(sorted(_GOOD)), odd_values, max_size=4).flatmap(
    lambda changes: st.sets(st.sampled_from(sorted(_GOOD)), max_size=2).map(
        lambda removed: {k: v for k, v in {**_GOOD, **changes}.items() if k not in removed}
    )
)


def _outcome(fn, *args):
    try:
        tap = fn(*args)
    except _Reject as exc:
        return ("rejected", exc.reason, exc.message)
    except TypeError:
        return ("type error",)
    return ("tap", tap)


@settings(max_examples=600, deadline=None)
@given(tap=st.one_of(broken_tap, odd_values))
def test_validation_matches_the_reference(tap):
    expected = _outcome(_validate_reference, tap, RECEIVED)
    got = _outcome(_validate, tap, tap_window(RECEIVED))
    if expected == ("type error",):  # the reference crashed on an unhashable algorithm; now a rejection
        assert got[:2] == ("rejected", "bad_field")
        return
    if got[0] == "tap":
        # The tap also carries tapped_at as text for the COPY: ISO 8601 naming the same instant (the form
        # sent when it is already YYYY-MM-DDTHH:MM:SS±HH:MM, else isoformat()).
        text = got[1].tapped_at_text
        assert dt.datetime.fromisoformat(text) == got[1].tapped_at
        assert len(text) >= 25 and text[10] == "T" and text[19] in "+-." and text[-6] in "+-"
        got = ("tap", replace(got[1], tapped_at_text=""))
    assert got == expected


def test_a_good_tap_passes_both():
    assert _outcome(_validate, _GOOD, tap_window(RECEIVED))[0] == "tap"


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
    expected = _outcome(_validate_reference, tap, received)
    got = _outcome(_validate, tap, tap_window(received))
    if got[0] == "tap":
        got = ("tap", replace(got[1], tapped_at_text=""))
    assert got == expected
