"""The checked-in schema files match the code, and every example of docs/graphql.md runs."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from citycard.graphql import schema_files
from citycard.graphql.schema_files import SCHEMA_FILES, schema_files_stale, schema_sdl

from .conftest import data_of, gql, issue
from .test_platform import login

DOC = Path(__file__).resolve().parents[2] / "docs" / "graphql.md"


def test_schema_files_match_the_code():
    stale = schema_files_stale()
    assert not stale, f"run `citycard graphql schema` and commit: {[p.name for p in stale]}"


def test_the_check_fails_on_a_stale_file_and_the_command_rewrites_it(tmp_path, monkeypatch):
    files = {name: (tmp_path / path.name, schema) for name, (path, schema) in SCHEMA_FILES.items()}
    monkeypatch.setattr(schema_files, "SCHEMA_FILES", files)
    monkeypatch.setattr("citycard.graphql.management.commands.graphql.SCHEMA_FILES", files)
    out = StringIO()
    with translation.override("zh-hans"):  # what a person reads, whatever language an earlier test left
        call_command("graphql", "schema", stdout=out)
        assert out.getvalue().count("已写入") == 2
        files["tenant"][0].write_text(schema_sdl("tenant").replace("cardTransactions", "cardTxs"))
        with pytest.raises(CommandError, match=r"schema_tenant\.graphql"):
            call_command("graphql", "schema", "--check")
        call_command("graphql", "schema", stdout=StringIO())
        call_command("graphql", "schema", "--check", stdout=out)
    assert "schema 文件与代码一致" in out.getvalue()


def examples(endpoint: str) -> list[str]:
    return [query for _role, query in examples_with_roles(endpoint)]


def examples_with_roles(endpoint: str) -> list[tuple[str, str]]:
    """(role, query) of each example: a platform example names the role it needs after the endpoint
    (```graphql platform clearing_staff); otherwise a platform operator runs it."""
    found = re.findall(
        rf"```graphql {endpoint}(?: ([a-z_]+))?\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S
    )
    return [(role or "platform_operator", query) for role, query in found]


@pytest.mark.django_db
def test_tenant_examples_run(client, hz_fleet, hz_people):
    token = issue("hangzhou")
    found = examples("tenant")
    assert len(found) == 14
    results = [data_of(gql(client, "hangzhou", query, token=token)) for query in found]
    assert len(results[1]["cardTransactions"]["edges"]) == 10
    assert len(results[2]["transactions"]["edges"]) == 30
    assert results[3]["transactions"]["edges"] == []  # no metro gate in this fleet (tests/tenants/fares)
    assert results[4]["terminals"]["edges"][0]["node"]["terminalId"] == "HZ-GQL-1"
    card = results[5]["card"]
    assert (card["number"], card["state"], card["balance"]["accountFen"]) == (
        hz_people.elderly_card,
        "ACTIVE",
        18_500,
    )
    assert results[6]["cardholderVerify"] == {"matches": True}
    concessions = results[7]["cardholderCategories"]["concessions"]
    assert {c["ruleId"] for c in concessions} >= {"hz-elderly-free", "hz-elderly-peak"}
    assert [len(e["node"]["items"]) for e in results[8]["subsidyPayments"]["edges"]] == [1, 2]
    assert [e["node"]["code"] for e in results[9]["servicePoints"]["edges"]] == ["hz-sp-1", "hz-sp-3"]
    lost = results[10]["cardReportLost"]
    assert (lost["errors"], lost["card"]["state"], lost["alreadyReported"]) == ([], "FROZEN", False)
    applied = results[11]["cardApply"]
    assert (applied["errors"], applied["card"]["state"], applied["card"]["named"]) == ([], "APPLIED", False)
    # Hangzhou has no WeChat Pay channel in this fixture: refused as data, nothing opened.
    assert results[12]["topupOrderCreate"]["errors"][0]["code"] == "NO_CHANNEL"
    assert results[13]["topupOrder"] is None


@pytest.mark.django_db
def test_platform_examples_run(client, cleared, fixed_now):
    from django.test import Client

    clients = {"platform_operator": client, "clearing_staff": Client()}
    for role, each in clients.items():
        login(each, role)
    found = examples_with_roles("platform")
    assert len(found) == 10
    results = [data_of(gql(clients[role], "", query)) for role, query in found]
    assert results[2]["tenantActivate"]["errors"] == [
        {"field": "tenant", "message": "租户 'jiaxing' 已是启用状态", "code": "ALREADY_ACTIVE"}
    ]
    assert [(a["network"]["code"], a["service"]) for a in results[3]["roamingAgreements"]] == [
        ("yrd", "TRANSIT")
    ]
    assert [e["node"]["businessDate"] for e in results[4]["clearingCycles"]["edges"]] == [
        "2026-11-21",
        "2026-11-20",
    ]
    cycle = results[5]["clearingCycle"]
    assert (cycle["state"], cycle["netPositions"]["sumFen"], cycle["netPositions"]["balanced"]) == (
        "SETTLED",
        0,
        True,
    )
    assert [e["node"]["reason"] for e in cycle["exceptions"]["edges"]] == ["tac_invalid"]
    assert len(cycle["reconciliationFiles"]) == 3 and len(cycle["bilateralMatrix"]) == 2
    flows = results[6]["clearingCycle"]
    top = [e["node"]["amountFen"] for e in flows["top"]["edges"]]
    assert len(top) == 2 and top == sorted(top, reverse=True)
    assert sorted(n["amountFen"] for n in (e["node"] for e in flows["page"]["edges"])) == sorted(top)
    assert [c["acquirer"] for c in flows["hangzhou"]] == ["jiaxing"]
    national = results[7]["clearingCycle"]
    groups = [e["node"] for e in national["page"]["edges"]]
    assert groups and national["page"]["pageInfo"]["hasNextPage"] is False
    assert national["hangzhou"] == [
        {k: g[k] for k in ("acquirer", "records", "amountFen")}
        for g in groups
        if (g["issuer"], g["reason"]) == ("hangzhou", "tac_invalid")
    ]
    assert national["hangzhou"]
    assert results[8]["disputes"]["edges"] == []
    assert results[9]["clearingCycleClose"] == {
        "cycle": None,
        "errors": [
            {
                "field": None,
                "message": "清算周期 yrd-transit-2026-11-22 于 2026-11-23T04:00:00+08:00 截止，此前不能截止",
                "code": "BEFORE_CUT_OFF",
            }
        ],
    }
