"""GraphQL tests: keys issued through the service, taps stored through the real ingestion, requests
through the Django test client on the tenant's or the platform's host. Fixed dates throughout."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingCycle
from citycard.interop.services import cycles
from citycard.platform import services
from citycard.platform.scopes import Scope
from citycard.tenants.terminals import checks
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.services import terminal_register
from citycard.tenants.terminals.simulate import SimCard, SimTerminal, card_number
from citycard.terminal_kit.beijing import BEIJING
from tests.interop.conftest import DAY, at, collect, record, send, yrd_transit  # noqa: F401 (fixtures)
from tests.tenants.medical.conftest import dongguan_card, world  # noqa: F401 (fixtures)

BASE = dt.datetime(2026, 3, 2, 8, 0, tzinfo=BEIJING)
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


# --- the tenant domain behind the partner fields: schemes, cardholders, cards, accounts, subsidies ---------

ISSUED = dt.datetime(2026, 1, 5, 10, 0, tzinfo=BEIJING)
RULES_FROM = dt.datetime(2026, 1, 1, tzinfo=BEIJING)
ON = dt.date(2026, 3, 2)  # the day categories and concessions are asked about


@dataclass
class People:
    """What ``people_in`` made in one tenant (fixed ID numbers and dates, so card numbers repeat)."""

    tenant_code: str
    elderly_card: str  # 01, active: account 3000 fen, e-purse shadow 2000, two subsidy payments
    elderly_id: str
    plain_card: str  # 01, active, no categories, no account
    plain_id: str
    anonymous_card: str  # 03, active, no cardholder
    unregistered_id: str  # a valid ID number nobody here holds
    service_points: list[str]


def people_in(tenant_obj, *, division: str, prefix: str, fares: dict | None = None) -> People:
    from citycard.tenants.accounts import services as accounts
    from citycard.tenants.cards import services as cards
    from citycard.tenants.cards.pii import id_number_build
    from citycard.tenants.departments import services as departments
    from citycard.tenants.fares import services as fare_services

    elderly_id = id_number_build(division=division, birth_date=dt.date(1950, 5, 1), sequence=121)
    plain_id = id_number_build(division=division, birth_date=dt.date(1990, 7, 9), sequence=342)
    unregistered_id = id_number_build(division=division, birth_date=dt.date(1988, 2, 3), sequence=555)
    with tenant_context(tenant_obj):
        cards.schemes_seed(actor="test")
        elderly = cards.cardholder_register(
            actor="test",
            name="王老伯",
            id_number=elderly_id,
            local_hukou=True,
            categories=[
                {"code": "elderly", "valid_from": dt.date(2020, 1, 1)},
                {"code": "disabled", "valid_from": dt.date(2021, 1, 1), "valid_to": dt.date(2021, 12, 31)},
            ],
        )
        plain = cards.cardholder_register(actor="test", name="李四", id_number=plain_id, local_hukou=True)
        elderly_card = cards.card_issue_now(
            scheme_code="01", cardholder_id=elderly.pk, actor="test", at=ISSUED
        )
        plain_card = cards.card_issue_now(scheme_code="01", cardholder_id=plain.pk, actor="test", at=ISSUED)
        anonymous = cards.card_issue_now(scheme_code="03", cardholder_id=None, actor="test", at=ISSUED)
        accounts.account_open(card_no=elderly_card.card_no, actor="test")
        accounts.account_topup(
            card_no=elderly_card.card_no, amount_fen=5000, idempotency_key="t-topup", actor="test", at=ISSUED
        )
        accounts.purse_load(
            card_no=elderly_card.card_no, amount_fen=2000, idempotency_key="t-load", actor="test", at=ISSUED
        )
        for code, items in (
            (
                "elderly-care",
                [{"item": "高龄津贴", "amount_fen": 10000}, {"item": "交通补贴", "amount_fen": 2500}],
            ),
            ("heating", [{"item": "取暖补贴", "amount_fen": 3000}]),
        ):
            accounts.subsidy_programme_save(
                code=code, name=code, items=items, category="elderly", actor="test"
            )
            accounts.subsidy_run(programme_code=code, period="2026-02", on=dt.date(2026, 2, 1), actor="test")
        departments.department_create(
            code=f"{prefix}-hrss", kind="hrss", name=f"{prefix} 人社局", actor="test"
        )
        departments.department_create(code=f"{prefix}-bank", kind="bank", name=f"{prefix} 银行", actor="test")
        points = [
            (
                f"{prefix}-sp-1",
                f"{prefix}-hrss",
                "市民卡中心",
                "解放路 1 号",
                ["apply", "issue", "loss", "replace"],
            ),
            (f"{prefix}-sp-2", f"{prefix}-hrss", "社保窗口", "延安路 2 号", ["ss_activate", "enquiry"]),
            (f"{prefix}-sp-3", f"{prefix}-bank", "银行网点", "解放路 3 号", ["topup", "loss"]),
        ]
        for code, dept, name, address, offered in points:
            departments.service_point_create(
                department=dept,
                code=code,
                name=name,
                address=address,
                hours="周一至周五 8:30-17:00",
                services=offered,
                actor="test",
            )
        if fares is not None:
            fare_services.fares_document_load(tenant=tenant_obj, document=fares, actor="test")
            fare_services.fares_publish(tenant=tenant_obj, actor="test", effective_from=RULES_FROM)
    return People(
        tenant_obj.code,
        elderly_card.card_no,
        elderly_id,
        plain_card.card_no,
        plain_id,
        anonymous.card_no,
        unregistered_id,
        [p[0] for p in points],
    )


@pytest.fixture
def hz_people(tenant):
    """Hangzhou's cardholders and cards (see People), departments and service points, and its published
    fare rules (the Hangzhou seed: elderly half price, free off-peak within a quota, …)."""
    from citycard.tenants.fares import selectors
    from citycard.tenants.fares.seeds import HANGZHOU

    selectors._engines.clear()
    yield people_in(tenant("hangzhou"), division="330102", prefix="hz", fares=HANGZHOU)
    selectors._engines.clear()


@pytest.fixture
def jx_people(tenant):
    """Jiaxing's (the other tenant of the isolation probes), without published fare rules."""
    return people_in(tenant("jiaxing"), division="330402", prefix="jx")


# --- clearing (platform endpoint): cycles cleared through the interop services on fixed business dates ------

NEXT = DAY + dt.timedelta(days=1)
EARLIER = DAY - dt.timedelta(days=1)
SETTLE_AT = at(NEXT, 5)


def clear(send_, collect_, day: dt.date, records: list[dict], *, now: dt.datetime) -> ClearingCycle:
    """Send each acquirer's records, collect them and run the cycle of ``day`` to settlement at ``now``."""
    by_acquirer: dict[str, list[dict]] = {}
    for r in records:
        by_acquirer.setdefault(r["acquirer"], []).append(r)
    for code, rows in by_acquirer.items():
        send_(code, rows, now=at(day, 11))
        collect_(code, now=at(day, 12))
    cycle = cycles.cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    return cycles.cycle_run(cycle=cycle, now=now)


def day_records(day: dt.date, serial: int) -> list[dict]:
    """Jiaxing acquires 300 + 500 from Hangzhou cards and one with a bad TAC; Hangzhou acquires 100."""
    return [
        record(
            acquirer="jiaxing",
            issuer="hangzhou",
            issuer_division="330100",
            serial=serial,
            amount=300,
            when=at(day, 9),
        ),
        record(
            acquirer="jiaxing",
            issuer="hangzhou",
            issuer_division="330100",
            serial=serial + 1,
            amount=500,
            when=at(day, 9),
        ),
        record(
            acquirer="jiaxing",
            issuer="hangzhou",
            issuer_division="330100",
            serial=serial + 2,
            bad_tac=True,
            when=at(day, 9),
        ),
        record(
            acquirer="hangzhou",
            issuer="jiaxing",
            issuer_division="330400",
            serial=serial + 3,
            amount=100,
            when=at(day, 9),
        ),
    ]


@pytest.fixture
def cleared(yrd_transit, send, collect):  # noqa: F811
    """Two settled yrd transit cycles (EARLIER, DAY), and NEXT open (closing DAY opened it)."""
    earlier = clear(send, collect, EARLIER, day_records(EARLIER, 10), now=at(DAY, 5))
    cycle = clear(send, collect, DAY, day_records(DAY, 1), now=SETTLE_AT)
    return earlier, cycle


@pytest.fixture
def fixed_now(monkeypatch):
    """The moment the clearing mutations act at (set ``fixed_now.at``)."""

    class Clock:
        at = at(NEXT, 8)

    monkeypatch.setattr("citycard.graphql.clearing.clock.now", lambda: Clock.at)
    return Clock
