"""Reading merchants, their payments and their settlement statements (结算单)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from django.db.models import QuerySet

from citycard.tenants.merchants.models import ChargebackFrom, Merchant, Payment, Refund, Settlement
from citycard.terminal_kit.beijing import BEIJING


def merchants_list(*, state: str | None = None) -> QuerySet[Merchant]:
    qs = Merchant.objects.select_related("payable").order_by("code")
    return qs.filter(state=state) if state else qs


def merchant_by_code(*, code: str) -> Merchant | None:
    return Merchant.objects.select_related("payable").filter(code=code).first()


def payments_of_card(*, card_nos: list[str], limit: int = 50) -> QuerySet[Payment]:
    """A cardholder's merchant payments (newest first), with their merchant."""
    return (
        Payment.objects.filter(card_no__in=card_nos).select_related("merchant").order_by("-at", "-id")[:limit]
    )


def settlements_of_day(*, day: dt.date) -> QuerySet[Settlement]:
    return (
        Settlement.objects.filter(day=day, settled_at__isnull=False)
        .select_related("merchant")
        .order_by("merchant__code")
    )


def settlements_recent(*, limit: int = 100) -> QuerySet[Settlement]:
    return (
        Settlement.objects.filter(settled_at__isnull=False)
        .select_related("merchant")
        .order_by("-day", "merchant__code")[:limit]
    )


@dataclass(frozen=True)
class StatementLine:
    """One line of a statement: a payment (positive), a refund (negative), or a roaming payment the issuer
    rejected before the settlement closed, charged back (拒付扣回, negative: its reference is the issuer's
    reason)."""

    kind: str  # "payment" / "refund" / "chargeback"
    reference: str  # the payment id, the refund id, or the rejection reason of a chargeback
    payment_id: str
    means: str
    card_no: str
    at: dt.datetime
    amount_fen: int
    rejection: str = ""  # a payment the issuer rejected: the reason (charged back here, or owed back)


@dataclass(frozen=True)
class Statement:
    settlement: Settlement
    lines: list[StatementLine]


def card_no_mask(card_no: str) -> str:
    """``330400******0068``: the issuer's division and the last four digits."""
    return f"{card_no[:6]}{'*' * max(len(card_no) - 10, 0)}{card_no[-4:]}" if len(card_no) > 10 else card_no


def statement_get(*, merchant_code: str, day: dt.date) -> Statement | None:
    """The statement of one merchant's settlement for one day: every payment and refund it carried, and
    each roaming payment of it the issuer rejected before it closed (charged back: not paid), in time order
    (three queries). None: not settled."""
    settlement = (
        Settlement.objects.select_related("merchant")
        .filter(merchant__code=merchant_code, day=day, settled_at__isnull=False)
        .first()
    )
    if settlement is None:
        return None
    payments = list(Payment.objects.filter(settlement=settlement).order_by("at", "id"))
    lines = (
        [
            StatementLine(
                "payment",
                p.payment_id,
                p.payment_id,
                p.means,
                p.card_no,
                p.at,
                p.amount_fen,
                p.rejection_reason,
            )
            for p in payments
        ]
        + [
            StatementLine(
                "chargeback",
                p.rejection_reason,
                p.payment_id,
                p.means,
                p.card_no,
                p.rejected_at,
                -p.amount_fen,
                p.rejection_reason,
            )
            for p in payments
            if p.charged_back_from == ChargebackFrom.PAYABLE
        ]
        + [
            StatementLine(
                "refund",
                r.refund_id,
                r.payment.payment_id,
                r.payment.means,
                r.payment.card_no,
                r.at,
                -r.amount_fen,
            )
            for r in Refund.objects.filter(settlement=settlement)
            .select_related("payment")
            .order_by("at", "id")
        ]
    )
    lines.sort(key=lambda line: (line.at, line.kind, line.reference))
    return Statement(settlement, lines)


STATEMENT_COLUMNS = ("kind", "reference", "payment_id", "means", "card_no", "at_beijing", "amount_fen")


def statement_csv(statement: Statement) -> str:
    """The statement for machines: one line per payment or refund (amounts in fen, refunds negative,
    card numbers masked, Beijing time), then a summary line per total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    s = statement.settlement
    writer.writerow(STATEMENT_COLUMNS)
    for line in statement.lines:
        writer.writerow(
            (
                line.kind,
                line.reference,
                line.payment_id,
                line.means,
                card_no_mask(line.card_no),
                line.at.astimezone(BEIJING).isoformat(),
                line.amount_fen,
            )
        )
    for name, value in (
        ("gross_fen", s.gross_fen),
        ("refunds_fen", -s.refunds_fen),
        ("fee_fen", -s.fee_fen),
        ("net_fen", s.net_fen),
    ):
        writer.writerow(("total", name, "", "", "", "", value))
    return out.getvalue()
