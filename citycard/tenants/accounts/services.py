"""Money: the online account ledger, subsidy runs and the e-purse shadow. Amounts are integer fen.

Every posting is balanced (legs sum to zero, checked again by a deferred trigger at commit); every write
takes an idempotency key so a retried request posts nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.platform.sqlarrays import pg_array
from citycard.tenants.accounts.models import (
    AccountKind,
    LedgerAccount,
    Leg,
    Posting,
    PostingKind,
    PurseShadow,
    SubsidyItem,
    SubsidyPayment,
    SubsidyProgramme,
    SubsidyRun,
)
from citycard.tenants.cards.models import Card, CardholderCategory, CardState, CategoryCode

# --- accounts ------------------------------------------------------------------------------------------


def _amount(value: Any, field: str = "amount_fen") -> int:
    if type(value) is not int or value <= 0:
        raise DomainError(
            gettext("%(field)s must be a positive whole number of fen") % {"field": field}, field=field
        )
    return value


def ledger_account_external(*, code: str, kind: str) -> LedgerAccount:
    """The external ledger account ``code`` (merchant payable, fee income, bank clearing…), opened on first
    use; external accounts carry the other side of the cardholders' money and may run negative."""
    account, _ = LedgerAccount.objects.get_or_create(
        code=code, defaults={"kind": kind, "allow_negative": True, "opened_at": timezone.now()}
    )
    if account.kind != kind:
        raise Conflict(f"ledger account {code!r} is a {account.kind} account, not {kind}", field="code")
    return account


@transaction.atomic
def account_open(*, card_no: str, actor: str) -> LedgerAccount:
    """Open the cardholder's online account (开通市民卡账户), reached by their card; idempotent."""
    card = Card.objects.select_related("scheme").filter(card_no=card_no).first()
    if card is None:
        raise NotFound(gettext("no card %(card_no)r here") % {"card_no": card_no}, field="card_no")
    if card.cardholder_id is None:
        raise DomainError(gettext("an anonymous card has no online account"), field="card_no")
    if "online_account" not in card.scheme.applications:
        raise DomainError(
            gettext("%(scheme)s has no online account") % {"scheme": card.scheme.name_zh},
            code="no_online_account",
            field="card_no",
        )
    existing = LedgerAccount.objects.filter(cardholder_id=card.cardholder_id).first()
    if existing is not None:
        return existing
    account = LedgerAccount.objects.create(
        code=f"holder:{card.cardholder_id}",
        kind=AccountKind.HOLDER,
        cardholder_id=card.cardholder_id,
        card_no=card_no,
        overdraft_fen=card.scheme.account_overdraft_fen,
        opened_at=timezone.now(),
    )
    audit_record(
        action="account.open",
        actor=actor,
        object_type="account",
        object_id=account.code,
        data={"card_no": card_no},
    )
    return account


def holder_account(card_no: str) -> LedgerAccount:
    account = LedgerAccount.objects.filter(kind=AccountKind.HOLDER, card_no=card_no).first()
    if account is None:
        raise NotFound(
            gettext("card %(card_no)s has no online account") % {"card_no": card_no},
            code="no_account",
            field="card_no",
        )
    return account


def posting_write(
    *,
    kind: str,
    key: str,
    legs: Sequence[tuple[LedgerAccount, int]],
    memo: str,
    actor: str,
    at: dt.datetime | None = None,
    reverses: Posting | None = None,
    audit: bool = True,
) -> tuple[Posting, bool]:
    """Write one balanced posting; (posting, created). A repeated key returns the first posting.
    ``audit=False``: the caller audits the whole action once (a bulk booking) instead of each posting."""
    if not key or len(key) > 120:
        raise DomainError(
            gettext("an idempotency key of 1–120 characters is required"), field="idempotency_key"
        )
    if sum(amount for _, amount in legs) != 0:
        raise DomainError(gettext("a posting's legs must sum to zero"), code="unbalanced")
    existing = Posting.objects.filter(idempotency_key=key).first()
    if existing is not None:
        if existing.kind != kind:
            raise Conflict(
                gettext("idempotency key %(key)r was used for a %(kind)s")
                % {"key": key, "kind": existing.kind},
                field="idempotency_key",
            )
        return existing, False
    amount = sum(a for _, a in legs if a > 0)
    try:
        with transaction.atomic():
            posting = Posting.objects.create(
                kind=kind,
                idempotency_key=key,
                at=at or timezone.now(),
                amount_fen=amount,
                memo=memo,
                reverses=reverses,
                actor=actor,
            )
            Leg.objects.bulk_create(Leg(posting=posting, account=acc, amount_fen=a) for acc, a in legs)
            for acc, a in sorted(legs, key=lambda leg: leg[0].pk):  # fixed order: no deadlocks
                LedgerAccount.objects.filter(pk=acc.pk).update(balance_fen=F("balance_fen") + a)
    except IntegrityError as exc:
        if "ledgeraccount_not_below_overdraft" in str(exc):
            raise DomainError(
                gettext("insufficient balance in the online account"), code="insufficient_funds"
            ) from None
        raise
    if not audit:
        return posting, True
    audit_record(
        action=f"ledger.{kind}",
        actor=actor,
        object_type="posting",
        object_id=posting.pk,
        data={"key": key, "legs": [[acc.code, a] for acc, a in legs]},
    )
    return posting, True


@transaction.atomic
def account_topup(
    *,
    card_no: str,
    amount_fen: int,
    idempotency_key: str,
    channel: str = "bank",
    actor: str,
    at: dt.datetime | None = None,
) -> Posting:
    """Top up the online account (充值) from a bank or cash channel."""
    amount = _amount(amount_fen)
    holder = holder_account(card_no)
    clearing = ledger_account_external(code=f"topup:{channel}", kind=AccountKind.TOPUP_CLEARING)
    return posting_write(
        kind=PostingKind.TOPUP,
        key=idempotency_key,
        legs=[(clearing, -amount), (holder, amount)],
        memo=f"top-up via {channel}",
        actor=actor,
        at=at,
    )[0]


@transaction.atomic
def account_topup_reverse(
    *,
    topup_id: int,
    amount_fen: int,
    idempotency_key: str,
    memo: str = "",
    actor: str,
    at: dt.datetime | None = None,
) -> Posting:
    """Give (part of) a top-up back to where it came from (充值退款, or a reversal the reconciliation
    decides): the holder's account goes down, the top-up's clearing account up. Never more than the top-up
    minus what was already given back; refused beyond the holder's balance (and overdraft)."""
    amount = _amount(amount_fen)
    topup = Posting.objects.select_for_update().filter(pk=topup_id, kind=PostingKind.TOPUP).first()
    if topup is None:
        raise NotFound(f"no top-up {topup_id}", field="topup_id")
    existing = Posting.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.kind != PostingKind.REFUND or existing.reverses_id != topup.pk:
            raise Conflict(
                f"idempotency key {idempotency_key!r} was used for another posting", field="idempotency_key"
            )
        return existing
    returned = sum(Posting.objects.filter(reverses=topup).values_list("amount_fen", flat=True))
    if returned + amount > topup.amount_fen:
        raise DomainError(
            f"reversals would total {returned + amount} fen, more than the {topup.amount_fen} fen topped up",
            code="over_refund",
            field="amount_fen",
        )
    legs = {leg.account.kind: leg.account for leg in topup.legs.select_related("account")}
    return posting_write(
        kind=PostingKind.REFUND,
        key=idempotency_key,
        legs=[(legs[AccountKind.HOLDER], -amount), (legs[AccountKind.TOPUP_CLEARING], amount)],
        memo=memo or f"reversal of top-up {topup.pk}",
        actor=actor,
        at=at,
        reverses=topup,
    )[0]


@transaction.atomic
def account_pay(
    *,
    card_no: str,
    amount_fen: int,
    payee: LedgerAccount,
    idempotency_key: str,
    memo: str,
    actor: str,
    at: dt.datetime | None = None,
) -> Posting:
    """Pay a payee's ledger account from the online account (消费); refused beyond the balance (and
    overdraft). The payee is a party's own account (a merchant's payable, a department's fees), never a
    name: whoever takes the payment (``citycard.tenants.merchants``) checks the party first."""
    amount = _amount(amount_fen)
    if payee.kind != AccountKind.MERCHANT:
        raise DomainError(
            gettext("%(payee)s cannot be paid from an online account") % {"payee": payee.code}, field="payee"
        )
    holder = holder_account(card_no)
    return posting_write(
        kind=PostingKind.PAYMENT,
        key=idempotency_key,
        legs=[(holder, -amount), (payee, amount)],
        memo=memo,
        actor=actor,
        at=at,
    )[0]


@transaction.atomic
def purse_load(
    *, card_no: str, amount_fen: int, idempotency_key: str, actor: str, at: dt.datetime | None = None
) -> Posting:
    """Load the card's e-purse from the online account (圈存): the account goes down, the e-purse float up,
    and the shadow balance follows, so the card's next tap starts from what the back office expects."""
    amount = _amount(amount_fen)
    holder = holder_account(card_no)
    float_account = ledger_account_external(code="purse:float", kind=AccountKind.PURSE_FLOAT)
    at = at or timezone.now()
    posting, created = posting_write(
        kind=PostingKind.PURSE_LOAD,
        key=idempotency_key,
        legs=[(holder, -amount), (float_account, amount)],
        memo=f"e-purse load of card {card_no}",
        actor=actor,
        at=at,
    )
    if created:
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO accounts_purseshadow (card_no, balance_fen, last_counter, updated_at, closed)"
                " VALUES (%s, %s, 0, %s, false) ON CONFLICT (card_no) DO UPDATE"
                " SET balance_fen = accounts_purseshadow.balance_fen + EXCLUDED.balance_fen, updated_at = %s",
                [card_no, amount, at, at],
            )
    return posting


# --- subsidies ---------------------------------------------------------------------------------------


@transaction.atomic
def subsidy_programme_save(
    *, code: str, name: str, items: list[dict[str, Any]], category: str = "", department: str = "", actor: str
) -> SubsidyProgramme:
    """Create or update a subsidy programme (补贴项目) with its items."""
    if not code or not name:
        raise DomainError(gettext("a programme needs a code and a name"), field="code")
    if not items:
        raise DomainError(gettext("a programme needs at least one item"), field="items")
    for item in items:
        if not item.get("item"):
            raise DomainError(gettext("every item needs a name"), field="items")
        _amount(item.get("amount_fen"), "items")
    if category and category not in CategoryCode.values:
        raise DomainError(gettext("unknown category %(category)r") % {"category": category}, field="category")
    programme, created = SubsidyProgramme.objects.update_or_create(
        code=code, defaults={"name": name, "items": items, "category": category, "department": department}
    )
    audit_record(
        action="subsidy.programme_save",
        actor=actor,
        object_type="subsidy_programme",
        object_id=code,
        data={"items": items, "category": category, "created": created},
    )
    return programme


@transaction.atomic
def subsidy_run(*, programme_code: str, period: str, on: dt.date, actor: str) -> SubsidyRun:
    """Pay a programme for ``period`` to every eligible cardholder with an online account (补贴发放): one
    posting per payment with its items. Re-running the same period pays nobody twice (it completes a run
    interrupted before commit only as a whole: the run is one transaction)."""
    programme = SubsidyProgramme.objects.filter(code=programme_code, active=True).first()
    if programme is None:
        raise NotFound(
            gettext("no active subsidy programme %(programme_code)r") % {"programme_code": programme_code},
            field="programme_code",
        )
    run = SubsidyRun.objects.filter(programme=programme, period=period).first()
    if run is not None:
        return run
    run = SubsidyRun.objects.create(programme=programme, period=period, on=on, at=timezone.now(), actor=actor)
    accounts = LedgerAccount.objects.filter(kind=AccountKind.HOLDER)
    if programme.category:
        holders = (
            CardholderCategory.objects.filter(code=programme.category, valid_from__lte=on)
            .exclude(valid_to__lt=on)
            .values_list("cardholder_id", flat=True)
        )
        accounts = accounts.filter(cardholder_id__in=holders)
    # Only cardholders with a card in use.
    accounts = accounts.filter(card_no__in=Card.objects.filter(state=CardState.ACTIVE).values("card_no"))
    fund = ledger_account_external(code=f"subsidy:{programme.code}", kind=AccountKind.SUBSIDY_FUND)
    total = sum(i["amount_fen"] for i in programme.items)
    count = 0
    for account in accounts.order_by("pk"):
        posting, _ = posting_write(
            kind=PostingKind.SUBSIDY,
            key=f"subsidy:{programme.code}:{period}:{account.cardholder_id}",
            legs=[(fund, -total), (account, total)],
            memo=f"{programme.name} {period}",
            actor=actor,
        )
        payment = SubsidyPayment.objects.create(
            run=run, cardholder_id=account.cardholder_id, amount_fen=total, posting=posting
        )
        SubsidyItem.objects.bulk_create(
            SubsidyItem(payment=payment, item=i["item"], amount_fen=i["amount_fen"]) for i in programme.items
        )
        count += 1
    run.payments, run.total_fen = count, count * total
    run.save(update_fields=["payments", "total_fen"])
    audit_record(
        action="subsidy.run",
        actor=actor,
        object_type="subsidy_run",
        object_id=run.pk,
        data={"programme": programme.code, "period": period, "payments": count, "total_fen": run.total_fen},
    )
    return run


# --- e-purse shadow and card replacement -------------------------------------------------------------


@dataclass(frozen=True)
class PurseMovement:
    card_no: str
    card_counter: int
    balance_before_fen: int
    balance_after_fen: int
    at: dt.datetime


@dataclass(frozen=True)
class PurseDivergence:
    movement: PurseMovement
    shadow_fen: int


def purse_shadow_apply(*, movements: Sequence[PurseMovement]) -> list[PurseDivergence]:
    """Follow chip e-purse movements (in card-counter order per card) on the shadow balances; return the
    movements that come right after the shadow's (counter + 1) and whose ``balance_before`` differs from it
    (影子余额不一致). After a counter gap the balances are not compared (the missing taps explain any
    difference; the card-counter gap check flags the gap). The shadow then follows the card. A counter at
    or below the last one applied is a late tap: checked against nothing, applied never. Two queries
    whatever the number of movements (lock+read, one upsert)."""
    if not movements:
        return []
    ordered = sorted(movements, key=lambda m: (m.card_no, m.card_counter))
    numbers = sorted({m.card_no for m in ordered})
    with connection.cursor() as cur:
        cur.execute(
            "SELECT card_no, balance_fen, last_counter FROM accounts_purseshadow WHERE card_no = ANY(%s::varchar[])"
            " ORDER BY card_no FOR UPDATE",
            [pg_array(numbers)],
        )
        state = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
    out: list[PurseDivergence] = []
    latest: dict[str, tuple[int, int, dt.datetime]] = {}
    for m in ordered:
        current = state.get(m.card_no)
        if current is not None:
            balance, counter = current
            if m.card_counter <= counter:
                continue
            if m.card_counter == counter + 1 and balance != m.balance_before_fen:
                out.append(PurseDivergence(m, balance))
        state[m.card_no] = (m.balance_after_fen, m.card_counter)
        latest[m.card_no] = (m.balance_after_fen, m.card_counter, m.at)
    if latest:
        keys = sorted(latest)
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO accounts_purseshadow (card_no, balance_fen, last_counter, updated_at, closed)"
                " SELECT * , false FROM unnest(%s::varchar[], %s::bigint[], %s::bigint[], %s::timestamptz[])"
                " ON CONFLICT (card_no) DO UPDATE SET balance_fen = EXCLUDED.balance_fen,"
                " last_counter = EXCLUDED.last_counter, updated_at = EXCLUDED.updated_at",
                [
                    pg_array(keys),
                    pg_array(latest[k][0] for k in keys),
                    pg_array(latest[k][1] for k in keys),
                    pg_array(latest[k][2] for k in keys),
                ],
            )
    return out


def card_replaced_follow(
    sender: Any, *, old_card_no: str, new_card_no: str, actor: str, at: dt.datetime, **_: Any
) -> dict[str, Any]:
    """The receiver of ``cards.signals.card_replaced``: the money moves to the new card (``card_money_move``)."""
    return card_money_move(old_card_no=old_card_no, new_card_no=new_card_no, actor=actor, at=at)


@transaction.atomic
def card_money_move(*, old_card_no: str, new_card_no: str, actor: str, at: dt.datetime) -> dict[str, Any]:
    """On replacement (补换卡): the e-purse shadow balance moves to the new card (loaded onto its chip at
    issuance) and the online account is reached by the new card."""
    moved_purse = 0
    shadow = PurseShadow.objects.select_for_update().filter(card_no=old_card_no, closed=False).first()
    if shadow is not None:
        moved_purse = shadow.balance_fen
        PurseShadow.objects.create(
            card_no=new_card_no, balance_fen=moved_purse, last_counter=0, updated_at=at
        )
        shadow.balance_fen, shadow.closed, shadow.updated_at = 0, True, at
        shadow.save(update_fields=["balance_fen", "closed", "updated_at"])
    account = LedgerAccount.objects.filter(kind=AccountKind.HOLDER, card_no=old_card_no).first()
    if account is not None:
        account.card_no = new_card_no
        account.save(update_fields=["card_no"])
    return {"purse_moved_fen": moved_purse, "account": account.code if account else None}
