"""Merchants (特约商户): onboarding and state, their terminals, acceptance and refunds, daily settlement.

Money moves only as balanced postings on the tenant's ledger (``citycard.tenants.accounts``):

* a payment from the online account or by citizen code: holder −a, merchant payable +a;
* an e-purse purchase at the merchant's terminal (booked from the uploaded tap): e-purse float −a (own
  card) or the issuer's interop receivable −a (a roaming card, cleared through the interop layer),
  merchant payable +a;
* a refund: merchant payable −r, the payer's online account +r (never more than was paid, once per id);
* a day's settlement: merchant payable −(gross − refunds), fee income +fee, settlement clearing +net;
* a citizen code scanned by the merchant's terminal: an own cardholder's online account −a, or a roaming
  cardholder's issuer's interop receivable −a (the issuer books it against its cardholder in clearing);
  merchant payable +a;
* a roaming payment the issuer rejected (拒付), read from the cycle's reconciliation file: the interop
  receivable +a against the merchant's payable −a (its settlement still open) or the receivable from the
  merchant ``chargeback:<code>`` −a (already settled);
* a settled merchant-payment clearing cycle's fees (roaming cards): the issuer's interchange income
  ``fee:interchange`` +f against its payable to the acquirer, the acquirer's fee expense
  ``fee-expense:interchange`` −f against its receivable from the issuer.

Every write takes an id (payment id, refund id, the tap, the (merchant, day)) so a retry writes nothing again.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.platform.models import Role
from citycard.tenants.accounts.models import AccountKind, LedgerAccount, Leg, Posting, PostingKind
from citycard.tenants.accounts.services import (
    account_pay,
    holder_account,
    ledger_account_external,
    posting_write,
)
from citycard.tenants.cards.pii import Sealer
from citycard.tenants.departments.models import Department
from citycard.tenants.entitlements.acceptance import citizen_code_verify
from citycard.tenants.merchants.models import (
    Category,
    ChargebackFrom,
    Means,
    Merchant,
    MerchantState,
    MerchantTerminal,
    Payment,
    Refund,
    Settlement,
)
from citycard.tenants.terminals.checks import CODE_FLAGS, ONLINE_MEDIA
from citycard.tenants.terminals.models import MERCHANT_SERVICE, Routing
from citycard.tenants.terminals.services import terminal_register
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.ecode import CodeRefused
from citycard.terminal_kit.money import BPS_WHOLE, bps_of

FEE_INCOME = "fee:merchants"  # the tenant's fee income from merchants (手续费收入)
SETTLEMENT_CLEARING = "settlement:bank"  # what leaves the tenant's bank account to merchants
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")

# --- the licence number (统一社会信用代码, GB 32100-2015) ---------------------------------------------

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(body17: str) -> str:
    """The check character (校验码) of the first 17 characters of a unified social credit code."""
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(body17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31]


def licence_no_parse(value: str, *, field: str = "licence_no") -> str:
    """An 18-character unified social credit code, checked: registering authority, entity type, a 6-digit
    division code, the organisation code and the check character; DomainError names what is wrong."""
    code = (value or "").strip().upper()
    if len(code) != 18 or any(c not in USCC_CHARS for c in code):
        raise DomainError(
            "the licence number (统一社会信用代码) is 18 digits or capital letters (no I, O, S, V, Z)",
            code="invalid",
            field=field,
        )
    if not code[2:8].isdigit():
        raise DomainError("characters 3–8 of the licence number are a division code", field=field)
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        raise DomainError(
            f"the licence number's check character should be {expected}, not {code[17]}",
            code="bad_checksum",
            field=field,
        )
    return code


def licence_no_build(*, division: str, organisation: str) -> str:
    """A valid licence number (for demos and tests): a company (91) of ``division``, a 9-character
    organisation code."""
    body = f"91{division}{organisation}".upper()
    if len(body) != 17 or any(c not in USCC_CHARS for c in body):
        raise DomainError("a division code and 9 characters of the licence alphabet", field="organisation")
    return body + uscc_check_char(body)


# --- onboarding and state -------------------------------------------------------------------------------


def _account_digits(value: str) -> str:
    digits = "".join(c for c in (value or "") if not c.isspace())
    if not (12 <= len(digits) <= 30 and digits.isdigit()):
        raise DomainError(
            "the settlement account is a bank account number of 12–30 digits", field="settlement_account"
        )
    return digits


def _means(values: list[str]) -> list[str]:
    means = sorted(set(values or []))
    if not means or any(m not in Means.values for m in means):
        raise DomainError(
            f"accepted means are one or more of {', '.join(Means.values)}", field="accepted_means"
        )
    return means


def _merchant(code: str, *, lock: bool = False) -> Merchant:
    qs = Merchant.objects.select_for_update() if lock else Merchant.objects
    merchant = qs.filter(code=code).first()
    if merchant is None:
        raise NotFound(f"no merchant {code!r} here", field="merchant")
    return merchant


def merchant_manage_refusal(*, role: str, role_department: str, department: str) -> str | None:
    """Why a user of ``role`` may not onboard or manage a merchant of ``department`` (None: may). A
    department officer (谁主管谁负责) only its own department's merchants; the administration any."""
    if role == Role.DEPARTMENT_OFFICER and (not role_department or department != role_department):
        return gettext("a department officer onboards and manages only its own department's merchants")
    return None


def _managing(*, role: str, role_department: str, department: str) -> None:
    refusal = merchant_manage_refusal(role=role, role_department=role_department, department=department)
    if refusal:
        raise DomainError(refusal, code="other_department", field="department")


@transaction.atomic
def merchant_onboard(
    *,
    code: str,
    name: str,
    licence_no: str,
    category: str,
    settlement_bank: str,
    settlement_account: str,
    fee_bps: int,
    accepted_means: list[str],
    department: str = "",
    actor: str,
    role: str = "",
    role_department: str = "",
) -> Merchant:
    """Onboard a merchant (商户入网) under contract: by a department (its own merchants, e.g. a school's
    canteen) or by the city administration (``department`` empty). Its payable account opens with it.
    ``role``/``role_department``: who asks, when a signed-in user does (a department officer onboards
    only for its own department)."""
    _managing(role=role, role_department=role_department, department=department)
    if not _CODE.match(code or ""):
        raise DomainError(f"merchant code {code!r} must be a lower-case code", field="code")
    if not (name or "").strip():
        raise DomainError("a merchant needs a name", field="name")
    licence = licence_no_parse(licence_no)
    if category not in Category.values:
        raise DomainError(f"category must be one of {', '.join(Category.values)}", field="category")
    if type(fee_bps) is not int or not 0 <= fee_bps <= BPS_WHOLE:
        raise DomainError("the fee rate is 0–10000 basis points", field="fee_bps")
    if not (settlement_bank or "").strip():
        raise DomainError("a merchant needs a settlement bank", field="settlement_bank")
    account_no = _account_digits(settlement_account)
    means = _means(accepted_means)
    if department and not Department.objects.filter(code=department).exists():
        raise NotFound(f"no department {department!r} here", field="department")
    if Merchant.objects.filter(code=code).exists():
        raise Conflict(f"merchant {code} is already onboarded", field="code")
    if Merchant.objects.filter(licence_no=licence).exists():
        raise Conflict("a merchant with this licence number is already onboarded", field="licence_no")
    sealer = Sealer()
    merchant = Merchant.objects.create(
        code=code,
        name=name.strip(),
        licence_no=licence,
        category=category,
        department=department,
        settlement_bank=settlement_bank.strip(),
        settlement_account_enc=sealer.seal("settlement_account", account_no),
        settlement_account_key_id=sealer.key_id,
        settlement_account_last4=account_no[-4:],
        fee_bps=fee_bps,
        accepted_means=means,
        payable=ledger_account_external(code=f"merchant:{code}", kind=AccountKind.MERCHANT),
        onboarded_at=timezone.now(),
        onboarded_by=actor,
    )
    audit_record(
        action="merchant.onboard",
        actor=actor,
        object_type="merchant",
        object_id=code,
        data={
            "name": merchant.name,
            "licence_no": licence,
            "category": category,
            "department": department,
            "settlement_account": merchant.settlement_account_masked,
            "fee_bps": fee_bps,
            "accepted_means": means,
        },
    )
    return merchant


def merchant_settlement_account(*, merchant: Merchant, sealer: Sealer | None = None) -> str:
    """The settlement account number in clear, for the payout file only (never shown on a page);
    ``sealer``: one for a whole file (a key-vault read each otherwise)."""
    return (sealer or Sealer()).open(
        "settlement_account", merchant.settlement_account_enc, merchant.settlement_account_key_id
    )


@transaction.atomic
def merchant_state_set(
    *, code: str, state: str, reason: str = "", actor: str, role: str = "", role_department: str = ""
) -> Merchant:
    """Suspend (暂停受理), resume or close (解约) a merchant. A closed merchant stays closed; it closes
    only once everything it took is settled (its payable is zero). A department officer only its own
    department's merchants."""
    if state not in MerchantState.values:
        raise DomainError(f"state must be one of {', '.join(MerchantState.values)}", field="state")
    merchant = _merchant(code, lock=True)
    _managing(role=role, role_department=role_department, department=merchant.department)
    if merchant.state == MerchantState.CLOSED and state != MerchantState.CLOSED:
        raise DomainError(f"merchant {code} is closed", code="closed", field="state")
    if state != MerchantState.ACTIVE and not (reason or "").strip():
        raise DomainError("a suspension or closure needs a reason", field="reason")
    if state == MerchantState.CLOSED:
        payable = LedgerAccount.objects.get(pk=merchant.payable_id)
        if payable.balance_fen != 0:
            raise DomainError(
                f"merchant {code} still has {payable.balance_fen} fen to settle",
                code="unsettled",
                field="state",
            )
    if merchant.state == state:
        return merchant
    before = merchant.state
    merchant.state, merchant.state_reason = state, (reason or "").strip()
    merchant.save(update_fields=["state", "state_reason"])
    audit_record(
        action=f"merchant.{state}",
        actor=actor,
        object_type="merchant",
        object_id=code,
        data={"from": before, "reason": merchant.state_reason},
    )
    return merchant


def merchant_suspend(*, code: str, reason: str, actor: str) -> Merchant:
    """Suspend a merchant: it takes no payments (its terminals' taps are still booked) until resumed."""
    return merchant_state_set(code=code, state=MerchantState.SUSPENDED, reason=reason, actor=actor)


@transaction.atomic
def merchant_terminal_register(
    *, merchant_code: str, terminal_id: str, public_key: str | bytes, location: str, actor: str
) -> MerchantTerminal:
    """Register a POS terminal to a merchant: a terminal of service ``merchant`` whose route is the
    merchant's code, so the purchases it uploads are booked as the merchant's e-purse payments."""
    merchant = _merchant(merchant_code)
    if merchant.state == MerchantState.CLOSED:
        raise DomainError(f"merchant {merchant_code} is closed", code="closed", field="merchant")
    terminal = terminal_register(
        terminal_id=terminal_id,
        operator=merchant.name,
        department=merchant.department or "merchants",
        service=MERCHANT_SERVICE,
        route=merchant.code,
        location=location,
        public_key=public_key,
        actor=actor,
    )
    link = MerchantTerminal.objects.create(merchant=merchant, terminal=terminal, registered_at=timezone.now())
    audit_record(
        action="merchant.terminal_register",
        actor=actor,
        object_type="merchant",
        object_id=merchant.code,
        data={"terminal_id": terminal_id, "location": location},
    )
    return link


# --- acceptance and refunds -----------------------------------------------------------------------------


def _beijing_day(at: dt.datetime) -> dt.date:
    return at.astimezone(BEIJING).date()


def _today() -> dt.date:
    return timezone.now().astimezone(BEIJING).date()


def _open_settlements(pairs: set[tuple[int, dt.date]]) -> dict[tuple[int, dt.date], int]:
    """The open settlement each (merchant, day)'s items join (两个语句): that day's, opened if need be; for a
    day already settled, the open settlement of today (a late item joins the next settlement, never lost).
    The rows are share-locked, so a settlement closing waits for the items joining it (and vice versa)."""
    today = _today()
    wanted = sorted(pairs | {(m, today) for m, _ in pairs})
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO merchants_settlement (merchant_id, day, payments, refunds, gross_fen, refunds_fen,"
            " fee_bps, fee_fen, net_fen, actor)"
            " SELECT m, d, 0, 0, 0, 0, 0, 0, 0, '' FROM unnest(%s::bigint[], %s::date[]) AS w(m, d)"
            " ON CONFLICT (merchant_id, day) DO NOTHING",
            [[w[0] for w in wanted], [w[1] for w in wanted]],
        )
        cur.execute(
            "SELECT s.id, s.merchant_id, s.day, s.settled_at IS NULL FROM merchants_settlement s"
            " JOIN unnest(%s::bigint[], %s::date[]) AS w(m, d) ON s.merchant_id = w.m AND s.day = w.d"
            " ORDER BY s.id FOR SHARE OF s",
            [[w[0] for w in wanted], [w[1] for w in wanted]],
        )
        rows = {(r[1], r[2]): (r[0], r[3]) for r in cur.fetchall()}
    out = {}
    for pair in pairs:
        sid, is_open = rows[pair]
        out[pair] = sid if is_open else rows[(pair[0], today)][0]
    return out


def _accepting(merchant: Merchant, means: str) -> None:
    if merchant.state != MerchantState.ACTIVE:
        raise DomainError(
            f"merchant {merchant.code} is {merchant.state}: it takes no payments",
            code="merchant_not_active",
            field="merchant",
        )
    if means not in merchant.accepted_means:
        raise DomainError(
            f"merchant {merchant.code} does not accept {means}", code="means_not_accepted", field="means"
        )


@transaction.atomic
def merchant_pay(
    *,
    merchant_code: str,
    amount_fen: int,
    payment_id: str,
    card_no: str | None = None,
    citizen_code: str | None = None,
    actor: str,
    at: dt.datetime | None = None,
) -> Payment:
    """Pay a merchant from the cardholder's online account (线上账户支付), the card named by its number or
    by a citizen code the merchant scanned (电子市民码支付). A retry with the same payment id returns the
    first payment and pays nothing again; a failed payment writes nothing."""
    if not payment_id or len(payment_id) > 80 or payment_id.startswith("tap:"):
        raise DomainError("a payment id of 1–80 characters is required", field="payment_id")
    if (card_no is None) == (citizen_code is None):
        raise DomainError("give a card number or a citizen code", field="card_no")
    means = Means.ACCOUNT if citizen_code is None else Means.CODE
    done = Payment.objects.select_related("merchant").filter(payment_id=payment_id).first()
    if done is not None:  # a retry: the first payment stands
        if done.merchant.code != merchant_code or done.amount_fen != amount_fen or done.means != means:
            raise Conflict(f"payment id {payment_id} was used for another payment", field="payment_id")
        return done
    merchant = _merchant(merchant_code)
    _accepting(merchant, means)
    at = at or timezone.now()
    if citizen_code is not None:
        try:
            card_no = citizen_code_verify(code=citizen_code, at=at)
        except CodeRefused as exc:
            raise DomainError(
                f"the citizen code is refused ({exc.code})", code="code_refused", field="citizen_code"
            ) from None
    posting = account_pay(
        card_no=card_no,
        amount_fen=amount_fen,
        payee=merchant.payable,
        idempotency_key=f"merchant-pay:{payment_id}",
        memo=f"{merchant.name} ({merchant.code})",
        actor=actor,
        at=at,
    )
    return _payment_book(
        merchant=merchant,
        means=means,
        payment_id=payment_id,
        card_no=card_no,
        amount_fen=amount_fen,
        posting=posting,
        at=at,
        actor=actor,
    )


@transaction.atomic
def merchant_pay_from(
    *,
    merchant_code: str,
    payer: LedgerAccount,
    means: str,
    payment_id: str,
    card_no: str,
    amount_fen: int,
    actor: str,
    at: dt.datetime | None = None,
) -> Payment:
    """Pay a merchant from another ledger account than the online account, e.g. a credit line's receivable
    (信用付, means ``credit``): the posting moves ``amount_fen`` from ``payer`` to the merchant's payable and
    the payment joins the day's settlement like any other. The caller checks the payer may pay (the credit
    limit); a retry with the same payment id returns the first payment."""
    if not payment_id or len(payment_id) > 80 or payment_id.startswith("tap:"):
        raise DomainError("a payment id of 1–80 characters is required", field="payment_id")
    done = Payment.objects.select_related("merchant").filter(payment_id=payment_id).first()
    if done is not None:
        if done.merchant.code != merchant_code or done.amount_fen != amount_fen or done.means != means:
            raise Conflict(f"payment id {payment_id} was used for another payment", field="payment_id")
        return done
    if amount_fen <= 0:
        raise DomainError("the amount must be positive", field="amount_fen")
    merchant = _merchant(merchant_code)
    _accepting(merchant, means)
    at = at or timezone.now()
    posting, _created = posting_write(
        kind=PostingKind.PAYMENT,
        key=f"merchant-pay:{payment_id}",
        legs=[(payer, -amount_fen), (merchant.payable, amount_fen)],
        memo=f"{merchant.name} ({merchant.code})",
        actor=actor,
        at=at,
    )
    return _payment_book(
        merchant=merchant,
        means=means,
        payment_id=payment_id,
        card_no=card_no,
        amount_fen=amount_fen,
        posting=posting,
        at=at,
        actor=actor,
    )


def _payment_book(
    *,
    merchant: Merchant,
    means: str,
    payment_id: str,
    card_no: str,
    amount_fen: int,
    posting: Posting,
    at: dt.datetime,
    actor: str,
) -> Payment:
    day = _beijing_day(at)
    payment = Payment.objects.create(
        merchant=merchant,
        means=means,
        payment_id=payment_id,
        card_no=card_no,
        amount_fen=amount_fen,
        at=at,
        day=day,
        posting=posting,
        settlement_id=_open_settlements({(merchant.pk, day)})[(merchant.pk, day)],
    )
    audit_record(
        action="merchant.pay",
        actor=actor,
        object_type="merchant_payment",
        object_id=payment_id,
        data={"merchant": merchant.code, "means": means, "card_no": card_no, "amount_fen": amount_fen},
    )
    return payment


# A citizen-code payment (fare medium 04) wrote no chip: it is booked once its batch's verification checked
# the code (``terminals.checks.code_check``), and never while a ``code_*`` flag holds it.
_UNBOOKED_TAPS_SQL = """
SELECT t.id, t.tapped_at, t.card_no, t.amount_fen, t.routing, t.issuer_tenant, l.merchant_id, t.card_scheme
FROM terminals_transaction t
JOIN terminals_terminal term ON term.terminal_id = t.terminal_id
JOIN merchants_merchantterminal l ON l.terminal_id = term.id
WHERE t.service = %s AND t.kind = 'purchase' AND t.amount_fen > 0 AND t.routing = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM merchants_payment p WHERE p.transaction_id = t.id)
  AND (t.card_scheme <> ALL(%s) OR (
        EXISTS (SELECT 1 FROM terminals_batch b WHERE b.id = t.batch_id AND b.verified_at IS NOT NULL)
        AND NOT EXISTS (SELECT 1 FROM terminals_reviewflag f WHERE f.transaction_id = t.id AND f.code = ANY(%s))))
ORDER BY t.id
"""


@transaction.atomic
def merchant_taps_book(*, actor: str) -> int:
    """Book the e-purse purchases uploaded by merchants' terminals as their payments (电子钱包消费入账):
    an own card's from the e-purse float, a roaming card's from its issuer's interop receivable (the
    issuer pays it through clearing). Whatever the merchant's state: the card was debited already.
    A roaming cardholder's citizen code scanned by the terminal (fare medium 04, 异地扫码支付) is booked
    the same way, as a payment by code, once the verification stage checked the code with its issuer's keys
    and spent its nonce (a code it flagged is never booked: it proves nothing); the issuer books it against
    its cardholder when its validation of the clearing record accepts it.
    Each tap once (its transaction id); returns how many were booked."""
    with connection.cursor() as cur:
        cur.execute(
            _UNBOOKED_TAPS_SQL,
            [MERCHANT_SERVICE, [Routing.OWN, Routing.ROAMING], sorted(ONLINE_MEDIA), sorted(CODE_FLAGS)],
        )
        rows = cur.fetchall()
    if not rows:
        return 0
    merchants = {
        m.pk: m for m in Merchant.objects.filter(pk__in={r[6] for r in rows}).select_related("payable")
    }
    purse_float = ledger_account_external(code="purse:float", kind=AccountKind.PURSE_FLOAT)
    receivables: dict[str, LedgerAccount] = {}
    settlement_of = _open_settlements({(r[6], _beijing_day(r[1])) for r in rows})
    payments = []
    for tx_id, tapped_at, card_no, amount, routing, issuer_tenant, merchant_id, scheme in rows:
        merchant = merchants[merchant_id]
        by_code = scheme in ONLINE_MEDIA
        if routing == Routing.ROAMING:
            if issuer_tenant not in receivables:
                receivables[issuer_tenant] = ledger_account_external(
                    code=f"interop:{issuer_tenant}", kind=AccountKind.INTEROP
                )
            source = receivables[issuer_tenant]
        elif by_code:
            # an own cardholder's code: no chip paid it, their online account does (the next run asks again
            # while it has no account or not enough in it)
            source = LedgerAccount.objects.filter(kind=AccountKind.HOLDER, card_no=card_no).first()
            if source is None:
                continue
        else:
            source = purse_float
        try:
            posting, _ = posting_write(
                kind=PostingKind.PAYMENT if by_code and routing != Routing.ROAMING else PostingKind.PURSE_PAY,
                key=f"merchant-tap:{tx_id}",
                legs=[(source, -amount), (merchant.payable, amount)],
                memo=f"{merchant.name} ({merchant.code}) {'code' if by_code else 'e-purse'} {card_no}",
                actor=actor,
                at=tapped_at,
                audit=False,
            )
        except DomainError:
            continue  # an own code payment the online account cannot pay yet
        payments.append(
            Payment(
                merchant=merchant,
                means=Means.CODE if by_code else Means.PURSE,
                payment_id=f"tap:{tx_id}",
                card_no=card_no,
                issuer_tenant=issuer_tenant if routing == Routing.ROAMING else "",
                amount_fen=amount,
                at=tapped_at,
                day=_beijing_day(tapped_at),
                transaction_id=tx_id,
                posting=posting,
                settlement_id=settlement_of[(merchant_id, _beijing_day(tapped_at))],
            )
        )
    if not payments:
        return 0
    Payment.objects.bulk_create(payments)
    audit_record(
        action="merchant.taps_book",
        actor=actor,
        object_type="merchant_payment",
        object_id=f"tap:{payments[0].transaction_id}..{payments[-1].transaction_id}",
        data={"taps": len(payments), "amount_fen": sum(p.amount_fen for p in payments)},
    )
    return len(payments)


def merchant_roaming_spent_book(records: list[dict], now: dt.datetime) -> int:
    """The issuer's side of its own cards' e-purse purchases at other cities' merchants (异地商户消费),
    booked when its validation accepts their clearing records: the e-purse float −a (the chip's money is
    spent) and the payable to the acquiring city ``interop:<acquirer>`` +a (paid through the clearing
    cycle's settlement, less the issuer's fee it earns there). One posting per record, key
    ``merchant-roaming:<record id>``: a record validated again is not booked again. A fixed number of
    statements whatever the number of records; returns how many were booked."""
    wanted = {f"merchant-roaming:{r['record_id']}": r for r in records if int(r["amount_fen"]) > 0}
    if not wanted:
        return 0
    done = set(
        Posting.objects.filter(idempotency_key__in=list(wanted)).values_list("idempotency_key", flat=True)
    )
    fresh = [(key, r) for key, r in sorted(wanted.items()) if key not in done]
    if not fresh:
        return 0
    purse_float = ledger_account_external(code="purse:float", kind=AccountKind.PURSE_FLOAT)
    payables: dict[str, LedgerAccount] = {}
    postings, legs = [], []
    for key, record in fresh:
        acquirer = record.get("acquirer") or record["record_id"].rsplit("-", 1)[0]
        if acquirer not in payables:
            payables[acquirer] = ledger_account_external(code=f"interop:{acquirer}", kind=AccountKind.INTEROP)
        amount = int(record["amount_fen"])
        postings.append(
            Posting(
                kind=PostingKind.PURSE_PAY,
                idempotency_key=key,
                at=dt.datetime.fromisoformat(record["tapped_at"]),
                amount_fen=amount,
                memo=f"e-purse {record['card_no']} at a merchant of {acquirer}",
                actor="interop",
            )
        )
        legs.append(((purse_float.pk, -amount), (payables[acquirer].pk, amount)))
    Posting.objects.bulk_create(postings)
    Leg.objects.bulk_create(
        Leg(posting_id=p.pk, account_id=account, amount_fen=amount)
        for p, pair in zip(postings, legs, strict=True)
        for account, amount in pair
    )
    moves: dict[int, int] = defaultdict(int)
    for pair in legs:
        for account, amount in pair:
            moves[account] += amount
    accounts_moved = sorted(moves)
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE accounts_ledgeraccount a SET balance_fen = a.balance_fen + m.delta"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS m(id, delta) WHERE a.id = m.id",
            [accounts_moved, [moves[a] for a in accounts_moved]],
        )
    audit_record(
        action="merchant.roaming_spent_book",
        actor="interop",
        object_type="clearing_record",
        object_id=f"{fresh[0][1]['record_id']}..{fresh[-1][1]['record_id']}",
        data={
            "records": len(fresh),
            "amount_fen": sum(p.amount_fen for p in postings),
            "acquirers": sorted(payables),
        },
    )
    return len(fresh)


INTERCHANGE_INCOME = (
    "fee:interchange"  # the issuer's share of its cards' merchant payments elsewhere (发卡方手续费)
)
INTERCHANGE_EXPENSE = "fee-expense:interchange"  # what an acquirer pays on roaming cards' payments


@transaction.atomic
def merchant_cycle_fees_book(
    manifest: dict[str, Any], details: list[dict[str, str]], now: dt.datetime
) -> Posting | None:
    """The fees a settled cycle netted (清算手续费) on the records of its reconciliation file given (the valid
    ones only, as netting summed them): ``citycard.tenants.settlement`` passes the records this ledger holds
    (a merchant-payment cycle's, a transit cycle's citizen-code rides). As issuer it earns the
    agreement's issuer fee on its cards' payments: its payable to each acquirer ``interop:<acquirer>`` −fee
    and ``fee:interchange`` +fee (it pays the acquirer the amount less that fee). As acquirer it pays the
    issuer's and the network's fees: its receivable from each issuer ``interop:<issuer>`` +fees and
    ``fee-expense:interchange`` −fees (it is paid the amount less them). One balanced posting a cycle, key
    ``interop-fees:<cycle>``: the booking run again books nothing again. None: no fee to book."""
    moves: dict[tuple[str, str], int] = defaultdict(int)
    for row in details:
        if row["status"] != "valid":
            continue
        issuer_fee, network_fee = int(row["issuer_fee_fen"]), int(row["network_fee_fen"])
        if row["role"] == "issuer":
            moves[(f"interop:{row['counterparty']}", AccountKind.INTEROP)] -= issuer_fee
            moves[(INTERCHANGE_INCOME, AccountKind.FEE_INCOME)] += issuer_fee
        else:
            moves[(f"interop:{row['counterparty']}", AccountKind.INTEROP)] += issuer_fee + network_fee
            moves[(INTERCHANGE_EXPENSE, AccountKind.FEE_EXPENSE)] -= issuer_fee + network_fee
    legs = [
        (ledger_account_external(code=code, kind=kind), amount)
        for (code, kind), amount in sorted(moves.items())
        if amount
    ]
    if not legs:
        return None
    posting, _created = posting_write(
        kind=PostingKind.SETTLEMENT,
        key=f"interop-fees:{manifest['cycle']}",
        legs=legs,
        memo=f"fees of clearing cycle {manifest['cycle']}",
        actor="interop",
        at=now,
    )
    return posting


# --- roaming payments the issuer rejected (拒付冲正) -----------------------------------------------------

CHARGEBACK_PREFIX = "chargeback:"  # a receivable from a merchant already paid a payment then rejected


def chargeback_account(merchant: Merchant) -> LedgerAccount:
    """``chargeback:<merchant code>``: what a merchant owes back (应收商户拒付款), a payment its settlement
    paid out that the issuer then rejected; negative while owed (docs/merchants.md, "Rejected roaming
    payments")."""
    return ledger_account_external(code=f"{CHARGEBACK_PREFIX}{merchant.code}", kind=AccountKind.MERCHANT)


def _record_tx_id(record_id: str, prefix: str) -> int | None:
    rest = record_id[len(prefix) :] if record_id.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


@transaction.atomic
def merchant_roaming_rejections_book(
    manifest: dict[str, Any], details: list[dict[str, str]], now: dt.datetime
) -> int:
    """``exchange.CYCLE_REJECTIONS_SINK``: reverse the roaming payments of this schema's merchants that the
    issuer rejected in a merchant-payment cycle (拒付: bad TAC, hotlisted card, code refused, no funds …),
    read from the cycle's reconciliation file (the acquirer's rejected rows whose record this schema sent).
    Each payment's receivable from the issuer ``interop:<issuer>`` booked at payment time is taken back in
    one balanced posting (key ``merchant-reject:<record id>``): while the payment's settlement is still open,
    from the merchant's payable (the settlement will not pay it: charged back, ``payable``); once settled,
    the merchant was paid already, so it becomes a receivable from the merchant ``chargeback:<code>`` for
    the finance office to recover (``receivable``). The payment is marked rejected with the issuer's reason.
    Taps not booked yet are booked first (``merchant_taps_book``), so none is left to book later. Idempotent:
    a payment marked rejected is not reversed again. Returns how many were reversed now."""
    tenant = connection.tenant
    prefix = f"{tenant.code}-"
    rejected: dict[int, dict[str, str]] = {}
    for row in details:
        if row.get("role") != "acquirer" or row.get("status") != "rejected":
            continue
        tx_id = _record_tx_id(row["record_id"], prefix)
        if tx_id is not None:
            rejected[tx_id] = row
    if not rejected:
        return 0
    known = set(
        Payment.objects.filter(transaction_id__in=list(rejected)).values_list("transaction_id", flat=True)
    )
    if len(known) < len(rejected):
        merchant_taps_book(actor="interop")
    payments = list(
        Payment.objects.select_for_update(of=("self",))
        .select_related("merchant__payable", "posting")
        .filter(transaction_id__in=list(rejected), rejected_at__isnull=True)
        .order_by("transaction_id")
    )
    receivables: dict[str, LedgerAccount] = {}
    reversed_fen = 0
    for payment in payments:
        row = rejected[payment.transaction_id]
        issuer = payment.issuer_tenant or row.get("counterparty") or ""
        if issuer not in receivables:
            receivables[issuer] = ledger_account_external(code=f"interop:{issuer}", kind=AccountKind.INTEROP)
        # the settlement row locked: a settlement closing meanwhile is waited for, then seen as settled
        settled = (
            Settlement.objects.select_for_update()
            .values_list("settled_at", flat=True)
            .get(pk=payment.settlement_id)
            is not None
        )
        charged = chargeback_account(payment.merchant) if settled else payment.merchant.payable
        posting, _ = posting_write(
            kind=PostingKind.REFUND,
            key=f"merchant-reject:{row['record_id']}",
            legs=[(charged, -payment.amount_fen), (receivables[issuer], payment.amount_fen)],
            memo=f"{payment.payment_id} rejected by {issuer} ({row.get('reason') or '?'})"[:200],
            actor="interop",
            at=now,
            reverses=payment.posting,
            audit=False,
        )
        payment.rejected_at = now
        payment.rejection_reason = (row.get("reason") or "")[:40]
        payment.charged_back_from = ChargebackFrom.RECEIVABLE if settled else ChargebackFrom.PAYABLE
        payment.rejection_posting = posting
        payment.save(
            update_fields=["rejected_at", "rejection_reason", "charged_back_from", "rejection_posting"]
        )
        reversed_fen += payment.amount_fen
    if payments:
        audit_record(
            action="merchant.roaming_rejections_book",
            actor="interop",
            object_type="clearing_cycle",
            object_id=str(manifest.get("cycle") or ""),
            data={
                "payments": [p.payment_id for p in payments],
                "amount_fen": reversed_fen,
                "from_receivable": sum(
                    1 for p in payments if p.charged_back_from == ChargebackFrom.RECEIVABLE
                ),
            },
        )
    return len(payments)


@transaction.atomic
def payment_refund(
    *, payment_id: str, refund_id: str, amount_fen: int, actor: str, at: dt.datetime | None = None
) -> Refund:
    """Refund a payment in full or in part (退款) to the payer's online account: the refunds of a payment
    never total more than it. Idempotent by refund id: a retry returns the first refund. An e-purse
    purchase is refunded to the online account of the card's holder (the chip is not written back);
    a roaming card's is refunded by its issuer, not here."""
    if type(amount_fen) is not int or amount_fen <= 0:
        raise DomainError("amount_fen must be a positive whole number of fen", field="amount_fen")
    if not refund_id or len(refund_id) > 80:
        raise DomainError("a refund id of 1–80 characters is required", field="refund_id")
    payment = (
        Payment.objects.select_for_update().select_related("merchant").filter(payment_id=payment_id).first()
    )
    if payment is None:
        raise NotFound(f"no payment {payment_id!r}", field="payment_id")
    done = Refund.objects.select_related("payment").filter(refund_id=refund_id).first()
    if done is not None:
        if done.payment_id != payment.pk or done.amount_fen != amount_fen:
            raise Conflict(f"refund id {refund_id} was used for another refund", field="refund_id")
        return done
    if payment.issuer_tenant:
        raise DomainError(
            "a roaming card's purchase is refunded by its issuer", code="roaming_refund", field="payment_id"
        )
    if payment.refunded_fen + amount_fen > payment.amount_fen:
        raise DomainError(
            f"refunds would total {payment.refunded_fen + amount_fen} fen,"
            f" more than the {payment.amount_fen} fen paid",
            code="over_refund",
            field="amount_fen",
        )
    at = at or timezone.now()
    payer = holder_account(payment.card_no)
    posting, _ = posting_write(
        kind=PostingKind.REFUND,
        key=f"merchant-refund:{refund_id}",
        legs=[(payment.merchant.payable, -amount_fen), (payer, amount_fen)],
        memo=f"refund of {payment.payment_id}",
        actor=actor,
        at=at,
        reverses=payment.posting,
    )
    day = _beijing_day(at)
    refund = Refund.objects.create(
        payment=payment,
        refund_id=refund_id,
        amount_fen=amount_fen,
        at=at,
        day=day,
        posting=posting,
        actor=actor,
        settlement_id=_open_settlements({(payment.merchant_id, day)})[(payment.merchant_id, day)],
    )
    payment.refunded_fen += amount_fen
    payment.save(update_fields=["refunded_fen"])
    audit_record(
        action="merchant.refund",
        actor=actor,
        object_type="merchant_payment",
        object_id=payment.payment_id,
        data={"refund_id": refund_id, "amount_fen": amount_fen, "refunded_fen": payment.refunded_fen},
    )
    return refund


# --- the earlier by-name payees (merchant:<name>) ------------------------------------------------------

LEGACY_PREFIX = "merchant:"
LEGACY_KEEP = "merchant:entitlement:"  # a department's entitlement sales: a party's account, not legacy


@transaction.atomic
def merchant_legacy_adopt(
    *, mapping: dict[str, str], actor: str, at: dt.datetime | None = None
) -> dict[str, list[str]]:
    """Adopt the balances of the earlier pay-a-merchant-by-name path (ledger accounts ``merchant:<name>``
    that are no merchant's payable) onto merchant parties: ``mapping`` names the merchant code for each old
    name. Each balance moves in one balanced posting (old account −b, the merchant's payable +b, key
    ``merchant-adopt:<name>``) and becomes a payment ``legacy:<name>`` (means ``account``) in the merchant's
    open settlement of today, so the next daily settlement pays it out net of the fee. Idempotent: an old
    account adopted before is reported ``already``; an unmapped one ``unmapped`` (nothing written for it),
    an empty one ``empty``. A name mapped to no merchant refuses the whole run (NotFound, nothing written).
    An old name that is an onboarded merchant's code is already that merchant's payable: not touched."""
    at = at or timezone.now()
    payables = Merchant.objects.values("payable_id")
    legacy = (
        LedgerAccount.objects.select_for_update()
        .filter(kind=AccountKind.MERCHANT, code__startswith=LEGACY_PREFIX)
        .exclude(pk__in=payables)
        .exclude(code__startswith=LEGACY_KEEP)
        .order_by("code")
    )
    result: dict[str, list[str]] = {"adopted": [], "already": [], "unmapped": [], "empty": []}
    for account in legacy:
        name = account.code[len(LEGACY_PREFIX) :]
        payment_id = f"legacy:{name}"[:80]
        if Payment.objects.filter(payment_id=payment_id).exists():
            result["already"].append(name)
            continue
        if account.balance_fen <= 0:
            result["empty"].append(name)
            continue
        code = mapping.get(name)
        if not code:
            result["unmapped"].append(name)
            continue
        merchant = _merchant(code)
        amount = account.balance_fen
        posting, _ = posting_write(
            kind=PostingKind.PAYMENT,
            key=f"merchant-adopt:{name}"[:120],
            legs=[(account, -amount), (merchant.payable, amount)],
            memo=f"{account.code} adopted by {merchant.code}",
            actor=actor,
            at=at,
        )
        _payment_book(
            merchant=merchant,
            means=Means.ACCOUNT,
            payment_id=payment_id,
            card_no="",
            amount_fen=amount,
            posting=posting,
            at=at,
            actor=actor,
        )
        result["adopted"].append(name)
    audit_record(
        action="merchant.legacy_adopt",
        actor=actor,
        object_type="ledger_account",
        object_id=LEGACY_PREFIX + "*",
        data={k: v for k, v in result.items()},
    )
    return result


# --- settlement -----------------------------------------------------------------------------------------


@transaction.atomic
def merchant_settle(*, merchant_code: str, day: dt.date, actor: str) -> Settlement:
    """Settle one merchant for one Beijing day that is over (日结算): its open settlement of that day —
    the day's payments and refunds, and the late ones of days settled before — summed, net of the fee
    (``bps_of`` of the net takings, half-up), paid to its settlement account. Once per (merchant, day): a
    second call returns the first settlement. A day with nothing settles at zero (no posting), and an item
    of that day booked later joins the next open settlement."""
    if day >= _today():
        raise DomainError(f"{day} is not over yet in Beijing", code="day_not_over", field="day")
    merchant = _merchant(merchant_code, lock=True)
    sid = _open_settlements({(merchant.pk, day)})[(merchant.pk, day)]
    settlement = Settlement.objects.select_for_update().get(merchant=merchant, day=day)
    if settlement.settled_at is not None:
        return settlement
    assert sid == settlement.pk
    _settlements_close([settlement.pk], day=day, actor=actor)
    return Settlement.objects.select_related("merchant", "posting").get(pk=settlement.pk)


def merchants_settle_day(*, day: dt.date, actor: str) -> list[Settlement]:
    """Book the uploaded taps, then settle every merchant for ``day`` at once (日结算批处理), as
    ``merchant_settle`` would one by one, in a fixed number of statements whatever the number of merchants
    and payments: a zero settlement opened for each merchant not closed that has none, the day's open
    settlements locked, their payments and refunds summed by two GROUP BYs, the fees by ``bps_of``, one
    posting per merchant with something to pay (bulk), every balance moved by one UPDATE. Nothing is
    written per payment: each joined its settlement when it was booked. Returns the day's settlements."""
    if day >= _today():
        raise DomainError(f"{day} is not over yet in Beijing", code="day_not_over", field="day")
    merchant_taps_book(actor=actor)
    _settle_all(day=day, actor=actor)
    return list(
        Settlement.objects.filter(day=day, settled_at__isnull=False)
        .select_related("merchant", "posting")
        .order_by("merchant__code")
    )


@transaction.atomic
def _settle_all(*, day: dt.date, actor: str) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO merchants_settlement (merchant_id, day, payments, refunds, gross_fen, refunds_fen,"
            " fee_bps, fee_fen, net_fen, actor) SELECT m.id, %s, 0, 0, 0, 0, 0, 0, 0, '' FROM merchants_merchant m"
            " WHERE m.state <> 'closed' ON CONFLICT (merchant_id, day) DO NOTHING",
            [day],
        )
        cur.execute(
            "SELECT id FROM merchants_settlement WHERE day = %s AND settled_at IS NULL ORDER BY id FOR UPDATE",
            [day],
        )
        ids = [r[0] for r in cur.fetchall()]
    _settlements_close(ids, day=day, actor=actor)


def _settlements_close(ids: list[int], *, day: dt.date, actor: str) -> None:
    """Close these open settlements of ``day`` (locked by the caller): totals, fees, postings, balances."""
    if not ids:
        return
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT s.id, s.merchant_id, m.fee_bps, m.payable_id, m.code FROM merchants_settlement s"
            " JOIN merchants_merchant m ON m.id = s.merchant_id WHERE s.id = ANY(%s)",
            [ids],
        )
        of = {r[0]: r[1:] for r in cur.fetchall()}
        cur.execute(
            # a payment charged back before its settlement closed (拒付) is not paid out
            "SELECT settlement_id, count(*), sum(amount_fen) FROM merchants_payment"
            " WHERE settlement_id = ANY(%s) AND rejected_at IS NULL GROUP BY settlement_id",
            [ids],
        )
        paid = {r[0]: (r[1], int(r[2])) for r in cur.fetchall()}
        cur.execute(
            "SELECT settlement_id, count(*), sum(amount_fen) FROM merchants_refund"
            " WHERE settlement_id = ANY(%s) GROUP BY settlement_id",
            [ids],
        )
        refunded = {r[0]: (r[1], int(r[2])) for r in cur.fetchall()}
    fee_income = ledger_account_external(code=FEE_INCOME, kind=AccountKind.FEE_INCOME)
    clearing = ledger_account_external(code=SETTLEMENT_CLEARING, kind=AccountKind.SETTLEMENT)
    rows = []  # settlement id, payments, refunds, gross, refunded, fee bps, fee, net
    postings: list[tuple[int, Posting, list[tuple[int, int]]]] = []
    for sid in sorted(ids):
        _merchant_id, bps, payable_id, code = of[sid]
        n_pay, gross = paid.get(sid, (0, 0))
        n_ref, back = refunded.get(sid, (0, 0))
        takings = gross - back
        fee = bps_of(takings, bps)
        rows.append((sid, n_pay, n_ref, gross, back, bps, fee, takings - fee))
        legs = [(payable_id, -takings), (fee_income.pk, fee), (clearing.pk, takings - fee)]
        legs = [(account, amount) for account, amount in legs if amount != 0]
        if legs:
            posting = Posting(
                kind=PostingKind.SETTLEMENT,
                idempotency_key=f"merchant-settle:{code}:{day.isoformat()}",
                at=now,
                amount_fen=sum(a for _, a in legs if a > 0),
                memo=f"{code} settlement {day}",
                actor=actor,
            )
            postings.append((sid, posting, legs))
    Posting.objects.bulk_create([p for _, p, _ in postings])
    Leg.objects.bulk_create(
        Leg(posting_id=p.pk, account_id=account, amount_fen=amount)
        for _, p, legs in postings
        for account, amount in legs
    )
    moves: dict[int, int] = defaultdict(int)
    for _, _, legs in postings:
        for account, amount in legs:
            moves[account] += amount
    posting_of = {sid: p.pk for sid, p, _ in postings}
    columns = list(zip(*rows, strict=True))
    with connection.cursor() as cur:
        accounts_moved = sorted(moves)
        cur.execute(
            "UPDATE accounts_ledgeraccount a SET balance_fen = a.balance_fen + m.delta"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS m(id, delta) WHERE a.id = m.id",
            [accounts_moved, [moves[a] for a in accounts_moved]],
        )
        cur.execute(
            "UPDATE merchants_settlement s SET payments = v.np, refunds = v.nr, gross_fen = v.g,"
            " refunds_fen = v.r, fee_bps = v.bps, fee_fen = v.f, net_fen = v.n, posting_id = v.p,"
            " settled_at = %s, actor = %s"
            " FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::bigint[], %s::bigint[], %s::int[], %s::bigint[],"
            " %s::bigint[], %s::bigint[]) AS v(id, np, nr, g, r, bps, f, n, p) WHERE s.id = v.id",
            [now, actor, *[list(c) for c in columns], [posting_of.get(sid) for sid in columns[0]]],
        )
    audit_record(
        action="merchant.settle",
        actor=actor,
        object_type="settlement_day",
        object_id=day.isoformat(),
        data={
            "merchants": len(rows),
            "postings": len(postings),
            "gross_fen": sum(r[3] for r in rows),
            "refunds_fen": sum(r[4] for r in rows),
            "fee_fen": sum(r[6] for r in rows),
            "net_fen": sum(r[7] for r in rows),
            **({"merchant": of[rows[0][0]][3]} if len(rows) == 1 else {}),
        },
    )


# --- the payout file (代付文件) -------------------------------------------------------------------------

PAYOUT_FORMAT = "CCPAYOUT1"


@dataclass(frozen=True)
class PayoutFile:
    name: str
    text: str
    count: int
    total_fen: int
    digest: str  # SHA-256 (hex) of the header and detail lines, as in the trailer


def payout_file_build(*, day: dt.date, actor: str) -> PayoutFile:
    """The bank batch-transfer file (批量代付文件) of a day's settlement run: one detail line per merchant
    settled with something to pay (net above zero), its settlement account in clear, the amount in integer
    fen and the settlement's posting key as the transfer reference; a header and a trailer carry the count
    and the total, the trailer the SHA-256 of the lines before it (docs/merchants.md, "The payout file").
    The same settled day gives the same bytes; every build is audited (it holds account numbers)."""
    if day >= _today():
        raise DomainError(f"{day} is not over yet in Beijing", code="day_not_over", field="day")
    tenant = connection.tenant
    settled = list(
        Settlement.objects.filter(day=day, settled_at__isnull=False, net_fen__gt=0)
        .select_related("merchant")
        .order_by("merchant__code")
    )
    if not Settlement.objects.filter(day=day, settled_at__isnull=False).exists():
        raise NotFound(
            gettext("no settlement run for %(day)s (citycard merchants settle --day)") % {"day": day},
            field="day",
        )
    stamp = day.strftime("%Y%m%d")
    total = sum(s.net_fen for s in settled)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    sealer = Sealer()
    writer.writerow(("H", PAYOUT_FORMAT, tenant.code, stamp, len(settled), total))
    for n, s in enumerate(settled, start=1):
        writer.writerow(
            (
                "D",
                f"{n:06d}",
                s.merchant.code,
                s.merchant.name,
                s.merchant.settlement_bank,
                merchant_settlement_account(merchant=s.merchant, sealer=sealer),
                s.net_fen,
                f"merchant-settle:{s.merchant.code}:{day.isoformat()}",
            )
        )
    body = out.getvalue()
    digest = hashlib.sha256(body.encode()).hexdigest()
    text = body + f"T,{len(settled)},{total},{digest}\n"
    audit_record(
        action="merchant.payout_file",
        actor=actor,
        object_type="settlement_day",
        object_id=day.isoformat(),
        data={"count": len(settled), "total_fen": total, "sha256": digest},
    )
    return PayoutFile(f"payout-{tenant.code}-{stamp}.csv", text, len(settled), total, digest)
