"""Reading credit pay-later: the rules, who is eligible, what a line owes, a cardholder's bill and history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import F, OuterRef, QuerySet, Subquery

from citycard.platform.errors import DomainError, NotFound
from citycard.tenants.accounts.models import LedgerAccount
from citycard.tenants.cards.models import Card, CardState
from citycard.tenants.credit.models import (
    CodeRideFlag,
    CreditBill,
    CreditItem,
    CreditLine,
    CreditRepayment,
    CreditRules,
    RoamingPayment,
)
from citycard.tenants.terminals.checks import CODE_FLAGS
from citycard.tenants.terminals.models import Transaction
from citycard.terminal_kit.beijing import BEIJING


def beijing_month(at: dt.datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m")


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """The Beijing month ``YYYY-MM`` as [start, end) instants."""
    try:
        year, number = (int(part) for part in month.split("-"))
        start = dt.datetime(year, number, 1, tzinfo=BEIJING)
    except ValueError:
        raise DomainError(f"a month as YYYY-MM is required, not {month!r}", field="month") from None
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=BEIJING)
    return start, end


def months_before(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))


def rules_get() -> CreditRules:
    rules = CreditRules.objects.first()
    if rules is None:
        raise NotFound("this city has set no credit rules (citycard credit rules set)", code="no_rules")
    return rules


def eligible_cards(*, rules: CreditRules, at: dt.datetime, card_no: str | None = None) -> QuerySet[Card]:
    """Main active cards whose holders the rules make eligible and who have no credit line yet."""
    cards = rules_meeting_cards(rules=rules, at=at).exclude(
        cardholder_id__in=CreditLine.objects.values("cardholder_id")
    )
    if card_no is not None:
        cards = cards.filter(card_no=card_no)
    return cards.order_by("id")


def rules_meeting_cards(*, rules: CreditRules, at: dt.datetime) -> QuerySet[Card]:
    """Main active cards whose holders the rules make eligible, with a line or without (the set a rules
    change re-evaluates existing lines against, and a reopened line is checked against)."""
    since = months_before(at.astimezone(BEIJING).date(), rules.active_months)
    cards = Card.objects.filter(
        state=CardState.ACTIVE,
        is_main=True,
        cardholder__isnull=False,
        activated_at__lt=dt.datetime.combine(since, dt.time(), tzinfo=BEIJING) + dt.timedelta(days=1),
        cardholder__birth_decade__gte=rules.birth_decade_min,
        cardholder__birth_decade__lte=rules.birth_decade_max,
    )
    if rules.require_insured:
        cards = cards.filter(cardholder__local_social_insurance=True)
    if rules.schemes:
        cards = cards.filter(scheme__code__in=rules.schemes)
    return cards


def owed_fen(line: CreditLine) -> int:
    """What the cardholder owes now: minus the receivable account's balance, read fresh."""
    return -LedgerAccount.objects.values_list("balance_fen", flat=True).get(pk=line.receivable_id)


def line_of_card(*, card_no: str) -> CreditLine:
    line = CreditLine.objects.select_related("receivable").filter(card_no=card_no).first()
    if line is None:
        raise NotFound("the card has no credit line here", code="no_credit_line", field="card_no")
    return line


def lines(*, state: str | None = None) -> QuerySet[CreditLine]:
    query = CreditLine.objects.select_related("receivable")
    return query.filter(state=state) if state else query


def bill_of(*, card_no: str, month: str | None = None) -> CreditBill | None:
    """The card's bill for ``month``, or its latest; None if it has none."""
    query = CreditBill.objects.select_related("line").filter(line__card_no=card_no)
    if month:
        query = query.filter(month=month)
    return query.order_by("-month").first()


def bill_items(bill: CreditBill) -> QuerySet[CreditItem]:
    return bill.items.order_by("at", "id")


@dataclass(frozen=True)
class HistoryEntry:
    at: dt.datetime
    kind: str  # merchant, fare or repayment
    description: str
    amount_fen: int  # positive: owed more; negative: repaid
    reference: str


def history(*, card_no: str, limit: int = 100) -> list[HistoryEntry]:
    """The card's credit activity, newest first: items deferred and repayments."""
    items = [
        HistoryEntry(i.at, i.kind, i.payee, i.amount_fen, i.payment_id)
        for i in CreditItem.objects.filter(line__card_no=card_no).order_by("-at", "-id")[:limit]
    ]
    repaid = [
        HistoryEntry(r.at, "repayment", r.source, -r.amount_fen, r.key)
        for r in CreditRepayment.objects.filter(line__card_no=card_no).order_by("-at", "-id")[:limit]
    ]
    return sorted(items + repaid, key=lambda e: e.at, reverse=True)[:limit]


def roaming_payments_of_card(*, card_nos: list[str], limit: int = 50) -> QuerySet[RoamingPayment]:
    """A cardholder's citizen-code payments at other cities' merchants (异地商户扫码支付), newest first."""
    return RoamingPayment.objects.filter(card_no__in=card_nos).order_by("-paid_at", "-id")[:limit]


def code_flags(*, open_only: bool = False) -> QuerySet[CodeRideFlag]:
    """The citizen-code rides the verification stage flagged (``code_*``), newest first, each with its
    fare (``amount_fen``) and the clerk's decision when there is one (``code_review``); ``open_only``: those
    not resolved yet."""
    fares = Transaction.objects.filter(id=OuterRef("transaction_id"), tapped_at=OuterRef("tapped_at"))
    flags = (
        CodeRideFlag.objects.filter(code__in=CODE_FLAGS)
        .select_related("code_review")
        .annotate(amount_fen=Subquery(fares.values("amount_fen")[:1]))
        .order_by(F("created_at").desc(), "id")
    )
    return flags.filter(resolved_at__isnull=True) if open_only else flags
