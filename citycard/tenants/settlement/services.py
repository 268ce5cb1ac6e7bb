"""Booking a settled clearing cycle on this tenant's ledger (清算资金结算入账), from what it received.

When the platform settles a cycle, each participant (and each county whose taps its city's file lists) gets
the signed manifest of its reconciliation file in its inbox (``exchange.inbox_deliver``, which hands it to
``cycle_settlement_on_delivery``). From that file alone — never another schema — the tenant books:

1. the records of the cycle its ledger holds: a roaming card's e-purse purchase at one of its merchants
   (the acquirer's receivable ``interop:<issuer>``, key ``merchant-tap:<transaction id>``), its own card's
   purchase at another city's merchant (the issuer's payable ``interop:<acquirer>``, key
   ``merchant-roaming:<record id>``) and its cardholder's citizen-code ride in another city (the issuer's
   payable, key ``fare-online:roam:<record id>`` or ``credit-fare:roam:<record id>``), each with any
   posting that reverses it. Transit e-purse taps are on no tenant's ledger (the chip paid the fare and
   the city's transit revenue is not booked here), so a transit cycle books only its code rides;
2. the cycle's fees on those records (``merchants.services.merchant_cycle_fees_book``, key
   ``interop-fees:<cycle>``): the issuer's interchange earned, the acquirer's fees paid;
3. the settlement (key ``interop-settle:<cycle>``): per counterparty its interop account moved by what
   the cycle settled of those records — the issuer pays amount − issuer fee, the acquirer is paid amount −
   both fees — against the city's account at the settlement bank ``bank:interop-settlement``, whose leg is
   minus the participant's net position over those records (money in is a debit).

A county books only its own rows of its city's file (the records its terminals sent, ``<county>-<tx>``):
its merchants' receivables, fees and settlement land on the county's ledger; the city books the rest.

Whatever the file and the ledger disagree on is not settled but kept as a ``SettlementDifference`` with its
reason for a clerk. One booking a cycle per schema: the manifest delivered again, or ``citycard settlement
book`` run again, books nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError, NotFound
from citycard.tenants.accounts.models import AccountKind, Leg, Posting, PostingKind
from citycard.tenants.accounts.services import ledger_account_external, posting_write
from citycard.tenants.credit.models import RoamingFare
from citycard.tenants.credit.services import ONLINE_FARE_KEY, ROAMING_PAYMENT_KEY
from citycard.tenants.exchange.models import InboxMessage
from citycard.tenants.exchange.selectors import reconciliation_file
from citycard.tenants.exchange.services import MERCHANT_CYCLE_SERVICE, reconciliation_parse
from citycard.tenants.merchants.services import (
    INTERCHANGE_EXPENSE,
    INTERCHANGE_INCOME,
    merchant_cycle_fees_book,
    merchant_taps_book,
)
from citycard.tenants.settlement.models import CycleSettlement, DifferenceReason, SettlementDifference

log = logging.getLogger(__name__)

SETTLEMENT_BANK = "bank:interop-settlement"  # the city's account at the settlement bank (清算结算账户)
SETTLE_KEY = "interop-settle:"


# --- which rows of a file are this ledger's, and how it booked them -------------------------------------


def record_origin(row: dict[str, str]) -> str:
    """The schema that sent a record: the prefix of its id (``<schema>-<transaction id>``); an
    adjustment's (``adj-<record id>``) is its record's."""
    return (row.get("adjusts") or row["record_id"]).rsplit("-", 1)[0]


def row_is_mine(row: dict[str, str], *, code: str, participant: str) -> bool:
    """Whether a row of ``participant``'s file is on this schema's (``code``) ledger: as acquirer, the
    records this schema's terminals sent (a city's file lists its counties' too); as issuer, the file's own
    (counties issue no cards: their city validates and books its cards)."""
    if row["role"] == "issuer":
        return participant == code
    return record_origin(row) == code


# The posting keys by which this ledger books a clearing record (one key builder per booking; a new
# booking of a record adds its builder here). A posting that reverses one of them counts with it.
RecordKeys = Callable[[dict[str, str]], list[str]]


def _acquirer_keys(row: dict[str, str]) -> list[str]:
    if row["role"] != "acquirer":
        return []
    return [f"merchant-tap:{row['record_id'].rsplit('-', 1)[1]}"]


def _issuer_keys(row: dict[str, str]) -> list[str]:
    if row["role"] != "issuer":
        return []
    rid = row["record_id"]
    return [
        f"merchant-roaming:{rid}",
        f"{ROAMING_PAYMENT_KEY}{rid}",
        f"{ONLINE_FARE_KEY}roam:{rid}",
        f"credit-fare:roam:{rid}",
    ]


RECORD_KEYS: list[RecordKeys] = [_acquirer_keys, _issuer_keys]


def _ledger_amounts(rows: list[dict[str, str]]) -> tuple[dict[str, int], set[str]]:
    """Per record id, what the ledger holds of it on ``interop:<counterparty>`` (+: owed to the
    counterparty), summed over its postings and the postings reversing them; and the record ids with a
    posting at all. Three queries whatever the number of rows."""
    wanted: dict[str, str] = {}
    for row in rows:
        for build in RECORD_KEYS:
            for key in build(row):
                wanted[key] = row["record_id"]
    if not wanted:
        return {}, set()
    record_of: dict[int, str] = {
        pk: wanted[key]
        for pk, key in Posting.objects.filter(idempotency_key__in=list(wanted)).values_list(
            "pk", "idempotency_key"
        )
    }
    if not record_of:
        return {}, set()
    for pk, reverses in Posting.objects.filter(reverses_id__in=list(record_of)).values_list(
        "pk", "reverses_id"
    ):
        record_of[pk] = record_of[reverses]
    counterparty = {row["record_id"]: f"interop:{row['counterparty']}" for row in rows}
    held: dict[str, int] = defaultdict(int)
    legs = Leg.objects.filter(posting_id__in=list(record_of), account__kind=AccountKind.INTEROP).values_list(
        "posting_id", "account__code", "amount_fen"
    )
    for posting_id, code, amount in legs:
        record_id = record_of[posting_id]
        if code == counterparty[record_id]:
            held[record_id] += amount
    return dict(held), set(record_of.values())


# --- what a row settles ---------------------------------------------------------------------------------


def _file_fen(row: dict[str, str]) -> int:
    """The record as the ledger holds it on the interop account: the issuer's payable +a, the acquirer's
    receivable −a."""
    amount = int(row["amount_fen"])
    return amount if row["role"] == "issuer" else -amount


def _settles_fen(row: dict[str, str]) -> int:
    """What the cycle's settlement moves on the interop account for the record (the fees already booked
    against it): the issuer pays a − issuer fee (−), the acquirer is paid a − both fees (+)."""
    amount, issuer_fee, network_fee = (
        int(row["amount_fen"]),
        int(row["issuer_fee_fen"]),
        int(row["network_fee_fen"]),
    )
    if row["role"] == "issuer":
        return -(amount - issuer_fee)
    return amount - issuer_fee - network_fee


def _fees_fen(row: dict[str, str]) -> int:
    issuer_fee, network_fee = int(row["issuer_fee_fen"]), int(row["network_fee_fen"])
    return issuer_fee if row["role"] == "issuer" else -(issuer_fee + network_fee)


@dataclass(frozen=True)
class Sorted:
    settled: list[dict[str, str]]
    differences: list[tuple[dict[str, str], int, str]]  # row, ledger fen, reason


def rows_sort(
    rows: list[dict[str, str]], *, service: str, held: dict[str, int], booked: set[str], expected: set[str]
) -> Sorted:
    """Which of this ledger's rows the settlement moves, and which are differences (with the reason).

    A valid record the ledger holds as the file says is settled; one it holds with another amount is
    settled (the bank moves what the file says) and kept as a difference, the rest of it left on the
    interop account. A valid record the ledger should hold and does not (every record of a merchant-payment
    cycle; a citizen-code ride this issuer accepted, ``expected``) is a difference, not settled; an
    accepted dispute's adjustment too (no ledger books one). A rejected record still on the ledger is a
    difference. Transit e-purse taps are on no ledger: neither settled nor a difference."""
    settled: list[dict[str, str]] = []
    differences: list[tuple[dict[str, str], int, str]] = []
    for row in rows:
        rid, ledger = row["record_id"], held.get(row["record_id"], 0)
        if row["status"] != "valid":
            if ledger:
                differences.append((row, ledger, DifferenceReason.REJECTED_BOOKED))
            continue
        if row.get("adjusts"):
            if rid in booked and ledger == _file_fen(row):
                settled.append(row)
            else:
                differences.append((row, ledger, DifferenceReason.ADJUSTMENT))
            continue
        if rid in booked:
            settled.append(row)
            if ledger != _file_fen(row):
                differences.append((row, ledger, DifferenceReason.AMOUNT))
        elif service == MERCHANT_CYCLE_SERVICE or rid in expected:
            differences.append((row, ledger, DifferenceReason.NOT_BOOKED))
    return Sorted(settled, differences)


def _expected_code_rides(rows: list[dict[str, str]]) -> set[str]:
    """The issuer rows of citizen-code rides this city accepted (``RoamingFare``): on its ledger once booked."""
    ids = [r["record_id"] for r in rows if r["role"] == "issuer"]
    if not ids:
        return set()
    return set(RoamingFare.objects.filter(record_id__in=ids).values_list("record_id", flat=True))


# --- booking ---------------------------------------------------------------------------------------------


TRANSIT_CYCLE_SERVICE = "transit"


def _nothing_to_book(service: str) -> bool:
    """Whether this ledger holds nothing of a cycle of ``service``: a transit cycle holds only its
    cardholders' citizen-code rides in other cities — none taken ever, nothing to read the file for (a
    national transit cycle's 300 files are not parsed for nothing); a medical cycle's fund shares are
    on no tenant's ledger (docs/medical.md)."""
    if service == MERCHANT_CYCLE_SERVICE:
        return False
    return service != TRANSIT_CYCLE_SERVICE or not RoamingFare.objects.exists()


def _tenant_code() -> str:
    tenant = getattr(connection, "tenant", None)
    if tenant is None or tenant.schema_name == "public":
        raise DomainError(gettext("settlement services run in a tenant's schema"), code="no_tenant")
    return tenant.code


@transaction.atomic
def cycle_settlement_book(
    *, message_id: str, actor: str, now: dt.datetime | None = None
) -> CycleSettlement | None:
    """Book the settlement of the cycle whose reconciliation manifest ``message_id`` is in the inbox
    (module docstring): the merchant taps still unbooked first (an acquirer's receivables), then the
    cycle's fees and one settlement posting on the records this ledger holds, the differences kept.
    Once a cycle: a cycle booked before returns its booking. None: a cycle of a service this ledger books
    nothing of (a transit cycle in a city whose cardholders took no citizen-code ride elsewhere)."""
    code = _tenant_code()
    now = now or timezone.now()
    message = InboxMessage.objects.filter(message_id=message_id, kind="clearing.reconciliation").first()
    if message is None:
        raise NotFound(
            gettext("no reconciliation file %(message_id)r in the inbox") % {"message_id": message_id},
            field="message_id",
        )
    label, service, participant = (
        message.body["cycle"],
        message.body.get("service", ""),
        message.body["participant"],
    )
    done = CycleSettlement.objects.filter(cycle=label).first()
    if done is not None:
        differences_settle_late(actor=actor, now=now)
        return done
    if _nothing_to_book(service):
        return None
    manifest, text = reconciliation_file(message_id=message_id)
    _totals, details = reconciliation_parse(text)
    rows = [row for row in details if row_is_mine(row, code=code, participant=participant)]
    if service == MERCHANT_CYCLE_SERVICE and any(r["role"] == "acquirer" for r in rows):
        merchant_taps_book(actor=actor)  # a purchase uploaded but not booked yet is booked before settling
    held, booked = _ledger_amounts(rows)
    result = rows_sort(rows, service=service, held=held, booked=booked, expected=_expected_code_rides(rows))
    merchant_cycle_fees_book(manifest, result.settled, now)
    moves: dict[str, int] = defaultdict(int)
    for row in result.settled:
        moves[row["counterparty"]] += _settles_fen(row)
    settled_fen = sum(moves.values())
    legs = [
        (ledger_account_external(code=f"interop:{counterparty}", kind=AccountKind.INTEROP), amount)
        for counterparty, amount in sorted(moves.items())
        if amount
    ]
    posting = None
    if legs:
        if settled_fen:  # owed both ways in equal sums, nothing reaches the bank
            legs.append((ledger_account_external(code=SETTLEMENT_BANK, kind=AccountKind.BANK), -settled_fen))
        posting, _created = posting_write(
            kind=PostingKind.SETTLEMENT,
            key=f"{SETTLE_KEY}{label}",
            legs=legs,
            memo=f"settlement of clearing cycle {label}",
            actor=actor,
            at=now,
        )
    settlement = CycleSettlement.objects.create(
        cycle=label,
        service=service,
        participant=participant,
        message_id=message_id,
        file_sha256=manifest["sha256"],
        file_net_fen=int(manifest.get("totals", {}).get("net_fen", 0)),
        records=len(result.settled),
        settled_fen=settled_fen,
        fees_fen=sum(_fees_fen(row) for row in result.settled),
        differences=len(result.differences),
        posting=posting,
        booked_at=now,
        actor=actor[:150],
    )
    SettlementDifference.objects.bulk_create(
        SettlementDifference(
            settlement=settlement,
            record_id=row["record_id"],
            kind=row["kind"],
            role=row["role"],
            counterparty=row["counterparty"],
            status=row["status"],
            file_fen=_file_fen(row) if row["status"] == "valid" else 0,
            ledger_fen=ledger,
            issuer_fee_fen=int(row["issuer_fee_fen"]),
            network_fee_fen=int(row["network_fee_fen"]),
            reason=reason,
        )
        for row, ledger, reason in result.differences
    )
    audit_record(
        action="settlement.cycle_book",
        actor=actor,
        object_type="cycle",
        object_id=label,
        data={
            "participant": participant,
            "records": settlement.records,
            "settled_fen": settled_fen,
            "fees_fen": settlement.fees_fen,
            "file_net_fen": settlement.file_net_fen,
            "differences": {
                reason: sum(1 for _r, _l, why in result.differences if why == reason)
                for reason in sorted({why for _r, _l, why in result.differences})
            },
        },
    )
    differences_settle_late(actor=actor, now=now)
    return settlement


@transaction.atomic
def differences_settle_late(*, actor: str, now: dt.datetime | None = None) -> list[SettlementDifference]:
    """Settle the records of cycles settled before that were not on the ledger then and are now, as their
    file says (a citizen-code fare charged to its cardholder after the cycle settled, a purchase booked
    late): one posting each, key ``interop-settle-late:<record id>``, with the record's fee and its
    settlement — the issuer's payable −a, interchange income +issuer fee, the settlement bank +(a − issuer
    fee); the acquirer's receivable +a, fee expense −(both fees), the settlement bank −(a − both fees) —
    and the difference resolved, naming the posting. Run by every cycle's booking (and its rerun). A
    record still not on the ledger, or with another amount, stays open."""
    now = now or timezone.now()
    waiting = list(
        SettlementDifference.objects.select_for_update(of=("self",))
        .select_related("settlement")
        .filter(resolved_at__isnull=True, reason=DifferenceReason.NOT_BOOKED)
        .order_by("id")
    )
    if not waiting:
        return []
    rows = [{"record_id": d.record_id, "role": d.role, "counterparty": d.counterparty} for d in waiting]
    held, booked = _ledger_amounts(rows)
    settled = []
    for difference in waiting:
        rid = difference.record_id
        if rid not in booked or held.get(rid, 0) != difference.file_fen:
            continue
        amount, issuer_fee, network_fee = (
            abs(difference.file_fen),
            difference.issuer_fee_fen,
            difference.network_fee_fen,
        )
        interop = ledger_account_external(code=f"interop:{difference.counterparty}", kind=AccountKind.INTEROP)
        bank = ledger_account_external(code=SETTLEMENT_BANK, kind=AccountKind.BANK)
        if difference.role == "issuer":
            fee = (ledger_account_external(code=INTERCHANGE_INCOME, kind=AccountKind.FEE_INCOME), issuer_fee)
            legs = [(interop, -amount), fee, (bank, amount - issuer_fee)]
            moved, fees = -(amount - issuer_fee), issuer_fee
        else:
            fee = (
                ledger_account_external(code=INTERCHANGE_EXPENSE, kind=AccountKind.FEE_EXPENSE),
                -(issuer_fee + network_fee),
            )
            legs = [(interop, amount), fee, (bank, -(amount - issuer_fee - network_fee))]
            moved, fees = amount - issuer_fee - network_fee, -(issuer_fee + network_fee)
        posting, _created = posting_write(
            kind=PostingKind.SETTLEMENT,
            key=f"interop-settle-late:{rid}"[:120],
            legs=[(account, fen) for account, fen in legs if fen],
            memo=f"settlement of {rid} of clearing cycle {difference.settlement.cycle}, booked late",
            actor=actor,
            at=now,
        )
        difference.posting, difference.resolved_at, difference.resolved_by = posting, now, actor[:150]
        difference.note = f"settled late: posting {posting.pk}"
        difference.save(update_fields=["posting", "resolved_at", "resolved_by", "note"])
        CycleSettlement.objects.filter(pk=difference.settlement_id).update(
            records=F("records") + 1, settled_fen=F("settled_fen") + moved, fees_fen=F("fees_fen") + fees
        )
        settled.append(difference)
    return settled


def cycle_settlement_on_delivery(message_id: str, manifest: dict[str, Any], now: dt.datetime) -> None:
    """``exchange.CYCLE_SETTLEMENT_SINK``: a reconciliation manifest just delivered to this schema's inbox
    is booked at once (``cycle_settlement_book``). A refusal (the file not available, a ledger refusal)
    leaves the delivery and the cycle's settlement as they are — nothing of the booking is written — and
    is logged; ``citycard settlement book`` books it later."""
    if _nothing_to_book(manifest.get("service", "")):
        return  # one query at most: a national transit cycle's 300 deliveries stay cheap
    try:
        with transaction.atomic():
            cycle_settlement_book(message_id=message_id, actor="interop", now=now)
    except DomainError as exc:
        log.warning("settlement of %s not booked: %s", manifest.get("cycle"), exc)


def cycle_settlements_book(*, actor: str, cycle: str | None = None) -> list[CycleSettlement]:
    """Book every reconciliation manifest in the inbox not booked yet (or only ``cycle``'s), oldest first;
    those booked before are returned as they are. A clerk's rerun (``citycard settlement book``)."""
    messages = InboxMessage.objects.filter(kind="clearing.reconciliation").order_by("id")
    found = []
    for message in messages:
        if cycle is not None and message.body.get("cycle") != cycle:
            continue
        found.append(message.message_id)
    if cycle is not None and not found:
        raise NotFound(
            gettext("no reconciliation file of cycle %(cycle)s in the inbox") % {"cycle": cycle},
            field="cycle",
        )
    out = []
    for message_id in found:
        booked = cycle_settlement_book(message_id=message_id, actor=actor)
        if booked is not None:
            out.append(booked)
    return out


@transaction.atomic
def settlement_difference_resolve(*, difference_id: int, note: str, actor: str) -> SettlementDifference:
    """A clerk closes a difference (差错处理) with a note saying what was done about it (nothing moves on the
    ledger here: the note names the posting or the correction made). Once: a resolved one is refused."""
    if not (note or "").strip():
        raise DomainError(gettext("a resolution needs a note"), field="note")
    difference = SettlementDifference.objects.select_for_update().filter(pk=difference_id).first()
    if difference is None:
        raise NotFound(gettext("no settlement difference %(id)s") % {"id": difference_id}, field="id")
    if difference.resolved_at is not None:
        raise DomainError(
            gettext("settlement difference %(id)s is resolved already") % {"id": difference_id},
            code="resolved",
            field="id",
        )
    difference.resolved_at, difference.resolved_by, difference.note = (
        timezone.now(),
        actor[:150],
        note.strip()[:300],
    )
    difference.save(update_fields=["resolved_at", "resolved_by", "note"])
    audit_record(
        action="settlement.difference_resolve",
        actor=actor,
        object_type="settlement_difference",
        object_id=difference.pk,
        data={"record_id": difference.record_id, "reason": difference.reason, "note": difference.note},
    )
    return difference
