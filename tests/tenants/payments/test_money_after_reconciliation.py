"""What follows a statement's reconciliation (docs/payments.md): each provider's file loaded set-based reads
the same lines as its line parser; the day's fees posted to the fee expense account once; the provider's
payout moving the float to the city's bank account, a short payout a difference; a 长款 held in suspense
(挂账) and matched or refunded through the channel; collections under an agreement (代扣) paid by the
sandbox and credited by its notification; the sweep of overdue orders (and its beat task); refunds and
payouts from `citycard channels`.

Each test that counts a day's money uses sandboxes of its own (the session's are shared by every test)."""

from __future__ import annotations

import datetime as dt
import io
import uuid
import zipfile

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from citycard.platform.errors import Conflict, DomainError
from citycard.platform.models import Role
from citycard.platform.services import user_create
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.accounts.selectors import account_of_card, ledger_totals
from citycard.tenants.payments import services, statements
from citycard.tenants.payments.models import (
    ChannelPayout,
    OrderState,
    ReconException,
    StatementRun,
    SuspenseItem,
)
from citycard.tenants.payments.protocols import ProtocolError, alipay, bank, beijing_now, unionpay, wechat
from citycard.tenants.payments.sandboxes import FEE_BPS
from citycard.tenants.payments.tasks import orders_sweep_all
from citycard.terminal_kit.beijing import BEIJING
from tests.tenants.payments.conftest import deliver

pytestmark = pytest.mark.django_db
PROVIDERS = ["wechat", "alipay", "unionpay", "bank"]


def key() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def balance_of(code: str) -> int:
    account = LedgerAccount.objects.filter(code=code).first()
    return account.balance_fen if account else 0


def assert_balanced() -> None:
    totals = ledger_totals()
    assert (
        totals.unbalanced_postings == 0 and totals.balances_total_fen == 0 and totals.balances_mismatched == 0
    )


def rows_of_a_day(day: dt.date) -> list[dict]:
    at = dt.datetime.combine(day, dt.time(9, 30, 5), tzinfo=BEIJING)
    return [
        {"kind": "pay", "out_trade_no": "CC0001", "transaction_id": "4200000000000000000001", "amount_fen": 12345,
         "fee_fen": 74, "at": at},
        {"kind": "pay", "out_trade_no": "CC0002", "transaction_id": "4200000000000000000002", "amount_fen": 100,
         "fee_fen": 0, "at": at + dt.timedelta(hours=3)},
        {"kind": "refund", "out_trade_no": "CC0001", "transaction_id": "4200000000000000000001",
         "refund_id": "5000000000000000000009", "out_refund_no": "RF0001", "amount_fen": 2345, "fee_fen": 14,
         "at": at + dt.timedelta(hours=5)},
    ]  # fmt: skip


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_format_loaded_by_the_database_reads_what_the_line_parser_reads(provider, city):
    day = dt.date(2026, 11, 21)
    rows = rows_of_a_day(day)
    data = {
        "wechat": lambda: wechat.bill_write(rows, app_id="wx", merchant_id="1900000109"),
        "alipay": lambda: alipay.bill_write(rows, pid="2088102177846880", day=day),
        "unionpay": lambda: unionpay.file_write(rows, merchant_id="777290058110048", day=day),
        "bank": lambda: bank.file_write(rows, merchant_id="330400BK0001", day=day),
    }[provider]()
    parser = {"wechat": wechat.bill_parse, "alipay": alipay.bill_parse, "unionpay": unionpay.file_parse,
              "bank": bank.file_parse}[provider]  # fmt: skip
    expected = sorted(
        (line.kind, line.out_trade_no, line.provider_trade_no, line.out_refund_no, line.amount_fen, line.fee_fen,
         line.at)
        for line in parser(data)
    )  # fmt: skip
    statements.stage_create()
    statements.load(provider, data, year=day.year)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT kind, out_trade_no, provider_trade_no, out_refund_no, amount_fen, fee_fen, at"
            " FROM payments_stage_line"
        )
        loaded = sorted(cur.fetchall())
    statements.stage_drop()
    assert loaded == expected and len(loaded) == 3
    assert {line[0] for line in loaded} == {"pay", "refund"}


def test_a_unionpay_file_with_chinese_names_is_cut_by_gbk_byte(city):
    """UnionPay lays its transaction file out in GBK bytes: a merchant's short name of Chinese characters
    takes two bytes each, so its lines are the layout's width in bytes and fewer in characters. Every field
    after the name lands where it should, in the line parser and in the database load alike; a name longer
    than its field is cut at a character, never inside one."""
    day = dt.date(2026, 11, 21)
    rows = rows_of_a_day(day)
    rows[0]["merchant_name"] = "嘉兴市第一中学学生食堂"  # 11 characters, 22 bytes
    rows[1]["merchant_name"] = "嘉兴市南湖区市民中心地下停车场东区收费处二号窗口"  # 48 bytes: cut to 40
    rows[2]["merchant_name"] = "KFC肯德基(南湖店)"  # ASCII and Chinese mixed, an odd number of bytes
    data = unionpay.file_write(rows, merchant_id="777290058110048", day=day)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        raw = z.read(z.namelist()[0])
    width = sum(w for _, w in unionpay.LAYOUT) + len(unionpay.LAYOUT) - 1
    lines = raw.splitlines()
    assert [len(line) for line in lines] == [width] * 3
    assert [len(line.decode("gbk")) for line in lines] == [width - 11, width - 20, width - 6]
    start = sum(w + 1 for name, w in unionpay.LAYOUT[: [n for n, _ in unionpay.LAYOUT].index("mer_abbr")])
    names = [line[start : start + 40].decode("gbk").rstrip() for line in lines]
    assert names == [
        "嘉兴市第一中学学生食堂",
        "嘉兴市南湖区市民中心地下停车场东区收费处",
        "KFC肯德基(南湖店)",
    ]
    at = dt.datetime.combine(day, dt.time(9, 30, 5), tzinfo=BEIJING)
    query = "420000000000000000000"  # UnionPay's query id is 21 characters: the rows' ids cut to it
    expected = [
        ("pay", "CC0001", query, "", 12345, 74, at),
        ("pay", "CC0002", query, "", 100, 0, at + dt.timedelta(hours=3)),
        ("refund", "", query, "RF0001", 2345, -14, at + dt.timedelta(hours=5)),
    ]
    parsed = [
        (x.kind, x.out_trade_no, x.provider_trade_no, x.out_refund_no, x.amount_fen, x.fee_fen, x.at)
        for x in unionpay.file_parse(data)
    ]
    assert parsed == expected
    statements.stage_create()
    statements.load("unionpay", data, year=day.year)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT kind, out_trade_no, provider_trade_no, out_refund_no, amount_fen, fee_fen, at"
            " FROM payments_stage_line ORDER BY kind, out_trade_no"
        )
        loaded = cur.fetchall()
    statements.stage_drop()
    assert loaded == expected
    # A line one byte short of the layout (its name's field a byte short) refuses the file, in both readers.
    short = lines[0][: start + 39] + lines[0][start + 40 :]
    broken = b"\r\n".join([short, *lines[1:]]) + b"\r\n"
    with pytest.raises(ProtocolError, match="bytes"):
        list(unionpay.file_parse(broken))
    statements.stage_create()
    with pytest.raises(ProtocolError, match="bytes of GBK"):
        statements.load("unionpay", broken, year=day.year)
    statements.stage_drop()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_altered_file_is_refused_whole_by_the_database_load(provider, own_channel):
    _, code = own_channel(provider)
    day = dt.date(2026, 11, 21)
    rows = rows_of_a_day(day)
    broken = {
        # a line's amount changed: the summary row no longer adds up
        "wechat": lambda: wechat.bill_write(rows, app_id="wx", merchant_id="1").replace(
            b"`123.45", b"`123.46"
        ),
        "alipay": lambda: _alipay_altered(rows, day),
        "unionpay": lambda: b"S22 too short\r\n",
        "bank": lambda: bank.file_write(rows, merchant_id="1", day=day).replace(b"|12345|", b"|12346|"),
    }[provider]()
    with pytest.raises(DomainError, match="cannot be read") as refused:
        services.statement_reconcile(channel_code=code, day=day, data=broken, actor="clerk")
    assert refused.value.code == "bad_statement"
    assert not StatementRun.objects.filter(channel__code=code).exists()


def _alipay_altered(rows: list[dict], day: dt.date) -> bytes:
    text = alipay.bill_write(rows, pid="1", day=day)
    with zipfile.ZipFile(io.BytesIO(text)) as z:
        name = next(n for n in z.namelist() if n.endswith("业务明细.csv"))
        csv_bytes = z.read(name)
    return csv_bytes.replace("123.45".encode("gbk"), "123.40".encode("gbk"))


def test_fees_are_posted_once_a_statement_and_the_payout_moves_the_float_to_the_bank(
    own_channel, card_no, inbox
):
    sandbox, code = own_channel("wechat")
    today = beijing_now().date()
    amounts = [20000, 5000]
    for amount in amounts:
        order = services.topup_order_create(
            channel_code=code, card_no=card_no, amount_fen=amount, request_key=key(), actor="app"
        )
        sandbox.payer_pays(order.payment_params)
    deliver(inbox, sandbox, code)
    clearing, expense = f"topup:channel-{code}", f"fee-expense:channel-{code}"
    assert balance_of(clearing) == -25000

    run = services.statement_fetch_and_reconcile(channel_code=code, day=today, actor="clerk")
    fees = sum(a * FEE_BPS["wechat"] // 10000 for a in amounts)
    assert run.exceptions == 0 and run.fee_fen == fees == run.fees_posted_fen == 150
    assert balance_of(expense) == -150 and balance_of(clearing) == -25000 + 150
    assert {leg.account.code: leg.amount_fen for leg in run.fee_posting.legs.select_related("account")} == {
        clearing: 150, expense: -150,
    }  # fmt: skip
    again = services.statement_fetch_and_reconcile(channel_code=code, day=today, actor="clerk")
    assert again.pk == run.pk and balance_of(expense) == -150  # the same file: nothing posted twice

    reference, net = sandbox.payout(today)
    assert net == 25000 - 150
    payout = services.payout_record(
        channel_code=code, statement_date=today, amount_fen=net, bank_reference=reference, actor="clerk"
    )
    assert payout.expected_fen == net and payout.difference is None
    assert balance_of(clearing) == 0 and balance_of("bank:collections") == -net
    assert (
        services.payout_record(
            channel_code=code, statement_date=today, amount_fen=net, bank_reference=reference, actor="clerk"
        ).pk
        == payout.pk
    )
    with pytest.raises(Conflict):
        services.payout_record(
            channel_code=code,
            statement_date=today,
            amount_fen=net - 1,
            bank_reference=reference,
            actor="clerk",
        )
    # A second payout of the same day is more than the statement nets: a difference for a clerk.
    extra = services.payout_record(
        channel_code=code, statement_date=today, amount_fen=100, bank_reference="DUP-1", actor="clerk"
    )
    assert extra.expected_fen == 0 and extra.difference.kind == "payout"
    assert "100 fen" in extra.difference.reason and balance_of(clearing) == 100
    services.difference_resolve(
        difference_id=extra.difference.pk,
        action="accept",
        note="the provider will take it back",
        actor="clerk",
    )
    assert_balanced()


def test_a_payout_needs_its_statement_first(own_channel):
    _, code = own_channel("bank")
    with pytest.raises(DomainError, match="first") as refused:
        services.payout_record(
            channel_code=code,
            statement_date=dt.date(2026, 1, 2),
            amount_fen=100,
            bank_reference="R",
            actor="c",
        )
    assert refused.value.code == "no_statement" and not ChannelPayout.objects.exists()


@pytest.mark.parametrize("provider", ["alipay", "unionpay"])
def test_a_long_payment_is_held_in_suspense_then_refunded_through_the_channel(provider, own_channel, card_no):
    sandbox, code = own_channel(provider)
    today = beijing_now().date()
    stray = "CC" + uuid.uuid4().hex[:20].upper()
    sandbox.stray_payment(out_trade_no=stray, amount_fen=888)
    run = services.statement_fetch_and_reconcile(channel_code=code, day=today, actor="clerk")
    diff = ReconException.objects.get(run=run, out_trade_no=stray)
    item = diff.suspense_item
    assert diff.kind == "long" and item.amount_fen == 888 and item.state == "open" and item.provider_trade_no
    suspense, clearing = f"suspense:channel-{code}", f"topup:channel-{code}"
    fee = 888 * FEE_BPS[provider] // 10000
    assert balance_of(suspense) == 888 and balance_of(clearing) == -888 + fee
    with pytest.raises(DomainError, match="a note"):
        services.suspense_refund(item_id=item.pk, note=" ", actor="clerk")

    item = services.suspense_refund(item_id=item.pk, note="the payer asked for it back", actor="clerk")
    assert item.state == "refunded" and item.refund_no
    assert [r["amount_fen"] for r in sandbox.orders[stray].refunds] == [888]
    assert balance_of(suspense) == 0 and balance_of(clearing) == fee
    diff.refresh_from_db()
    assert diff.action == "refund" and diff.resolved_at is not None
    with pytest.raises(Conflict):
        services.suspense_refund(item_id=item.pk, note="again", actor="clerk")

    # The day's corrected file (now with the refund) names neither the 长款 again nor the refund.
    second = services.statement_fetch_and_reconcile(channel_code=code, day=today, actor="clerk")
    assert second.pk != run.pk
    assert list(ReconException.objects.filter(run=second).values_list("kind", "out_trade_no")) == []
    assert SuspenseItem.objects.filter(out_trade_no=stray).count() == 1
    assert balance_of(suspense) == 0
    assert_balanced()


def test_a_long_payment_in_suspense_is_matched_to_the_order_it_was_meant_for(own_channel, card_no, inbox):
    sandbox, code = own_channel("bank")
    today = beijing_now().date()
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=3000, request_key=key(), actor="app"
    )
    # The payer paid under another number (a teller typed it): the bank's statement carries it, no order.
    stray = "CC" + uuid.uuid4().hex[:20].upper()
    sandbox.stray_payment(out_trade_no=stray, amount_fen=3000)
    run = services.statement_fetch_and_reconcile(channel_code=code, day=today, actor="clerk")
    item = SuspenseItem.objects.get(difference__run=run, out_trade_no=stray)
    with pytest.raises(DomainError, match="an order or to a card"):
        services.suspense_match(item_id=item.pk, note="x", actor="clerk")
    other = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=2999, request_key=key(), actor="app"
    )
    with pytest.raises(DomainError, match="2999 fen"):
        services.suspense_match(item_id=item.pk, out_trade_no=other.out_trade_no, note="x", actor="clerk")
    item = services.suspense_match(
        item_id=item.pk, out_trade_no=order.out_trade_no, note="teller slip 0042", actor="clerk"
    )
    order.refresh_from_db()
    assert item.state == "matched" and item.order_id == order.pk and item.card_no == card_no
    assert order.state == OrderState.PAID and order.settled_by == "suspense"
    assert account_of_card(card_no=card_no).balance_fen == 3000
    assert balance_of(f"suspense:channel-{code}") == 0 and balance_of(f"topup:channel-{code}") == -3000
    with pytest.raises(Conflict):
        services.suspense_match(item_id=item.pk, card_no=card_no, note="again", actor="clerk")
    assert_balanced()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_collection_under_an_agreement_is_paid_by_the_sandbox_and_credited(
    provider, own_channel, card_no, inbox
):
    sandbox, code = own_channel(provider)
    services.binding_create(
        channel_code=code, card_no=card_no, agreement_no=f"AG-{provider}-1", actor="clerk"
    )
    request = key()
    order = services.channel_collect(
        card_no=card_no, amount_fen=4321, request_key=request, actor="credit", description="信用付账单还款"
    )
    assert order.purpose == "collection" and order.state == OrderState.CREATED
    assert sandbox.agreements[order.out_trade_no] == f"AG-{provider}-1"
    acks = deliver(inbox, sandbox, code)
    assert acks and all(status in (200, 204) for status in acks)
    order.refresh_from_db()
    assert order.state == OrderState.PAID and order.settled_by == "notification"
    assert account_of_card(card_no=card_no).balance_fen == 4321
    again = services.channel_collect(
        card_no=card_no, amount_fen=4321, request_key=request, actor="credit", description="信用付账单还款"
    )
    assert again.pk == order.pk and account_of_card(card_no=card_no).balance_fen == 4321
    run = services.statement_fetch_and_reconcile(channel_code=code, day=beijing_now().date(), actor="clerk")
    assert run.exceptions == 0 and run.lines == 1


def test_a_collection_the_sandbox_does_not_pay_is_left_for_the_sweep(own_channel, card_no, inbox):
    sandbox, code = own_channel("wechat")
    sandbox.autopay = False
    services.binding_create(channel_code=code, card_no=card_no, agreement_no="AG-1", actor="clerk")
    order = services.channel_collect(
        card_no=card_no, amount_fen=500, request_key=key(), actor="credit", description="还款"
    )
    assert deliver(inbox, sandbox, code) == []
    later = timezone.now() + dt.timedelta(hours=3)
    result = services.topup_orders_sweep(actor="sweep", now=later)
    order.refresh_from_db()
    assert result.closed == [order.out_trade_no] and order.state == OrderState.CLOSED
    assert services.topup_orders_sweep(actor="sweep", now=later).queried == 0  # idempotent


def beat_sweep() -> dict:
    """The beat task as a worker runs it (every tenant), then back to the test's tenant."""
    tenant = connection.tenant
    done = orders_sweep_all()
    connection.set_tenant(tenant)
    return done


def test_the_sweep_credits_the_paid_closes_the_unpaid_and_runs_as_a_beat_task(own_channel, card_no, inbox):
    sandbox, code = own_channel("alipay")
    paid = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=700, request_key=key(), actor="a"
    )
    unpaid = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=900, request_key=key(), actor="a"
    )
    fresh = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=100, request_key=key(), actor="a"
    )
    sandbox.payer_pays(paid.payment_params, drop=True)  # paid, the notification lost
    hours_ago = timezone.now() - dt.timedelta(hours=3)
    type(paid).objects.filter(pk__in=[paid.pk, unpaid.pk]).update(created_at=hours_ago)

    done = beat_sweep()
    assert done["jiaxing"] == {"queried": 2, "credited": 1, "closed": 1, "failed": 0}
    states = dict(type(paid).objects.filter(pk__in=[paid.pk, unpaid.pk, fresh.pk]).values_list("pk", "state"))
    assert states == {paid.pk: "paid", unpaid.pk: "closed", fresh.pk: "created"}
    assert account_of_card(card_no=card_no).balance_fen == 700
    assert "jiaxing" not in beat_sweep()  # nothing overdue is left: nothing asked
    # A payment of the closed order arriving late is still credited (the money is there).
    sandbox.payer_pays(unpaid.payment_params)
    deliver(inbox, sandbox, code)
    assert account_of_card(card_no=card_no).balance_fen == 1600
    assert_balanced()


def run_channels(*args) -> str:
    out = io.StringIO()
    call_command("channels", "--tenant", "jiaxing", *args, stdout=out)
    return out.getvalue()


def test_refund_payout_and_suspense_from_the_command(own_channel, card_no, inbox, english, tmp_path):
    sandbox, code = own_channel("unionpay")
    order = services.topup_order_create(
        channel_code=code, card_no=card_no, amount_fen=10000, request_key=key(), actor="app"
    )
    sandbox.payer_pays(order.payment_params)
    deliver(inbox, sandbox, code)
    out = run_channels(
        "refund", order.out_trade_no, "--amount", "25.00", "--key", "cli-r1", "--reason", "多充"
    )
    assert "¥25.00 back through" in out and account_of_card(card_no=card_no).balance_fen == 7500
    run_channels("refund", order.out_trade_no, "--amount", "25.00", "--key", "cli-r1")  # a retry: the same
    assert account_of_card(card_no=card_no).balance_fen == 7500
    stray = "CC" + uuid.uuid4().hex[:20].upper()
    sandbox.stray_payment(out_trade_no=stray, amount_fen=1200)
    today = beijing_now().date()
    file = tmp_path / "unionpay.zip"
    file.write_bytes(services.channel_adapter_statement(channel_code=code, day=today))
    out = run_channels("reconcile", code, str(file), "--date", today.isoformat())
    assert "1 differences" in out
    listing = run_channels("suspense")
    assert stray in listing and "¥12.00" in listing

    run = StatementRun.objects.get(channel__code=code)
    reference, net = sandbox.payout(today)
    assert net == run.paid_fen - run.refunded_fen - run.fee_fen
    out = run_channels(
        "payout", code, "--date", today.isoformat(), "--amount", f"{net // 100}.{net % 100:02d}", "--reference",
        reference,
    )  # fmt: skip
    assert "differs" not in out and reference in run_channels("payouts")
    # Paid out: the float holds nothing of the day but the 长款 now in suspense.
    assert balance_of(f"topup:channel-{code}") == 0 and balance_of("bank:collections") == -net
    item = SuspenseItem.objects.get(out_trade_no=stray)
    assert "refunded to the payer" in run_channels("suspense-refund", str(item.pk), "--note", "退回付款人")
    assert stray not in run_channels("suspense")
    assert_balanced()


def test_the_clerk_matches_and_refunds_suspense_on_the_reconciliation_page(own_channel, card_no):
    sandbox, code = own_channel("wechat")
    today = beijing_now().date()
    first, second = ("CC" + uuid.uuid4().hex[:20].upper() for _ in range(2))
    sandbox.stray_payment(out_trade_no=first, amount_fen=600)
    sandbox.stray_payment(out_trade_no=second, amount_fen=400)
    run = services.statement_fetch_and_reconcile(channel_code=code, day=today, actor="clerk")
    reference, net = sandbox.payout(today)
    services.payout_record(
        channel_code=code, statement_date=today, amount_fen=net, bank_reference=reference, actor="c"
    )
    items = {i.out_trade_no: i for i in SuspenseItem.objects.filter(difference__run=run)}
    clerk = Client()
    clerk.force_login(
        user_create(
            username="jx-fin2", role=Role.CITY_ADMIN, tenant_code="jiaxing", password="a-long-password-1"
        )
    )
    page = clerk.get("/payments/reconciliation/", HTTP_HOST="jiaxing.localhost").content.decode()
    assert first in page and second in page and reference in page
    # each table once, in the page's body (not in its title nor its header)
    assert page.count('id="suspense"') == 1 and page.count('id="payouts"') == 1
    assert "<table" not in page.split("</title>")[0] and "<table" not in page.split("</header>")[0]
    clerk.post(
        f"/payments/suspense/{items[first].pk}/match",
        {"target": card_no, "note": "认领"},
        HTTP_HOST="jiaxing.localhost",
    )
    clerk.post(
        f"/payments/suspense/{items[second].pk}/refund", {"note": "退回"}, HTTP_HOST="jiaxing.localhost"
    )
    states = dict(SuspenseItem.objects.filter(difference__run=run).values_list("out_trade_no", "state"))
    assert states == {first: "matched", second: "refunded"}
    assert account_of_card(card_no=card_no).balance_fen == 600
    assert [r["amount_fen"] for r in sandbox.orders[second].refunds] == [400]
    anonymous = Client()
    assert anonymous.post(
        f"/payments/suspense/{items[first].pk}/refund", {"note": "x"}, HTTP_HOST="jiaxing.localhost"
    ).status_code in (302, 403)
    assert_balanced()
