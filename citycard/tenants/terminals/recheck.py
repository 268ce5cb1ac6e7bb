"""Rechecking uploaded taps against the published rules (the ``fare_recheck`` ingestion check).

For a set of stored taps (one batch, or the many batches the verification stage takes at once): one
query lists the rule documents of the tenant's city (version, effective_from), one loads any document not
compiled yet (cached per process afterwards). A tap carrying the card's transit record (``card_trip``:
what the card said of its journey, transfers, caps and quotas before the tap, read by the terminal and
written back with the debit) is priced from that state, decoded for the document in force
(``terminal_kit.transit``), as the terminal priced it — whichever bus, line or city took the earlier
rides. For taps without one (terminals before the composite purchase), one more query reads the earlier
taps of the same cards on the same terminals this month (outside the batches being checked) and each
card's taps on each terminal are replayed in time order. Categories and transit passes are those the
terminal read from the card and recorded with the tap. A metro gate's tap (its terminal registered as an
entry or exit gate at a station) is priced as the gate priced it: ``FareEngine.entry`` or ``exit`` from the
card's record (the entry it held), so an exit is re-priced entry -> exit.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from citycard.tenants.fares.selectors import fare_expected, fares_engines, fares_in_force, fares_version_at
from citycard.tenants.terminals.journeys import gates_of
from citycard.tenants.terminals.models import MERCHANT_SERVICE, Transaction
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.fares import Card, FareError, Trip
from citycard.terminal_kit.transit import TripCodec, card_state


def _month_start(at: dt.datetime) -> dt.datetime:
    local = at.astimezone(BEIJING)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def fare_check(*, tenant: Any, taps: Sequence[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """(tap, detail) for every stored purchase tap of ``taps`` (each with its ``terminal_id`` and
    ``batch_pk``) whose amount differs from what the rules give."""
    purchases = [t for t in taps if t.kind == "purchase" and t.service != MERCHANT_SERVICE]
    if not purchases:
        return []
    versions = fares_in_force(tenant=tenant)
    if not versions:
        return []  # no rules published: nothing to check against
    chosen = {t.index: fares_version_at(versions, t.tapped_at) for t in purchases}
    engines = fares_engines(pks=sorted({c[1] for c in chosen.values() if c is not None}))
    if not engines:
        return []
    replayed = [t for t in purchases if not t.card_trip]  # no record from the card: replay its rides
    earliest = min((t.tapped_at for t in replayed), default=None)
    latest = max((t.tapped_at for t in replayed), default=None)
    history = (
        []
        if not replayed
        else Transaction.objects.filter(
            terminal_id__in={t.terminal_id for t in replayed},
            card_no__in={t.card_no for t in replayed},
            tapped_at__gte=_month_start(earliest),
            tapped_at__lt=latest,
            kind="purchase",
        )
        .exclude(batch_id__in={t.batch_pk for t in purchases})
        .values_list(
            "terminal_id",
            "card_no",
            "tapped_at",
            "card_counter",
            "service",
            "route",
            "card_scheme",
            "issuer",
            "passes",
        )
    )
    # Per (terminal, card), in time order: (tapped_at, counter, new tap or None, service, route, scheme,
    # issuer, passes). A tap with the card's record starts from it; one without goes on from the replay.
    rides: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for terminal_id, card_no, at, counter, service, route, scheme, issuer, passes in history:
        rides[(terminal_id, card_no)].append(
            (at, counter, None, service, route, scheme, issuer, frozenset(passes))
        )
    for t in purchases:
        rides[(t.terminal_id, t.card_no)].append(
            (t.tapped_at, t.card_counter, t, t.service, t.route, t.card_scheme, t.issuer, frozenset(t.passes))
        )
    categories = {t.card_no: frozenset(t.categories or ()) for t in purchases}
    gated = {t.terminal_id for t in purchases if t.service != "bus"}
    if gated:
        gates = gates_of(gated)
    else:
        gates = {}
    codecs: dict[int, TripCodec] = {}
    flags = []
    for (_terminal, card_no), entries in rides.items():
        entries.sort(key=lambda e: (e[0], e[1]))
        state: dict[str, Any] = {}
        for at, _counter, tap, service, route, scheme, issuer, passes in entries:
            version = fares_version_at(versions, at)
            engine = engines.get(version[1]) if version else None
            if engine is None:
                continue
            if tap is not None and tap.card_trip:  # what the card said, as the terminal read it
                codec = codecs.get(id(engine)) or codecs.setdefault(id(engine), TripCodec.for_fare(engine))
                state = card_state(codec, bytes.fromhex(tap.card_trip))
            card = Card(issuer=issuer, scheme_code=scheme, categories=categories[card_no], passes=passes)
            charged = tap.amount_fen if tap is not None else None
            gate = gates.get(_terminal) if tap is not None else None
            if gate is not None:
                flag, state = _gate_check(engine, card, tap, gate, state)
                if flag is not None:
                    flags.append((tap, flag))
                continue
            matching, plain = fare_expected(
                engine, card=card, trip=Trip(service, route, at), state=state, charged=charged
            )
            if plain is None:
                if tap is not None:
                    flags.append((tap, {"expected_fen": None, "charged_fen": charged, "rule": "no_fare"}))
                continue
            if tap is not None and matching is None:
                flags.append(
                    (
                        tap,
                        {
                            "expected_fen": plain.fare_fen,
                            "charged_fen": charged,
                            "rule": plain.rule_id,
                            "rule_version": engine.version,
                        },
                    )
                )
            state = (matching or plain).state
    return flags


def _gate_check(engine: Any, card: Card, tap: Any, gate: tuple[str, str], state: dict[str, Any]) -> tuple:
    """(flag detail or None, the new state) for a metro gate's tap, priced as the gate prices it."""
    kind, station = gate
    try:
        if kind == "entry":
            trip = Trip(tap.service, tap.route, tap.tapped_at, origin=station)
            quote = engine.entry(card, trip, state, terminal=tap.terminal_no)
        else:
            quote = engine.exit(card, Trip(tap.service, tap.route, tap.tapped_at, destination=station), state)
    except FareError:
        return {"expected_fen": None, "charged_fen": tap.amount_fen, "rule": "no_fare"}, state
    if quote.fare_fen == tap.amount_fen:
        return None, quote.state
    detail = {
        "expected_fen": quote.fare_fen,
        "charged_fen": tap.amount_fen,
        "rule": quote.rule_id,
        "rule_version": engine.version,
    }
    return detail, quote.state
