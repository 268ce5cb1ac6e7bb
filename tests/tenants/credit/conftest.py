"""Credit pay-later fixtures: the city's rules, cardholders eligible by them (insured, card active for
months), a parking merchant accepting credit."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from citycard.tenants.accounts import services as accounts
from citycard.tenants.cards import services as cards
from citycard.tenants.credit import selectors as credit_selectors
from citycard.tenants.credit import services as credit
from citycard.tenants.merchants import services as merchants
from citycard.terminal_kit.beijing import BEIJING

# the channels' sandboxes, for repayment through a bound channel
from tests.tenants.payments.conftest import channel, inbox, sandbox_keys, sandboxes  # noqa: F401

_seq = itertools.count(1)
MONTHS_AGO = timezone.now() - dt.timedelta(days=250)
TODAY = timezone.now().astimezone(BEIJING).date()
LAST_MONTH_DAY = TODAY.replace(day=1) - dt.timedelta(days=1)
LAST_MONTH = LAST_MONTH_DAY.strftime("%Y-%m")


def at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=BEIJING)


@pytest.fixture
def rules(city):
    return credit.credit_rules_set(
        actor="t", limit_fen=50_000, active_months=6, require_insured=True, due_day=20, grace_days=3
    )


@pytest.fixture
def insured_card(holder):
    """``insured_card(**holder_kw)``: a main card, active since eight months, with an online account."""

    def _card(*, insured: bool = True, since: dt.datetime = MONTHS_AGO, **kw):
        person = holder(local_social_insurance=insured, **kw)
        number = cards.card_issue_now(scheme_code="01", cardholder_id=person.pk, actor="t", at=since).card_no
        accounts.account_open(card_no=number, actor="t")
        return number

    return _card


@pytest.fixture
def parking(city):
    n = next(_seq)
    return merchants.merchant_onboard(
        code=f"parking-{n}",
        name="南湖停车场",
        licence_no=merchants.licence_no_build(division="330400", organisation=f"{700000000 + n:09d}"),
        category="7523",
        settlement_bank="嘉兴银行",
        settlement_account="6222 0212 3456 7890 123",
        fee_bps=30,
        accepted_means=["account", "credit"],
        actor="t",
    )


@pytest.fixture
def line(rules, insured_card):
    """An eligible cardholder's credit line, granted by the rules."""
    card = insured_card()
    credit.credit_grant(card_no=card, actor="t")
    return credit_selectors.line_of_card(card_no=card)


@pytest.fixture
def billed(line, parking):
    """``billed(amount_fen)``: the line's cardholder parked on credit on the last day of last month (payment
    ``a``) and last month's bill is drawn; the bill."""

    def _billed(amount_fen: int):
        credit.credit_pay(
            merchant_code=parking.code,
            card_no=line.card_no,
            amount_fen=amount_fen,
            payment_id="a",
            actor="p",
            at=at(LAST_MONTH_DAY),
        )
        (bill,) = credit.credit_bills_generate(month=LAST_MONTH, actor="t")
        return bill

    return _billed
