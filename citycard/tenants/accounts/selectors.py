"""Reading accounts, postings and subsidy payments (with their items, for the cardholder)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Prefetch, QuerySet

from citycard.tenants.accounts.models import (
    AccountKind,
    LedgerAccount,
    PurseShadow,
    SubsidyItem,
    SubsidyPayment,
)


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


def accounts_of(*, cardholder_ids: Iterable[int]) -> dict[int, LedgerAccount]:
    """The online accounts of these cardholders, by cardholder id (one query; those without are absent)."""
    ids = sorted(set(cardholder_ids))
    if not ids:
        return {}
    return {a.cardholder_id: a for a in LedgerAccount.objects.filter(cardholder_id__in=ids)}


def purse_shadows(*, card_nos: Iterable[str]) -> dict[str, PurseShadow]:
    """The e-purse shadow balances of these cards, by card number (one query; cards without are absent)."""
    numbers = sorted(set(card_nos))
    if not numbers:
        return {}
    return {s.card_no: s for s in PurseShadow.objects.filter(card_no__in=numbers)}


def account_of_card(*, card_no: str) -> LedgerAccount | None:
    """The online account (市民卡账户) reached by this card, or None."""
    return LedgerAccount.objects.filter(kind=AccountKind.HOLDER, card_no=card_no).first()
