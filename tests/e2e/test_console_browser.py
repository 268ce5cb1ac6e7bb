"""The clearing console in a real browser (Playwright driving Debian's Chromium): a clearing clerk signs in
through the form, reads Today and a cycle this test cleared itself, checks the matrix, totals and Σ = 0 on
the page against the database, raises and resolves a dispute from the page; a county officer cannot reach
the console; no page logs a JavaScript error. Screenshots go to the test's tmp_path.

The harness (the site served inside the test's transaction, Chromium, what a page must never show):
tests/e2e/browser.py.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import pytest

from citycard.interop.models import BilateralPosition, ClearingCycle, Dispute, NetPosition
from citycard.platform.models import Role, Tenant
from citycard.platform.services import user_create
from tests.graphql.conftest import SETTLE_AT, clear, day_records
from tests.interop.conftest import DAY, at, collect, record, send, yrd_transit  # noqa: F401 (fixtures)
from tests.interop.large_cycle import cycle_of, participants_named
from tests.tenants.dashboard.taps import taps_store as _taps

from .browser import BROWSER_MARKS, PASSWORD, arrive, browser_open, fen_of, page_watch, sign_in

pytestmark = BROWSER_MARKS


@pytest.fixture
def cycle(yrd_transit, send, collect, monkeypatch):  # noqa: F811
    """DAY cleared with three issuers (Hangzhou, Jiaxing, Shanghai), the console's clock the morning after."""
    extra = [
        record(
            acquirer="hangzhou",
            issuer="shanghai",
            issuer_division="310000",
            serial=80,
            amount=250,
            when=at(DAY, 10),
        ),
        record(
            acquirer="shanghai",
            issuer="jiaxing",
            issuer_division="330400",
            serial=81,
            amount=330,
            when=at(DAY, 10),
        ),
    ]
    cleared = clear(send, collect, DAY, day_records(DAY, 60) + extra, now=SETTLE_AT)
    monkeypatch.setattr("citycard.interop.console.clock.now", lambda: at(DAY + dt.timedelta(days=1), 9))
    return cleared


def test_a_clearing_clerk_reads_a_cycle_and_settles_a_dispute_in_the_browser(cycle, live, tmp_path):
    base = live.base
    user_create(username="clerk-zhang", role=Role.CLEARING_STAFF, password=PASSWORD)
    user_create(username="officer-tl", role=Role.COUNTY_OFFICER, tenant_code="tonglu", password=PASSWORD)
    with live.db():
        cells = {(b.issuer, b.acquirer): b.amount_fen for b in BilateralPosition.objects.filter(cycle=cycle)}
        nets = dict(NetPosition.objects.filter(cycle=cycle).values_list("participant", "net_fen"))
        record_id = cycle.records.filter(amount_fen=500).values_list("record_id", flat=True).get()
    problems: list[str] = []
    with browser_open() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page_watch(page, problems)
        sign_in(page, base, "clerk-zhang")
        arrive(page, f"{base}/console/")
        # Chinese first: the browser asks for zh-CN, the page answers zh-hans.
        assert (
            page.get_attribute("html", "lang") == "zh-hans" and "待处理" in page.content()
        )  # Needs a person now
        page.screenshot(path=tmp_path / "today.png", full_page=True)

        page.click(f"a[href='/console/cycles/yrd/transit/{DAY.isoformat()}/']")
        page.wait_for_selector("#matrix table")
        shown = {}
        for cell in page.query_selector_all("td.cell[data-issuer]"):
            shown[(cell.get_attribute("data-issuer"), cell.get_attribute("data-acquirer"))] = fen_of(
                cell.query_selector("a").inner_text()
            )
        assert shown == cells and len({i for i, _a in cells}) == 3
        row_sums = [fen_of(td.inner_text().split("\n")[0]) for td in page.query_selector_all("td.rowsum")]
        col_sums = [fen_of(td.inner_text().split("\n")[0]) for td in page.query_selector_all("td.colsum")]
        total = fen_of(page.inner_text("#matrix-total").split("\n")[0])
        assert sum(row_sums) == sum(col_sums) == total == sum(cells.values())
        by_issuer = {}
        for (issuer, _acquirer), fen in cells.items():
            by_issuer[issuer] = by_issuer.get(issuer, 0) + fen
        assert row_sums == [by_issuer[i] for i in sorted(by_issuer)]
        page_nets = {
            tr.get_attribute("data-participant"): fen_of(tr.query_selector_all("td")[3].inner_text())
            for tr in page.query_selector_all("tr.position")
        }
        assert page_nets == nets
        assert fen_of(page.inner_text("#net-sum")) == 0
        page.screenshot(path=tmp_path / "cycle.png", full_page=True)
        page.evaluate("document.getElementById('matrix').scrollIntoView()")
        page.screenshot(path=tmp_path / "cycle-matrix.png")  # the matrix and net positions, one screen

        # A cell links to its records.
        page.click("td.cell[data-issuer='hangzhou'][data-acquirer='jiaxing'] a")
        page.wait_for_selector("text=清算记录")  # Clearing records
        assert page.locator("tr:has(code)").count() >= 2
        page.screenshot(path=tmp_path / "records.png", full_page=True)

        # Raise a dispute on a record, with a confirmation, then accept it.
        page.goto(f"{base}/console/records/{record_id}/")
        page.click("#raise-dispute")
        page.select_option("#raised_by", "hangzhou")
        page.fill("#reason", "持卡人称未乘车 the cardholder says they did not ride")
        page.screenshot(path=tmp_path / "raise.png", full_page=True)
        page.click("#confirm")
        page.wait_for_selector("#dispute-state")
        assert "进行中" in page.inner_text("#dispute-state")  # Open
        with live.db():
            dispute = Dispute.objects.get(record__record_id=record_id)
            assert dispute.state == "open" and ClearingCycle.objects.get(pk=cycle.pk).state == "disputed"
        # Today now has something for a person: the open dispute.
        page.goto(f"{base}/console/")
        assert "the cardholder says they did not ride" in page.inner_text("#attention")
        page.screenshot(path=tmp_path / "today-attention.png", full_page=True)
        page.go_back()
        page.wait_for_selector("#accept-dispute")
        page.click("#accept-dispute")
        page.fill("#resolution", "核实属实，冲正 confirmed, reversed")
        page.click("#confirm")
        page.wait_for_selector("td#resolution")  # the dispute page again, not the form (textarea#resolution)
        page.screenshot(path=tmp_path / "dispute.png", full_page=True)
        with live.db():
            dispute.refresh_from_db()
            assert dispute.state == "accepted" and dispute.resolved_by == "user:clerk-zhang"
            assert dispute.adjustment.amount_fen == -500
            assert ClearingCycle.objects.get(pk=cycle.pk).state == "settled"

        # A county officer: refused by the platform's sign-in form, and the console sends them back to it.
        officer = browser.new_page()
        page_watch(officer, problems)
        sign_in(officer, base, "officer-tl")
        assert "sign in on its own site" in officer.content()
        officer.screenshot(path=tmp_path / "county_officer_refused.png")
        officer.goto(f"{base}/console/")
        assert "/admin/login/" in officer.url
        officer.screenshot(path=tmp_path / "county_officer.png")
        # Signed in on the county's own site, the console is not there either (it is the platform's alone).
        own = browser.new_page()
        county = base.replace("//localhost", "//tonglu.localhost")
        sign_in(own, county, "officer-tl")
        arrive(own, f"{county}/console/")
        answer = own.goto(f"{county}/console/")
        assert answer.status == 404 and "清算控制台" not in own.content()

        # English second: a browser asking for English reads English, and the switch brings Chinese back.
        english = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
        page_watch(english, problems)
        sign_in(english, base, "clerk-zhang")
        arrive(english, f"{base}/console/")
        assert english.get_attribute("html", "lang") == "en" and "Needs a person now" in english.content()
        english.screenshot(path=tmp_path / "today-en.png", full_page=True)
        english.click("form.language-switch button[value='zh-hans']")
        english.wait_for_selector("html[lang='zh-hans']")
        assert english.url == f"{base}/console/" and "待处理" in english.content()
    assert not problems, problems
    copy_to = os.environ.get("CITYCARD_SCREENSHOTS")
    if copy_to:  # docs/console.md's pictures: CITYCARD_SCREENSHOTS=docs/img
        shots = {"today-attention": "today", "cycle-matrix": "cycle-matrix", "dispute": "dispute"}
        for shot, name in shots.items():
            shutil.copy(tmp_path / f"{shot}.png", Path(copy_to) / f"console-{name}.png")


def _chart_data(page, chart_id: str) -> list:
    """The data points of every series of a drawn ECharts instance, read in the page."""
    return page.evaluate(
        f"() => window.citycardCharts[{chart_id!r}].getOption().series.map(s => ({{name: s.name, data: s.data}}))"
    )


def test_charts_have_their_data_points_and_the_city_dashboard_renders(cycle, live, tmp_path):
    base = live.base
    user_create(username="clerk-li", role=Role.CLEARING_STAFF, password=PASSWORD)
    user_create(username="hz-admin", role=Role.CITY_ADMIN, tenant_code="hangzhou", password=PASSWORD)
    with live.db():
        # Hangzhou's terminals' taps of the last days: own cards and roaming ones.
        _taps(
            Tenant.objects.get(code="hangzhou"),
            [
                (at(DAY - dt.timedelta(days=d), 7 + h), "330100", "own", 200)
                for d in range(4)
                for h in range(3 + d)
            ]
            + [(at(DAY, 9 + h), "330400", "roaming", 300) for h in range(4)],
        )
        cells = {
            (b.issuer, b.acquirer): (b.amount_fen, b.records)
            for b in BilateralPosition.objects.filter(cycle=cycle)
        }
        nets = dict(NetPosition.objects.filter(cycle=cycle).values_list("participant", "net_fen"))
    problems: list[str] = []
    next_day = (DAY + dt.timedelta(days=1)).isoformat()
    with browser_open() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page_watch(page, problems)
        sign_in(page, base, "clerk-li")
        arrive(page, f"{base}/console/")
        # The cycle's matrix as a heat map: one point per cell, its amount in fen.
        page.goto(f"{base}/console/cycles/yrd/transit/{DAY.isoformat()}/")
        page.wait_for_function("() => window.citycardCharts && window.citycardCharts['chart-heatmap']")
        (heat,) = _chart_data(page, "chart-heatmap")
        axes = page.evaluate(
            "() => { const o = window.citycardCharts['chart-heatmap'].getOption();"
            " return {x: o.xAxis[0].data, y: o.yAxis[0].data}; }"
        )
        drawn = {(axes["y"][y], axes["x"][x]): (fen, n) for x, y, fen, n in heat["data"]}
        assert drawn == cells
        page.evaluate("document.getElementById('chart-heatmap').scrollIntoView()")
        page.screenshot(path=tmp_path / "cycle-heatmap.png")
        # Trends: the day's roaming records and each participant's net position, as netted.
        page.goto(f"{base}/console/charts/?days=30&date={next_day}")
        page.wait_for_function("() => window.citycardCharts && window.citycardCharts['chart-positions']")
        positions = {s["name"]: s["data"][-2] for s in _chart_data(page, "chart-positions")}
        assert positions == nets
        roaming = _chart_data(page, "chart-roaming")
        bars = [s["data"][-2] for s in roaming if "记录数" in s["name"]]  # record count
        assert bars == [sum(n for _fen, n in cells.values())]
        page.screenshot(path=tmp_path / "charts.png", full_page=True)

        # The city administrator's dashboard on Hangzhou's own site.
        city = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page_watch(city, problems)
        hz = base.replace("//localhost", "//hangzhou.localhost")
        sign_in(city, hz, "hz-admin", next_url=f"/dashboard/%3Fdate%3D{next_day}")
        arrive(city, f"{hz}/dashboard/?date={next_day}")
        city.wait_for_function("() => window.citycardCharts && window.citycardCharts['chart-positions']")
        assert "城市看板" in city.content()
        (hz_net,) = [s["data"][-2] for s in _chart_data(city, "chart-positions")]
        assert hz_net == nets["hangzhou"]
        taps = {s["name"]: s["data"] for s in _chart_data(city, "chart-taps")}
        day_at = -2  # DAY, the day before the dashboard's last
        # The series by their Chinese names: own cards (本地卡), roaming in (异地卡来本地).
        assert taps["本地卡"][day_at - 3 : day_at + 1] == [6, 5, 4, 3]
        assert taps["异地卡来本地"][day_at] == 4
        city.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    assert not problems, problems
    copy_to = os.environ.get("CITYCARD_SCREENSHOTS")
    if copy_to:
        for shot in ("dashboard", "charts"):
            shutil.copy(tmp_path / f"{shot}.png", Path(copy_to) / f"console-{shot}.png")


def test_a_300_participant_cycles_heat_map_draws_every_cell_and_the_large_pages_read_in_the_browser(
    yrd_transit,  # noqa: F811
    live,
    tmp_path,
):
    """A national network's cycle (300 participants, each acquiring for the next ten: 3,000 records, a few
    thousand cells on the 300 × 300 heat map): the heat map's ECharts instance holds every cell with its
    amount and records on 300 issuers × 300 acquirers; the exceptions page shows each reason's top issuers
    and the trends chart the top ten net positions, a chosen participant's added by the selector; no
    JavaScript error. CITYCARD_SCREENSHOTS=docs/img copies the heat map (docs/console.md)."""
    base = live.base
    user_create(username="clerk-wang", role=Role.CLEARING_STAFF, password=PASSWORD)
    with live.db():
        cycle, _items = cycle_of(DAY, participants_named(300), seed=300, issuers_per_acquirer=10)
        cells = {
            (b.issuer, b.acquirer): (b.amount_fen, b.records)
            for b in BilateralPosition.objects.filter(cycle=cycle)
        }
    assert len(cells) > 2500 and len({i for i, _a in cells}) == len({a for _i, a in cells}) == 300
    problems: list[str] = []
    with browser_open() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page_watch(page, problems)
        sign_in(page, base, "clerk-wang")
        arrive(page, f"{base}/console/")
        page.goto(f"{base}/console/cycles/yrd/transit/{DAY.isoformat()}/")
        page.wait_for_selector("#matrix-large", state="attached", timeout=60_000)
        assert page.locator("td.cell").count() == 0
        page.wait_for_function("() => window.citycardCharts && window.citycardCharts['chart-heatmap']")
        # Drawn progressively: wait until the chart has finished rendering every block.
        page.wait_for_function(
            "() => { const c = window.citycardCharts['chart-heatmap'];"
            " return c.getOption().series[0].data.length > 0 && !c.isDisposed(); }"
        )
        (heat,) = _chart_data(page, "chart-heatmap")
        axes = page.evaluate(
            "() => { const o = window.citycardCharts['chart-heatmap'].getOption();"
            " return {x: o.xAxis[0].data, y: o.yAxis[0].data}; }"
        )
        assert len(axes["x"]) == len(axes["y"]) == 300
        assert len(heat["data"]) == len(cells)
        drawn = {(axes["y"][y], axes["x"][x]): (fen, n) for x, y, fen, n in heat["data"]}
        assert drawn == cells
        page.wait_for_timeout(500)  # the progressive rendering's last frames
        page.locator("#chart-heatmap").screenshot(path=tmp_path / "heatmap-national.png")

        page.goto(f"{base}/console/cycles/yrd/transit/{DAY.isoformat()}/exceptions/")
        page.wait_for_selector("#exceptions-large", state="attached", timeout=60_000)
        assert 0 < page.locator("tr.top-issuer").count() <= 10 * page.locator("section.reason").count()

        next_day = (DAY + dt.timedelta(days=1)).isoformat()
        page.goto(f"{base}/console/charts/?days=30&date={next_day}")
        page.wait_for_function("() => window.citycardCharts && window.citycardCharts['chart-positions']")
        top = [s["name"] for s in _chart_data(page, "chart-positions")]
        assert len(top) == 10
        chosen = next(c for c in sorted({i for i, _a in cells}) if c not in top)
        page.wait_for_selector("#positions-choose select", timeout=60_000)
        page.select_option("#positions-choose select", chosen, timeout=60_000)
        page.click("#positions-choose button")
        page.wait_for_url(re.compile(rf".*participant={chosen}.*"))
        page.wait_for_function("() => window.citycardCharts && window.citycardCharts['chart-positions']")
        assert [s["name"] for s in _chart_data(page, "chart-positions")] == [*top, chosen]
    assert not problems, problems
    copy_to = os.environ.get("CITYCARD_SCREENSHOTS")
    if copy_to:
        shutil.copy(tmp_path / "heatmap-national.png", Path(copy_to) / "console-heatmap-national.png")
