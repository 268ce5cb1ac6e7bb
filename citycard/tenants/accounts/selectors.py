"""Reading accounts, postings and subsidy payments (with their items, for the cardholder)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Prefetch, QuerySet

from citycard.tenants.accounts.models import LedgerAccount, Posting, PurseShadow, SubsidyItem, SubsidyPayment


def account_of(*, cardholder_id: int) -> LedgerAccount | None:
    return LedgerAccount.objects.filter(cardholder_id=cardholder_id).first()


def account_postings(*, account_id: int, first: int = 50) -> QuerySet[Posting]:
    return Posting.objects.filter(legs__account_id=account_id).distinct().order_by("-at", "-id")[:first]


def purse_shadow(*, card_no: str) -> PurseShadow | None:
    return PurseShadow.objects.filter(card_no=card_no).first()


def subsidy_payments(*, cardholder_id: int) -> QuerySet[SubsidyPayment]:
    """A cardholder's subsidy payments, newest first, each with its items (补贴明细查询). Two queries."""
    return (
        SubsidyPayment.objects.filter(cardholder_id=cardholder_id)
        .select_related("run__programme", "posting")
        .prefetch_related(Prefetch("items", queryset=SubsidyItem.objects.order_by("id")))
        .order_by("-run__at", "-id")
    )


@dataclass(frozen=True)
class LedgerTotals:
    postings: int
    unbalanced_postings: int
    legs_total_fen: int
    balances_total_fen: int
    balances_mismatched: int


def ledger_totals() -> LedgerTotals:
    """Whole-ledger invariants: every posting sums to zero, all balances sum to zero, and each stored
    balance equals the sum of its legs."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE s <> 0), COALESCE(sum(s), 0) FROM"
            " (SELECT posting_id, sum(amount_fen) AS s FROM accounts_leg GROUP BY posting_id) p"
        )
        postings, unbalanced, legs_total = cur.fetchone()
        cur.execute(
            "SELECT COALESCE(sum(a.balance_fen), 0), count(*) FILTER (WHERE a.balance_fen <> COALESCE(l.s, 0))"
            " FROM accounts_ledgeraccount a LEFT JOIN"
            " (SELECT account_id, sum(amount_fen) AS s FROM accounts_leg GROUP BY account_id) l"
            " ON l.account_id = a.id"
        )
        balances_total, mismatched = cur.fetchone()
    return LedgerTotals(postings, unbalanced, legs_total, balances_total, mismatched)
