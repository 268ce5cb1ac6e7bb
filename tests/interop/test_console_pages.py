"""The clearing console (docs/console.md): its pages read what the database holds in a fixed number of
queries, operators read only, clearing staff step cycles and record and resolve disputes through the
interop services (audited under their name), every action behind a confirmation."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client

from citycard.interop.models import BilateralPosition, ClearingCycle, Dispute, NetPosition
from citycard.platform.audit.models import AuditEntry
from citycard.platform.models import Role
from citycard.platform.services import user_create
from citycard.platform.templatetags.people import beijing, yuan, yuan_text
from tests.graphql.conftest import EARLIER, NEXT, SETTLE_AT, clear, day_records

from .conftest import DAY, SHANGHAI, at, record

pytestmark = pytest.mark.django_db
HOST = {"HTTP_HOST": "localhost"}
CYCLE_URL = f"/console/cycles/yrd/transit/{DAY.isoformat()}/"


def test_yuan_reads_fen_as_yuan_with_negatives_marked_and_beijing_reads_time_to_the_minute():
    assert yuan_text(123456) == "¥1,234.56"
    assert yuan_text(-5) == "-¥0.05"
    assert yuan_text(0) == "¥0.00"
    assert yuan(-123456) == '<span class="yuan neg">-¥1,234.56</span>'
    assert yuan(7) == '<span class="yuan">¥0.07</span>'
    assert beijing(dt.datetime(2026, 12, 7, 10, 5, 59, tzinfo=dt.UTC)) == "2026-12-07 18:05 +08:00"


def _several_issuers(day: dt.date, serial: int) -> list[dict]:
    """day_records (Hangzhou and Jiaxing) plus Shanghai as issuer and acquirer: three issuers, three acquirers."""
    extra = [
        record(
            acquirer="hangzhou",
            issuer="shanghai",
            issuer_division="310000",
            serial=serial + 20,
            amount=250,
            when=at(day, 10),
        ),
        record(
            acquirer="jiaxing",
            issuer="shanghai",
            issuer_division="310000",
            serial=serial + 21,
            amount=420,
            when=at(day, 10),
        ),
        record(
            acquirer="shanghai",
            issuer="hangzhou",
            issuer_division="330100",
            serial=serial + 22,
            amount=610,
            when=at(day, 10),
        ),
        record(
            acquirer="shanghai",
            issuer="jiaxing",
            issuer_division="330400",
            serial=serial + 23,
            amount=330,
            when=at(day, 10),
        ),
    ]
    return day_records(day, serial) + extra


@pytest.fixture
def cycles(yrd_transit, send, collect):
    """EARLIER and DAY settled with three issuers; NEXT open."""
    clear(send, collect, EARLIER, _several_issuers(EARLIER, 10), now=at(DAY, 5))
    cycle = clear(send, collect, DAY, _several_issuers(DAY, 40), now=SETTLE_AT)
    return cycle


@pytest.fixture
def fixed_now(monkeypatch):
    class Clock:
        at = at(NEXT, 8)

    monkeypatch.setattr("citycard.interop.console.clock.now", lambda: Clock.at)
    return Clock


def _client(role: str, username: str) -> Client:
    client = Client()
    client.force_login(user_create(username=username, role=role, password="a-long-password-1"))
    return client


@pytest.fixture
def clerk() -> Client:
    return _client(Role.CLEARING_STAFF, "clerk-wang")


@pytest.fixture
def operator() -> Client:
    return _client(Role.PLATFORM_OPERATOR, "operator-li")


def _fen_attrs(html: str, cls: str) -> list[int]:
    return [int(v) for v in re.findall(rf'class="num {cls}"[^>]*data-fen="(-?\d+)"', html)]


def test_cycle_page_shows_the_matrix_net_positions_and_their_zero_sum_as_the_database_holds_them(
    cycles, clerk, fixed_now, django_assert_num_queries
):
    with django_assert_num_queries(13):
        response = clerk.get(CYCLE_URL, **HOST)
    assert response.status_code == 200
    html = response.content.decode()
    cells = {
        (i, a): (int(f), int(n))
        for i, a, f, n in re.findall(
            r'data-issuer="(\w+)" data-acquirer="(\w+)" data-fen="(-?\d+)" data-records="(\d+)"', html
        )
    }
    stored = {
        (b.issuer, b.acquirer): (b.amount_fen, b.records)
        for b in BilateralPosition.objects.filter(cycle=cycles)
    }
    assert cells == stored and len({i for i, _a in stored}) == 3
    assert (
        sum(_fen_attrs(html, "rowsum"))
        == sum(_fen_attrs(html, "colsum"))
        == sum(f for f, _n in stored.values())
    )
    nets = {p: int(n) for p, n in re.findall(r'data-participant="([\w-]+)" data-net="(-?\d+)"', html)}
    assert nets == dict(NetPosition.objects.filter(cycle=cycles).values_list("participant", "net_fen"))
    assert 'id="net-sum" data-fen="0"' in html
    # The steps and statuses by their labels, not their codes: 已截止 (closed), 有效 (valid).
    assert '?status=valid">有效</a>' in html
    for shown in ("yrd-settlement", "SHA-256", "tac_invalid", "TAC 校验通过", "已截止", "system"):
        assert shown in html, shown
    assert "¥" in html and "+08:00" in html


def test_a_cycle_page_costs_the_same_queries_with_more_issuers(
    yrd_transit, send, collect, clerk, fixed_now, django_assert_num_queries
):
    clear(send, collect, DAY, day_records(DAY, 1), now=SETTLE_AT)  # two issuers
    with django_assert_num_queries(13):
        assert clerk.get(CYCLE_URL, **HOST).status_code == 200


def test_today_lists_current_and_previous_cycles_and_what_needs_a_person(
    cycles, clerk, fixed_now, django_assert_num_queries
):
    with django_assert_num_queries(12):  # the agreements and their dated versions: one query each
        response = clerk.get(f"/console/?date={NEXT.isoformat()}", **HOST)
    html = response.content.decode()
    assert response.status_code == 200
    assert f"/console/cycles/yrd/transit/{NEXT.isoformat()}/" in html  # current: open
    assert f"/console/cycles/yrd/transit/{DAY.isoformat()}/" in html  # previous: settled
    assert "待处理" in html  # Needs a person now
    # By default: today in Asia/Shanghai (the fixed clock's NEXT).
    assert NEXT.isoformat() in clerk.get("/console/", **HOST).content.decode()


def test_a_cycle_left_between_steps_needs_a_person(yrd_transit, send, collect, clerk, fixed_now):
    from citycard.interop.services.cycles import cycle_close, cycle_get_or_create

    send("jiaxing", day_records(DAY, 1)[:1], now=at(DAY, 11))
    collect("jiaxing", now=at(DAY, 12))
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY)
    cycle_close(cycle=cycle, now=at(NEXT, 5))
    ClearingCycle.objects.filter(pk=cycle.pk).update(progressed_at=at(NEXT, 5))
    html = clerk.get("/console/", **HOST).content.decode()
    attention = html[html.index('id="attention"') : html.index('class="board"')]
    assert f"yrd-transit-{DAY.isoformat()}" in attention and '/step/validate/">校验…</a>' in attention
    assert "自上一步起处于“已截止”已 3 小时 00 分钟；下一步：校验" in attention
    english = clerk.get("/console/", **HOST, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Closed (cut off) for 3 h 00 min since its last step; next: Validate" in english
    assert '/step/validate/">Validate…</a>' in english


def test_exceptions_group_by_reason_and_issuer_and_drill_down_to_their_records(
    cycles, clerk, django_assert_num_queries
):
    with django_assert_num_queries(7):
        html = clerk.get(f"{CYCLE_URL}exceptions/", **HOST).content.decode()
    assert "tac_invalid" in html
    link = re.search(
        r'href="([^"]*records/\?status=rejected&amp;reason=tac_invalid&amp;issuer=hangzhou[^"]*)"', html
    )
    with django_assert_num_queries(7):
        records = clerk.get(link.group(1).replace("&amp;", "&"), **HOST).content.decode()
    assert records.count("status-rejected") == 1


def test_operators_read_the_console_but_cannot_step_or_dispute(cycles, operator, fixed_now):
    assert operator.get(CYCLE_URL, **HOST).status_code == 200
    html = operator.get(CYCLE_URL, **HOST).content.decode()
    assert "只读" in html and "step-" not in html  # read-only
    record_id = cycles.records.filter(status="pending").values_list("record_id", flat=True).first()
    assert 'id="raise-dispute"' not in operator.get(f"/console/records/{record_id}/", **HOST).content.decode()
    for url in (
        f"/console/cycles/yrd/transit/{NEXT.isoformat()}/step/close/",
        f"/console/records/{record_id}/dispute/",
    ):
        refused = operator.get(url, **HOST)
        assert (
            refused.status_code == 403 and "只有清算人员" in refused.content.decode()
        )  # Only clearing staff
        assert operator.post(url, {"reason": "x", "raised_by": "hangzhou"}, **HOST).status_code == 403
    assert ClearingCycle.objects.get(business_date=NEXT).state == "open"
    assert not Dispute.objects.exists()


def test_clerks_step_a_cycle_after_a_confirmation_and_a_refusal_says_why(cycles, clerk, fixed_now):
    url = f"/console/cycles/yrd/transit/{NEXT.isoformat()}/step/close/"
    page = clerk.get(url, **HOST)
    assert page.status_code == 200 and "确认" in page.content.decode()  # Confirm
    assert ClearingCycle.objects.get(business_date=NEXT).state == "open"  # asking is not doing
    refused = clerk.post(url, **HOST)  # before NEXT's cut-off (NEXT+1 04:00)
    assert refused.status_code == 409 and "此前不能截止" in refused.content.decode()  # cannot close before
    fixed_now.at = dt.datetime(2026, 11, 23, 5, 0, tzinfo=SHANGHAI)
    done = clerk.post(url, **HOST)
    assert done.status_code == 302 and done["Location"] == f"/console/cycles/yrd/transit/{NEXT.isoformat()}/"
    assert ClearingCycle.objects.get(business_date=NEXT).state == "closed"
    assert clerk.post(url, **HOST).status_code == 302  # again: idempotent, nothing more
    entry = AuditEntry.objects.filter(
        action="interop.cycle_close", object_id=f"yrd-transit-{NEXT.isoformat()}"
    )
    assert list(entry.values_list("actor", flat=True)) == ["user:clerk-wang"]
    assert (
        "user:clerk-wang"
        in clerk.get(f"/console/cycles/yrd/transit/{NEXT.isoformat()}/", **HOST).content.decode()
    )


def test_clerks_raise_and_resolve_a_dispute_through_the_services_audited(cycles, clerk, fixed_now):
    record_id = (
        cycles.records.filter(status="pending", amount_fen=500).values_list("record_id", flat=True).get()
    )
    url = f"/console/records/{record_id}/dispute/"
    assert clerk.get(url, **HOST).status_code == 200
    empty = clerk.post(url, {"raised_by": "hangzhou", "reason": " "}, **HOST)
    assert empty.status_code == 409 and "请说明" in empty.content.decode()  # Say why
    raised = clerk.post(url, {"raised_by": "hangzhou", "reason": "乘客称未乘车 rider says no ride"}, **HOST)
    dispute = Dispute.objects.get(record__record_id=record_id)
    assert raised["Location"] == f"/console/disputes/{dispute.pk}/"
    assert ClearingCycle.objects.get(pk=cycles.pk).state == "disputed"
    assert "rider says no ride" in clerk.get("/console/disputes/", **HOST).content.decode()
    resolve = f"/console/disputes/{dispute.pk}/resolve/"
    assert "接受争议" in clerk.get(f"{resolve}?decision=accept", **HOST).content.decode()  # Accept dispute
    clerk.post(resolve, {"decision": "accept", "resolution": "核实属实 confirmed"}, **HOST)
    dispute.refresh_from_db()
    assert dispute.state == "accepted" and dispute.resolved_by == "user:clerk-wang"
    assert dispute.adjustment.amount_fen == -500
    assert ClearingCycle.objects.get(pk=cycles.pk).state == "settled"
    actors = dict(
        AuditEntry.objects.filter(action__startswith="interop.dispute_").values_list("action", "actor")
    )
    assert actors == {
        "interop.dispute_raise": "user:clerk-wang",
        "interop.dispute_resolve": "user:clerk-wang",
    }
    again = clerk.post(resolve, {"decision": "reject", "resolution": "twice"}, **HOST)
    assert again.status_code == 409 and "已是 accepted 状态" in again.content.decode()  # already accepted


def test_the_platform_home_links_the_console(clerk):
    assert b'href="/console/"' in clerk.get("/", **HOST).content


def test_a_monthly_agreement_shows_its_month_as_the_current_cycle(yrd_transit, clerk, fixed_now):
    from citycard.interop.services.agreements import agreement_set
    from citycard.interop.services.cycles import cycle_get_or_create

    agreement_set(network_code="gba", service="medical", valid_from=dt.date(2020, 1, 1), actor="test")
    cycle_get_or_create(network_code="gba", service="medical", business_date=NEXT)
    html = clerk.get(f"/console/?date={NEXT.isoformat()}", **HOST).content.decode()
    assert f"/console/cycles/gba/medical/{NEXT.replace(day=1).isoformat()}/" in html


def test_record_dispute_and_dispute_list_pages_cost_a_fixed_number_of_queries(
    cycles, clerk, fixed_now, django_assert_num_queries
):
    record_id = (
        cycles.records.filter(status="pending", amount_fen=500).values_list("record_id", flat=True).get()
    )
    clerk.post(
        f"/console/records/{record_id}/dispute/", {"raised_by": "jiaxing", "reason": "duplicate"}, **HOST
    )
    dispute = Dispute.objects.get()
    for url, queries in (
        (f"/console/records/{record_id}/", 7),
        (f"/console/disputes/{dispute.pk}/", 6),
        ("/console/disputes/?state=all", 6),
    ):
        with django_assert_num_queries(queries):
            assert clerk.get(url, **HOST).status_code == 200, url


def _chart(html: str, data_id: str) -> dict:
    import json

    found = re.search(rf'<script id="{data_id}" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def test_charts_plot_roaming_exception_rates_and_net_positions_per_day_as_stored(
    cycles, clerk, fixed_now, django_assert_num_queries
):
    with django_assert_num_queries(8):  # three aggregates, whatever the number of records and days
        response = clerk.get(f"/console/charts/?days=90&date={NEXT.isoformat()}", **HOST)
    html = response.content.decode()
    assert response.status_code == 200 and "citycard/vendor/echarts/echarts.min.js" in html
    roaming = _chart(html, "roaming-data")
    assert len(roaming["x"]) == 90 and roaming["x"][-1] == NEXT.isoformat()
    day = roaming["x"].index(DAY.isoformat())
    records = {s["name"]: s["data"][day] for s in roaming["series"] if s["type"] == "bar"}
    amounts = {s["name"]: s["data"][day] for s in roaming["series"] if s["type"] == "line"}
    stored = BilateralPosition.objects.filter(cycle=cycles)
    assert list(records.values()) == [sum(b.records for b in stored)]
    assert list(amounts.values()) == [sum(b.amount_fen for b in stored)]  # fen in the data
    assert roaming["series"][0]["data"][-1] is None  # NEXT is not netted
    rates = _chart(html, "exceptions-data")
    rejected = cycles.records.filter(status="rejected").count()
    (tac,) = [s for s in rates["series"] if s["name"] == "TAC 校验不通过 (tac_invalid)"]  # label and code
    assert tac["data"][day] == round(100 * rejected / (sum(b.records for b in stored) + rejected), 2)
    positions = _chart(html, "positions-data")
    nets = {s["name"]: s["data"][day] for s in positions["series"]}
    assert nets == dict(NetPosition.objects.filter(cycle=cycles).values_list("participant", "net_fen"))
    # 30 days by default; an unknown span is 30 days too.
    assert (
        len(_chart(clerk.get("/console/charts/?days=7", **HOST).content.decode(), "roaming-data")["x"]) == 30
    )


def test_the_cycle_page_draws_its_matrix_as_a_heat_map_of_the_same_cells(cycles, clerk, fixed_now):
    html = clerk.get(CYCLE_URL, **HOST).content.decode()
    heat = _chart(html, "heatmap-data")
    cells = {(heat["y"][y], heat["x"][x]): (fen, n) for x, y, fen, n in heat["data"]}
    assert cells == {
        (b.issuer, b.acquirer): (b.amount_fen, b.records)
        for b in BilateralPosition.objects.filter(cycle=cycles)
    }


def test_records_page_by_key_past_the_first_page_each_page_in_the_same_queries(
    cycles, clerk, fixed_now, django_assert_num_queries, monkeypatch
):
    monkeypatch.setattr("citycard.interop.console.views.RECORDS_SHOWN", 2)  # pages of 2, not 500
    stored = list(cycles.records.order_by("record_id").values_list("record_id", flat=True))
    assert len(stored) > 4
    seen, url = [], f"{CYCLE_URL}records/"
    while url:
        with django_assert_num_queries(8):  # the page (one more than shown: is there a next?) and the count
            html = clerk.get(url, **HOST).content.decode()
        page = re.findall(r'href="/console/records/([\w-]+)/"', html)
        assert 1 <= len(page) <= 2
        seen += page
        following = re.search(r'id="next-page" class="button" href="\?([^"]+)"', html)
        url = f"{CYCLE_URL}records/?{following.group(1).replace('&amp;', '&')}" if following else None
        assert f"{len(stored)} 笔" in html
    assert seen == stored  # every record once, in order


def test_a_reconciliation_file_downloads_as_stored_with_its_digest(cycles, clerk, fixed_now):
    import base64
    import hashlib

    from citycard.interop.models import ReconciliationFile

    html = clerk.get(CYCLE_URL, **HOST).content.decode()
    links = re.findall(r'href="(/console/cycles/yrd/transit/[\d-]+/files/([\w-]+)\.csv)"', html)
    assert {p for _u, p in links} == set(
        ReconciliationFile.objects.filter(cycle=cycles).values_list("participant", flat=True)
    )
    for url, participant in links:
        response = clerk.get(url, **HOST)
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        body = response.content
        stored = ReconciliationFile.objects.get(cycle=cycles, participant=participant)
        digest = hashlib.sha256(body).hexdigest()
        assert digest == stored.sha256 == response["X-Content-SHA256"]
        assert response["Digest"] == "sha-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert body.decode().startswith("# totals") and participant in response["Content-Disposition"]
    assert clerk.get(f"{CYCLE_URL}files/nobody.csv", **HOST).status_code == 404


def test_totals_and_counts_of_a_netted_cycle_read_from_its_positions_equal_counting_its_records(
    cycles, yrd_transit, send, collect
):
    from citycard.interop import selectors
    from citycard.interop.services.cycles import cycle_get_or_create

    send("jiaxing", day_records(NEXT, 90), now=at(NEXT, 11))
    collect("jiaxing", now=at(NEXT, 12))
    open_cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=NEXT)
    every = list(ClearingCycle.objects.filter(pk__in=[cycles.pk, open_cycle.pk]))
    assert {c.state for c in every} == {"settled", "open"}
    counted = selectors.cycle_record_totals(cycle_ids=[c.pk for c in every])
    assert selectors.cycle_record_totals_of(cycles=every) == counted
    assert set(counted[cycles.pk]) == {"valid", "rejected"}
    for filters in (
        {},
        {"status": "valid"},
        {"status": "rejected"},
        {"issuer": "hangzhou"},
        {"issuer": "hangzhou", "acquirer": "jiaxing", "status": "valid"},
        {"acquirer": "shanghai", "status": "rejected"},
    ):
        query = selectors.records_query(cycle_ids=[cycles.pk], **filters)
        assert selectors.records_count(cycle=cycles, query=query, **filters) == query.count(), filters
