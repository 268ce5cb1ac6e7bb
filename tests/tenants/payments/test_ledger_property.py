"""The ledger under random channel activity (hypothesis): orders on three providers' channels, payments
whose notifications arrive, are replayed, are lost or carry another amount, queries, refunds, payments for
no order (长款, held in suspense, then matched to a cardholder or refunded through the channel), and
statement days reconciled (the day's fees posted) and paid out to the bank. After every step each
cardholder's balance equals an independent sum of what was credited and refunded, each channel's clearing
account, fee expense, suspense and the bank account equal their own independent sums, every posting
balances; each day's reconciliation names exactly the differences the activity made (missing
notification, amount, 长款) and no others, and each payout is the day's net."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.platform.errors import DomainError
from citycard.tenants.accounts import services as accounts
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.accounts.selectors import account_of_card, ledger_totals
from citycard.tenants.cards import services as cards
from citycard.tenants.payments import services
from citycard.tenants.payments.models import ReconException, SuspenseItem
from citycard.tenants.payments.sandboxes import FEE_BPS
from citycard.terminal_kit.beijing import BEIJING
from tests.tenants.payments.conftest import deliver

pytestmark = pytest.mark.django_db
CHANNELS = ["wechat", "alipay", "bank"]
# Each example pays on days of its own (the sandboxes live for the session; their statements are by day).
_example = itertools.count()
FIRST_DAY = dt.date(2025, 1, 1)


@pytest.fixture
def world(channel, holder):
    for provider in CHANNELS:
        channel(provider, f"p-{provider}")
    cards_ = []
    for _ in range(2):
        card = cards.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t").card_no
        accounts.account_open(card_no=card, actor="t")
        cards_.append(card)
    return cards_


operations = st.lists(
    st.one_of(
        st.tuples(st.just("order"), st.integers(0, 2), st.integers(0, 1), st.integers(1, 50000)),
        st.tuples(
            st.just("pay"),
            st.integers(0, 30),
            st.sampled_from(["once", "replay", "lost", "wrong"]),
            st.just(0),
        ),
        st.tuples(st.just("query"), st.integers(0, 30), st.just(0), st.just(0)),
        st.tuples(st.just("refund"), st.integers(0, 30), st.just(0), st.integers(1, 50000)),
        st.tuples(st.just("day"), st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("stray"), st.integers(0, 2), st.just(0), st.integers(1, 50000)),
        st.tuples(st.just("settle"), st.integers(0, 30), st.sampled_from(["match", "refund"]), st.just(0)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_channel_activity_keeps_every_balance_and_each_statement_day_reconciles(world, sandboxes, inbox, ops):
    day = FIRST_DAY + dt.timedelta(days=40 * next(_example))  # more days than an example's 30 steps
    sid = transaction.savepoint()
    orders: list[dict] = []  # the independent model: what each order is and what became of it
    strays: list[dict] = []  # payments for no order: amount, day, provider, and what became of them
    money = {p: {"fees": 0, "payouts": 0} for p in CHANNELS}
    try:
        for op, a, b, amount in ops:
            if op == "order":
                order = services.topup_order_create(
                    channel_code=f"p-{CHANNELS[a]}", card_no=world[b], amount_fen=amount,
                    request_key=uuid.uuid4().hex, actor="p",
                )  # fmt: skip
                orders.append({"o": order, "provider": CHANNELS[a], "card": world[b], "amount": amount,
                               "paid_day": None, "mode": None, "credited": 0, "refunded": 0})  # fmt: skip
            elif op == "pay" and orders:
                m = orders[a % len(orders)]
                if m["mode"] is None:
                    sandbox = sandboxes[m["provider"]]
                    at = dt.datetime.combine(day, dt.time(12), tzinfo=BEIJING)
                    sandbox.payer_pays(
                        m["o"].payment_params, at=at, replay=2 if b == "replay" else 0, drop=b == "lost",
                        paid_fen=m["amount"] + 1 if b == "wrong" else None,
                    )  # fmt: skip
                    deliver(inbox, sandbox, f"p-{m['provider']}")
                    m["mode"], m["paid_day"] = b, day
                    if b in ("once", "replay"):
                        m["credited"] = m["amount"]
            elif op == "query" and orders:
                m = orders[a % len(orders)]
                services.topup_order_query(out_trade_no=m["o"].out_trade_no, actor="p")
                if m["mode"] == "lost":
                    m["credited"], m["mode"] = m["amount"], "queried"
            elif op == "refund" and orders:
                m = orders[a % len(orders)]
                try:
                    services.topup_order_refund(
                        out_trade_no=m["o"].out_trade_no,
                        amount_fen=amount,
                        request_key=uuid.uuid4().hex,
                        actor="p",
                    )
                    m["refunded"] += amount
                except DomainError as exc:
                    assert exc.code in {"not_paid", "over_refund", "insufficient_funds"}, exc
            elif op == "stray":
                out_trade_no = f"ST{uuid.uuid4().hex[:20].upper()}"
                at = dt.datetime.combine(day, dt.time(13), tzinfo=BEIJING)
                sandboxes[CHANNELS[a]].stray_payment(out_trade_no=out_trade_no, amount_fen=amount, at=at)
                strays.append({"no": out_trade_no, "provider": CHANNELS[a], "amount": amount, "day": day,
                               "state": "unseen", "card": None})  # fmt: skip
            elif op == "settle":
                held = [x for x in strays if x["state"] == "held"]
                if held:
                    x = held[a % len(held)]
                    item = SuspenseItem.objects.get(channel__code=f"p-{x['provider']}", out_trade_no=x["no"])
                    if b == "match":
                        x["card"] = world[a % 2]
                        services.suspense_match(item_id=item.pk, card_no=x["card"], note="claimed", actor="p")
                        x["state"] = "matched"
                    else:
                        services.suspense_refund(item_id=item.pk, note="returned", actor="p")
                        x["state"] = "refunded"
            elif op == "day":
                reconcile(day, orders, strays, money, sandboxes)
                day += dt.timedelta(days=1)
            check(world, orders, strays, money)
        reconcile(day, orders, strays, money, sandboxes)
        check(world, orders, strays, money)
    finally:
        transaction.savepoint_rollback(sid)


def reconcile(day: dt.date, orders: list[dict], strays: list[dict], money: dict, sandboxes) -> None:
    """The day's statement of each channel reconciled (differences as the model expects, fees as the model
    sums them) and the provider's payout of the day recorded (the day's net: no payout difference)."""
    for provider in CHANNELS:
        code = f"p-{provider}"
        from_sandbox = services.statement_fetch_and_reconcile(channel_code=code, day=day, actor="p")
        found = set(ReconException.objects.filter(run=from_sandbox).values_list("out_trade_no", "kind"))
        expected = {
            (m["o"].out_trade_no, {"lost": "missing", "wrong": "amount"}[m["mode"]])
            for m in orders
            if m["provider"] == provider and m["paid_day"] == day and m["mode"] in ("lost", "wrong")
        } | {(x["no"], "long") for x in strays if x["provider"] == provider and x["day"] == day}
        assert found == expected
        for x in strays:
            if x["provider"] == provider and x["day"] == day:
                x["state"] = "held"
        bps = FEE_BPS[provider]
        paid = [m["amount"] + (1 if m["mode"] == "wrong" else 0) for m in orders
                if m["provider"] == provider and m["paid_day"] == day]  # fmt: skip
        paid += [x["amount"] for x in strays if x["provider"] == provider and x["day"] == day]
        fees = sum(a * bps // 10000 for a in paid)
        assert from_sandbox.fee_fen == fees
        money[provider]["fees"] += fees
        reference, net = sandboxes[provider].payout(day)
        assert net == sum(paid) - fees  # refunds are of today, not of the example's days
        if net > 0:
            payout = services.payout_record(
                channel_code=code, statement_date=day, amount_fen=net, bank_reference=reference, actor="p"
            )
            assert payout.difference is None
            money[provider]["payouts"] += net


def check(cards_: list[str], orders: list[dict], strays: list[dict], money: dict) -> None:
    for card in cards_:
        expected = sum(m["credited"] - m["refunded"] for m in orders if m["card"] == card)
        expected += sum(x["amount"] for x in strays if x["card"] == card)
        assert account_of_card(card_no=card).balance_fen == expected
    for provider in CHANNELS:
        mine = [m for m in orders if m["provider"] == provider]
        held = [x for x in strays if x["provider"] == provider and x["state"] != "unseen"]
        # The float: what was credited and not given back, the 长款 it took (wherever they went since), less
        # the fees and payouts it paid, plus the 长款 refunded from suspense.
        expected = -sum(m["credited"] - m["refunded"] for m in mine) - sum(x["amount"] for x in held)
        expected += money[provider]["fees"] + money[provider]["payouts"]
        expected += sum(x["amount"] for x in held if x["state"] in ("matched", "refunded"))
        expected -= sum(x["amount"] for x in held if x["state"] == "matched")  # credited to a card from it
        assert balance(f"topup:channel-p-{provider}") == expected
        assert balance(f"fee-expense:channel-p-{provider}") == -money[provider]["fees"]
        assert balance(f"suspense:channel-p-{provider}") == sum(
            x["amount"] for x in held if x["state"] == "held"
        )
    assert balance("bank:collections") == -sum(m["payouts"] for m in money.values())
    totals = ledger_totals()
    assert (
        totals.unbalanced_postings == 0 and totals.balances_total_fen == 0 and totals.balances_mismatched == 0
    )


def balance(code: str) -> int:
    account = LedgerAccount.objects.filter(code=code).first()
    return account.balance_fen if account else 0
