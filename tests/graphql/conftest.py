"""GraphQL tests: keys issued through the service, taps stored through the real ingestion, requests
through the Django test client on the tenant's or the platform's host. Fixed dates throughout."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.scopes import Scope
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SHANGHAI, SimCard, SimTerminal, card_number

BASE = dt.datetime(2026, 3, 2, 8, 0, tzinfo=SHANGHAI)
ALL_SCOPES = list(Scope.values)


@pytest.fixture(autouse=True)
def _fresh_caches():
    checks.route_cache_clear()
    cache.clear()
    yield
    checks.route_cache_clear()


def issue(tenant_code: str, scopes: list[str] | None = None, **kwargs) -> str:
    _, token = services.api_key_issue(
        tenant_code=tenant_code,
        name=kwargs.pop("name", f"test app of {tenant_code}"),
        scopes=scopes if scopes is not None else ALL_SCOPES,
        actor="test",
        **kwargs,
    )
    return token


def gql(client, host: str, query: str, variables: dict | None = None, *, token: str | None = None, **extra):
    """POST one operation to ``/graphql/`` on ``host`` ("hangzhou" or "" for the platform)."""
    headers = {"HTTP_HOST": f"{host}.localhost" if host else "localhost"}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    body = extra.pop("body", None)
    if body is None:
        body = {"query": query, "variables": variables or {}}
    return client.post("/graphql/", json.dumps(body), content_type="application/json", **headers, **extra)


def data_of(response) -> dict:
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body["errors"]
    return body["data"]


def codes_of(response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


@dataclass
class Fleet:
    """What ``taps_in`` stored: the terminal and the cards, newest transaction first per card."""

    tenant_code: str
    terminal_id: str
    cards: list[str]
    times: list[dt.datetime]


def taps_in(
    tenant_obj,
    *,
    terminal_id: str,
    cards: list[SimCard],
    per_card: int,
    start: dt.datetime = BASE,
    step: dt.timedelta = dt.timedelta(minutes=1),
    register: bool = True,
    sim: SimTerminal | None = None,
):
    """Store ``per_card`` taps of every card at one terminal of ``tenant_obj`` through batch ingestion."""
    sim = sim or SimTerminal(terminal_id, tenant_obj.code, route="7")
    with tenant_context(tenant_obj):
        if register:
            terminal_register(
                terminal_id=sim.terminal_id,
                operator="Test Bus Co.",
                department="transport",
                service=sim.service,
                route=sim.route,
                public_key=sim.public_key,
                actor="test",
            )
        taps, times = [], []
        at = start
        for _ in range(per_card):
            for card in cards:
                taps.append(sim.tap(card, at=at))
                times.append(at)
                at += step
        received = at + dt.timedelta(minutes=5)
        for i in range(0, len(taps), 500):
            result = batch_ingest(
                tenant=tenant_obj,
                body=sim.sign(sim.payload(taps[i : i + 500], created_at=received)),
                received_at=received,
            )
            assert result.rejected == 0, result.body
    return sim, times


@pytest.fixture
def hz_fleet(tenant):
    """Hangzhou: terminal HZ-GQL-1, 3 own cards × 10 taps from BASE, one a minute (30 transactions)."""
    hangzhou = tenant("hangzhou")
    cards = [SimCard(card_number("330100", 900 + i)) for i in range(3)]
    sim, times = taps_in(hangzhou, terminal_id="HZ-GQL-1", cards=cards, per_card=10)
    return Fleet("hangzhou", sim.terminal_id, [c.card_no for c in cards], times), sim, cards


@pytest.fixture
def jx_fleet(tenant):
    """Jiaxing: terminal JX-GQL-1 and 2 own cards × 3 taps (the other tenant of the isolation probes)."""
    jiaxing = tenant("jiaxing")
    cards = [SimCard(card_number("330400", 700 + i)) for i in range(2)]
    sim, times = taps_in(jiaxing, terminal_id="JX-GQL-1", cards=cards, per_card=3)
    return Fleet("jiaxing", sim.terminal_id, [c.card_no for c in cards], times), sim, cards
