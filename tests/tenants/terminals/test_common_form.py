"""The common form's decoder (``ingest.decode.common_decode``, msgspec) never decides differently from the
general path (``document_load`` + ``canonical_bytes`` + ``tap_validate``): for any body it either declines (None) or
gives the same canonical payload bytes, the same header and, tap by tap, the same Tap. Hypothesis feeds
both the same documents, taps valid and broken in every field, extra fields, floats, other layouts."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.tenants.terminals.ingest import BatchRefused, common_decode, decode, tap_window
from citycard.tenants.terminals.ingest.decode import document_load
from citycard.tenants.terminals.ingest.validate import tap_validate
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.tenants.terminals.wire import canonical_bytes

from .test_validate_fast import _GOOD, RECEIVED, _outcome, broken_tap, odd_values

pytestmark = pytest.mark.skipif(decode.msgspec is None, reason="msgspec is not installed")

WINDOW = tap_window(RECEIVED)
HEADER = {
    "batch_id": "HZ-T-1-000001",
    "terminal_id": "HZ-T-1",
    "tenant": "hangzhou",
    "created_at": "2025-03-01T08:00:00.123456+08:00",
    "rule_version": 3,
    "hotlist_version": 7,
}
SIGNATURE = {"alg": "Ed25519", "key_id": "HZ-T-1:k1", "value": "c2lnbmF0dXJl"}

odd_or_float = st.one_of(odd_values, st.floats(allow_nan=False, allow_infinity=False), st.just(1.0))
tap_strategy = st.one_of(
    st.just(_GOOD),
    broken_tap,
    # optional fields present, explicitly empty or null, and extra fields
    st.fixed_dictionaries(
        {},
        optional={
            "card_scheme": st.sampled_from(["", "01", None, 5]),
            "categories": st.sampled_from([[], ["elderly"], None, "", ["a b"]]),
            "passes": st.sampled_from([[], ["monthly"], None]),
            "fare_rule_id": st.sampled_from(["", "r-1", 12, None]),
            "note": odd_or_float,
        },
    ).map(lambda extra: {**_GOOD, **extra}),
    st.dictionaries(st.sampled_from(sorted(_GOOD)), odd_or_float, max_size=2).map(lambda c: {**_GOOD, **c}),
)
# Values of the type the common form expects, right or wrong for the general path: these pass msgspec's
# decoding, so the checks after it decide.
digits = st.text(alphabet="0123456789", min_size=12, max_size=19)
typed_values = {
    "card_no": st.one_of(digits, st.sampled_from([_GOOD["card_no"], "３３０１００００００００００００１７"])),
    "issuer": st.sampled_from(["330100", "330101", "33010", ""]),
    "card_counter": st.integers(min_value=0, max_value=2**63 - 1),
    "terminal_seq": st.integers(min_value=0, max_value=2**63 - 1),
    "amount_fen": st.integers(min_value=0, max_value=2**63 - 1),
    "balance_before_fen": st.integers(min_value=-(2**63 - 1), max_value=2**63 - 1),
    "balance_after_fen": st.integers(min_value=-(2**63 - 1), max_value=2**63 - 1),
    "tapped_at": st.one_of(
        st.sampled_from(
            [
                "2025-03-01T07:00:00+08:00",
                "2024-01-26T07:59:59+08:00",
                "2024-01-26T08:00:00+08:00",
                "2025-04-01T08:00:00+08:00",
                "2025-04-01T08:00:01+08:00",
                "2025-02-30T07:00:00+08:00",
                "2025-03-01 07:00:00+08:00",
                "2025-03-01T07:00:00+09:00",
                "2025-03-01T07:00:00.5+08:00",
                "2025-03-01T07:0a:00+08:00",
            ]
        ),
        st.datetimes(min_value=dt.datetime(2023, 1, 1), max_value=dt.datetime(2026, 1, 1)).map(
            lambda d: d.replace(microsecond=0).isoformat() + "+08:00"
        ),
    ),
    "tac": st.one_of(
        st.text(alphabet="0123456789abcdefABCDEFxg", min_size=8, max_size=64), st.just("a1b2c3d4")
    ),
    "terminal_no": st.text(alphabet="0123456789abcdefABCDEFz", min_size=12, max_size=12),
    "algorithm": st.sampled_from([0, 4, 1, -1, 3]),
    "kind": st.sampled_from(["purchase", "refund", ""]),
    "status": st.sampled_from(["complete", "torn_resolved", "tornado", "torn" + "x" * 26, "failed", ""]),
    "service": st.sampled_from(["bus", "metro", "x" * 20]),
    "route": st.sampled_from(["", "315", "x" * 40]),
    "card_scheme": st.sampled_from(["", "01", "x" * 40]),
    "fare_rule_id": st.sampled_from(["", "bus-flat", "x" * 60]),
    "categories": st.lists(
        st.sampled_from(["elderly", "a-b_c", "", "x" * 30, "x" * 31, "中文", "a b"]), max_size=2
    ),
    "passes": st.lists(st.sampled_from(["monthly", "", "a.b"]), max_size=2),
    "card_trip": st.sampled_from(["", "ab12", "AB", "abc", "zz", "a" * 256, "a" * 258]),
}
typed_tap = st.dictionaries(st.sampled_from(sorted(typed_values)), st.none(), max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: typed_values[k] for k in keys}).map(lambda c: {**_GOOD, **c})
)


@settings(max_examples=600, deadline=None)
@given(taps=st.lists(typed_tap, min_size=1, max_size=3))
def test_typed_taps_are_decided_as_the_general_path_decides(taps):
    """Right types, right or wrong values: the common form takes the batch exactly when the general
    path finds every tap valid and stamped in Beijing form, and then gives the same taps."""
    spec = {"taps": taps, "header": {}, "extra_payload": {}, "extra_document": {}, "signature": SIGNATURE}
    body = _body({**spec, "layout": "compact"})
    outcomes = [_outcome(tap_validate, raw, WINDOW) for raw in taps]
    common = common_decode(body, WINDOW)
    beijing = all(
        o[0] == "tap" and o[1].tapped_at_text == raw["tapped_at"] and raw["tapped_at"][19:] == "+08:00"
        for o, raw in zip(outcomes, taps, strict=True)
    )
    assert (common is not None) == beijing
    if common is not None:
        assert [("tap", t) for t in common.document["payload"]["transactions"]] == outcomes
        assert common.canonical == canonical_bytes(document_load(body)["payload"])


document_strategy = st.fixed_dictionaries(
    {
        "taps": st.lists(tap_strategy, min_size=0, max_size=3),
        "header": st.dictionaries(st.sampled_from(sorted(HEADER)), odd_or_float, max_size=1),
        "extra_payload": st.dictionaries(st.sampled_from(["note", "version"]), odd_or_float, max_size=1),
        "extra_document": st.dictionaries(st.sampled_from(["note"]), odd_or_float, max_size=1),
        "signature": st.sampled_from([SIGNATURE, {**SIGNATURE, "note": 1}, {"alg": "Ed25519"}, None, "x"]),
        "layout": st.sampled_from(["compact", "spaced", "sorted", "ascii"]),
    }
)


def _body(spec: dict[str, Any]) -> bytes:
    payload = {**HEADER, **spec["header"], **spec["extra_payload"], "transactions": spec["taps"]}
    document = {"payload": payload, "signature": spec["signature"], **spec["extra_document"]}
    layout = spec["layout"]
    return json.dumps(
        document,
        ensure_ascii=layout == "ascii",
        sort_keys=layout == "sorted",
        separators=(", ", ": ") if layout == "spaced" else (",", ":"),
    ).encode()


@settings(max_examples=500, deadline=None)
@given(spec=document_strategy)
def test_the_common_form_decides_as_the_general_path(spec):
    body = _body(spec)
    common = common_decode(body, WINDOW)
    if common is None:
        return  # the general path decides alone
    document = document_load(body)  # the general path takes the same document…
    payload = document["payload"]
    assert common.canonical == canonical_bytes(payload)  # …signed over the same bytes…
    assert common.document["signature"] == document["signature"]
    header = {k: v for k, v in common.document["payload"].items() if k != "transactions"}
    assert header == {k: v for k, v in payload.items() if k != "transactions"}
    raw_taps = payload["transactions"]
    assert len(common.document["payload"]["transactions"]) == len(raw_taps)
    for tap, raw in zip(common.document["payload"]["transactions"], raw_taps, strict=True):
        assert _outcome(tap_validate, raw, WINDOW) == ("tap", tap)  # …and the same taps, all valid


def test_the_usual_batch_takes_the_common_form():
    sim = SimTerminal("HZ-T-1", "hangzhou", route="315", terminal_no="330100000001", tac_masters={})
    taps = [
        sim.tap(SimCard(card_number("330100", i)), at=RECEIVED - dt.timedelta(minutes=i)) for i in range(1, 6)
    ]
    taps[1] = {**taps[1], "categories": ["elderly"], "passes": ["monthly"], "fare_rule_id": "bus-flat"}
    body = sim.sign(sim.payload(taps, created_at=RECEIVED))
    common = common_decode(body, WINDOW)
    assert common is not None
    assert common.canonical == canonical_bytes(document_load(body)["payload"])
    assert [t.card_no for t in common.document["payload"]["transactions"]] == [t["card_no"] for t in taps]


@pytest.mark.parametrize(
    "change",
    [
        {"tapped_at": "2025-03-01T00:00:00+00:00"},  # valid, in another offset
        {"card_scheme": None},  # valid, null for absent
        {"fare_rule_id": 12},  # valid, a number for the rule id
        {"note": "extra"},  # valid, a field the common form does not know
        {"amount_fen": -1},  # refused
        {"card_no": "3301000000000000018"},  # refused: Luhn
    ],
)
def test_other_forms_go_the_general_way(change):
    body = _body(
        {
            "taps": [{**_GOOD, **change}],
            "header": {},
            "extra_payload": {},
            "extra_document": {},
            "signature": SIGNATURE,
            "layout": "compact",
        }
    )
    assert common_decode(body, WINDOW) is None
    document_load(body)  # and the general path takes it (accepting or refusing the tap with its reason)


def test_a_float_anywhere_is_refused_either_way():
    body = _body(
        {
            "taps": [_GOOD],
            "header": {},
            "extra_payload": {},
            "extra_document": {"note": 1.5},
            "signature": SIGNATURE,
            "layout": "compact",
        }
    )
    assert common_decode(body, WINDOW) is None
    with pytest.raises(BatchRefused) as refused:
        document_load(body)
    assert refused.value.code == "malformed"


def test_without_msgspec_every_batch_takes_the_general_path(monkeypatch):
    spec = {"taps": [_GOOD], "header": {}, "extra_payload": {}, "extra_document": {}, "signature": SIGNATURE}
    body = _body({**spec, "layout": "compact"})
    assert common_decode(body, WINDOW) is not None
    monkeypatch.setattr(decode, "msgspec", None)
    assert common_decode(body, WINDOW) is None
