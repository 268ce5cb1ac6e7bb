"""The ledger under random channel activity (hypothesis): orders on three providers' channels, payments
whose notifications arrive, are replayed, are lost or carry another amount, queries, refunds, and statement
days reconciled. After every step each cardholder's balance equals an independent sum of what was credited
and refunded, each channel's clearing account carries the other side, every posting balances; each day's
reconciliation names exactly the differences the activity made (missing notification, amount) and no
others."""

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
from citycard.tenants.payments.models import ReconException
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
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_channel_activity_keeps_every_balance_and_each_statement_day_reconciles(world, sandboxes, inbox, ops):
    day = FIRST_DAY + dt.timedelta(days=10 * next(_example))
    sid = transaction.savepoint()
    orders: list[dict] = []  # the independent model: what each order is and what became of it
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
            elif op == "day":
                reconcile(day, orders)
                day += dt.timedelta(days=1)
            check(world, orders)
        reconcile(day, orders)
    finally:
        transaction.savepoint_rollback(sid)


def reconcile(day: dt.date, orders: list[dict]) -> None:
    for provider in CHANNELS:
        code = f"p-{provider}"
        from_sandbox = services.statement_fetch_and_reconcile(channel_code=code, day=day, actor="p")
        found = set(ReconException.objects.filter(run=from_sandbox).values_list("out_trade_no", "kind"))
        expected = {
            (m["o"].out_trade_no, {"lost": "missing", "wrong": "amount"}[m["mode"]])
            for m in orders
            if m["provider"] == provider and m["paid_day"] == day and m["mode"] in ("lost", "wrong")
        }
        assert found == expected


def check(cards_: list[str], orders: list[dict]) -> None:
    for card in cards_:
        expected = sum(m["credited"] - m["refunded"] for m in orders if m["card"] == card)
        assert account_of_card(card_no=card).balance_fen == expected
    for provider in CHANNELS:
        expected = sum(m["credited"] - m["refunded"] for m in orders if m["provider"] == provider)
        clearing = LedgerAccount.objects.filter(code=f"topup:channel-p-{provider}").first()
        assert (clearing.balance_fen if clearing else 0) == -expected
    totals = ledger_totals()
    assert (
        totals.unbalanced_postings == 0 and totals.balances_total_fen == 0 and totals.balances_mismatched == 0
    )
