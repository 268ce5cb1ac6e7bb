"""Merchants: onboarding (licence check digit, settlement account sealed and masked, audited), acceptance
by online account, citizen code and e-purse taps from the merchant's terminal, refunds (partial, full,
never above the payment, idempotent), daily settlement net of fees with its statement; every movement a
balanced posting."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError, NotFound
from citycard.tenants.accounts import services as a
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.accounts.selectors import ledger_totals
from citycard.tenants.cards import services as cards
from citycard.tenants.departments.services import department_create
from citycard.tenants.entitlements.acceptance import citizen_code_issue
from citycard.tenants.merchants import selectors as sel
from citycard.tenants.merchants import services as m
from citycard.tenants.merchants.models import Merchant, Payment
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.simulate import SimCard, SimTerminal
from citycard.terminal_kit.beijing import BEIJING
from tests.tenants.credit.test_credit_code_checks import _forged

pytestmark = pytest.mark.django_db

YESTERDAY = timezone.now().astimezone(BEIJING).date() - dt.timedelta(days=1)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=BEIJING)


def assert_balanced():
    totals = ledger_totals()
    assert totals.unbalanced_postings == 0
    assert totals.legs_total_fen == 0 and totals.balances_total_fen == 0
    assert totals.balances_mismatched == 0


def onboard(code="canteen", **kw):
    kw.setdefault("name", "学生食堂")
    kw.setdefault(
        "licence_no", m.licence_no_build(division="330400", organisation=f"{abs(hash(code)) % 10**9:09d}")
    )
    kw.setdefault("category", "5814")
    kw.setdefault("settlement_bank", "嘉兴银行")
    kw.setdefault("settlement_account", "6222 0212 3456 7890 123")
    kw.setdefault("fee_bps", 60)
    kw.setdefault("accepted_means", ["purse", "account", "code"])
    return m.merchant_onboard(code=code, actor="t", **kw)


@pytest.fixture
def card(holder):
    number = cards.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t").card_no
    a.account_open(card_no=number, actor="t")
    a.account_topup(card_no=number, amount_fen=10_000, idempotency_key=f"top-{number}", actor="t")
    return number


def test_licence_number_check_character():
    assert m.licence_no_parse("91350100M000100Y43") == "91350100M000100Y43"  # the standard's example
    with pytest.raises(DomainError) as info:
        m.licence_no_parse("91350100M000100Y44")
    assert info.value.code == "bad_checksum"
    for bad in ("91350100M000100Y4", "91350100M000100I43", "91ABCDEFM000100Y43"):
        with pytest.raises(DomainError):
            m.licence_no_parse(bad)
    built = m.licence_no_build(division="330100", organisation="MA2H7K3X0")
    assert m.licence_no_parse(built.lower()) == built


def test_onboarding_seals_the_settlement_account_and_is_audited(city):
    department_create(code="jx-school-1", kind="education", name="嘉兴一中", actor="t")
    merchant = onboard(department="jx-school-1")
    assert merchant.settlement_account_masked == "**** **** **** 0123"
    assert b"6222021234567890123" not in bytes(merchant.settlement_account_enc)
    assert m.merchant_settlement_account(merchant=merchant) == "6222021234567890123"
    assert merchant.payable.code == "merchant:canteen" and merchant.payable.kind == "merchant"
    entry = AuditEntry.objects.filter(action="merchant.onboard", object_id="canteen").get()
    assert json.loads(entry.payload)["settlement_account"] == "**** **** **** 0123"
    assert "6222021234567890123" not in entry.payload
    with pytest.raises(NotFound):
        onboard("other", department="nobody")
    with pytest.raises(DomainError):
        onboard("dup", licence_no=merchant.licence_no)
    for bad in (
        {"fee_bps": 10_001},
        {"accepted_means": ["cash"]},
        {"category": "0000"},
        {"settlement_account": "12ab"},
    ):
        with pytest.raises(DomainError):
            onboard("bad", **bad)
    assert list(Merchant.objects.values_list("code", flat=True)) == ["canteen"]


def test_account_and_code_payments_refunds_and_state(city, card):
    onboard()
    parking = onboard("parking", name="人民广场停车场", category="7523", accepted_means=["account"])
    p1 = m.merchant_pay(merchant_code="canteen", card_no=card, amount_fen=1250, payment_id="o-1", actor="t")
    again = m.merchant_pay(
        merchant_code="canteen", card_no=card, amount_fen=1250, payment_id="o-1", actor="t"
    )
    assert again.pk == p1.pk and Payment.objects.count() == 1
    code = citizen_code_issue(card_no=card)
    p2 = m.merchant_pay(
        merchant_code="canteen", citizen_code=code, amount_fen=800, payment_id="o-2", actor="t"
    )
    assert p2.means == "code" and p2.card_no == card
    with pytest.raises(DomainError) as info:  # a code is spent once
        m.merchant_pay(
            merchant_code="canteen", citizen_code=code, amount_fen=800, payment_id="o-3", actor="t"
        )
    assert info.value.code == "code_refused"
    with pytest.raises(DomainError) as info:
        m.merchant_pay(
            merchant_code="parking",
            citizen_code=citizen_code_issue(card_no=card),
            amount_fen=1,
            payment_id="o-4",
            actor="t",
        )
    assert info.value.code == "means_not_accepted"
    m.merchant_suspend(code="parking", reason="licence under review", actor="t")
    with pytest.raises(DomainError) as info:
        m.merchant_pay(merchant_code="parking", card_no=card, amount_fen=500, payment_id="o-5", actor="t")
    assert info.value.code == "merchant_not_active"
    with pytest.raises(DomainError) as info:
        m.merchant_pay(merchant_code="canteen", card_no=card, amount_fen=999_999, payment_id="o-6", actor="t")
    assert info.value.code == "insufficient_funds"
    assert not Payment.objects.filter(payment_id__in=["o-5", "o-6"]).exists()

    r1 = m.payment_refund(payment_id="o-1", refund_id="r-1", amount_fen=250, actor="t")
    assert m.payment_refund(payment_id="o-1", refund_id="r-1", amount_fen=250, actor="t").pk == r1.pk
    with pytest.raises(DomainError) as info:
        m.payment_refund(payment_id="o-1", refund_id="r-2", amount_fen=1001, actor="t")
    assert info.value.code == "over_refund"
    m.payment_refund(payment_id="o-1", refund_id="r-3", amount_fen=1000, actor="t")  # the rest: in full
    assert Payment.objects.get(payment_id="o-1").refunded_fen == 1250
    assert LedgerAccount.objects.get(card_no=card).balance_fen == 10_000 - 800
    assert Merchant.objects.get(code="canteen").payable.balance_fen == 800
    assert parking.state == "active" and Merchant.objects.get(code="parking").state == "suspended"
    with pytest.raises(DomainError) as info:
        m.merchant_state_set(code="canteen", state="closed", reason="moved", actor="t")
    assert info.value.code == "unsettled"
    assert_balanced()


def test_purse_taps_at_the_merchant_terminal_are_booked_once(city, card):
    onboard()
    sim = SimTerminal("JX-POS-1", "jiaxing", service="merchant", route="canteen")
    m.merchant_terminal_register(
        merchant_code="canteen",
        terminal_id=sim.terminal_id,
        public_key=sim.public_key,
        location="一食堂",
        actor="t",
    )
    chip = SimCard(card, balance_fen=5000)
    taps = [sim.tap(chip, at=at(YESTERDAY, 12, i), amount_fen=1100 + i) for i in range(3)]
    result = batch_ingest(tenant=city, body=sim.sign(sim.payload(taps, created_at=at(YESTERDAY, 12, 5))))
    assert result.accepted == 3
    assert m.merchant_taps_book(actor="t") == 3
    assert m.merchant_taps_book(actor="t") == 0
    payments = list(Payment.objects.filter(means="purse").order_by("at"))
    assert [p.amount_fen for p in payments] == [1100, 1101, 1102] and payments[0].day == YESTERDAY
    assert LedgerAccount.objects.get(code="purse:float").balance_fen == -3303
    # An e-purse purchase is refunded to the holder's online account.
    m.payment_refund(payment_id=payments[0].payment_id, refund_id="r-tap", amount_fen=1100, actor="t")
    assert LedgerAccount.objects.get(card_no=card).balance_fen == 10_000 + 1100
    assert_balanced()


def test_daily_settlement_net_of_fees_with_its_statement(city, card):
    onboard(fee_bps=60)
    day_before = YESTERDAY - dt.timedelta(days=1)
    m.merchant_pay(
        merchant_code="canteen",
        card_no=card,
        amount_fen=1250,
        payment_id="a",
        at=at(day_before, 23, 59),
        actor="t",
    )
    m.merchant_pay(
        merchant_code="canteen",
        card_no=card,
        amount_fen=1675,
        payment_id="b",
        at=at(YESTERDAY, 0, 1),
        actor="t",
    )
    m.merchant_pay(
        merchant_code="canteen", card_no=card, amount_fen=99, payment_id="c", at=timezone.now(), actor="t"
    )
    m.payment_refund(payment_id="b", refund_id="rb", amount_fen=500, at=at(YESTERDAY, 9), actor="t")
    first = m.merchant_settle(merchant_code="canteen", day=day_before, actor="t")
    assert (first.payments, first.gross_fen, first.fee_fen, first.net_fen) == (1, 1250, 8, 1242)  # 7.5 → 8
    settlement = m.merchant_settle(merchant_code="canteen", day=YESTERDAY, actor="t")
    assert (settlement.gross_fen, settlement.refunds_fen) == (1675, 500)
    assert settlement.fee_fen == 7 and settlement.net_fen == 1168  # 1175 × 0.6 % = 7.05 → 7
    assert m.merchant_settle(merchant_code="canteen", day=YESTERDAY, actor="t").pk == settlement.pk
    with pytest.raises(DomainError) as info:
        m.merchant_settle(merchant_code="canteen", day=timezone.now().astimezone(BEIJING).date(), actor="t")
    assert info.value.code == "day_not_over"
    merchant = Merchant.objects.get(code="canteen")
    assert merchant.payable.balance_fen == 99  # today's payment waits for today's settlement
    assert LedgerAccount.objects.get(code=m.FEE_INCOME).balance_fen == 15
    assert LedgerAccount.objects.get(code=m.SETTLEMENT_CLEARING).balance_fen == 1242 + 1168
    statement = sel.statement_get(merchant_code="canteen", day=YESTERDAY)
    text = sel.statement_csv(statement)
    lines = text.splitlines()
    assert lines[0] == ",".join(sel.STATEMENT_COLUMNS)
    assert lines[1].startswith("payment,b,b,account,") and lines[1].endswith(",1675")
    assert lines[2].startswith("refund,rb,b,account,") and lines[2].endswith(",-500")
    assert card not in text and lines[-1] == "total,net_fen,,,,,1168"
    # A late refund of a settled payment joins the next settlement, whose net can go below zero.
    ra = m.payment_refund(payment_id="a", refund_id="ra", amount_fen=1250, at=timezone.now(), actor="t")
    assert ra.settlement.settled_at is None and ra.settlement.day == YESTERDAY + dt.timedelta(days=1)
    assert Payment.objects.get(payment_id="a").settlement_id == first.pk
    # A payment of a settled day booked late joins today's open settlement, not the closed one.
    late = m.merchant_pay(
        merchant_code="canteen",
        card_no=card,
        amount_fen=5,
        payment_id="late",
        at=at(YESTERDAY, 23),
        actor="t",
    )
    assert late.day == YESTERDAY and late.settlement.day == YESTERDAY + dt.timedelta(days=1)
    assert_balanced()


def test_settle_day_books_taps_and_settles_every_merchant(city, card):
    onboard()
    onboard("parking", name="停车场", category="7523", fee_bps=0)
    onboard("shop", name="便利店", category="5411", fee_bps=25)
    m.merchant_pay(
        merchant_code="canteen", card_no=card, amount_fen=300, payment_id="x", at=at(YESTERDAY, 8), actor="t"
    )
    m.merchant_pay(
        merchant_code="shop", card_no=card, amount_fen=1990, payment_id="y", at=at(YESTERDAY, 9), actor="t"
    )
    m.merchant_pay(
        merchant_code="shop", card_no=card, amount_fen=10, payment_id="z", at=at(YESTERDAY, 9), actor="t"
    )
    m.payment_refund(payment_id="z", refund_id="rz", amount_fen=10, at=at(YESTERDAY, 10), actor="t")
    alone = m.merchant_settle(merchant_code="shop", day=YESTERDAY, actor="t")  # one by one first
    done = m.merchants_settle_day(day=YESTERDAY, actor="t")
    assert [(s.merchant.code, s.payments, s.gross_fen, s.fee_fen, s.net_fen) for s in done] == [
        ("canteen", 1, 300, 2, 298),  # 300 × 0.6 % = 1.8 → 2
        ("parking", 0, 0, 0, 0),
        ("shop", 2, 2000, 5, 1985),  # kept from the first settlement
    ]
    assert done[2].pk == alone.pk and (alone.refunds, alone.refunds_fen) == (1, 10)
    assert done[1].posting is None and done[0].posting.legs.count() == 3
    assert [s.pk for s in m.merchants_settle_day(day=YESTERDAY, actor="t")] == [s.pk for s in done]
    assert_balanced()


def test_the_old_by_name_payees_are_adopted_onto_merchants_once(city, card):
    """The earlier pay-by-name path left ``merchant:<name>`` accounts holding cardholders' money: adopted
    onto a merchant, the balance moves in one balanced posting and becomes a payment of today's open
    settlement (paid out by the next settlement); run again, nothing moves; an unmapped name is left as it
    is; a department's entitlement account and a merchant's own payable are not legacy."""
    holder = LedgerAccount.objects.get(card_no=card)
    old = a.ledger_account_external(code="merchant:老食堂", kind="merchant")
    stray = a.ledger_account_external(code="merchant:小卖部", kind="merchant")
    a.ledger_account_external(code="merchant:entitlement:edu", kind="merchant")
    a.posting_write(kind="payment", key="old-1", legs=[(holder, -700), (old, 700)], memo="old", actor="t")
    a.posting_write(kind="payment", key="old-2", legs=[(holder, -250), (stray, 250)], memo="old", actor="t")
    canteen = onboard("canteen")
    with pytest.raises(NotFound):
        m.merchant_legacy_adopt(mapping={"老食堂": "nobody"}, actor="t")
    assert LedgerAccount.objects.get(pk=old.pk).balance_fen == 700  # refused whole: nothing moved
    result = m.merchant_legacy_adopt(mapping={"老食堂": "canteen"}, actor="t")
    assert result == {"adopted": ["老食堂"], "already": [], "unmapped": ["小卖部"], "empty": []}
    assert LedgerAccount.objects.get(pk=old.pk).balance_fen == 0
    assert LedgerAccount.objects.get(pk=canteen.payable_id).balance_fen == 700
    payment = Payment.objects.get(payment_id="legacy:老食堂")
    assert (payment.merchant_id, payment.amount_fen, payment.means) == (canteen.pk, 700, "account")
    assert payment.settlement.settled_at is None  # the next settlement pays it out
    again = m.merchant_legacy_adopt(mapping={"老食堂": "canteen"}, actor="t")
    assert again["adopted"] == [] and again["already"] == ["老食堂"]
    assert LedgerAccount.objects.get(pk=canteen.payable_id).balance_fen == 700
    assert LedgerAccount.objects.get(pk=stray.pk).balance_fen == 250
    assert_balanced()


def test_own_citizen_codes_at_the_pos_are_charged_to_the_online_account(city, card, holder):
    """A cardholder's citizen code scanned by the merchant's POS (fare medium 04) wrote no chip: it is
    booked from their online account (not the e-purse float), as a payment by code; a forged code is held
    (never booked); one the account cannot pay yet waits for the next run."""
    onboard()
    poor = cards.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t").card_no
    a.account_open(card_no=poor, actor="t")
    sim = SimTerminal("POS-CODE", city.code, service="merchant", route="canteen")
    m.merchant_terminal_register(
        merchant_code="canteen",
        terminal_id=sim.terminal_id,
        public_key=sim.public_key,
        location="x",
        actor="t",
    )
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0) - dt.timedelta(minutes=10)

    def code_tap(number: str, amount: int, seconds: int, code: str | None = None) -> dict:
        tap = sim.tap(
            SimCard(number, balance_fen=0), at=now + dt.timedelta(seconds=seconds), amount_fen=amount
        )
        code = code or citizen_code_issue(card_no=number, at=now)
        return {**tap, "card_scheme": "04", "card_counter": 0, "code": code}

    good = citizen_code_issue(card_no=card, at=now)
    forged = _forged(citizen_code_issue(card_no=card, at=now))
    taps = [code_tap(card, 700, 1, good), code_tap(poor, 300, 2), code_tap(card, 200, 3, forged)]
    batch_ingest(tenant=city, body=sim.sign(sim.payload(taps, created_at=now + dt.timedelta(seconds=5))))
    assert m.merchant_taps_book(actor="t") == 1
    payment = Payment.objects.get()
    assert (payment.card_no, payment.means, payment.amount_fen, payment.issuer_tenant) == (
        card,
        "code",
        700,
        "",
    )
    assert LedgerAccount.objects.get(card_no=card).balance_fen == 10_000 - 700
    assert not LedgerAccount.objects.filter(code="purse:float").exclude(balance_fen=0).exists()
    a.account_topup(card_no=poor, amount_fen=500, idempotency_key="poor-top", actor="t")
    assert m.merchant_taps_book(actor="t") == 1
    assert LedgerAccount.objects.get(card_no=poor).balance_fen == 200
    assert m.merchant_taps_book(actor="t") == 0  # the forged code stays held
    assert LedgerAccount.objects.get(code="merchant:canteen").balance_fen == 1000
    assert_balanced()
