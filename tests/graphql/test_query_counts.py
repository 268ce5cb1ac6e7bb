"""Query counts pinned for every list field: the same whatever the page size (dataloaders, no N+1).

Each count includes the request's fixed costs: the tenant's domain (django-tenants), the API key (or the
session and user on the platform endpoint) and the rate-limit counter.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from citycard.interop.models import ClearingRecord
from citycard.interop.services import disputes
from citycard.platform.scopes import Scope
from citycard.tenants.terminals.simulate import SimCard, card_number
from tests.interop.conftest import DAY, at

from .conftest import clear, data_of, day_records, gql, issue, taps_in
from .test_platform import login

pytestmark = pytest.mark.django_db
# SET search_path (public), the domain, SET search_path (tenant, public), the API key (with its address's
# failed authentications, in the same query), the rate counter
FIXED_TENANT = 5
# SET search_path, the domain, SET search_path (public again), the session, the user, the rate counter
FIXED_PLATFORM = 6
# the access-log entry of a request that read personal data: savepoint, head lock, insert, head update, release
ACCESS_LOG = 5


def count(client, host, query, variables=None, token=None) -> tuple[int, dict]:
    with CaptureQueriesContext(connection) as queries:
        data = data_of(gql(client, host, query, variables, token=token))
    import os

    if os.environ.get("QC_DEBUG"):
        for q in queries.captured_queries:
            print("   ", q["sql"][:150])
    return len(queries.captured_queries), data


@pytest.fixture
def fleet(tenant):
    cards = [SimCard(card_number("330100", 500 + i)) for i in range(3)]
    taps_in(tenant("hangzhou"), terminal_id="HZ-QC-1", cards=cards, per_card=20)
    taps_in(tenant("hangzhou"), terminal_id="HZ-QC-2", cards=cards, per_card=20)
    return [c.card_no for c in cards]


@pytest.fixture
def token(client):
    token = issue("hangzhou")
    data_of(gql(client, "hangzhou", "{ me { keyId } }", token=token))  # records last use once
    return token


TX = """query($n: Int) { transactions(first: $n) { edges { node { id cardNumber amountFen
  terminal { terminalId operator route } } } pageInfo { hasNextPage endCursor } } }"""
CARD = """query($n: Int, $card: String!) { cardTransactions(cardNumber: $card, first: $n) {
  edges { node { id amountFen terminal { terminalId } } } } }"""
TERMINALS = "query($n: Int) { terminals(first: $n) { edges { node { terminalId status } } } }"


@pytest.mark.parametrize("size", [2, 5, 50, 100])
def test_transactions_page(client, token, fleet, size):
    n, data = count(client, "hangzhou", TX, {"n": size}, token)
    assert len(data["transactions"]["edges"]) == size
    # the page, the terminals of its nodes; and the access-log entry of the page's cards (one whatever the size)
    assert n == FIXED_TENANT + 2 + ACCESS_LOG


@pytest.mark.parametrize("size", [1, 20, 40])
def test_card_history(client, token, fleet, size):
    n, data = count(client, "hangzhou", CARD, {"n": size, "card": fleet[0]}, token)
    assert len(data["cardTransactions"]["edges"]) == size
    # the page, the terminals, and the access-log entry (savepoint, head lock, insert, head update, release)
    assert n == FIXED_TENANT + 2 + ACCESS_LOG


@pytest.mark.parametrize("size", [1, 2])
def test_terminals_page(client, token, fleet, size):
    n, data = count(client, "hangzhou", TERMINALS, {"n": size}, token)
    assert len(data["terminals"]["edges"]) == size
    assert n == FIXED_TENANT + 1


TENANTS = """query($n: Int) { tenants(first: $n) { edges { node { code domain parent { code }
  counties { code networks { code } } networks { code members { tenant { code } } } } } } }"""
NETWORKS = "{ roamingNetworks { code members { tenant { code counties { code } } via { code } } } }"


@pytest.mark.parametrize("size", [3, 5, 7])  # each page holds a county (its parent is loaded)
def test_platform_tenants_page(client, size):
    login(client, "clearing_staff")
    data_of(gql(client, "", "{ me { username } }"))
    n, data = count(client, "", TENANTS, {"n": size})
    assert len(data["tenants"]["edges"]) == size
    # page, domains, parents, counties, networks, members (memberships and their counties)
    assert n == FIXED_PLATFORM + 7


def test_platform_networks(client):
    login(client, "clearing_staff")
    data_of(gql(client, "", "{ me { username } }"))
    n, data = count(client, "", NETWORKS)
    assert len(data["roamingNetworks"]) == 3  # yrd, gba and the national tunion
    assert n == FIXED_PLATFORM + 4  # networks, members (memberships and their counties), counties


# --- the partner fields (tenant domain) ----------------------------------------------------------------

CARD_FULL = """query($n: Int, $card: String!) { card(number: $card) {
  number state scheme { code applications } applications validFrom expiresOn
  balance { accountFen purseShadowFen }
  transactions(first: $n) { edges { node { id amountFen terminal { terminalId } } } }
} }"""
SUBSIDIES = """query($n: Int, $card: String!) { subsidyPayments(cardNumber: $card, first: $n) {
  edges { node { id amountFen programme { code name } period items { item amountFen } } } } }"""
POINTS = """query($n: Int) { servicePoints(first: $n, filter: {text: "路"}) {
  edges { node { code name services department { code kind name } } } } }"""


@pytest.fixture
def people_taps(tenant, hz_people):
    cards = [SimCard(hz_people.elderly_card)]
    taps_in(tenant("hangzhou"), terminal_id="HZ-QC-3", cards=cards, per_card=40)
    return hz_people


@pytest.mark.parametrize("size", [1, 10, 40])
def test_card_with_balance_and_transactions(client, token, people_taps, size):
    n, data = count(client, "hangzhou", CARD_FULL, {"n": size, "card": people_taps.elderly_card}, token)
    assert len(data["card"]["transactions"]["edges"]) == size
    # the card with its scheme; the account and the e-purse shadow (one loader); the page and its terminals
    assert n == FIXED_TENANT + 1 + 2 + 2 + ACCESS_LOG


def test_cards_under_aliases_batch_their_balances(client, token, hz_people):
    query = " ".join(
        f'c{i}: card(number: "{number}") {{ balance {{ accountFen purseShadowFen }} }}'
        for i, number in enumerate([hz_people.elderly_card, hz_people.plain_card, hz_people.anonymous_card])
    )
    n, data = count(client, "hangzhou", "{ " + query + " }", None, token)
    assert data["c0"]["balance"]["accountFen"] == 18_500
    assert n == FIXED_TENANT + 3 + 2 + ACCESS_LOG  # a query per card asked for, one batch of balances


@pytest.mark.parametrize("size", [1, 2, 10])
def test_subsidy_payments_page(client, token, hz_people, size):
    n, data = count(client, "hangzhou", SUBSIDIES, {"n": size, "card": hz_people.elderly_card}, token)
    assert len(data["subsidyPayments"]["edges"]) == min(size, 2)
    assert n == FIXED_TENANT + 1 + 2 + ACCESS_LOG  # the card; the page (runs, programmes), its items


@pytest.mark.parametrize("size", [1, 2, 3])
def test_service_points_page(client, token, hz_people, size):
    n, data = count(client, "hangzhou", POINTS, {"n": size}, token)
    assert len(data["servicePoints"]["edges"]) == min(size, 3)
    assert n == FIXED_TENANT + 1  # the page with its departments


def test_categories_and_verify(client, token, hz_people):
    query = """query($card: String!) { cardholderCategories(cardNumber: $card, onDate: "2026-03-02") {
      categories { code validFrom validTo } concessions { ruleId quota { id } } } }"""
    count(client, "hangzhou", query, {"card": hz_people.elderly_card}, token)  # the rules compiled once
    n, data = count(client, "hangzhou", query, {"card": hz_people.elderly_card}, token)
    assert data["cardholderCategories"]["concessions"]
    assert n == FIXED_TENANT + 1 + 1 + 2 + ACCESS_LOG  # the card; its categories; the publication, its owner
    verify = "query($card: String!, $id: String!) { cardholderVerify(cardNumber: $card, idNumber: $id) { matches } }"
    n, data = count(
        client, "hangzhou", verify, {"card": hz_people.elderly_card, "id": hz_people.elderly_id}, token
    )
    assert data["cardholderVerify"]["matches"] is True
    # the card's failed attempts this window; its blind index; the data keys the HMAC key derives from
    assert n == FIXED_TENANT + 1 + 3 + ACCESS_LOG


def test_mutations(client, hz_people):
    token = issue("hangzhou", [Scope.CARDS_REPORT_LOSS, Scope.CARDS_APPLY])
    data_of(gql(client, "hangzhou", "{ me { keyId } }", token=token))
    report = """mutation($c: String!, $i: String!) { cardReportLost(cardNumber: $c, idNumber: $i) {
      card { number state } reportedAt alreadyReported errors { code } } }"""
    variables = {"c": hz_people.plain_card, "i": hz_people.plain_id}
    n, data = count(client, "hangzhou", report, variables, token)
    assert data["cardReportLost"]["errors"] == []
    # the card, its failed ID checks this window, its blind index and the data keys; the card locked (twice,
    # by the service and its transition); the state change and its audit entry; the hotlist check, head and
    # entry and their audit entry; the savepoints of the nested transactions; whether the holder has
    # entitlements, whose offline list would follow the card. Pinned so that a change is noticed.
    assert n == FIXED_TENANT + 31 + ACCESS_LOG
    n, data = count(client, "hangzhou", report, variables, token)
    assert data["cardReportLost"]["alreadyReported"] is True
    assert (
        n == FIXED_TENANT + 13 + ACCESS_LOG
    )  # the card read and checked again (its ID too); nothing written
    apply = """mutation($k: String!) { cardApply(schemeCode: "03", requestKey: $k) {
      card { number } errors { code } } }"""
    n, data = count(client, "hangzhou", apply, {"k": "qc-1"}, token)
    assert data["cardApply"]["errors"] == []
    # the request key looked up; the scheme; a serial taken; the card inserted; its audit entry; savepoints
    assert n == FIXED_TENANT + 17
    n, data = count(client, "hangzhou", apply, {"k": "qc-1"}, token)
    assert n == FIXED_TENANT + 8  # the retry: the earlier card and its scheme, nothing written


# --- clearing (platform endpoint) ----------------------------------------------------------------------------

CYCLES_FULL = """query($n: Int) { clearingCycles(first: $n, filter: {states: [SETTLED, DISPUTED]}) { edges { node {
  label state agreement { operator network { code } issuerFeeBps } network { code }
  agreementVersion { label networkFeeBps cutOff }
  stateHistory { state at } totals { records { records amountFen } rejected { records } }
  bilateralMatrix { issuer acquirer amountFen }
  bilateralCells(first: 2, order: AMOUNT_DESC) { edges { node { issuer } } }
  netPositions { positions { participant netFen } sumFen }
  settlementInstructions { payer payee amountFen } exceptionSummary { reason records }
  exceptions(first: 5) { edges { node { recordId reason cycle { label } } } pageInfo { hasNextPage } }
  records(first: 3, status: VALID) { edges { node { recordId status amountFen } } pageInfo { hasNextPage } }
  disputes { id record { recordId } adjustment { recordId } }
  reconciliationFiles { participant state confirmed totals { netFen } }
} } } }"""
DISPUTES = """query($n: Int) { disputes(first: $n) { edges { node { id state
  record { recordId cycle { label network { code } } } adjustment { recordId cycle { label } } } } } }"""


@pytest.fixture
def cleared_cycles(yrd_transit, send, collect):
    """Three settled yrd transit cycles, each with a matrix, positions, an exception and a disputed record
    (the first one's dispute accepted: an adjustment in a later cycle)."""
    days = [DAY - dt.timedelta(days=i) for i in (2, 1, 0)]
    for i, day in enumerate(days):
        after = day + dt.timedelta(days=1)
        cycle = clear(send, collect, day, day_records(day, 100 + 10 * i), now=at(after, 5))
        record = ClearingRecord.objects.filter(cycle=cycle, kind="tap").valid().order_by("record_id").first()
        dispute = disputes.dispute_raise(
            record_id=record.record_id, raised_by=record.issuer, reason="check", now=at(after, 6)
        )
        if i == 0:
            disputes.dispute_resolve(
                dispute_id=dispute.pk, accept=True, resolution="ok", actor="test", now=at(after, 7)
            )
    return days


@pytest.mark.parametrize("size", [1, 2, 3])
def test_clearing_cycles_page(client, cleared_cycles, size):
    login(client, "clearing_staff")
    data_of(gql(client, "", "{ me { username } }"))
    n, data = count(client, "", CYCLES_FULL, {"n": size})
    nodes = [e["node"] for e in data["clearingCycles"]["edges"]]
    assert len(nodes) == size and all(node["netPositions"]["sumFen"] == 0 for node in nodes[-1:])
    # the page (with agreements and networks); disputes (with records and adjustments); totals; matrix;
    # a page of cells (ROW_NUMBER per cycle); positions; instructions; exception summary; the exception pages
    # and the record pages (one query each, the same); files; the cycles of the exceptions' records; the
    # agreements' versions
    assert n == FIXED_PLATFORM + 13


@pytest.mark.parametrize("size", [1, 3])
def test_disputes_page(client, cleared_cycles, size):
    login(client, "clearing_staff")
    data_of(gql(client, "", "{ me { username } }"))
    n, data = count(client, "", DISPUTES, {"n": size})
    assert len(data["disputes"]["edges"]) == size
    # the page with records, cycles, agreements, networks and adjustments; the adjustments' cycles
    assert n == FIXED_PLATFORM + 2
