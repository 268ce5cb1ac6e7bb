"""The acknowledgement (回执) of a batch: written in its canonical form directly, stored as its parts,
rebuilt byte for byte for a resend.

The terminal deletes its batch once acknowledged; a resend of the same batch (same content: its SHA-256
matched) gets the same bytes back, from what ``ack_parts`` stored with the batch and the resent taps.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from citycard.platform.keys import signed_body
from citycard.tenants.terminals.checks import Tap
from citycard.tenants.terminals.wire import canonical_bytes


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def ack_canonical(
    *,
    batch_id: str,
    terminal_id: str,
    received_at: dt.datetime | str,
    raw_taps: list,
    outcomes: list[tuple[str, str]],
    counts: dict[str, int],
) -> bytes:
    """The acknowledgement payload in its canonical form: exactly ``canonical_bytes`` of

        {"batch_id", "terminal_id", "received_at", "accepted", "duplicates", "rejected", "conflicts"?,
         "results": [{"index", "card_no", "card_counter", "terminal_seq", "outcome", "reason"?}, …]}

    (sorted keys, no spaces), but written directly: a result whose card number is plain digits and whose
    counters are integers (every accepted or duplicate tap) is one f-string; anything else goes through
    ``canonical_bytes``. tests/tenants/terminals/test_ack_canonical.py proves the two byte-identical.
    ``conflicts`` is there only when a tap conflicts (``counts["conflict"]``), as a result's ``reason``
    only when there is one: the acknowledgements of every other batch, and their resends, are the bytes
    they were before conflicts were told apart."""
    received_text = received_at if isinstance(received_at, str) else received_at.isoformat()
    middles: dict[tuple[str, str], str] = {}
    parts = []
    for index, (outcome, reason) in enumerate(outcomes):
        raw = raw_taps[index]
        if type(raw) is dict:
            card, counter, seq = raw.get("card_no"), raw.get("card_counter"), raw.get("terminal_seq")
        elif type(raw) is Tap:  # a checked tap of the common form
            card, counter, seq = raw.card_no, raw.card_counter, raw.terminal_seq
        else:
            card = counter = seq = None
        middle = middles.get((outcome, reason))
        if middle is None:
            middle = f',"outcome":{_json_text(outcome)}' + (
                f',"reason":{_json_text(reason)}' if reason else ""
            )
            middles[(outcome, reason)] = middle
        if (
            type(card) is str
            and card.isdigit()
            and card.isascii()
            and type(counter) is int
            and type(seq) is int
        ):
            parts.append(
                f'{{"card_counter":{counter},"card_no":"{card}","index":{index}{middle},"terminal_seq":{seq}}}'
            )
        else:
            entry: dict[str, Any] = {
                "index": index,
                "card_no": card,
                "card_counter": counter,
                "terminal_seq": seq,
                "outcome": outcome,
            }
            if reason:
                entry["reason"] = reason
            parts.append(canonical_bytes(entry).decode())
    conflicts = counts.get("conflict")
    text = (
        f'{{"accepted":{counts["accepted"]},"batch_id":{_json_text(batch_id)},'
        + (f'"conflicts":{conflicts},' if conflicts else "")
        + f'"duplicates":{counts["duplicate"]},"received_at":{_json_text(received_text)},'
        f'"rejected":{counts["rejected"]},"results":[{",".join(parts)}],'
        f'"terminal_id":{_json_text(terminal_id)}}}'
    )
    return text.encode()


def ack_parts(*, received_at: dt.datetime, signature: str, outcomes: list[tuple[str, str]]) -> str:
    """What is stored of an acknowledgement (``Batch.ack_parts``): the received time as written in it, the
    signature object's JSON text, and the outcomes other than ``accepted`` as [index, outcome, reason]."""
    others = [[i, outcome, reason] for i, (outcome, reason) in enumerate(outcomes) if outcome != "accepted"]
    return json.dumps(
        {"received_at": received_at.isoformat(), "signature": signature, "outcomes": others},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def ack_rebuild(
    *, parts: str, batch_id: str, terminal_id: str, raw_taps: list, counts: dict[str, int]
) -> bytes:
    """The acknowledgement a batch got, byte for byte, from ``Batch.ack_parts`` and the batch's taps (a
    resend carries the same content: its SHA-256 matched). Ed25519 signatures are deterministic and the
    payload's canonical form is a function of its content, so the stored signature is the one sent.
    ``counts`` are the batch row's; its conflicts, which the row does not count, are added from the parts."""
    stored = json.loads(parts)
    outcomes = [("accepted", "")] * len(raw_taps)
    for index, outcome, reason in stored["outcomes"]:
        outcomes[index] = (outcome, reason)
    counts["conflict"] = sum(1 for outcome, _ in outcomes if outcome == "conflict")
    canonical = ack_canonical(
        batch_id=batch_id,
        terminal_id=terminal_id,
        received_at=stored["received_at"],
        raw_taps=raw_taps,
        outcomes=outcomes,
        counts=counts,
    )
    return signed_body(canonical, stored["signature"])
