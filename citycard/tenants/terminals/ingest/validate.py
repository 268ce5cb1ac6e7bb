"""``tap_validate``: spec.TAP_SPEC unrolled into one straight pass, what the general path runs per tap.

This runs for every tap of every batch that is not in the common form, so it calls no helper on the
usual path; it gives exactly ``spec.tap_read``'s answer, tap or (reason, message), which
tests/tenants/terminals/test_validate_fast.py checks over fuzzed and edge taps.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from citycard.tenants.terminals.checks import Tap
from citycard.tenants.terminals.ingest.spec import (
    ALGORITHMS,
    HEX,
    INT_MAX,
    TAP_FIELDS,
    TAP_STATUSES_PREFIX,
    Reject,
    TapWindow,
    is_code,
)
from citycard.terminal_kit.cardno import CARD_NUMBER_LENGTH, luhn_valid
from citycard.terminal_kit.ecode import MAX_TOKEN_CHARS, TOKEN_CHARS

LUHN_GOOD: set[str] = set()  # card numbers that passed: a city's riders tap every day
LUHN_GOOD_MAX = 262_144


def luhn_cached(card_no: str) -> bool:
    if card_no in LUHN_GOOD:
        return True
    if not luhn_valid(card_no):
        return False
    if len(LUHN_GOOD) >= LUHN_GOOD_MAX:
        LUHN_GOOD.clear()
    LUHN_GOOD.add(card_no)
    return True


def _slow(tap: dict, name: str) -> Any:
    """A field the straight pass found unusual, read by its spec: the value, or its Reject."""
    return TAP_FIELDS[name].read(tap, {}, None)


def tap_validate(tap: Any, window: TapWindow) -> Tap:
    """One tap of the payload, checked completely, or Reject naming the first problem (spec.TAP_SPEC's
    order). ``window`` bounds a plausible tapped_at."""
    if type(tap) is not dict:
        raise Reject("malformed", "a transaction must be a JSON object")
    get = tap.get
    card_no = get("card_no")
    if type(card_no) is not str or len(card_no) != CARD_NUMBER_LENGTH or not card_no.isascii():
        raise Reject("bad_card_no", f"card_no must be {CARD_NUMBER_LENGTH} digits")
    if not card_no.isdigit() or not luhn_cached(card_no):
        raise Reject("bad_card_no", f"card_no {card_no} fails its Luhn check digit")
    issuer = get("issuer")
    if issuer != card_no[:6]:
        raise Reject("issuer_mismatch", f"issuer {issuer!r} is not the card number's prefix {card_no[:6]}")
    counter = get("card_counter")
    if type(counter) is not int or not 0 <= counter <= INT_MAX:
        _slow(tap, "card_counter")
    seq = get("terminal_seq")
    if type(seq) is not int or not 0 <= seq <= INT_MAX:
        _slow(tap, "terminal_seq")
    amount = get("amount_fen")
    if type(amount) is not int or not 0 <= amount <= INT_MAX:
        _slow(tap, "amount_fen")
    before = get("balance_before_fen")
    if type(before) is not int or not -INT_MAX <= before <= INT_MAX:
        _slow(tap, "balance_before_fen")
    after = get("balance_after_fen")
    if type(after) is not int or not -INT_MAX <= after <= INT_MAX:
        _slow(tap, "balance_after_fen")
    if before - amount != after:
        raise Reject(
            "balance_mismatch",
            f"balance_before_fen {before} − amount_fen {amount} ≠ balance_after_fen {after}",
        )
    stamp = get("tapped_at")
    if type(stamp) is not str:
        raise Reject("bad_tapped_at", "tapped_at must be an ISO 8601 string with an offset")
    try:
        tapped_at = dt.datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise Reject("bad_tapped_at", str(exc)) from None
    if tapped_at.tzinfo is None:
        raise Reject("bad_tapped_at", f"tapped_at {stamp!r} has no UTC offset")
    if (  # spec.is_beijing_form, inline: compared with the window as text
        len(stamp) == 25
        and stamp[19:] == "+08:00"
        and stamp[10] == "T"
        and stamp[4] == stamp[7] == "-"
        and stamp[13] == stamp[16] == ":"
    ):
        if stamp < window.oldest_text or stamp > window.newest_text:
            raise Reject("tapped_at_out_of_range", f"tapped_at {tapped_at.isoformat()} is implausible")
    else:
        if tapped_at < window.oldest or tapped_at > window.newest:
            raise Reject("tapped_at_out_of_range", f"tapped_at {tapped_at.isoformat()} is implausible")
        if not (  # spec.is_postgres_form, inline
            len(stamp) == 25
            and stamp[10] == "T"
            and stamp[4] == stamp[7] == "-"
            and stamp[13] == stamp[16] == stamp[22] == ":"
            and stamp[19] in "+-"
            and stamp[20:22] <= "14"
        ):
            tapped_at = tapped_at.astimezone(dt.UTC)
            stamp = tapped_at.isoformat()
    tac = get("tac")
    if type(tac) is not str or not (8 <= len(tac) <= 64) or len(tac) % 2 or not HEX.issuperset(tac):
        _slow(tap, "tac")
    terminal_no = get("terminal_no")
    if type(terminal_no) is not str or len(terminal_no) != 12 or not HEX.issuperset(terminal_no):
        _slow(tap, "terminal_no")
    algorithm = get("algorithm")
    if type(algorithm) is not int or algorithm not in ALGORITHMS:
        _slow(tap, "algorithm")
    kind = get("kind")
    if kind != "purchase":
        _slow(tap, "kind")
    status = get("status")
    if (
        status != "complete" and (type(status) is not str or not status.startswith(TAP_STATUSES_PREFIX))
    ) or len(status) > 30:
        _slow(tap, "status")
    categories = get("categories")
    if categories and (type(categories) is not list or not all(map(is_code, categories))):
        _slow(tap, "categories")
    passes = get("passes")
    if passes and (type(passes) is not list or not all(map(is_code, passes))):
        _slow(tap, "passes")
    service = get("service")
    if type(service) is not str or not service or len(service) > 20:
        service = _slow(tap, "service")
    route = get("route")
    if type(route) is not str or len(route) > 40:
        route = _slow(tap, "route")
    scheme = get("card_scheme", "")
    if type(scheme) is not str or len(scheme) > 40:
        scheme = _slow(tap, "card_scheme")
    rule_id = get("fare_rule_id", "")
    if type(rule_id) is not str or len(rule_id) > 60:
        rule_id = _slow(tap, "fare_rule_id")
    card_trip = get("card_trip", "")
    if (
        type(card_trip) is not str
        or len(card_trip) > 256
        or len(card_trip) % 2
        or not HEX.issuperset(card_trip)
    ):
        _slow(tap, "card_trip")
    code = get("code")
    if code is None:
        code = ""
    elif type(code) is not str or len(code) > MAX_TOKEN_CHARS or not TOKEN_CHARS.issuperset(code):
        code = _slow(tap, "code")
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
        service=service,
        route=route,
        tac=tac.lower(),
        terminal_no=terminal_no.lower(),
        algorithm=algorithm,
        kind=kind,
        status=status,
        card_scheme=scheme,
        categories=categories or [],
        passes=passes or [],
        fare_rule_id=rule_id,
        tapped_at_text=stamp,
        card_trip=card_trip.lower(),
        code=code,
    )
