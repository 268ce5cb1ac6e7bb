"""The acknowledgement written directly is byte for byte the canonical JSON of its payload."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.tenants.terminals.ingest import ack_canonical
from citycard.tenants.terminals.wire import canonical_bytes

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=25),
    st.from_regex(r"[0-9]{12,19}", fullmatch=True),
    st.text(alphabet="0123456789١٢٣", max_size=19),  # digits that are not ASCII
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
raw_tap = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={"card_no": json_values, "card_counter": json_values, "terminal_seq": json_values},
    ),
    st.fixed_dictionaries(
        {
            "card_no": st.from_regex(r"[0-9]{12,19}", fullmatch=True),
            "card_counter": st.integers(min_value=0, max_value=2**63),
            "terminal_seq": st.integers(min_value=0, max_value=2**63),
        }
    ),
)
outcome = st.sampled_from(
    [
        ("accepted", ""),
        ("duplicate", "repeated in this batch"),
        ("duplicate", "already received"),
        ("rejected", "bad_card_no"),
        ("rejected", "malformed"),
        ("conflict", "already received with other amount_fen"),
        ("conflict", "repeated in this batch with other tapped_at"),
    ]
)


def reference(*, batch_id, terminal_id, received_at, raw_taps, outcomes, counts) -> bytes:
    """What the upload path signed before: the payload as a dict, through canonical_bytes."""
    results = []
    for index, (result, reason) in enumerate(outcomes):
        raw = raw_taps[index] if isinstance(raw_taps[index], dict) else {}
        entry = {
            "index": index,
            "card_no": raw.get("card_no"),
            "card_counter": raw.get("card_counter"),
            "terminal_seq": raw.get("terminal_seq"),
            "outcome": result,
        }
        if reason:
            entry["reason"] = reason
        results.append(entry)
    payload = {
        "batch_id": batch_id,
        "terminal_id": terminal_id,
        "received_at": received_at.isoformat(),
        "results": results,
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
    }
    if counts["conflict"]:  # only then: every other acknowledgement is as it was before conflicts
        payload["conflicts"] = counts["conflict"]
    return canonical_bytes(payload)


@settings(max_examples=300, deadline=None)
@given(
    taps=st.lists(st.tuples(raw_tap, outcome), max_size=12),
    batch_id=st.text(min_size=1, max_size=80),
    terminal_id=st.text(min_size=1, max_size=20),
    received_at=st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8))])),
)
def test_ack_is_the_canonical_json_of_its_payload(taps, batch_id, terminal_id, received_at):
    raw_taps = [t[0] for t in taps]
    outcomes = [t[1] for t in taps]
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "conflict": 0}
    for result, _reason in outcomes:
        counts[result] += 1
    args = dict(
        batch_id=batch_id,
        terminal_id=terminal_id,
        received_at=received_at,
        raw_taps=raw_taps,
        outcomes=outcomes,
        counts=counts,
    )
    assert ack_canonical(**args) == reference(**args)
