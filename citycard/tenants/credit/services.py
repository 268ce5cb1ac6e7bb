"""Credit pay-later (信用付): rules, grants, payments and fares on credit, monthly bills, repayment and
overdue handling. Every movement is one balanced posting through ``posting_write``; every write is
idempotent on its payment id, repayment key or (line, month)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.tenants.accounts.models import AccountKind, LedgerAccount, PostingKind
from citycard.tenants.accounts.services import holder_account, ledger_account_external, posting_write
from citycard.tenants.cards.services import card_restrict, card_restriction_lift
from citycard.tenants.credit.models import (
    BillState,
    CodeReviewDecision,
    CodeReviewOutcome,
    CodeRideReview,
    CreditBill,
    CreditItem,
    CreditLine,
    CreditRepayment,
    CreditRules,
    FaresCursor,
    ItemKind,
    LineState,
    RepaymentSource,
    RoamingFare,
    RoamingPayment,
    RoamingPaymentSource,
)
from citycard.tenants.credit.selectors import (
    beijing_month,
    eligible_cards,
    month_bounds,
    owed_fen,
    rules_get,
    rules_meeting_cards,
)
from citycard.tenants.exchange.services import REASON_NO_FUNDS, record_id_for
from citycard.tenants.merchants.models import Means
from citycard.tenants.merchants.services import merchant_pay_from
from citycard.tenants.payments.models import OrderPurpose, OrderState, TopupOrder
from citycard.tenants.payments.services import channel_collect
from citycard.tenants.terminals.checks import (
    CODE_EXPIRED,
    CODE_FLAGS,
    CODE_OTHER_CARD,
    CODE_REPLAYED,
    ONLINE_MEDIA,
)
from citycard.tenants.terminals.models import MERCHANT_SERVICE, ReviewFlag, Routing, Transaction
from citycard.terminal_kit.money import bps_of, yuan

OVERDUE_REASON = "credit_overdue"
RULES_REASON = "rules_ineligible"  # suspended by a rules change the card no longer meets
FARE_INCOME = "fare:credit"
ONLINE_FARE_INCOME = "fare:online"  # fares paid by citizen code from the online account
ONLINE_FARE_KEY = "fare-online:"
COLLECT_PREFIX = "credit-collect:"
_RULE_FIELDS = {
    "enabled",
    "require_insured",
    "active_months",
    "birth_decade_min",
    "birth_decade_max",
    "schemes",
    "limit_fen",
    "due_day",
    "grace_days",
    "minimum_bps",
}


def _fen(value: Any, field: str = "amount_fen") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DomainError("an amount in whole fen above zero is required", field=field)
    return value


# --- rules and lines ----------------------------------------------------------------------------------


@transaction.atomic
def credit_rules_set(*, actor: str, **fields: Any) -> CreditRules:
    """Set the city's eligibility rules (授信规则); fields not given keep their value."""
    unknown = set(fields) - _RULE_FIELDS
    if unknown:
        raise DomainError(f"unknown rule fields: {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    rules = CreditRules.objects.select_for_update().first() or CreditRules(updated_at=timezone.now())
    for name, value in fields.items():
        setattr(rules, name, value)
    if rules.limit_fen < 0:
        raise DomainError("the limit cannot be negative", field="limit_fen")
    if not 1 <= rules.due_day <= 28:
        raise DomainError("the due day is 1–28", field="due_day")
    if rules.minimum_bps > 10_000:
        raise DomainError("the minimum due is at most the whole bill", field="minimum_bps")
    if rules.birth_decade_min > rules.birth_decade_max:
        raise DomainError("the age band is empty", field="birth_decade_min")
    rules.updated_at, rules.updated_by = timezone.now(), actor
    rules.save()
    audit_record(
        action="credit.rules_set",
        actor=actor,
        object_type="credit_rules",
        object_id=rules.pk,
        data={k: v for k, v in fields.items()},
    )
    credit_lines_reevaluate(rules=rules, actor=actor, at=rules.updated_at)
    return rules


@transaction.atomic
def credit_lines_reevaluate(*, rules: CreditRules, actor: str, at: dt.datetime) -> dict[str, int]:
    """Re-evaluate the existing lines against the rules (a rules change, 授信规则调整), in three set-based
    statements: every line not closed takes the rules' limit (one lowered below what is owed blocks further
    spending until repaid below it; the bills are what was spent, unchanged); an active line whose card
    no longer meets the rules is suspended (reason ``rules_ineligible``), and one suspended for that reason
    whose card meets them again is active again. Lines suspended as overdue, or closed, are left alone."""
    meeting = rules_meeting_cards(rules=rules, at=at).values("card_no")
    limited = (
        CreditLine.objects.exclude(state=LineState.CLOSED)
        .exclude(limit_fen=rules.limit_fen)
        .update(limit_fen=rules.limit_fen)
    )
    suspended = (
        CreditLine.objects.filter(state=LineState.ACTIVE)
        .exclude(card_no__in=meeting)
        .update(state=LineState.SUSPENDED, state_reason=RULES_REASON)
    )
    resumed = CreditLine.objects.filter(
        state=LineState.SUSPENDED, state_reason=RULES_REASON, card_no__in=meeting
    ).update(state=LineState.ACTIVE, state_reason="")
    counts = {"limit_changed": limited, "suspended": suspended, "resumed": resumed}
    audit_record(
        action="credit.lines_reevaluate",
        actor=actor,
        object_type="credit_line",
        object_id="*",
        data={**counts, "limit_fen": rules.limit_fen},
    )
    return counts


@transaction.atomic
def credit_grant(
    *, actor: str, card_no: str | None = None, at: dt.datetime | None = None
) -> list[CreditLine]:
    """Grant a credit line (授信) to every cardholder the rules make eligible who has none yet, in one
    set-based pass; with ``card_no``, to that card's holder only (refused with ``not_eligible``)."""
    at = at or timezone.now()
    rules = rules_get()
    if not rules.enabled:
        raise DomainError("credit pay-later is switched off in this city", code="credit_disabled")
    cards = list(eligible_cards(rules=rules, at=at, card_no=card_no).values_list("card_no", "cardholder_id"))
    if card_no is not None and not cards:
        raise DomainError(
            f"card {card_no} is not eligible for a credit line", code="not_eligible", field="card_no"
        )
    accounts = LedgerAccount.objects.bulk_create(
        LedgerAccount(code=f"credit:{no}", kind=AccountKind.CREDIT, allow_negative=True, opened_at=at)
        for no, _ in cards
    )
    lines = CreditLine.objects.bulk_create(
        CreditLine(
            cardholder_id=holder,
            card_no=no,
            limit_fen=rules.limit_fen,
            receivable=account,
            granted_at=at,
            granted_by=actor,
        )
        for (no, holder), account in zip(cards, accounts, strict=True)
    )
    audit_record(
        action="credit.grant",
        actor=actor,
        object_type="credit_line",
        object_id=card_no or "*",
        data={"granted": len(lines), "limit_fen": rules.limit_fen},
    )
    return lines


def _line(card_no: str, *, lock: bool = True) -> CreditLine:
    query = CreditLine.objects.select_related("receivable")
    line = (query.select_for_update(of=("self",)) if lock else query).filter(card_no=card_no).first()
    if line is None:
        raise NotFound("the card has no credit line here", code="no_credit_line", field="card_no")
    return line


@transaction.atomic
def credit_line_state_set(*, card_no: str, state: str, reason: str = "", actor: str) -> CreditLine:
    """Suspend, reactivate or close a line by hand. A closed line takes nothing and stays closed."""
    if state not in LineState.values:
        raise DomainError(f"unknown state {state!r}", field="state")
    line = _line(card_no)
    if line.state == LineState.CLOSED and state != LineState.CLOSED:
        raise Conflict(f"the credit line of {card_no} is closed", code="line_closed")
    line.state, line.state_reason = state, reason
    line.save(update_fields=["state", "state_reason"])
    audit_record(
        action="credit.line_state",
        actor=actor,
        object_type="credit_line",
        object_id=card_no,
        data={"state": state, "reason": reason},
    )
    return line


@transaction.atomic
def credit_line_reopen(*, card_no: str, actor: str, at: dt.datetime | None = None) -> CreditLine:
    """Reopen a closed line (重新开通), the eligibility rules checked again as for a grant: credit switched
    on, the card still meeting the rules (main, active, activated long enough, insured, age band, scheme),
    and no overdue bill left on the line. It takes the rules' limit of today."""
    at = at or timezone.now()
    line = _line(card_no)
    if line.state != LineState.CLOSED:
        raise Conflict(
            gettext("the credit line of %(card)s is not closed") % {"card": card_no},
            code="line_not_closed",
            field="card_no",
        )
    rules = rules_get()
    if not rules.enabled:
        raise DomainError(gettext("credit pay-later is switched off in this city"), code="credit_disabled")
    if not rules_meeting_cards(rules=rules, at=at).filter(card_no=card_no).exists():
        raise DomainError(
            gettext("card %(card)s no longer meets the credit rules") % {"card": card_no},
            code="not_eligible",
            field="card_no",
        )
    if line.bills.filter(state=BillState.OVERDUE).exists():
        raise DomainError(
            gettext("the credit line of %(card)s has overdue bills") % {"card": card_no},
            code="overdue_bills",
            field="card_no",
        )
    line.state, line.state_reason, line.limit_fen = LineState.ACTIVE, "", rules.limit_fen
    line.save(update_fields=["state", "state_reason", "limit_fen"])
    audit_record(
        action="credit.line_reopen",
        actor=actor,
        object_type="credit_line",
        object_id=card_no,
        data={"limit_fen": rules.limit_fen},
    )
    return line


# --- deferring onto the line --------------------------------------------------------------------------


def _deferrable(line: CreditLine, amount_fen: int) -> None:
    if line.state != LineState.ACTIVE:
        raise DomainError(f"the card's credit line is {line.state}", code="line_not_active", field="card_no")
    available = line.limit_fen - owed_fen(line)
    if amount_fen > available:
        raise DomainError(
            f"{amount_fen} fen is above the available credit of {available} fen",
            code="over_limit",
            field="amount_fen",
        )


def _item_month(line: CreditLine, at: dt.datetime) -> str:
    """The Beijing month of ``at``, or, for an item booked late into a month already billed, the month
    after the line's latest bill: it joins the next bill rather than being left off every bill."""
    month = beijing_month(at)
    latest = line.bills.order_by("-month").values_list("month", flat=True).first()
    if latest is not None and month <= latest:
        _start, end = month_bounds(latest)
        month = beijing_month(end)
    return month


def _item_retry(payment_id: str, *, kind: str, card_no: str, amount_fen: int) -> CreditItem | None:
    done = CreditItem.objects.select_related("line").filter(payment_id=payment_id).first()
    if done is not None and (done.kind, done.line.card_no, done.amount_fen) != (kind, card_no, amount_fen):
        raise Conflict(f"payment id {payment_id} was used for another payment", field="payment_id")
    return done


@transaction.atomic
def credit_pay(
    *,
    merchant_code: str,
    card_no: str,
    amount_fen: int,
    payment_id: str,
    actor: str,
    at: dt.datetime | None = None,
) -> CreditItem:
    """Pay a merchant on credit (信用付): the merchant is paid now (its payable, its settlement of the day);
    the cardholder owes it on the month's bill. Never above the available limit; a retry with the same
    payment id returns the first item."""
    amount = _fen(amount_fen)
    done = _item_retry(payment_id, kind=ItemKind.MERCHANT, card_no=card_no, amount_fen=amount)
    if done is not None:
        return done
    at = at or timezone.now()
    line = _line(card_no)
    _deferrable(line, amount)
    payment = merchant_pay_from(
        merchant_code=merchant_code,
        payer=line.receivable,
        means=Means.CREDIT,
        payment_id=payment_id,
        card_no=card_no,
        amount_fen=amount,
        actor=actor,
        at=at,
    )
    return CreditItem.objects.create(
        line=line,
        kind=ItemKind.MERCHANT,
        payment_id=payment_id,
        payee=payment.merchant.name,
        amount_fen=amount,
        at=at,
        month=_item_month(line, at),
        posting=payment.posting,
    )


@transaction.atomic
def credit_fare_defer(
    *,
    card_no: str,
    fare_id: str,
    amount_fen: int,
    operator: str,
    actor: str,
    at: dt.datetime | None = None,
    income: LedgerAccount | None = None,
) -> CreditItem:
    """Defer a transit fare onto the line (先乘后付): a fare deducted online (a ride paid by the online
    account or the citizen code, not an offline e-purse tap, which the chip already paid) is owed on the
    month's bill instead, the fare income booked now (``income``: another account credited instead, the
    payable to the acquiring city for a ride in another city). Idempotent on ``fare_id``."""
    amount = _fen(amount_fen)
    if not fare_id or len(fare_id) > 80:
        raise DomainError("a fare id of 1–80 characters is required", field="fare_id")
    done = _item_retry(fare_id, kind=ItemKind.FARE, card_no=card_no, amount_fen=amount)
    if done is not None:
        return done
    at = at or timezone.now()
    line = _line(card_no)
    _deferrable(line, amount)
    income = income or ledger_account_external(code=FARE_INCOME, kind=AccountKind.FARE_INCOME)
    posting, _ = posting_write(
        kind=PostingKind.CREDIT_FARE,
        key=f"credit-fare:{fare_id}",
        legs=[(line.receivable, -amount), (income, amount)],
        memo=operator,
        actor=actor,
        at=at,
    )
    return CreditItem.objects.create(
        line=line,
        kind=ItemKind.FARE,
        payment_id=fare_id,
        payee=operator,
        amount_fen=amount,
        at=at,
        month=_item_month(line, at),
        posting=posting,
    )


# The citizen-code rides (fare medium 04, the partial index ``transaction_code_rides``) above the cursor
# or pending below it, or tapped since a given time: each with whether it is booked already, held by a
# code flag (``terminals.checks.code_check``: not charged), and whether its batch is verified yet.
_ONLINE_FARES_SQL = """
SELECT t.id, t.tapped_at, t.card_no, t.amount_fen, t.service, t.route, t.received_at,
       b.verified_at IS NOT NULL,
       EXISTS (SELECT 1 FROM credit_credititem i WHERE i.payment_id = 'tap:' || t.id)
         OR EXISTS (SELECT 1 FROM accounts_posting p WHERE p.idempotency_key = %(key)s || t.id),
       EXISTS (SELECT 1 FROM terminals_reviewflag f WHERE f.transaction_id = t.id AND f.code = ANY(%(flags)s))
FROM terminals_transaction t JOIN terminals_batch b ON b.id = t.batch_id
WHERE t.card_scheme = '04' AND {window}
  AND t.routing = %(own)s AND t.kind = 'purchase' AND t.amount_fen > 0 AND t.service <> %(merchant)s
ORDER BY t.id
"""
_CURSOR_WINDOW = "(t.id > %(through)s OR t.id = ANY(%(pending)s::bigint[]))"
_SINCE_WINDOW = "t.tapped_at >= %(since)s"
assert {"04"} == set(ONLINE_MEDIA), "the query and its index name the citizen code's medium"
# An upload's taps get their ids when it writes them and are seen when it commits: the cursor does not
# pass taps received in the last minutes, so a slower upload with lower ids is still read next time.
FARES_CURSOR_LAG = dt.timedelta(minutes=10)


def _fare_book(
    *,
    card_no: str,
    fare_id: str,
    amount: int,
    payee: str,
    at: dt.datetime,
    line: CreditLine | None,
    income: LedgerAccount,
    credit_income: LedgerAccount | None,
    actor: str,
) -> str:
    """One fare onto the active line, else from the online account: ``deferred``, ``charged`` or
    ``unpaid`` (no account, not enough in it)."""
    if line is not None and line.state == LineState.ACTIVE:
        try:
            credit_fare_defer(
                card_no=card_no,
                fare_id=fare_id,
                amount_fen=amount,
                operator=payee,
                actor=actor,
                at=at,
                income=credit_income,
            )
            return "deferred"
        except DomainError:
            pass  # over the limit or no longer active: the online account pays it
    try:
        posting_write(
            kind=PostingKind.PAYMENT,
            key=f"{ONLINE_FARE_KEY}{fare_id}",
            legs=[(holder_account(card_no), -amount), (income, amount)],
            memo=payee,
            actor=actor,
            at=at,
            audit=False,
        )
        return "charged"
    except DomainError:
        return "unpaid"


def online_fares_book(
    *, actor: str, since: dt.datetime | None = None, now: dt.datetime | None = None
) -> dict[str, int]:
    """Book the rides paid by the citizen code (电子市民码, fare medium ``04``; 先乘后付): no chip paid them.

    Which: this city's terminals' rides of its own cardholders, once their batch is verified, and the rides
    its cardholders took in other cities, accepted by its validation of the clearing records
    (``RoamingFare``). A ride the verification stage flagged (``code_*``: the code does not prove it, or it
    was spent before) is ``held``, never charged; one whose batch is not verified yet is ``waiting``.
    Each fare is deferred onto the cardholder's credit line when credit is switched on in the city and the
    line is active with the fare within its available limit (``credit_fare_defer``); otherwise it is
    charged to the online account (holder −a, fare income ``fare:online`` +a; a roaming ride: the payable
    to the acquiring city ``interop:<acquirer>`` +a). A fare the online account cannot pay either is
    ``unpaid`` (the next run asks again). Each ride once, by its transaction id (``tap:<id>``) or clearing
    record (``roam:<record id>``), whichever run or process books it.

    A run reads the rides above the cursor (``FaresCursor``) and those left pending below it, through the
    partial index of code rides, and moves the cursor on; ``since`` reads instead every ride tapped since
    then (a re-run over a window) and leaves the cursor as it is."""
    now = now or timezone.now()
    cursor = FaresCursor.objects.first() or FaresCursor(updated_at=now)
    params: dict[str, Any] = {
        "key": f"{ONLINE_FARE_KEY}tap:",
        "flags": sorted(CODE_FLAGS),
        "own": Routing.OWN,
        "merchant": MERCHANT_SERVICE,
        "through": cursor.through_tx_id,
        "pending": list(cursor.pending_tx_ids),
        "since": since,
    }
    with connection.cursor() as cur:
        cur.execute(
            _ONLINE_FARES_SQL.format(window=_SINCE_WINDOW if since is not None else _CURSOR_WINDOW), params
        )
        rows = cur.fetchall()
    roaming = list(RoamingFare.objects.filter(booked_at__isnull=True).order_by("id"))
    rules = CreditRules.objects.first()
    deferring = rules is not None and rules.enabled
    card_nos = {r[2] for r in rows} | {f.card_no for f in roaming}
    lines = (
        {line.card_no: line for line in CreditLine.objects.filter(card_no__in=card_nos)} if deferring else {}
    )
    counts = {"deferred": 0, "charged": 0, "unpaid": 0, "held": 0, "waiting": 0}
    income = None
    open_ids: set[int] = set()
    booked_fen = 0
    for tx_id, tapped_at, card_no, amount, service, route, _received, verified, booked, held in rows:
        if booked:
            continue
        if held:
            counts["held"] += 1
            continue
        if not verified:
            counts["waiting"] += 1
            open_ids.add(tx_id)
            continue
        income = income or ledger_account_external(code=ONLINE_FARE_INCOME, kind=AccountKind.FARE_INCOME)
        outcome = _fare_book(
            card_no=card_no,
            fare_id=f"tap:{tx_id}",
            amount=amount,
            payee=f"{service} {route}".strip()[:100],
            at=tapped_at,
            line=lines.get(card_no),
            income=income,
            credit_income=None,
            actor=actor,
        )
        counts[outcome] += 1
        if outcome == "unpaid":
            open_ids.add(tx_id)
        else:
            booked_fen += amount
    for fare in roaming:
        payable = ledger_account_external(code=f"interop:{fare.acquirer}", kind=AccountKind.INTEROP)
        outcome = _fare_book(
            card_no=fare.card_no,
            fare_id=f"roam:{fare.record_id}",
            amount=fare.amount_fen,
            payee=fare.payee,
            at=fare.tapped_at,
            line=lines.get(fare.card_no),
            income=payable,
            credit_income=payable,
            actor=actor,
        )
        counts[outcome] += 1
        if outcome != "unpaid":
            booked_fen += fare.amount_fen
            RoamingFare.objects.filter(pk=fare.pk, booked_at__isnull=True).update(booked_at=now)
    if since is None:
        _cursor_move(cursor=cursor, rows=rows, open_ids=open_ids, now=now)
    if rows or roaming:
        audit_record(
            action="credit.online_fares_book",
            actor=actor,
            object_type="transaction",
            object_id=f"tap:{rows[0][0]}..{rows[-1][0]}" if rows else "roaming",
            data={**counts, "booked_fen": booked_fen, "roaming": len(roaming)},
        )
    return counts


def _cursor_move(*, cursor: FaresCursor, rows: list[tuple], open_ids: set[int], now: dt.datetime) -> None:
    """The cursor past the rides read, up to the first received within ``FARES_CURSOR_LAG``; the rides
    below it not booked yet (unpaid, batch not verified) kept pending."""
    through = cursor.through_tx_id
    settled = now - FARES_CURSOR_LAG
    for row in rows:
        if row[0] > through:
            if row[6] > settled:
                break
            through = row[0]
    pending = sorted(i for i in open_ids if i <= through)
    if (through, pending) == (cursor.through_tx_id, list(cursor.pending_tx_ids)) and cursor.pk:
        return
    with transaction.atomic():
        current = FaresCursor.objects.select_for_update().first()
        if current is not None and current.through_tx_id > through:
            return  # another run read further meanwhile: its cursor stands
        current = current or cursor
        current.through_tx_id, current.pending_tx_ids, current.updated_at = through, pending, now
        current.save()


# --- charge after review (复核后扣费) -------------------------------------------------------------------

# The code flags a clerk may charge after review: the code's signature holds, so the card it names is known —
# the code had expired (or was dated ahead) at the ride, was spent before by another ride, or names another
# card than the ride's record (the code's card is charged: its signature proves who showed it). Never a ride
# without a code (``code_missing``) nor one whose code does not verify (``code_invalid``: bad signature,
# unknown key, malformed, signed by another city …): nothing proves whose card rode.
CHARGEABLE_CODE_FLAGS = frozenset({CODE_EXPIRED, CODE_REPLAYED, CODE_OTHER_CARD})


def _code_flag(flag_id: int) -> tuple[ReviewFlag, Transaction]:
    """The citizen-code flag (locked) and its ride; NotFound when it is no such flag."""
    flag = ReviewFlag.objects.select_for_update().filter(pk=flag_id, code__in=CODE_FLAGS).first()
    if flag is None:
        raise NotFound(
            gettext("no citizen-code review flag %(id)s here") % {"id": flag_id}, code="no_flag", field="flag"
        )
    ride = Transaction.objects.filter(id=flag.transaction_id, tapped_at=flag.tapped_at).first()
    if ride is None:
        raise NotFound(gettext("the flagged ride is not stored here"), code="no_ride", field="flag")
    return flag, ride


def _reviewed(flag: ReviewFlag, decision: str) -> CodeRideReview | None:
    """The decision already taken on the flag's ride: the same one again returns it (a retried action),
    another is a conflict."""
    done = CodeRideReview.objects.filter(transaction_id=flag.transaction_id).first()
    if done is not None and done.decision != decision:
        raise Conflict(
            gettext("this ride was already decided: %(decision)s")
            % {"decision": done.get_decision_display()},
            code="already_decided",
            field="flag",
        )
    return done


def _review_close(flag: ReviewFlag, review: CodeRideReview, *, actor: str, at: dt.datetime) -> None:
    flag.resolved_at, flag.resolved_by = at, actor
    flag.note = f"{review.get_decision_display()}: {review.get_outcome_display()} {review.note}".strip()[:300]
    flag.save(update_fields=["resolved_at", "resolved_by", "note"])
    audit_record(
        action=f"credit.code_ride_{review.decision}",
        actor=actor,
        object_type="transaction",
        object_id=f"tap:{review.transaction_id}",
        data={
            "flag": flag.code,
            "outcome": review.outcome,
            "card_no": review.card_no,
            "amount_fen": review.amount_fen,
            "record_id": review.record_id,
            "note": review.note,
        },
    )


@transaction.atomic
def code_ride_charge(
    *, flag_id: int, actor: str, note: str = "", now: dt.datetime | None = None
) -> CodeRideReview:
    """Charge after review (复核后扣费) a citizen-code ride the verification stage flagged and held: once, by
    the clerk ``actor`` (audited), only for a flag in ``CHARGEABLE_CODE_FLAGS``.

    This city's cardholder: booked as ``online_fares_book`` books a ride it does not hold — deferred onto
    the active credit line, else charged to the online account — under the ride's own fare id
    (``tap:<id>``), so no later run books it again; refused (``unpaid``, nothing written) when neither can
    pay it. Another city's cardholder (a roaming ride): never booked here. Its clearing record goes to the
    issuer like every roaming ride's (the verification stage hands it over whatever its flags), and the
    issuer, checking the code again, books it against its cardholder only if its own validation accepts
    it; the decision records the clearing record it rests on (outcome ``cleared``). A retry returns the
    first decision; a ride already waived is a conflict."""
    flag, ride = _code_flag(flag_id)
    done = _reviewed(flag, CodeReviewDecision.CHARGE)
    if done is not None:
        return done
    if flag.code not in CHARGEABLE_CODE_FLAGS:
        raise DomainError(
            gettext(
                "a ride flagged %(code)s cannot be charged: nothing proves whose card rode; waive it instead"
            )
            % {"code": flag.code},
            code="not_chargeable",
            field="flag",
        )
    if ride.amount_fen <= 0:
        raise DomainError(gettext("the ride owes nothing"), code="not_chargeable", field="flag")
    at = now or timezone.now()
    card_no = ride.card_no
    if flag.code == CODE_OTHER_CARD:  # the card the code's signature proves showed it
        card_no = flag.detail.get("code_card_no") or card_no
    fare_id = f"tap:{ride.id}"
    record_id = ""
    if ride.routing == Routing.OWN:
        rules = CreditRules.objects.first()
        line = (
            CreditLine.objects.filter(card_no=card_no).first()
            if rules is not None and rules.enabled
            else None
        )
        outcome = _fare_book(
            card_no=card_no,
            fare_id=fare_id,
            amount=ride.amount_fen,
            payee=f"{ride.service} {ride.route}".strip()[:100],
            at=ride.tapped_at,
            line=line,
            income=ledger_account_external(code=ONLINE_FARE_INCOME, kind=AccountKind.FARE_INCOME),
            credit_income=None,
            actor=actor,
        )
        if outcome == "unpaid":
            raise DomainError(
                gettext("card %(card)s has no credit line or online account that can pay %(amount)s")
                % {"card": card_no, "amount": yuan(ride.amount_fen)},
                code="unpaid",
                field="flag",
            )
    elif ride.routing == Routing.ROAMING:
        outcome = CodeReviewOutcome.CLEARED
        fare_id, record_id = "", record_id_for(schema=connection.tenant.code, source_tx_id=ride.id)
    else:
        raise DomainError(
            gettext("the ride's card has no issuer to charge it (held: %(routing)s)")
            % {"routing": ride.routing},
            code="not_chargeable",
            field="flag",
        )
    review = CodeRideReview.objects.create(
        flag=flag,
        transaction_id=ride.id,
        decision=CodeReviewDecision.CHARGE,
        outcome=outcome,
        card_no=card_no,
        amount_fen=ride.amount_fen,
        fare_id=fare_id,
        record_id=record_id,
        decided_by=actor,
        decided_at=at,
        note=note.strip()[:300],
    )
    _review_close(flag, review, actor=actor, at=at)
    return review


@transaction.atomic
def code_ride_waive(
    *, flag_id: int, actor: str, note: str = "", now: dt.datetime | None = None
) -> CodeRideReview:
    """Waive (免收) a flagged citizen-code ride: the flag is closed and the ride is never charged here (it
    stays held for ``online_fares_book``). Any code flag. A roaming ride's clearing record, with the issuer
    already, is left to the issuer's validation, which repeats the check that flagged it. A retry returns
    the first decision; a ride already charged is a conflict."""
    flag, ride = _code_flag(flag_id)
    done = _reviewed(flag, CodeReviewDecision.WAIVE)
    if done is not None:
        return done
    at = now or timezone.now()
    review = CodeRideReview.objects.create(
        flag=flag,
        transaction_id=ride.id,
        decision=CodeReviewDecision.WAIVE,
        outcome=CodeReviewOutcome.WAIVED,
        card_no=ride.card_no,
        amount_fen=ride.amount_fen,
        decided_by=actor,
        decided_at=at,
        note=note.strip()[:300],
    )
    _review_close(flag, review, actor=actor, at=at)
    return review


def roaming_code_fares_take(records: list[dict[str, Any]], now: dt.datetime) -> int:
    """``exchange.ISSUER_CODE_FARE_SINK``: the citizen-code rides of this city's cardholders in other cities
    that its validation accepted, kept to be booked against the cardholder (``online_fares_book``). Once
    per clearing record (validated again: nothing new). One statement; returns how many are new."""
    rows = [
        RoamingFare(
            record_id=r["record_id"],
            acquirer=r.get("acquirer") or r["record_id"].rsplit("-", 1)[0],
            card_no=r["card_no"],
            amount_fen=int(r["amount_fen"]),
            tapped_at=dt.datetime.fromisoformat(r["tapped_at"]),
            payee=f"{r.get('service') or ''} {r.get('route') or ''} ({r.get('acquirer') or ''})".strip()[
                :100
            ],
            received_at=now,
        )
        for r in records
        if int(r["amount_fen"]) > 0
    ]
    created = RoamingFare.objects.bulk_create(rows, ignore_conflicts=True)
    return len([r for r in created if r.pk])


# --- bills ---------------------------------------------------------------------------------------------


@transaction.atomic
def credit_bills_generate(*, month: str, actor: str, now: dt.datetime | None = None) -> list[CreditBill]:
    """The month's bills (月度账单), once the Beijing month is over: one per line with items that month,
    its items, due date (the rules' day of the next month), full and minimum due. A line already billed
    for the month is not billed again; what was repaid ahead of the bill is not asked again."""
    _start, end = month_bounds(month)
    now = now or timezone.now()
    if now < end:
        raise DomainError(f"the month {month} is not over", code="month_not_over", field="month")
    rules = rules_get()
    due_on = end.date().replace(day=rules.due_day)
    billed = set(CreditBill.objects.filter(month=month).values_list("line_id", flat=True))
    totals = (
        CreditItem.objects.filter(month=month, bill__isnull=True)
        .exclude(line_id__in=billed)
        .values("line_id")
        .annotate(total=Sum("amount_fen"))
    )
    bills = []
    for row in totals.order_by("line_id"):
        line = (
            CreditLine.objects.select_related("receivable")
            .select_for_update(of=("self",))
            .get(pk=row["line_id"])
        )
        earlier = sum(
            b.outstanding_fen for b in line.bills.filter(state__in=[BillState.OPEN, BillState.OVERDUE])
        )
        later = line.items.filter(bill__isnull=True, month__gt=month).aggregate(s=Sum("amount_fen"))["s"] or 0
        full = max(0, min(row["total"], owed_fen(line) - earlier - later))
        bill = CreditBill.objects.create(
            line=line,
            month=month,
            items_fen=row["total"],
            full_due_fen=full,
            minimum_due_fen=min(full, bps_of(full, rules.minimum_bps)),
            due_on=due_on,
            state=BillState.OPEN if full else BillState.PAID,
            generated_at=now,
        )
        line.items.filter(month=month, bill__isnull=True).update(bill=bill)
        bills.append(bill)
    audit_record(
        action="credit.bills_generate",
        actor=actor,
        object_type="credit_bill",
        object_id=month,
        data={"bills": len(bills), "due_fen": sum(b.full_due_fen for b in bills)},
    )
    return bills


# --- repayment -------------------------------------------------------------------------------------------


def _allocate(line: CreditLine, amount_fen: int, actor: str, at: dt.datetime) -> None:
    """Apply a repayment to the line's bills, oldest first; a suspended line whose overdue bills are all
    paid is active again and its card leaves the hotlist."""
    left = amount_fen
    for bill in (
        line.bills.select_for_update().filter(state__in=[BillState.OPEN, BillState.OVERDUE]).order_by("month")
    ):
        if left <= 0:
            break
        paying = min(left, bill.outstanding_fen)
        bill.paid_fen += paying
        left -= paying
        if bill.outstanding_fen == 0:
            bill.state = BillState.PAID
        bill.save(update_fields=["paid_fen", "state"])
    if (
        line.state == LineState.SUSPENDED
        and line.state_reason == OVERDUE_REASON
        and not line.bills.filter(state=BillState.OVERDUE).exists()
    ):
        line.state, line.state_reason = LineState.ACTIVE, ""
        line.save(update_fields=["state", "state_reason"])
        card_restriction_lift(card_no=line.card_no, reason=OVERDUE_REASON, actor=actor, at=at)


@transaction.atomic
def credit_repay(
    *,
    card_no: str,
    amount_fen: int,
    key: str,
    actor: str,
    source: str = RepaymentSource.ACCOUNT,
    order_no: str = "",
    at: dt.datetime | None = None,
) -> CreditRepayment:
    """Repay (还款) from the cardholder's online account: never more than is owed; applied to the bills
    oldest first. A retry with the same key returns the first repayment."""
    amount = _fen(amount_fen)
    if not key or len(key) > 80:
        raise DomainError("a repayment key of 1–80 characters is required", field="key")
    done = CreditRepayment.objects.select_related("line").filter(key=key).first()
    if done is not None:
        if (done.line.card_no, done.amount_fen) != (card_no, amount):
            raise Conflict(f"repayment key {key} was used for another repayment", field="key")
        return done
    at = at or timezone.now()
    line = _line(card_no)
    owed = owed_fen(line)
    if amount > owed:
        raise DomainError(
            f"{amount} fen is more than the {owed} fen owed", code="over_owed", field="amount_fen"
        )
    posting, _ = posting_write(
        kind=PostingKind.CREDIT_REPAY,
        key=f"credit-repay:{key}",
        legs=[(holder_account(card_no), -amount), (line.receivable, amount)],
        memo=f"credit repayment {line.card_no}",
        actor=actor,
        at=at,
    )
    repayment = CreditRepayment.objects.create(
        line=line, key=key, source=source, amount_fen=amount, at=at, posting=posting, order_no=order_no
    )
    _allocate(line, amount, actor, at)
    return repayment


def credit_collections_apply(*, actor: str) -> list[CreditRepayment]:
    """Move what the bound channels collected (paid collection orders) on from the online account to the
    lines, once each (key ``collect:<order no>``)."""
    done = set(
        CreditRepayment.objects.filter(source=RepaymentSource.CHANNEL).values_list("order_no", flat=True)
    )
    orders = TopupOrder.objects.filter(
        purpose=OrderPurpose.COLLECTION, state=OrderState.PAID, request_key__startswith=COLLECT_PREFIX
    ).exclude(out_trade_no__in=done)
    repaid = []
    for order in orders.order_by("id"):
        line = CreditLine.objects.select_related("receivable").filter(card_no=order.card_no).first()
        if line is None:
            continue
        amount = min(order.amount_fen, owed_fen(line))
        if amount <= 0:
            continue  # owed nothing any more: the collected money stays in the online account
        repaid.append(
            credit_repay(
                card_no=order.card_no,
                amount_fen=amount,
                key=f"collect:{order.out_trade_no}",
                actor=actor,
                source=RepaymentSource.CHANNEL,
                order_no=order.out_trade_no,
                at=order.credited_at or order.paid_at,
            )
        )
    return repaid


def credit_autorepay_run(*, on: dt.date, actor: str) -> dict[str, int]:
    """Automatic repayment (自动还款) on or after each bill's due date: apply what was collected, then
    open one collection order through the card's bound channel for each bill still outstanding (idempotent
    per bill and amount paid so far); cards without a binding are skipped, a provider's refusal counted as
    failed."""
    applied = len(credit_collections_apply(actor=actor))
    opened = skipped = failed = 0
    bills = CreditBill.objects.select_related("line").filter(
        state__in=[BillState.OPEN, BillState.OVERDUE], due_on__lte=on
    )
    for bill in bills.order_by("id"):
        try:
            channel_collect(
                card_no=bill.line.card_no,
                amount_fen=bill.outstanding_fen,
                request_key=f"{COLLECT_PREFIX}{bill.pk}:{bill.paid_fen}",
                actor=actor,
                description=f"信用付 {bill.month} 账单还款",
            )
            opened += 1
        except NotFound:
            skipped += 1
        except DomainError:
            failed += 1  # the provider refused or did not answer: the next run asks again with the same key
    return {"applied": applied, "opened": opened, "skipped": skipped, "failed": failed}


# --- overdue ----------------------------------------------------------------------------------------


@transaction.atomic
def credit_overdue_run(*, on: dt.date, actor: str) -> list[CreditLine]:
    """Bills still outstanding after the due date and the grace days are overdue (逾期): the line is
    suspended and the card restricted through the hotlist (reason ``credit_overdue``) until repaid."""
    rules = rules_get()
    cutoff = on - dt.timedelta(days=rules.grace_days)
    late = CreditBill.objects.select_for_update().filter(state=BillState.OPEN, due_on__lt=cutoff)
    late_ids = [b.pk for b in late if b.outstanding_fen > 0]
    CreditBill.objects.filter(pk__in=late_ids).update(state=BillState.OVERDUE)
    line_ids = set(CreditBill.objects.filter(pk__in=late_ids).values_list("line_id", flat=True))
    lines = list(
        CreditLine.objects.select_for_update()
        .filter(pk__in=line_ids)
        .exclude(state=LineState.CLOSED)
        .order_by("pk")
    )
    at = timezone.now()
    for line in lines:
        if line.state != LineState.SUSPENDED:
            line.state, line.state_reason = LineState.SUSPENDED, OVERDUE_REASON
            line.save(update_fields=["state", "state_reason"])
        card_restrict(card_no=line.card_no, reason=OVERDUE_REASON, actor=actor, at=at)
    audit_record(
        action="credit.overdue_run",
        actor=actor,
        object_type="credit_bill",
        object_id=on.isoformat(),
        data={"overdue_bills": len(late_ids), "lines": len(lines)},
    )
    return lines


# --- citizen-code payments at other cities' merchants (the issuer's side, 异地商户扫码支付) ---------------

ROAMING_PAYMENT_KEY = "roaming-pay:"


def _roaming_payment_charge(
    *, record: dict[str, Any], line: CreditLine | None, payable: LedgerAccount, payee: str, at: dt.datetime
) -> tuple[str, Any] | None:
    """Charge one payment onto the active line within its limit (a merchant item on the month's bill), else
    to the online account: (source, posting), or None when neither can pay it."""
    amount, record_id = int(record["amount_fen"]), record["record_id"]
    key = f"{ROAMING_PAYMENT_KEY}{record_id}"
    if line is not None:
        try:
            _deferrable(line, amount)
        except DomainError:
            pass  # over the limit or not active: the online account pays it
        else:
            posting, _ = posting_write(
                kind=PostingKind.PAYMENT,
                key=key,
                legs=[(line.receivable, -amount), (payable, amount)],
                memo=payee,
                actor="interop",
                at=at,
                audit=False,
            )
            CreditItem.objects.create(
                line=line,
                kind=ItemKind.MERCHANT,
                payment_id=f"roam:{record_id}",
                payee=payee,
                amount_fen=amount,
                at=at,
                month=_item_month(line, at),
                posting=posting,
            )
            return RoamingPaymentSource.CREDIT, posting
    try:
        posting, _ = posting_write(
            kind=PostingKind.PAYMENT,
            key=key,
            legs=[(holder_account(record["card_no"]), -amount), (payable, amount)],
            memo=payee,
            actor="interop",
            at=at,
            audit=False,
        )
    except DomainError:  # no online account, or not enough in it
        return None
    return RoamingPaymentSource.ACCOUNT, posting


@transaction.atomic
def roaming_code_payments_book(records: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, str]]:
    """``exchange.ISSUER_CODE_PAYMENT_SINK``: this city's cardholders' citizen-code payments at other cities'
    merchants that its validation accepted (the code signed with its keys for the card, its nonce spent
    once), booked now, inside the validation's answer: onto the cardholder's credit line when credit is on in
    the city, the line active and the payment within its available limit (a merchant item of the month's
    bill), else from the online account (holder −a); against the payable to the acquiring city
    ``interop:<acquirer>`` +a, which the merchant-payment cycle's settlement pays less the issuer's fee.
    Each a ``RoamingPayment`` row, once per clearing record (validated again: accepted again, nothing
    booked). One that neither can pay is booked by nobody and returned as a rejection ``no_funds``: the
    acquirer learns it from the cycle's exceptions and reconciliation file and charges it back there."""
    wanted = {r["record_id"]: r for r in records if int(r["amount_fen"]) > 0}
    if not wanted:
        return []
    done = set(RoamingPayment.objects.filter(record_id__in=list(wanted)).values_list("record_id", flat=True))
    fresh = [r for record_id, r in sorted(wanted.items()) if record_id not in done]
    if not fresh:
        return []
    rules = CreditRules.objects.first()
    deferring = rules is not None and rules.enabled
    lines = (
        {
            line.card_no: line
            for line in CreditLine.objects.select_related("receivable")
            .select_for_update(of=("self",))
            .filter(card_no__in={r["card_no"] for r in fresh})
            .order_by("pk")
        }
        if deferring
        else {}
    )
    payables: dict[str, LedgerAccount] = {}
    rejections: list[dict[str, str]] = []
    booked: list[RoamingPayment] = []
    for record in fresh:
        acquirer = record.get("acquirer") or record["record_id"].rsplit("-", 1)[0]
        if acquirer not in payables:
            payables[acquirer] = ledger_account_external(code=f"interop:{acquirer}", kind=AccountKind.INTEROP)
        paid_at = dt.datetime.fromisoformat(record["tapped_at"])
        payee = f"{record.get('route') or record.get('service') or ''} ({acquirer})".strip()[:100]
        charged = _roaming_payment_charge(
            record=record,
            line=lines.get(record["card_no"]),
            payable=payables[acquirer],
            payee=payee,
            at=paid_at,
        )
        if charged is None:
            rejections.append(
                {
                    "record_id": record["record_id"],
                    "reason": REASON_NO_FUNDS,
                    "message": f"neither the credit line nor the online account of card {record['card_no']}"
                    f" pays {record['amount_fen']} fen",
                }
            )
            continue
        source, posting = charged
        booked.append(
            RoamingPayment(
                record_id=record["record_id"],
                acquirer=acquirer,
                card_no=record["card_no"],
                merchant=(record.get("route") or "")[:40],
                payee=payee,
                amount_fen=int(record["amount_fen"]),
                paid_at=paid_at,
                source=source,
                posting=posting,
                booked_at=now,
            )
        )
    RoamingPayment.objects.bulk_create(booked)
    audit_record(
        action="credit.roaming_code_payments_book",
        actor="interop",
        object_type="clearing_record",
        object_id=f"{fresh[0]['record_id']}..{fresh[-1]['record_id']}",
        data={
            "booked": len(booked),
            "credit": sum(1 for p in booked if p.source == RoamingPaymentSource.CREDIT),
            "amount_fen": sum(p.amount_fen for p in booked),
            "no_funds": len(rejections),
        },
    )
    return rejections
