"""A large network's cycle (docs/clearing.md, "A national network"): 40 participants (a national network has
300; the same code at a test's scale) netted and settled with the matrix equal to the records' sums per pair,
Σ net = 0 and a reconciliation file per participant holding exactly its records; the console's cycle page
draws the matrix as a heat map with the largest flows, payers and receivers instead of a table, in the same
queries for 10 participants as for 40."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from citycard.interop.models import (
    BilateralPosition,
    MatrixPicture,
    NetPosition,
    ReconciliationFile,
    SettlementInstruction,
)
from citycard.interop.services.cycles import cycle_settle
from citycard.platform.models import Role
from citycard.platform.services import user_create

from .conftest import DAY, at
from .large_cycle import REASONS, cycle_of, participants_named

pytestmark = pytest.mark.django_db
HOST = {"HTTP_HOST": "localhost"}
SMALL_DAY = DAY - dt.timedelta(days=1)


@pytest.fixture
def clerk() -> Client:
    client = Client()
    client.force_login(
        user_create(username="clerk-zhao", role=Role.CLEARING_STAFF, password="a-long-password-1")
    )
    return client


def test_a_40_participant_cycle_nets_to_zero_with_a_file_per_participant_holding_its_records(yrd_transit):
    participants = participants_named(40)
    cycle, items = cycle_of(DAY, participants, seed=40)
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
    small, _ = cycle_of(SMALL_DAY, participants_named(10), seed=10)
    large, _ = cycle_of(DAY, participants_named(40), seed=40)
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
    cycle, _items = cycle_of(DAY, participants_named(35), seed=35, settle=False)
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


def _get(clerk: Client, url: str) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as queries:
        response = clerk.get(url, **HOST)
    assert response.status_code == 200, url
    return response.content.decode(), len(queries)


def _rejected(items: list[tuple]) -> dict[tuple[str, str, str], list[int]]:
    """{(reason, issuer, acquirer): [records, fen]} of the rejected records."""
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for acquirer, issuer, amount, reason in items:
        if reason:
            groups[(reason, issuer, acquirer)][0] += 1
            groups[(reason, issuer, acquirer)][1] += amount
    return groups


def test_a_large_networks_exceptions_page_shows_top_issuers_per_reason_then_pages_by_reason_and_issuer(
    yrd_transit, clerk, monkeypatch
):
    _small, small_items = cycle_of(SMALL_DAY, participants_named(10), seed=10, reasons=REASONS)
    _large, items = cycle_of(DAY, participants_named(40), seed=41, reasons=REASONS)
    small_html, small_queries = _get(
        clerk, f"/console/cycles/yrd/transit/{SMALL_DAY.isoformat()}/exceptions/"
    )
    large_url = f"/console/cycles/yrd/transit/{DAY.isoformat()}/exceptions/"
    large_html, large_queries = _get(clerk, large_url)
    assert small_queries == large_queries == 7
    # Ten participants: every reason × issuer × acquirer group, each a link to its records, as before.
    group_link = r"records/\?status=rejected&amp;reason=(\w+)&amp;issuer=(\w+)&amp;acquirer=(\w+)\""
    assert sorted(re.findall(group_link, small_html)) == sorted(_rejected(small_items))
    # Forty: no list of every group; each reason's ten largest issuers by amount, then issuer.
    groups = _rejected(items)
    assert len(groups) > 30 and re.findall(group_link, large_html) == []
    assert 'id="exceptions-large"' in large_html
    by_issuer: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (reason, issuer, _acquirer), (n, fen) in groups.items():
        by_issuer[(reason, issuer)][0] += n
        by_issuer[(reason, issuer)][1] += fen
        by_issuer[(reason, issuer)][2] += 1
    cut_short = []
    for reason in REASONS:
        section = re.search(
            rf'<section class="reason" data-reason="{reason}">(.*?)</section>', large_html, re.S
        )
        shown = [
            (issuer, int(fen))
            for issuer, fen in re.findall(
                r'class="top-issuer" data-issuer="(\w+)" data-fen="(\d+)"', section[1]
            )
        ]
        expected = sorted(
            ((issuer, fen) for (r, issuer), (_n, fen, _a) in by_issuer.items() if r == reason),
            key=lambda item: (-item[1], item[0]),
        )
        assert shown == expected[:10]
        cut_short.append(len(expected) > 10)
        assert f'href="{large_url}?reason={reason}"' in section[1]
    assert any(cut_short)  # some reason has more than ten issuers

    # A reason's issuers, every one, largest first: one aggregate, the same queries.
    reason_html, reason_queries = _get(clerk, f"{large_url}?reason=tac_invalid")
    assert reason_queries == 7
    listed = re.findall(r'class="issuer" data-issuer="(\w+)" data-fen="(\d+)"', reason_html)
    assert [(i, int(f)) for i, f in listed] == sorted(
        ((issuer, fen) for (r, issuer), (_n, fen, _a) in by_issuer.items() if r == "tac_invalid"),
        key=lambda item: (-item[1], item[0]),
    )
    # An issuer's groups by reason and acquirer, paged (three a page here) with the same queries per page.
    monkeypatch.setattr("citycard.interop.console.views.EXCEPTION_GROUPS_SHOWN", 3)
    issuer = max({i for (_r, i, _a) in groups}, key=lambda i: sum(1 for (_r, j, _a) in groups if j == i))
    theirs = sorted(
        ((r, a, fen) for (r, i, a), (_n, fen) in groups.items() if i == issuer),
        key=lambda g: (g[0], -g[2], g[1]),
    )
    assert len(theirs) > 3
    seen, url = [], f"{large_url}?issuer={issuer}"
    while url:
        html, queries = _get(clerk, url)
        assert queries == 7
        seen += [
            (r, a, int(f))
            for r, a, f in re.findall(
                r'class="group" data-reason="(\w+)" data-acquirer="(\w+)" data-fen="(\d+)"', html
            )
        ]
        following = re.search(r'id="next-page" class="button" href="\?([^"]+)"', html)
        url = f"{large_url}?{following[1].replace('&amp;', '&')}" if following else None
    assert seen == theirs


def test_a_large_networks_net_position_chart_draws_the_top_ten_and_those_chosen(yrd_transit, clerk):
    cycle_of(SMALL_DAY, participants_named(10), seed=10)
    cycle_of(DAY, participants_named(40), seed=40)
    small_html, small_queries = _get(clerk, f"/console/charts/?days=30&date={SMALL_DAY.isoformat()}")
    large_url = f"/console/charts/?days=30&date={DAY.isoformat()}"
    large_html, large_queries = _get(clerk, large_url)
    assert small_queries == large_queries == 8
    small = json.loads(
        re.search(r'<script id="positions-data" type="application/json">(.*?)</script>', small_html, re.S)[1]
    )
    # Ten participants (and the network's operator): a line each, as before.
    assert len(small["series"]) == 11 and 'id="positions-choose"' not in small_html
    moved: Counter = Counter()
    for participant, net in NetPosition.objects.filter(cycle__business_date__in=(SMALL_DAY, DAY)).values_list(
        "participant", "net_fen"
    ):
        moved[participant] += abs(net)
    top = [p for p, _m in sorted(moved.items(), key=lambda item: (-item[1], item[0]))[:10]]

    def series(html: str) -> list[str]:
        spec = re.search(r'<script id="positions-data" type="application/json">(.*?)</script>', html, re.S)[1]
        return [s["name"] for s in json.loads(spec)["series"]]

    # Forty: the ten that moved most, largest first, and the selector offers every participant.
    assert series(large_html) == top and 'id="positions-large"' in large_html
    assert len(re.findall(r'<option value="([\w-]+)"', large_html)) == len(moved) == 41
    # Any participant on demand: asked for by name, its line joins the top ten (the same queries).
    quiet = min(moved, key=lambda p: (moved[p], p))
    chosen_html, chosen_queries = _get(clerk, f"{large_url}&participant={quiet}")
    assert chosen_queries == 8
    assert series(chosen_html) == [*top, quiet]
    assert f'<option value="{quiet}" selected>' in chosen_html
