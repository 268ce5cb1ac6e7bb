"""Clearing on the platform endpoint: agreements, cycles (keyset pages, filters) and everything a cycle
produced, the cycle steps and disputes as mutations with errors as data, and who may do what.

Cycles are cleared through the interop services on fixed business dates (tests/interop/conftest.py); the
mutations act at a fixed moment (the ``clock`` seam), never at today's date."""

from __future__ import annotations

import datetime as dt

import pytest

from citycard.interop import selectors
from citycard.interop.models import ClearingCycle, ClearingRecord, Dispute
from citycard.interop.services import agreements, cycles
from citycard.platform.audit.models import AuditEntry
from tests.interop.conftest import DAY, at, record

from .conftest import EARLIER, NEXT, SETTLE_AT, clear, codes_of, data_of, day_records, gql, issue
from .test_platform import login

pytestmark = pytest.mark.django_db
AGREEMENTS = """query($network: String, $service: ClearingService) {
  roamingAgreements(network: $network, service: $service) {
    id network { code } service visitorPolicy issuerFeeBps networkFeeBps operator settlementAccount
    period cutOff settlementLagDays disputeWindowDays hotlistGraceMinutes validFrom
  }
}"""
CYCLES = """query($first: Int, $last: Int, $after: String, $before: String, $filter: ClearingCycleFilterInput) {
  clearingCycles(first: $first, last: $last, after: $after, before: $before, filter: $filter) {
    edges { cursor node { label businessDate state network { code } service } }
    pageInfo { hasNextPage hasPreviousPage endCursor startCursor }
  }
}"""
CYCLE = """query($date: Date!) {
  clearingCycle(network: "yrd", service: TRANSIT, businessDate: $date) {
    id label state businessDate opensAt cutOffAt closedAt settledAt
    agreement { issuerFeeBps networkFeeBps }
    stateHistory { state at }
    totals { records { records amountFen } pending { records } valid { records amountFen }
             rejected { records amountFen } }
    validationChecks { issuer checks }
    bilateralMatrix { issuer acquirer records amountFen issuerFeeFen networkFeeFen acquirerDueFen }
    netPositions { positions { participant receivableFen payableFen netFen } sumFen balanced }
    settlementInstructions { payer payee amountFen valueDate }
    exceptionSummary { issuer acquirer reason records amountFen }
    exceptions(first: 10) { edges { node { recordId issuer acquirer cardNumber amountFen status reason
                                           reasonMessage cycle { label } } } }
    disputes { id state raisedBy }
    reconciliationFiles { participant state confirmed sha256 expected answers { tenant result }
                          totals { acquiredRecords acquiredAmountFen issuedRecords netFen } }
  }
}"""


def test_agreements_per_network_and_service(client, yrd_transit):
    agreements.agreement_set(
        network_code="yrd", service="medical", valid_from=dt.date(2020, 1, 1), actor="test"
    )
    login(client, "platform_operator")  # operators read clearing too
    found = data_of(gql(client, "", AGREEMENTS))["roamingAgreements"]
    assert [(a["network"]["code"], a["service"]) for a in found] == [("yrd", "MEDICAL"), ("yrd", "TRANSIT")]
    transit = data_of(gql(client, "", AGREEMENTS, {"network": "yrd", "service": "TRANSIT"}))[
        "roamingAgreements"
    ]
    assert transit == [
        {
            "id": transit[0]["id"],
            "network": {"code": "yrd"},
            "service": "TRANSIT",
            "visitorPolicy": "LOCAL_DISCOUNTS",
            "issuerFeeBps": 50,
            "networkFeeBps": 10,
            "operator": "yrd-operator",
            "settlementAccount": "yrd-settlement",
            "period": "DAILY",
            "cutOff": "04:00:00",
            "settlementLagDays": 1,
            "disputeWindowDays": 30,
            "hotlistGraceMinutes": 60,
            "validFrom": "2020-01-01",
        }
    ]
    assert data_of(gql(client, "", AGREEMENTS, {"network": "gba"}))["roamingAgreements"] == []
    medical = data_of(gql(client, "", AGREEMENTS, {"service": "MEDICAL"}))["roamingAgreements"]
    assert [a["period"] for a in medical] == ["MONTHLY"]


def test_cycles_newest_first_with_filters_and_keyset_cursors(client, cleared):
    login(client, "clearing_staff")
    edges = data_of(gql(client, "", CYCLES, {"first": 10}))["clearingCycles"]["edges"]
    assert [(e["node"]["businessDate"], e["node"]["state"]) for e in edges] == [
        (NEXT.isoformat(), "OPEN"),
        (DAY.isoformat(), "SETTLED"),
        (EARLIER.isoformat(), "SETTLED"),
    ]
    assert edges[1]["node"]["label"] == "yrd-transit-2026-11-21"
    assert edges[1]["node"]["network"] == {"code": "yrd"} and edges[1]["node"]["service"] == "TRANSIT"

    page = data_of(gql(client, "", CYCLES, {"first": 1}))["clearingCycles"]
    assert page["pageInfo"]["hasNextPage"] is True and page["pageInfo"]["hasPreviousPage"] is False
    rest = data_of(gql(client, "", CYCLES, {"first": 5, "after": page["pageInfo"]["endCursor"]}))
    assert [e["node"]["businessDate"] for e in rest["clearingCycles"]["edges"]] == [
        DAY.isoformat(),
        EARLIER.isoformat(),
    ]
    assert rest["clearingCycles"]["pageInfo"]["hasNextPage"] is False
    back = data_of(gql(client, "", CYCLES, {"last": 1, "before": edges[2]["cursor"]}))["clearingCycles"]
    assert [e["node"]["businessDate"] for e in back["edges"]] == [DAY.isoformat()]
    assert back["pageInfo"]["hasPreviousPage"] is True

    def dates(filter_: dict) -> list[str]:
        found = data_of(gql(client, "", CYCLES, {"first": 10, "filter": filter_}))["clearingCycles"]
        return [e["node"]["businessDate"] for e in found["edges"]]

    assert dates({"states": ["OPEN"]}) == [NEXT.isoformat()]
    assert dates({"states": ["SETTLED", "DISPUTED"], "network": "YRD", "service": "TRANSIT"}) == [
        DAY.isoformat(),
        EARLIER.isoformat(),
    ]
    assert dates({"businessDateFrom": DAY.isoformat(), "businessDateTo": DAY.isoformat()}) == [
        DAY.isoformat()
    ]
    assert dates({"businessDateTo": EARLIER.isoformat()}) == [EARLIER.isoformat()]
    assert dates({"network": "gba"}) == [] and dates({"service": "MEDICAL"}) == []

    wrong = gql(
        client,
        "",
        CYCLES,
        {"first": 10, "filter": {"businessDateFrom": "2026-11-22", "businessDateTo": "2026-11-21"}},
    )
    assert codes_of(wrong) == ["INVALID_ARGUMENT"]
    assert codes_of(gql(client, "", CYCLES, {})) == ["PAGINATION_REQUIRED"]
    assert codes_of(gql(client, "", CYCLES, {"first": 101})) == ["PAGINATION_LIMIT_EXCEEDED"]
    assert codes_of(gql(client, "", CYCLES, {"first": 1, "after": "bm90LWEtY3Vyc29y"})) == ["INVALID_CURSOR"]


def test_a_settled_cycle_shows_everything_it_produced(client, cleared):
    login(client, "clearing_staff")
    cycle = data_of(gql(client, "", CYCLE, {"date": DAY.isoformat()}))["clearingCycle"]
    assert (cycle["label"], cycle["state"]) == ("yrd-transit-2026-11-21", "SETTLED")
    assert (cycle["opensAt"], cycle["cutOffAt"]) == ("2026-11-20T20:00:00+00:00", "2026-11-21T20:00:00+00:00")
    assert [c["state"] for c in cycle["stateHistory"]] == ["OPEN", "CLOSED", "VALIDATED", "NETTED", "SETTLED"]
    assert cycle["totals"] == {
        "records": {"records": 4, "amountFen": 1100},
        "pending": {"records": 0},
        "valid": {"records": 3, "amountFen": 900},
        "rejected": {"records": 1, "amountFen": 200},
    }
    assert {c["issuer"] for c in cycle["validationChecks"]} == {"hangzhou", "jiaxing"}
    assert cycle["validationChecks"][0]["checks"] == ["issuer", "card_known", "hotlist", "tac", "counter"]
    # 50 / 10 bps, half up per record: 300 → 2 + 0 (0.3), 500 → 3 (2.5) + 1 (0.5), 100 → 1 (0.5) + 0 (0.1)
    assert cycle["bilateralMatrix"] == [
        {
            "issuer": "hangzhou",
            "acquirer": "jiaxing",
            "records": 2,
            "amountFen": 800,
            "issuerFeeFen": 5,
            "networkFeeFen": 1,
            "acquirerDueFen": 794,
        },
        {
            "issuer": "jiaxing",
            "acquirer": "hangzhou",
            "records": 1,
            "amountFen": 100,
            "issuerFeeFen": 1,
            "networkFeeFen": 0,
            "acquirerDueFen": 99,
        },
    ]
    net = cycle["netPositions"]
    assert net["positions"] == [
        {"participant": "hangzhou", "receivableFen": 99, "payableFen": 795, "netFen": -696},
        {"participant": "jiaxing", "receivableFen": 794, "payableFen": 99, "netFen": 695},
        {"participant": "yrd-operator", "receivableFen": 1, "payableFen": 0, "netFen": 1},
    ]
    assert (net["sumFen"], net["balanced"]) == (0, True)
    assert cycle["settlementInstructions"] == [
        {"payer": "hangzhou", "payee": "yrd-settlement", "amountFen": 696, "valueDate": "2026-11-22"},
        {"payer": "yrd-settlement", "payee": "jiaxing", "amountFen": 695, "valueDate": "2026-11-22"},
        {"payer": "yrd-settlement", "payee": "yrd-operator", "amountFen": 1, "valueDate": "2026-11-22"},
    ]
    assert cycle["exceptionSummary"] == [
        {"issuer": "hangzhou", "acquirer": "jiaxing", "reason": "tac_invalid", "records": 1, "amountFen": 200}
    ]
    [exception] = [e["node"] for e in cycle["exceptions"]["edges"]]
    assert (exception["status"], exception["reason"], exception["amountFen"]) == (
        "REJECTED",
        "tac_invalid",
        200,
    )
    assert exception["reasonMessage"] and exception["cycle"] == {"label": "yrd-transit-2026-11-21"}
    assert cycle["disputes"] == []
    files = {f["participant"]: f for f in cycle["reconciliationFiles"]}
    assert sorted(files) == ["hangzhou", "jiaxing", "yrd-operator"]
    assert (files["jiaxing"]["state"], files["jiaxing"]["confirmed"], files["jiaxing"]["expected"]) == (
        "SENT",
        False,
        ["jiaxing"],
    )
    assert files["jiaxing"]["totals"] == {
        "acquiredRecords": 2,
        "acquiredAmountFen": 800,
        "issuedRecords": 1,
        "netFen": 695,
    }
    assert files["yrd-operator"]["expected"] == [] and files["jiaxing"]["answers"] == []

    missing = data_of(gql(client, "", CYCLE, {"date": "2019-01-01"}))["clearingCycle"]
    assert missing is None
    assert not ClearingCycle.objects.filter(
        business_date=dt.date(2019, 1, 1)
    ).exists()  # a read creates nothing


def test_exceptions_page_by_record_id_with_filters(client, yrd_transit, send, collect):
    rows = [
        record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=40 + i, bad_tac=True)
        for i in range(3)
    ] + [record(acquirer="hangzhou", issuer="jiaxing", issuer_division="330400", serial=50, bad_tac=True)]
    clear(send, collect, DAY, rows, now=SETTLE_AT)
    login(client, "clearing_staff")
    query = """query($first: Int, $last: Int, $after: String, $issuer: String, $reason: String) {
      clearingCycle(network: "yrd", service: TRANSIT, businessDate: "2026-11-21") {
        exceptions(first: $first, last: $last, after: $after, issuer: $issuer, reason: $reason) {
          edges { cursor node { recordId issuer } } pageInfo { hasNextPage endCursor } } } }"""

    def page(**variables):
        return data_of(gql(client, "", query, variables))["clearingCycle"]["exceptions"]

    first = page(first=2)
    ids = sorted(f"{r['acquirer']}-{r['source_tx_id']}" for r in rows)
    assert [e["node"]["recordId"] for e in first["edges"]] == ids[:2] and first["pageInfo"]["hasNextPage"]
    rest = page(first=2, after=first["pageInfo"]["endCursor"])
    assert [e["node"]["recordId"] for e in rest["edges"]] == ids[2:] and not rest["pageInfo"]["hasNextPage"]
    backward = page(last=1)
    assert [e["node"]["recordId"] for e in backward["edges"]] == ids[-1:]
    assert {e["node"]["issuer"] for e in page(first=10, issuer="jiaxing")["edges"]} == {"jiaxing"}
    assert page(first=10, reason="card_unknown")["edges"] == []


def test_a_matrix_cell_lists_its_records(client, yrd_transit, send, collect):
    """From a cell of the bilateral matrix to its records: issuer, acquirer and status VALID give exactly
    the records the cell counts (records still stored pending in the validated cycle read as valid), and
    the rejected ones of the same pair are their own list."""
    good = [
        record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=60 + i)
        for i in range(3)
    ]
    bad = [record(acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", serial=70, bad_tac=True)]
    other = [record(acquirer="hangzhou", issuer="jiaxing", issuer_division="330400", serial=80)]
    clear(send, collect, DAY, good + bad + other, now=SETTLE_AT)
    login(client, "clearing_staff")
    query = """query($first: Int, $after: String, $issuer: String, $acquirer: String, $status: ClearingRecordStatus) {
      clearingCycle(network: "yrd", service: TRANSIT, businessDate: "2026-11-21") {
        bilateralMatrix { issuer acquirer records amountFen }
        records(first: $first, after: $after, issuer: $issuer, acquirer: $acquirer, status: $status) {
          edges { node { recordId issuer acquirer status amountFen } } pageInfo { hasNextPage endCursor } } } }"""

    def page(**variables):
        return data_of(gql(client, "", query, variables))["clearingCycle"]

    cell = {"issuer": "hangzhou", "acquirer": "jiaxing", "status": "VALID"}
    first = page(first=2, **cell)
    matrix = {(c["issuer"], c["acquirer"]): c for c in first["bilateralMatrix"]}
    rest = page(first=2, after=first["records"]["pageInfo"]["endCursor"], **cell)["records"]
    listed = [e["node"] for e in first["records"]["edges"] + rest["edges"]]
    assert first["records"]["pageInfo"]["hasNextPage"] and not rest["pageInfo"]["hasNextPage"]
    assert [n["recordId"] for n in listed] == sorted(f"{r['acquirer']}-{r['source_tx_id']}" for r in good)
    assert {(n["issuer"], n["acquirer"], n["status"]) for n in listed} == {("hangzhou", "jiaxing", "VALID")}
    assert len(listed) == matrix[("hangzhou", "jiaxing")]["records"]
    assert sum(n["amountFen"] for n in listed) == matrix[("hangzhou", "jiaxing")]["amountFen"]
    rejected = page(first=10, issuer="hangzhou", acquirer="jiaxing", status="REJECTED")["records"]["edges"]
    assert [e["node"]["recordId"] for e in rejected] == [f"jiaxing-{bad[0]['source_tx_id']}"]
    assert len(page(first=10)["records"]["edges"]) == 5  # no filter: every record of the cycle
    assert page(first=10, status="PENDING")["records"]["edges"] == []  # validated: none reads pending


# --- the steps -----------------------------------------------------------------------------------------------

STEP = """mutation($date: Date!) {
  %s(network: "yrd", service: TRANSIT, businessDate: $date) {
    cycle { label state totals { valid { records } rejected { records } } netPositions { sumFen } }
    errors { field message code }
  }
}"""


def test_reading_clearing_records_card_numbers_is_logged_once_per_request(client, cleared):
    """A card number ties a clearing record to a cardholder: reading it is in the access log, in the platform's
    audit chain, one read per list (its cards and rows) whatever the page size; a record read without it is
    not personal data."""
    import json

    login(client, "clearing_staff")
    before = AuditEntry.objects.filter(action="graphql.read").count()
    query = """query($date: Date!) { clearingCycle(network: "yrd", service: TRANSIT, businessDate: $date) {
      records(first: 10) { edges { node { recordId cardNumber } } }
      exceptions(first: 10) { edges { node { recordId amountFen } } } } }"""
    records = data_of(gql(client, "", query, {"date": DAY.isoformat()}))["clearingCycle"]["records"]["edges"]
    entries = list(AuditEntry.objects.filter(action="graphql.read").order_by("seq"))
    assert len(entries) == before + 1
    assert (entries[-1].actor, entries[-1].object_type) == ("user:clearing_staff-gql", "user")
    (read,) = json.loads(entries[-1].payload)["reads"]
    assert sorted(read.pop("ids")) == sorted({e["node"]["cardNumber"] for e in records})
    assert read == {
        "type": "clearing_record_card",
        "fields": ["cardNumber"],
        "path": "clearingCycle.records.edges.node",
        "rows": 4,
    }
    data_of(gql(client, "", CYCLES, {"first": 5}))
    assert AuditEntry.objects.filter(action="graphql.read").count() == before + 1


def step(client, name: str, day: dt.date = DAY) -> dict:
    return data_of(gql(client, "", STEP % name, {"date": day.isoformat()}))[name]


def test_clearing_staff_step_a_cycle_through_to_settlement(client, yrd_transit, send, collect, fixed_now):
    for acquirer, rows in (("jiaxing", day_records(DAY, 1)[:3]), ("hangzhou", day_records(DAY, 1)[3:])):
        send(acquirer, rows, now=at(DAY, 11))
        collect(acquirer, now=at(DAY, 12))
    login(client, "clearing_staff")
    audited = AuditEntry.objects.filter(action__startswith="interop.cycle_").count()

    fixed_now.at = at(NEXT, 3, 59)  # before the cut-off (04:00 the next day)
    early = step(client, "clearingCycleClose")
    assert early["cycle"] is None and [e["code"] for e in early["errors"]] == ["BEFORE_CUT_OFF"]
    assert not ClearingCycle.objects.filter(business_date=NEXT).exists()  # the next cycle was not opened
    out_of_order = step(client, "clearingCycleNet")
    assert out_of_order["errors"] == [
        {
            "field": None,
            "message": "清算周期 yrd-transit-2026-11-21 的状态为 open；netting 需要其状态为 validated",
            "code": "CYCLE_STATE",
        }
    ]
    assert ClearingCycle.objects.get(business_date=DAY).state == "open"
    assert AuditEntry.objects.filter(action__startswith="interop.cycle_").count() == audited

    fixed_now.at = at(NEXT, 5)
    closed = step(client, "clearingCycleClose")
    assert closed["errors"] == [] and closed["cycle"]["state"] == "CLOSED"
    assert ClearingCycle.objects.get(business_date=NEXT).state == "open"
    assert step(client, "clearingCycleClose")["cycle"]["state"] == "CLOSED"  # again: unchanged
    validated = step(client, "clearingCycleValidate")["cycle"]
    assert (validated["state"], validated["totals"]["valid"], validated["totals"]["rejected"]) == (
        "VALIDATED",
        {"records": 3},
        {"records": 1},
    )
    assert step(client, "clearingCycleNet")["cycle"]["netPositions"] == {"sumFen": 0}
    settled = step(client, "clearingCycleSettle")
    assert settled["errors"] == [] and settled["cycle"]["state"] == "SETTLED"
    entries = AuditEntry.objects.filter(action__startswith="interop.cycle_").order_by("seq")
    assert [(e.action, e.actor) for e in entries][audited:] == [
        ("interop.cycle_close", "user:clearing_staff-gql"),
        ("interop.cycle_validate", "user:clearing_staff-gql"),
        ("interop.cycle_net", "user:clearing_staff-gql"),
        ("interop.cycle_settle", "user:clearing_staff-gql"),
    ]
    cycle = ClearingCycle.objects.get(business_date=DAY)
    assert cycle.settled_at == at(NEXT, 5) and cycle.reconciliations.count() == 3

    unknown = data_of(
        gql(
            client,
            "",
            'mutation { clearingCycleClose(network: "gba", service: TRANSIT, '
            'businessDate: "2026-11-21") { cycle { label } errors { code } } }',
        )
    )["clearingCycleClose"]
    assert unknown == {"cycle": None, "errors": [{"code": "NO_AGREEMENT"}]}


def test_only_clearing_staff_step_cycles(client, cleared, fixed_now):
    login(client, "platform_operator")
    before = ClearingCycle.objects.get(business_date=NEXT).state
    response = gql(client, "", STEP % "clearingCycleClose", {"date": NEXT.isoformat()})
    assert codes_of(response) == ["PERMISSION_DENIED"]
    assert response.json()["errors"][0]["extensions"]["required"] == ["clearing:manage"]
    assert response.json()["data"] == {"clearingCycleClose": None}
    assert ClearingCycle.objects.get(business_date=NEXT).state == before


# --- disputes ------------------------------------------------------------------------------------------------

RAISE = """mutation($record: String!, $by: String!, $reason: String!) {
  disputeRaise(recordId: $record, raisedBy: $by, reason: $reason) {
    dispute { id state raisedBy reason record { recordId cycle { label state } } }
    errors { field message code }
  }
}"""
RESOLVE = """mutation($id: ID!, $accept: Boolean!, $resolution: String!) {
  disputeResolve(id: $id, accept: $accept, resolution: $resolution) {
    dispute { state resolution resolvedBy adjustment { recordId amountFen kind cycle { label } } }
    errors { field message code }
  }
}"""


def test_disputes_raised_and_resolved_by_clearing_staff(client, cleared, fixed_now):
    _earlier, cycle = cleared
    target = ClearingRecord.objects.get(cycle=cycle, acquirer="jiaxing", amount_fen=500).record_id
    login(client, "clearing_staff")
    fixed_now.at = at(NEXT, 8)

    def raise_(record_id: str, by: str, reason: str = "charged twice") -> dict:
        return data_of(gql(client, "", RAISE, {"record": record_id, "by": by, "reason": reason}))[
            "disputeRaise"
        ]

    assert [e["code"] for e in raise_(target, "shanghai")["errors"]] == ["NOT_A_PARTY"]
    assert raise_("jiaxing-0", "jiaxing")["errors"][0] == {
        "field": "recordId",
        "message": "没有清算记录 'jiaxing-0'",
        "code": "NOT_FOUND",
    }
    assert [e["code"] for e in raise_(target, "hangzhou", " ")["errors"]] == ["REASON_REQUIRED"]
    fixed_now.at = SETTLE_AT + dt.timedelta(days=30, seconds=1)  # the agreement's 30-day window is over
    assert [e["code"] for e in raise_(target, "hangzhou")["errors"]] == ["WINDOW_CLOSED"]
    fixed_now.at = at(NEXT, 8)
    assert not Dispute.objects.exists()
    raised = raise_(target, "hangzhou")
    assert raised["errors"] == []
    dispute = raised["dispute"]
    assert (dispute["state"], dispute["raisedBy"], dispute["record"]["cycle"]) == (
        "OPEN",
        "hangzhou",
        {"label": "yrd-transit-2026-11-21", "state": "DISPUTED"},
    )
    entry = AuditEntry.objects.filter(action="interop.dispute_raise").latest("seq")
    assert (entry.actor, entry.object_id) == ("user:clearing_staff-gql", target)

    listed = data_of(
        gql(
            client,
            "",
            '{ disputes(first: 10, filter: {states: [OPEN], party: "hangzhou"}) '
            "{ edges { node { id record { recordId } } } } }",
        )
    )["disputes"]["edges"]
    assert [e["node"]["id"] for e in listed] == [dispute["id"]]
    history = data_of(gql(client, "", CYCLE, {"date": DAY.isoformat()}))["clearingCycle"]
    assert history["state"] == "DISPUTED" and history["stateHistory"][-1]["state"] == "DISPUTED"
    assert history["disputes"] == [{"id": dispute["id"], "state": "OPEN", "raisedBy": "hangzhou"}]

    def resolve(id_: str, accept: bool = True, resolution: str = "refund the passenger") -> dict:
        variables = {"id": id_, "accept": accept, "resolution": resolution}
        return data_of(gql(client, "", RESOLVE, variables))["disputeResolve"]

    assert [e["code"] for e in resolve(dispute["id"], resolution="")["errors"]] == ["RESOLUTION_REQUIRED"]
    assert resolve("bm90LWFuLWlk")["errors"][0]["code"] == "NOT_FOUND"
    operator_client = type(client)()
    login(operator_client, "platform_operator")
    refused = gql(operator_client, "", RESOLVE, {"id": dispute["id"], "accept": True, "resolution": "x"})
    assert codes_of(refused) == ["PERMISSION_DENIED"]
    assert Dispute.objects.get().state == "open"

    fixed_now.at = at(NEXT, 10)
    resolved = resolve(dispute["id"])
    assert resolved["errors"] == []
    assert resolved["dispute"] == {
        "state": "ACCEPTED",
        "resolution": "refund the passenger",
        "resolvedBy": "user:clearing_staff-gql",
        "adjustment": {
            "recordId": f"adj-{target}",
            "amountFen": -500,
            "kind": "ADJUSTMENT",
            "cycle": {"label": "yrd-transit-2026-11-22"},
        },
    }
    assert [e["code"] for e in resolve(dispute["id"])["errors"]] == ["DISPUTE_STATE"]
    # the adjustment sits in the open cycle: nothing there can be disputed before it settles
    assert [e["code"] for e in raise_(f"adj-{target}", "hangzhou")["errors"]] == ["CYCLE_STATE"]
    assert Dispute.objects.count() == 1
    record = data_of(
        gql(
            client,
            "",
            "query($id: String!) { clearingRecord(recordId: $id) { recordId status kind cycle { label } } }",
            {"id": f"adj-{target}"},
        )
    )["clearingRecord"]
    assert record == {
        "recordId": f"adj-{target}",
        "status": "VALID",
        "kind": "ADJUSTMENT",
        "cycle": {"label": "yrd-transit-2026-11-22"},
    }
    assert (
        data_of(gql(client, "", '{ clearingRecord(recordId: "nope") { recordId } }'))["clearingRecord"]
        is None
    )
    after = data_of(gql(client, "", CYCLE, {"date": DAY.isoformat()}))["clearingCycle"]
    assert [c["state"] for c in after["stateHistory"]][-2:] == ["DISPUTED", "SETTLED"]
    assert after["state"] == "SETTLED"


# --- who may ask ---------------------------------------------------------------------------------------------


# Every platform field refusing partner keys, tenant users and the wrong role: tests/graphql/test_isolation.py.


# --- platform API keys (clearing staff's tools) ---------------------------------------------------------------


def test_a_platform_key_reads_clearing_within_its_scopes(client, cleared, fixed_now):
    from django.test import Client

    from citycard.platform import services

    reader = issue("public", ["clearing:read"], name="clearing dashboard")
    tool = Client(enforce_csrf_checks=True)  # a key needs no session and no CSRF token
    me = data_of(gql(tool, "", "{ me { username role scopes } }", token=reader))["me"]
    assert (
        me["role"] == "api_key" and me["scopes"] == ["clearing:read"] and me["username"].startswith("apikey:")
    )
    cycle = data_of(gql(tool, "", CYCLE, {"date": DAY.isoformat()}, token=reader))["clearingCycle"]
    assert cycle["netPositions"]["sumFen"] == 0
    denied = gql(tool, "", "{ tenants(first: 1) { edges { cursor } } }", token=reader)
    assert codes_of(denied) == ["PERMISSION_DENIED"]
    refused = gql(tool, "", STEP % "clearingCycleClose", {"date": NEXT.isoformat()}, token=reader)
    assert codes_of(refused) == ["PERMISSION_DENIED"]
    assert ClearingCycle.objects.get(business_date=NEXT).state == "open"

    runner = issue("public", ["clearing:read", "clearing:manage"], name="clearing runner")
    fixed_now.at = at(NEXT + dt.timedelta(days=1), 5)
    closed = data_of(gql(tool, "", STEP % "clearingCycleClose", {"date": NEXT.isoformat()}, token=runner))
    assert closed["clearingCycleClose"]["cycle"]["state"] == "CLOSED"
    key_id = services.api_key_parse(runner)
    assert AuditEntry.objects.filter(action="interop.cycle_close").latest("seq").actor == f"apikey:{key_id}"

    on_tenant = gql(client, "hangzhou", "{ me { keyId } }", token=reader)
    assert (on_tenant.status_code, codes_of(on_tenant)) == (401, ["WRONG_TENANT"])
    services.api_key_revoke(tenant_code="public", key_id=services.api_key_parse(reader), reason="rotated")
    revoked = gql(tool, "", "{ me { username } }", token=reader)
    assert (revoked.status_code, codes_of(revoked)) == (401, ["TOKEN_REVOKED"])
    bad = gql(tool, "", "{ me { username } }", token=runner[:-2] + "xx")
    assert (bad.status_code, codes_of(bad)) == (401, ["INVALID_TOKEN"])


def test_a_monthly_cycle_is_found_by_any_day_of_its_month(client, yrd_transit):
    agreements.agreement_set(
        network_code="yrd", service="medical", valid_from=dt.date(2020, 1, 1), actor="test"
    )
    cycles.cycle_get_or_create(network_code="yrd", service="medical", business_date=dt.date(2026, 11, 1))
    login(client, "clearing_staff")
    query = """query($date: Date!) { clearingCycle(network: "yrd", service: MEDICAL, businessDate: $date) {
      label service businessDate agreement { period } } }"""
    found = data_of(gql(client, "", query, {"date": "2026-11-15"}))["clearingCycle"]
    assert found == {
        "label": "yrd-medical-2026-11-01",
        "service": "MEDICAL",
        "businessDate": "2026-11-01",
        "agreement": {"period": "MONTHLY"},
    }
    assert data_of(gql(client, "", query, {"date": "2026-12-15"}))["clearingCycle"] is None


def test_cycle_pages_are_costed_per_node_and_their_exception_pages_too(client, cleared):
    login(client, "clearing_staff")
    query = """{ clearingCycles(first: 10) { edges { node { label netPositions { sumFen }
      exceptions(first: 5) { edges { node { recordId } } } } } } }"""
    response = gql(client, "", query)
    data_of(response)
    # (1 + netPositions 2 + exceptions (1 + 0) × 5) × 10
    assert response.json()["extensions"]["cost"]["requestedQueryCost"] == (1 + 2 + 5) * 10
    costly = gql(client, "", query.replace("first: 5", "first: 100"))
    assert codes_of(costly) == ["QUERY_TOO_COSTLY"]


# --- agreement versions ------------------------------------------------------------------------------------

VERSION_ADD = """mutation($effective: Date!, $fee: Int, $policy: VisitorPolicy, $note: String) {
  roamingAgreementVersionAdd(network: "yrd", service: TRANSIT, effectiveFrom: $effective, issuerFeeBps: $fee,
                             visitorPolicy: $policy, note: $note) {
    agreementVersion { label number effectiveFrom visitorPolicy issuerFeeBps networkFeeBps cutOff
                       hotlistGraceMinutes note createdBy }
    agreement { issuerFeeBps versionInForce { label } later: versionInForce(on: "2026-11-24") { label }
                versions { label effectiveFrom } }
    faresRepublished
    errors { field message code }
  }
}"""


def test_clearing_staff_add_an_agreement_version_from_a_business_date(client, cleared, fixed_now):
    login(client, "clearing_staff")
    added = data_of(
        gql(client, "", VERSION_ADD, {"effective": "2026-11-24", "fee": 80, "note": " board 12 "})
    )
    payload = added["roamingAgreementVersionAdd"]
    assert payload["errors"] == [] and payload["faresRepublished"] == []
    assert payload["agreementVersion"] == {
        "label": "yrd-transit v2",
        "number": 2,
        "effectiveFrom": "2026-11-24",
        "visitorPolicy": "LOCAL_DISCOUNTS",
        "issuerFeeBps": 80,
        "networkFeeBps": 10,
        "cutOff": "04:00:00",
        "hotlistGraceMinutes": 60,
        "note": "board 12",
        "createdBy": "user:clearing_staff-gql",
    }
    agreement = payload["agreement"]
    assert agreement["issuerFeeBps"] == 50 and agreement["versionInForce"] == {"label": "yrd-transit v1"}
    assert agreement["later"] == {"label": "yrd-transit v2"}
    assert [v["label"] for v in agreement["versions"]] == ["yrd-transit v1", "yrd-transit v2"]


def test_an_agreement_version_refused_is_errors_as_data_and_writes_nothing(client, cleared, fixed_now):
    login(client, "clearing_staff")
    too_early = data_of(gql(client, "", VERSION_ADD, {"effective": DAY.isoformat(), "fee": 80}))
    (error,) = too_early["roamingAgreementVersionAdd"]["errors"]
    assert (error["code"], error["field"]) == ("EFFECTIVE_DATE", "effectiveFrom")
    assert error["message"] == (  # in the request's language, zh-hans by default
        "yrd-transit 已截止到营业日 2026-11-21：新版本最早从 2026-11-22 生效，而不是 2026-11-21"
    )
    same = data_of(gql(client, "", VERSION_ADD, {"effective": "2026-11-24", "policy": "LOCAL_DISCOUNTS"}))
    assert [e["code"] for e in same["roamingAgreementVersionAdd"]["errors"]] == ["UNCHANGED"]
    login(client, "platform_operator")
    response = gql(client, "", VERSION_ADD, {"effective": "2026-11-24", "fee": 80})
    assert codes_of(response) == ["PERMISSION_DENIED"]
    assert response.json()["errors"][0]["extensions"]["required"] == ["clearing:manage"]
    assert list(
        selectors.agreement_get(network_code="yrd", service="transit").versions.values_list("number")
    ) == [(1,)]


CELLS = """query($first: Int, $after: String, $order: BilateralPositionOrder, $issuer: String) {
  clearingCycle(network: "yrd", service: TRANSIT, businessDate: "2026-11-21") {
    bilateralCells(first: $first, after: $after, order: $order, issuer: $issuer) {
      edges { node { issuer acquirer records amountFen } } pageInfo { hasNextPage endCursor } } } }"""


def test_a_national_matrix_is_paged_by_bilateral_cells_and_the_whole_list_refused_past_its_maximum(
    client, yrd_transit
):
    """A network of 40 (1,500 cells; a national network's 300 have ~90,000): bilateralMatrix would list them
    all, so it is null with PAGINATION_REQUIRED (an issuer's row still lists); bilateralCells pages the matrix by
    issuer and acquirer, or the largest flows first, at most 100 cells a page."""
    from citycard.graphql.clearing.dataloaders import MATRIX_LIST_MAX
    from citycard.interop.models import BilateralPosition
    from tests.interop.large_cycle import cycle_of, participants_named

    cycle, _items = cycle_of(DAY, participants_named(40), seed=40, settle=False)
    stored = [
        (b.issuer, b.acquirer, b.records, b.amount_fen)
        for b in BilateralPosition.objects.filter(cycle=cycle).order_by("issuer", "acquirer")
    ]
    assert len(stored) > MATRIX_LIST_MAX
    login(client, "clearing_staff")
    whole = gql(
        client,
        "",
        '{ clearingCycle(network: "yrd", service: TRANSIT, businessDate: "2026-11-21") '
        "{ label bilateralMatrix { issuer } } }",
    )
    assert (
        codes_of(whole) == ["PAGINATION_REQUIRED"]
        and "bilateralCells" in whole.json()["errors"][0]["message"]
    )
    # The rest of the cycle answered beside the error.
    assert whole.json()["data"] == {"clearingCycle": {"label": cycle.label, "bilateralMatrix": None}}
    row = data_of(
        gql(
            client,
            "",
            '{ clearingCycle(network: "yrd", service: TRANSIT, businessDate: "2026-11-21") '
            '{ bilateralMatrix(issuer: "city007") { issuer acquirer records amountFen } } }',
        )
    )["clearingCycle"]["bilateralMatrix"]
    assert [tuple(c.values()) for c in row] == [s for s in stored if s[0] == "city007"]

    def cells(**variables):
        return data_of(gql(client, "", CELLS, variables))["clearingCycle"]["bilateralCells"]

    seen, after, pages = [], None, 0
    while True:
        page = cells(first=100, after=after)
        seen += [tuple(e["node"].values()) for e in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == stored and pages == (len(stored) + 99) // 100
    top = cells(first=10, order="AMOUNT_DESC")["edges"]
    assert [tuple(e["node"].values()) for e in top] == sorted(stored, key=lambda c: (-c[3], c[0], c[1]))[:10]
    assert [tuple(e["node"].values()) for e in cells(first=100, issuer="city007")["edges"]] == [
        s for s in stored if s[0] == "city007"
    ]
    for variables, code in (
        ({"first": 101}, "PAGINATION_LIMIT_EXCEEDED"),
        ({}, "PAGINATION_REQUIRED"),
        ({"first": 5, "after": "not-a-cursor"}, "INVALID_CURSOR"),
    ):
        assert codes_of(gql(client, "", CELLS, variables)) == [code], variables


GROUPS = """query($first: Int, $last: Int, $after: String, $before: String, $issuer: String, $acquirer: String,
                 $reason: String) {
  clearingCycle(network: "yrd", service: TRANSIT, businessDate: "2026-11-21") {
    exceptionGroups(first: $first, last: $last, after: $after, before: $before, issuer: $issuer,
                    acquirer: $acquirer, reason: $reason) {
      edges { node { issuer acquirer reason records amountFen } } pageInfo { hasNextPage endCursor } } } }"""
SUMMARY = """query($issuer: String, $acquirer: String, $reason: String) {
  clearingCycle(network: "yrd", service: TRANSIT, businessDate: "2026-11-21") {
    label exceptionSummary(issuer: $issuer, acquirer: $acquirer, reason: $reason) {
      issuer acquirer reason records amountFen } } }"""


def test_a_national_cycles_exceptions_are_paged_by_exception_groups_and_the_whole_summary_refused_past_its_maximum(
    client, yrd_transit, monkeypatch
):
    """A 300-participant day of 1M records has ~18,000 exception groups: exceptionSummary lists them up to
    EXCEPTION_LIST_MAX (here lowered to 25 over a 40-participant cycle's groups), then is null with
    PAGINATION_REQUIRED (an issuer's, acquirer's or reason's groups still list); exceptionGroups pages them all
    by issuer, acquirer and reason, filtered alike; a small cycle answers the whole list as before."""
    from citycard.graphql.clearing import dataloaders
    from tests.interop.large_cycle import cycle_of, participants_named

    cycle, items = cycle_of(
        DAY, participants_named(40), seed=41, settle=False, reasons=("tac_invalid", "counter_replay")
    )
    stored: dict[tuple[str, str, str], list[int]] = {}
    for acquirer, issuer, amount, reason in items:
        if reason:
            group = stored.setdefault((issuer, acquirer, reason), [0, 0])
            group[0] += 1
            group[1] += amount
    groups = [(*key, n, fen) for key, (n, fen) in sorted(stored.items())]
    assert 25 < len(groups) < dataloaders.EXCEPTION_LIST_MAX and {g[2] for g in groups} == {
        "tac_invalid",
        "counter_replay",
    }
    login(client, "clearing_staff")

    def summary(**variables):
        return gql(client, "", SUMMARY, variables)

    def rows(response):
        return [tuple(g.values()) for g in data_of(response)["clearingCycle"]["exceptionSummary"]]

    assert rows(summary()) == groups  # under the maximum: every group, as before
    monkeypatch.setattr(dataloaders, "EXCEPTION_LIST_MAX", 25)
    whole = summary()
    assert codes_of(whole) == ["PAGINATION_REQUIRED"]
    assert "exceptionGroups" in whole.json()["errors"][0]["message"]
    assert whole.json()["data"] == {"clearingCycle": {"label": cycle.label, "exceptionSummary": None}}
    one = groups[0][0]
    assert rows(summary(issuer=one)) == [g for g in groups if g[0] == one]
    assert rows(summary(acquirer=one)) == [g for g in groups if g[1] == one]
    assert rows(summary(issuer=one, reason="tac_invalid")) == [
        g for g in groups if g[0] == one and g[2] == "tac_invalid"
    ]

    def pages(**variables):
        return data_of(gql(client, "", GROUPS, variables))["clearingCycle"]["exceptionGroups"]

    seen, after, count = [], None, 0
    while True:
        page = pages(first=10, after=after)
        seen += [tuple(e["node"].values()) for e in page["edges"]]
        count += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == groups and count == (len(groups) + 9) // 10
    reason_only = [g for g in groups if g[2] == "counter_replay"]
    assert [
        tuple(e["node"].values()) for e in pages(first=100, reason="counter_replay")["edges"]
    ] == reason_only
    assert [tuple(e["node"].values()) for e in pages(last=3)["edges"]] == groups[-3:]
    for variables, code in (
        ({"first": 101}, "PAGINATION_LIMIT_EXCEEDED"),
        ({}, "PAGINATION_REQUIRED"),
        ({"first": 5, "after": "not-a-cursor"}, "INVALID_CURSOR"),
    ):
        assert codes_of(gql(client, "", GROUPS, variables)) == [code], variables
