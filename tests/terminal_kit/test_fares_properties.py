"""Properties of the evaluator over random documents, cards and trip sequences (hypothesis)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.terminal_kit.fares import Card, FareEngine, FareError, RuleDocumentError, Trip
from citycard.terminal_kit.fares.document import CATEGORIES, MEDIA

SH = dt.timezone(dt.timedelta(hours=8))
ISSUERS = ["330100", "330122", "330400", "441900"]
START = dt.datetime(2026, 11, 1, tzinfo=SH)

leg_rule = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["percent", "fixed", "free", "minus"]),
        "value": st.integers(0, 10000),
        "priority": st.integers(0, 100),
        "categories": st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True),
        "media": st.lists(st.sampled_from(MEDIA), max_size=2, unique=True),
        "route_set": st.sampled_from([None, "low", "odd"]),
        "timeframe": st.sampled_from([None, "peak"]),
        "quota": st.sampled_from([None, None, "q"]),
        "riders": st.sampled_from(["any", "local", "visitor"]),
    },
    optional={"above_base": st.just(True)},
)
transfer_rule = st.fixed_dictionaries(
    {
        "transfer_type": st.sampled_from([0, 1, 2]),
        "amount_fen": st.integers(0, 400),
        "within_minutes": st.integers(1, 120),
        "max_transfers": st.sampled_from([-1, 1, 2]),
        "measure": st.sampled_from(["previous_tap", "first_tap"]),
    }
)


@st.composite
def documents(draw):
    legs = draw(st.lists(leg_rule, max_size=8))
    for i, rule in enumerate(legs):
        rule["id"] = f"r{i}"
        rule["priority"] = rule["priority"] * 10 + i  # distinct priorities: the document must publish
    transfers = draw(st.lists(transfer_rule, max_size=2))
    for i, rule in enumerate(transfers):
        rule.update(id=f"t{i}", priority=i)
    caps = draw(
        st.lists(
            st.fixed_dictionaries(
                {"period": st.sampled_from(["day", "month"]), "amount_fen": st.integers(0, 3000)}
            ),
            max_size=2,
        )
    )
    for i, cap in enumerate(caps):
        cap["id"] = f"c{i}"
    return {
        "tenant": "t",
        "version": 1,
        "home_divisions": ["330100", "330122"],
        "route_sets": {
            "low": {"ranges": [[1, 50]], "except": ["7"]},
            "odd": {"routes": [str(n) for n in range(1, 100, 2)]},
        },
        "timeframes": {"peak": [{"days": [1, 2, 3, 4, 5], "start": "07:00", "end": "09:00"}]},
        "quotas": [{"id": "q", "period": "month", "rides": draw(st.integers(1, 5))}],
        "fare_products": [
            {"id": "base", "service": "bus", "amount_fen": draw(st.integers(0, 1000))},
            {
                "id": "low",
                "service": "bus",
                "route_set": "low",
                "amount_fen": draw(st.integers(0, 1000)),
                "priority": 1,
            },
        ],
        "leg_rules": legs,
        "transfer_rules": transfers,
        "caps": caps,
        "visitor_policy": {
            "default": draw(st.sampled_from(["host_rules", "home_category", "no_concession"])),
            "networks": [{"network": "yrd", "members": ["330400"], "policy": "home_category"}],
        },
    }


cards = st.builds(
    Card,
    issuer=st.sampled_from(ISSUERS),
    scheme_code=st.sampled_from(MEDIA),
    categories=st.frozensets(st.sampled_from(CATEGORIES), max_size=2),
    passes=st.frozensets(st.just("monthly")),
)
trips = st.lists(st.tuples(st.integers(1, 120), st.integers(0, 60 * 24 * 3)), min_size=1, max_size=12)


def _run(engine: FareEngine, card: Card, steps):
    state, out, at = {}, [], START
    for route, gap in steps:
        at += dt.timedelta(minutes=gap)
        quote = engine.quote(card, Trip("bus", str(route), at), state)
        out.append(quote)
        state = quote.state
    return out


def _engine(doc):
    try:
        return FareEngine.from_payload(doc)
    except RuleDocumentError:
        return None


@settings(max_examples=150, deadline=None)
@given(documents(), cards, trips)
def test_never_negative_deterministic_and_within_base(doc, card, steps):
    engine = _engine(doc)
    if engine is None:
        return
    above = any(r.get("above_base") for r in doc["leg_rules"])
    first = _run(engine, card, steps)
    again = _run(FareEngine.from_payload(doc), card, steps)
    assert [(q.fare_fen, q.state, q.trace) for q in first] == [(q.fare_fen, q.state, q.trace) for q in again]
    for quote in first:
        assert quote.fare_fen >= 0
        if not above:
            assert quote.fare_fen <= quote.base_fen, quote.trace
        assert quote.winner is None or quote.winner == quote.matched[0]


@settings(max_examples=60, deadline=None)
@given(documents(), cards, trips)
def test_caps_bound_what_a_card_pays(doc, card, steps):
    engine = _engine(doc)
    if engine is None or not doc["caps"]:
        return
    quotes = _run(engine, card, steps)
    day_caps = [c["amount_fen"] for c in doc["caps"] if c["period"] == "day"]
    if day_caps and card.issuer in ("330100", "330122"):
        per_day: dict[dt.date, int] = {}
        at = START
        for (_, gap), quote in zip(steps, quotes, strict=True):
            at += dt.timedelta(minutes=gap)
            per_day[at.date()] = per_day.get(at.date(), 0) + quote.fare_fen
        assert max(per_day.values()) <= min(day_caps)


@given(st.integers(-10000, -1))
def test_negative_fare_refused(amount):
    doc = {"fare_products": [{"id": "p", "service": "bus", "amount_fen": amount}]}
    try:
        FareEngine.from_payload(doc)
    except RuleDocumentError as exc:
        assert "negative" in str(exc)
    else:
        raise AssertionError("a negative fare was accepted")


def test_route_without_product_is_an_error_not_a_zero_fare():
    engine = FareEngine.from_payload(
        {
            "fare_products": [{"id": "p", "service": "bus", "route_set": "a", "amount_fen": 200}],
            "route_sets": {"a": {"routes": ["1"]}},
        }
    )
    try:
        engine.quote(Card("330100"), Trip("bus", "2", START), {})
    except FareError as exc:
        assert "route 2" in str(exc)
    else:
        raise AssertionError("priced a route no product covers")
