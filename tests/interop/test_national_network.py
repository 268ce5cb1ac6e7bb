"""A large network's cycle (docs/clearing.md, "A national network"): 40 participants (a national network has
300; the same code at a test's scale) netted and settled with the matrix equal to the records' sums per pair,
Σ net = 0 and a reconciliation file per participant holding exactly its records; the console's cycle page
draws the matrix as a heat map with the largest flows, payers and receivers instead of a table, in the same
queries for 10 participants as for 40."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections import Counter, defaultdict

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from citycard.interop.models import (
    BilateralPosition,
    ClearingCycle,
    CycleState,
    MatrixPicture,
    NetPosition,
    ReconciliationFile,
    SettlementInstruction,
)
from citycard.interop.services.cycles import cycle_get_or_create, cycle_net, cycle_settle
from citycard.interop.services.records import records_insert
from citycard.interop.terms import fee_fen
from citycard.platform.models import Role
from citycard.platform.services import user_create

from .conftest import DAY, at

pytestmark = pytest.mark.django_db
HOST = {"HTTP_HOST": "localhost"}
SMALL_DAY = DAY - dt.timedelta(days=1)


def _participants(n: int) -> list[str]:
    """Participants without tenants (netting and settlement need only their codes; no file is delivered)."""
    return [f"city{i:03d}" for i in range(n)]


def _cycle_of(
    day: dt.date, participants: list[str], *, seed: int, settle: bool = True
) -> tuple[ClearingCycle, list[tuple]]:
    """A validated cycle where every participant acquires for most others: 1–3 records a pair, a few pairs
    skipped, ~2% rejected by their issuer. Returns the cycle and its records (acquirer, issuer, amount,
    rejected)."""
    rng = random.Random(seed)
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=day)
    terms = cycle.agreement.version_on(day)
    items, rows = [], []
    for acquirer in participants:
        for issuer in participants:
            if issuer == acquirer or rng.random() < 0.05:
                continue
            for _ in range(rng.randint(1, 3)):
                amount = rng.choice((100, 150, 200, 300, 1250))
                rejected = rng.random() < 0.02
                n = len(rows)
                items.append((acquirer, issuer, amount, rejected))
                rows.append(
                    [
                        f"{acquirer}-{day:%m%d}{n}",
                        cycle.pk,
                        "tap",
                        "m",
                        acquirer,
                        issuer,
                        "3301000000000000000",
                        n,
                        amount,
                        fee_fen(amount, terms.issuer_fee_bps),
                        fee_fen(amount, terms.network_fee_bps),
                        at(day, 9).isoformat(),
                        at(day, 10).isoformat(),
                        json.dumps({}),
                    ]
                )
    records_insert(rows=rows)
    rejected_ids = [row[0] for row, item in zip(rows, items, strict=True) if item[3]]
    cycle.records.filter(record_id__in=rejected_ids).update(status="rejected", reason="tac_invalid")
    # Validated (validation itself is per issuer, exercised elsewhere): the rest read valid.
    ClearingCycle.objects.filter(pk=cycle.pk).update(state=CycleState.VALIDATED)
    now = at(day + dt.timedelta(days=1), 6)
    cycle = cycle_net(cycle=cycle, now=now)
    if settle:
        cycle = cycle_settle(cycle=cycle, now=now)
    return cycle, items


@pytest.fixture
def clerk() -> Client:
    client = Client()
    client.force_login(
        user_create(username="clerk-zhao", role=Role.CLEARING_STAFF, password="a-long-password-1")
    )
    return client


def test_a_40_participant_cycle_nets_to_zero_with_a_file_per_participant_holding_its_records(yrd_transit):
    participants = _participants(40)
    cycle, items = _cycle_of(DAY, participants, seed=40)
    valid = [(a, i, amount) for a, i, amount, rejected in items if not rejected]
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for acquirer, issuer, amount in valid:
        expected[(issuer, acquirer)][0] += 1
        expected[(issuer, acquirer)][1] += amount
    matrix = {
        (b.issuer, b.acquirer): [b.records, b.amount_fen]
        for b in BilateralPosition.objects.filter(cycle=cycle)
    }
    assert matrix == dict(expected) and len(matrix) > 1400  # 40 × 39 pairs, ~5% left out
    nets = dict(NetPosition.objects.filter(cycle=cycle).values_list("participant", "net_fen"))
    assert sum(nets.values()) == 0 and set(nets) == {*participants, "yrd-operator"}
    instructions = SettlementInstruction.objects.filter(cycle=cycle)
    assert sum(i.amount_fen for i in instructions if i.payee == "yrd-settlement") == sum(
        i.amount_fen for i in instructions if i.payer == "yrd-settlement"
    )
    assert instructions.count() == sum(1 for net in nets.values() if net)
    files = {f.participant: f for f in ReconciliationFile.objects.filter(cycle=cycle)}
    assert set(files) == {*participants, "yrd-operator"}
    involved = Counter()
    for acquirer, issuer, _amount, _rejected in items:
        involved[acquirer] += 1
        involved[issuer] += 1
    for participant in participants:
        text = files[participant].csv
        details = text.split("# details\n", 1)[1].splitlines()[1:]
        assert len(details) == involved[participant], participant
        totals = files[participant].totals
        assert totals["net_fen"] == nets[participant]
        assert totals["issued_amount_fen"] == sum(a for _acq, i, a in valid if i == participant)
        assert totals["acquired_amount_fen"] == sum(a for acq, _i, a in valid if acq == participant)
        assert totals["rejected_records"] == sum(
            1 for acq, i, _a, rejected in items if rejected and participant in (acq, i)
        )
    assert files["yrd-operator"].totals["net_fen"] == nets["yrd-operator"] > 0


def _page(clerk: Client, day: dt.date) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as queries:
        response = clerk.get(f"/console/cycles/yrd/transit/{day.isoformat()}/", **HOST)
    assert response.status_code == 200
    return response.content.decode(), len(queries)


def test_a_large_networks_cycle_page_is_a_heat_map_with_top_lists_in_the_same_queries_as_a_small_one(
    yrd_transit, clerk
):
    small, _ = _cycle_of(SMALL_DAY, _participants(10), seed=10)
    large, _ = _cycle_of(DAY, _participants(40), seed=40)
    small_html, small_queries = _page(clerk, SMALL_DAY)
    large_html, large_queries = _page(clerk, DAY)
    assert small_queries == large_queries == 13
    cell = r'class="num cell" data-issuer="(\w+)" data-acquirer="(\w+)" data-fen="(-?\d+)"'
    # Ten participants: the table and the heat map; forty: no table of 1,500 cells, the heat map only.
    assert len(re.findall(cell, small_html)) == BilateralPosition.objects.filter(cycle=small).count()
    assert re.findall(cell, large_html) == [] and 'id="matrix-large"' in large_html
    heat = json.loads(
        re.search(
            r'<script id="heatmap-data" type="application/json">(.*?)</script>', large_html, re.S
        ).group(1)
    )
    stored = BilateralPosition.objects.filter(cycle=large)
    assert {(heat["y"][y], heat["x"][x]): (fen, n) for x, y, fen, n in heat["data"]} == {
        (b.issuer, b.acquirer): (b.amount_fen, b.records) for b in stored
    }
    largest = [
        (i, a, int(f))
        for i, a, f in re.findall(
            r'class="flow" data-issuer="(\w+)" data-acquirer="(\w+)" data-fen="(\d+)"', large_html
        )
    ]
    assert largest == [
        (b.issuer, b.acquirer, b.amount_fen)
        for b in stored.order_by("-amount_fen", "issuer", "acquirer")[:10]
    ]
    positions = NetPosition.objects.filter(cycle=large)
    payers = [
        (p, int(f))
        for p, f in re.findall(r'class="payer" data-participant="([\w-]+)" data-fen="(-?\d+)"', large_html)
    ]
    receivers = [
        (p, int(f))
        for p, f in re.findall(r'class="receiver" data-participant="([\w-]+)" data-fen="(-?\d+)"', large_html)
    ]
    assert payers == [
        (p.participant, p.net_fen)
        for p in positions.filter(net_fen__lt=0).order_by("net_fen", "participant")[:10]
    ]
    assert receivers == [
        (p.participant, p.net_fen)
        for p in positions.filter(net_fen__gt=0).order_by("-net_fen", "participant")[:10]
    ]
    total = sum(b.amount_fen for b in stored)
    assert f'id="matrix-total" data-fen="{total}"' in large_html
    assert 'id="net-sum" data-fen="0"' in large_html


def _heat(html: str) -> dict:
    return json.loads(
        re.search(r'<script id="heatmap-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    )


def test_settlement_stores_the_picture_the_page_drew_live_while_the_cycle_was_only_netted(yrd_transit, clerk):
    cycle, _items = _cycle_of(DAY, _participants(35), seed=35, settle=False)
    live_html, live_queries = _page(clerk, DAY)
    assert not MatrixPicture.objects.filter(cycle=cycle).exists()
    cycle_settle(cycle=cycle, now=at(DAY + dt.timedelta(days=1), 6))
    stored_html, stored_queries = _page(clerk, DAY)
    picture = MatrixPicture.objects.get(cycle=cycle)
    # Netted only: the matrix aggregated live; settled: read. The same query either way.
    assert live_queries == stored_queries == 13
    live, stored = _heat(live_html), _heat(stored_html)
    assert {k: v for k, v in live.items() if k != "data"} == {k: v for k, v in stored.items() if k != "data"}
    assert (
        sorted(map(tuple, live["data"]))
        == sorted(map(tuple, stored["data"]))
        == sorted(map(tuple, json.loads(picture.points_json)))
    )
    assert [c["amount_fen"] for c in picture.largest] == list(
        BilateralPosition.objects.filter(cycle=cycle)
        .order_by("-amount_fen", "issuer", "acquirer")
        .values_list("amount_fen", flat=True)[:10]
    )
    for html in (live_html, stored_html):
        total = sum(BilateralPosition.objects.filter(cycle=cycle).values_list("amount_fen", flat=True))
        assert f'id="matrix-total" data-fen="{total}"' in html
