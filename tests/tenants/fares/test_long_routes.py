"""Route ids and names as GTFS feeds give them, however long: a 100-character route is kept whole by the
terminal registry, the fare rules, the quote, the card's transit record (as a tag the rules read back) and
the stored taps — nothing is cut, so its fare product is found and its taps are taken."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django_tenants.utils import tenant_context

from citycard.tenants.fares import seeds
from citycard.tenants.fares.selectors import fares_quote
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import Terminal, Transaction
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.fares import Card, FareEngine, Trip
from citycard.terminal_kit.transit import TripCodec

from .conftest import SH

pytestmark = pytest.mark.django_db
AT = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SH)
LONG = ("西湖风景名胜区旅游专线 Lakeside Heritage Express via Lingyin, Longjing, Jiuxi, Meijiawu and " * 2)[
    :100
]


def long_route_rules() -> dict:
    body = copy.deepcopy(seeds.HANGZHOU)
    body["route_sets"]["hz-heritage"] = {"service": "bus", "routes": [LONG]}
    body["fare_products"].append(
        {"id": "hz-heritage", "service": "bus", "route_set": "hz-heritage", "amount_fen": 500, "priority": 5}
    )
    return body


def test_a_100_character_route_is_quoted_written_on_the_card_and_its_taps_stored_whole(tenant, published):
    assert len(LONG) == 100
    checks.route_cache_clear()
    hangzhou = tenant("hangzhou")
    sim = SimTerminal("HZ-HERITAGE-1", "hangzhou", route=LONG)
    with tenant_context(hangzhou):
        terminal_register(
            terminal_id=sim.terminal_id,
            operator="杭州公交",
            department="transport",
            service="bus",
            route=LONG,
            public_key=sim.public_key,
            actor="test",
        )
        assert Terminal.objects.get(terminal_id=sim.terminal_id).route == LONG
    publication = published("hangzhou", long_route_rules())
    with tenant_context(hangzhou):
        result = fares_quote(tenant=hangzhou, route=LONG, at=AT, issuer="440300")  # a visitor: the base fare
    assert (result.quote.fare_fen, result.quote.base_fen) == (500, 500)
    assert "product hz-heritage" in " ".join(result.quote.trace)
    # the terminal's evaluator, and the journey on the card: the route comes back whole from its tag
    engine = FareEngine.from_payload(publication.document["payload"])
    quote = engine.quote(Card(issuer="330100"), Trip("bus", LONG, AT), {})
    assert quote.fare_fen == 450  # 90% with the city's card
    codec = TripCodec.for_fare(engine)
    record = codec.encode(quote.state)
    assert record[6] == 0xFF and codec.decode(record)["j"]["r"] == LONG
    # the tap on that route is taken and stored with its route whole
    card = SimCard(card_number("330100", 41))
    tap = sim.tap(card, at=AT, amount_fen=450)
    body = sim.sign(sim.payload([tap], created_at=AT + dt.timedelta(minutes=5)))
    with tenant_context(hangzhou):
        ingested = batch_ingest(tenant=hangzhou, body=body, received_at=AT + dt.timedelta(minutes=5))
        assert (ingested.accepted, ingested.rejected) == (1, 0)
        assert Transaction.objects.get(card_no=card.card_no).route == LONG
