"""A city's finance pages in a real browser (Playwright driving Debian's Chromium): Jiaxing's finance clerk
signs in on the city's own site, reads a UnionPay statement's reconciliation (短款, missing notification
and a 长款 held in suspense), resolves the missing notification and matches the 长款 to a card from the
page, then reads the merchants' settlement of the day and a merchant's statement. Amounts are in yuan,
the page is Chinese, each action moves the money the database then shows, and no page logs an error.

The harness (the site served inside the test's transaction, Chromium, what a page must never show):
tests/e2e/browser.py. Screenshots go to the test's tmp_path (``CITYCARD_SCREENSHOTS=docs/img`` copies
them for docs/payments.md).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from pathlib import Path

from django_tenants.utils import tenant_context

from citycard.platform.models import Role, Tenant
from citycard.platform.services import user_create
from citycard.tenants.accounts.selectors import account_of_card, ledger_totals
from citycard.tenants.merchants import services as merchants
from citycard.tenants.payments import services
from citycard.tenants.payments.models import ReconException, SuspenseItem
from citycard.tenants.payments.protocols import beijing_now
from citycard.terminal_kit.beijing import BEIJING
from tests.tenants.conftest import city, holder  # noqa: F401 (fixtures)
from tests.tenants.payments.conftest import (  # noqa: F401 (fixtures)
    card_no,
    channel,
    deliver,
    inbox,
    sandbox_keys,
    sandboxes,
)

from .browser import BROWSER_MARKS, PASSWORD, arrive, browser_open, page_watch, sign_in

pytestmark = BROWSER_MARKS


def _key() -> str:
    return uuid.uuid4().hex


def account_balance_fen(*, card_no: str) -> int:  # noqa: F811 (the fixture's name)
    return account_of_card(card_no=card_no).balance_fen


def test_a_finance_clerk_reconciles_a_statement_and_reads_the_merchants_settlement_in_the_browser(
    channel,  # noqa: F811
    card_no,  # noqa: F811
    inbox,  # noqa: F811
    live,
    tmp_path,
):
    # A day of one UnionPay channel: one top-up paid and credited that the statement omits (短款), one
    # the payer paid whose notification never came (missing), and a line the ledger never saw (长款).
    sandbox, code = channel("unionpay", "unionpay-browser")
    today = beijing_now().date()
    credited = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=1000, request_key=_key(), actor="app"
    )
    lost = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=2000, request_key=_key(), actor="app"
    )
    sandbox.payer_pays(credited.payment_params)
    sandbox.payer_pays(lost.payment_params, drop=True)
    deliver(inbox, sandbox, code)
    sandbox.statement_omit(credited.out_trade_no)
    stranger = "CCNOTOURS" + uuid.uuid4().hex[:20].upper()
    sandbox.statement_add(out_trade_no=stranger, amount_fen=777, at=beijing_now())
    run = services.statement_reconcile(
        channel_code=code, day=today, data=sandbox.statement(today), actor="clerk", file_name="INN"
    )
    missing = ReconException.objects.get(run=run, out_trade_no=lost.out_trade_no)
    held = SuspenseItem.objects.get(out_trade_no=stranger)
    assert account_balance_fen(card_no=card_no) == 1000

    # Yesterday's canteen meals, settled net of the merchant's fee (60 bps).
    yesterday = today - dt.timedelta(days=1)
    merchants.merchant_onboard(
        code="jx-canteen",
        name="嘉兴学院食堂",
        licence_no=merchants.licence_no_build(division="330400", organisation="MA0000009"),
        category="5814",
        settlement_bank="嘉兴银行",
        settlement_account="6222020000123456789",
        fee_bps=60,
        accepted_means=["account"],
        actor="t",
    )
    noon = dt.datetime.combine(yesterday, dt.time(12), tzinfo=BEIJING)
    merchants.merchant_pay(
        merchant_code="jx-canteen", card_no=card_no, amount_fen=850, payment_id="meal-1", at=noon, actor="t"
    )
    merchants.merchants_settle_day(day=yesterday, actor="t")
    user_create(username="jx-finance", role=Role.CITY_ADMIN, tenant_code="jiaxing", password=PASSWORD)
    jiaxing = Tenant.objects.get(code="jiaxing")

    base = live.base.replace("//localhost", "//jiaxing.localhost")
    problems: list[str] = []
    with browser_open() as browser:
        page = browser.new_page(viewport={"width": 1360, "height": 900}, locale="zh-CN")
        page_watch(page, problems)
        sign_in(page, base, "jx-finance", next_url="/payments/reconciliation/")
        arrive(page, f"{base}/payments/reconciliation/")
        assert page.get_attribute("html", "lang") == "zh-hans"
        assert page.title() == f"渠道对账 · {jiaxing.name_zh}"
        runs = page.inner_text("#runs")
        assert "unionpay sandbox" in runs and today.isoformat() in runs
        differences = page.inner_text("#differences")
        assert lost.out_trade_no in differences and credited.out_trade_no in differences
        assert "¥20.00" in differences and "¥10.00" in differences
        # Each reason in the reader's language, not as stored.
        assert "付款人已在渠道付款" in differences and "渠道当日对账单中没有" in differences
        assert "paid at the provider" not in differences
        assert page.inner_text("form.language-switch button") == "English"  # the other language, in itself
        suspense = page.inner_text("#suspense")
        assert stranger in suspense and "¥7.77" in suspense
        # The 长款's own row sends the clerk to suspense rather than offering actions the service refuses.
        held_row = page.locator("#differences tr", has_text=stranger)
        assert held_row.locator("form").count() == 0 and "挂账中" in held_row.inner_text()
        page.screenshot(path=tmp_path / "reconciliation.png", full_page=True)

        # The missing notification: the payer paid per the statement, so the clerk credits it.
        row = page.locator("#differences tr", has_text=lost.out_trade_no)
        row.locator("select[name=action]").select_option("credit")
        row.locator("input[name=note]").fill("银联对账单显示已付款")
        row.locator("button[type=submit]").click()
        arrive(page, f"{base}/payments/reconciliation/")
        assert lost.out_trade_no not in page.inner_text("#differences")
        with live.db(), tenant_context(jiaxing):
            missing.refresh_from_db()
            assert missing.action == "credit" and missing.resolved_by == "jx-finance"
            assert account_balance_fen(card_no=card_no) == 2000 + 1000 - 850  # the meal paid from it

        # The 长款 in suspense: the payer called, the clerk matches it to the card.
        match = page.locator("#suspense tr", has_text=stranger).locator(
            "form", has=page.locator("[name=target]")
        )
        match.locator("input[name=target]").fill(card_no)
        match.locator("input[name=note]").fill("持卡人来电核实")
        match.get_by_role("button", name="核销").click()
        arrive(page, f"{base}/payments/reconciliation/")
        assert stranger not in page.inner_text("#suspense")
        with live.db(), tenant_context(jiaxing):
            held.refresh_from_db()
            assert held.state != "open"
            assert account_balance_fen(card_no=card_no) == 2150 + 777
        page.screenshot(path=tmp_path / "reconciliation-resolved.png", full_page=True)

        # The merchants' settlement of yesterday: gross, fee and net in yuan; the statement lists the meal.
        page.goto(f"{base}/merchants/settlement/?day={yesterday.isoformat()}")
        assert page.title() == f"商户结算 · {jiaxing.name_zh}"
        settlement = page.inner_text("#settlements")
        assert "嘉兴学院食堂" in settlement and "¥8.50" in settlement and "¥8.45" in settlement  # 0.05 fee
        page.screenshot(path=tmp_path / "merchant-settlement.png", full_page=True)
        page.click("#settlements a")
        arrive(page, f"{base}/merchants/settlement/jx-canteen/{yesterday.isoformat()}/")
        statement = page.content()
        line = page.inner_text("#statement tbody tr")
        assert "支付" in line and "市民卡账户" in line and "¥8.50" in line  # kind and means in Chinese
        assert "¥8.45" in page.inner_text("#totals")
        assert "meal-1" in statement and "**** **** **** 6789" in statement
        assert "6222020000123456789" not in statement and card_no not in statement
        page.screenshot(path=tmp_path / "merchant-statement.png", full_page=True)
        with live.db(), tenant_context(jiaxing):
            totals = ledger_totals()
            assert totals.unbalanced_postings == 0 and totals.balances_mismatched == 0
    assert problems == []
    copy_to = os.environ.get("CITYCARD_SCREENSHOTS")
    if copy_to:
        for shot in ("reconciliation", "merchant-settlement"):
            shutil.copy(tmp_path / f"{shot}.png", Path(copy_to) / f"city-{shot}.png")
