"""`citycard accounts`: open a cardholder's online account and top it up at a window, in yuan; a retried
top-up credits once; a refusal changes nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from citycard.tenants.accounts.models import Posting
from citycard.tenants.accounts.selectors import account_of_card, ledger_totals
from citycard.tenants.cards import services as cards

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def run(*args) -> str:
    out = io.StringIO()
    call_command("accounts", "--tenant", "jiaxing", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def card_no(holder):
    return cards.card_issue_now(scheme_code="01", cardholder_id=holder().pk, actor="t").card_no


def test_open_and_top_up_in_yuan_once_per_key(card_no):
    assert "balance ¥0.00" in run("open", card_no)
    assert "balance ¥0.00" in run("open", card_no)  # idempotent
    out = run("topup", card_no, "--amount", "1,234.50", "--key", "window-1")
    assert "¥1,234.50 topped up" in out and "balance ¥1,234.50" in out
    assert "balance ¥1,234.50" in run("topup", card_no, "--amount", "1,234.50", "--key", "window-1")
    assert account_of_card(card_no=card_no).balance_fen == 123450
    assert Posting.objects.count() == 1
    totals = ledger_totals()
    assert totals.unbalanced_postings == 0 and totals.balances_total_fen == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [("12.345", "at most two decimals"), ("0", "more than 0"), ("ten", "not an amount")],
)
def test_a_bad_amount_is_refused_and_nothing_is_posted(card_no, amount, message):
    run("open", card_no)
    with pytest.raises(CommandError, match=message):
        run("topup", card_no, "--amount", amount, "--key", "k")
    assert not Posting.objects.exists()


def test_a_card_without_an_account_is_refused(card_no):
    with pytest.raises(CommandError, match="has no online account"):
        run("topup", card_no, "--amount", "10", "--key", "k")
    with pytest.raises(CommandError, match="no card '3304009999999999999' here"):
        run("open", "3304009999999999999")
