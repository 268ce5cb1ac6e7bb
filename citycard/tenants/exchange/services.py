"""A tenant's interop actions, run in the tenant's own schema (``tenant_context``).

* ``outbox_put_clearing_records`` — the ingestion's ``ROAMING_SINK``: the roaming taps of one upload become
  one signed ``clearing.records`` envelope in the outbox (two queries whatever the number of taps).
* ``outbox_put`` — any other message leaving the tenant (disputes, reconciliation confirmations).
* ``outbox_mark`` — interop records what it did with collected messages.
* ``inbox_deliver`` — interop hands the tenant a message signed by the platform.
* ``clearing_validate`` — the issuer validates clearing records on its own data and answers signed (and,
  for a merchant-payment cycle, books the accepted ones on its ledger through ``ISSUER_SPEND_SINK``).
* ``inbox_deliver`` of a merchant-payment cycle's reconciliation manifest reverses the acquirer's payments
  the issuer rejected through ``CYCLE_REJECTIONS_SINK``; then, of any settled cycle's manifest, it books the
  cycle's fees and settlement on the recipient's ledger through ``CYCLE_SETTLEMENT_SINK``.
* ``clearing_validate`` of a merchant-payment cycle books its cardholders' citizen-code payments at other
  cities' merchants through ``ISSUER_CODE_PAYMENT_SINK`` (one neither their credit line nor their online
  account can pay is rejected, ``no_funds``).
* ``reconciliation_check`` — the tenant checks a reconciliation file against its own outbox, totals first.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.envelopes import PLATFORM, EnvelopeRefused, envelope_open, envelope_seal
from citycard.platform.errors import DomainError
from citycard.platform.keys import tenant_card_tac_master
from citycard.platform.models import Tenant, TenantKey
from citycard.tenants.cards.selectors import card_facts, hotlist_listings, hotlist_payload, hotlist_version
from citycard.tenants.exchange.models import InboxMessage, IssuerRejection, OutboxMessage, OutboxState
from citycard.tenants.exchange.selectors import reconciliation_file
from citycard.tenants.terminals.checks import (
    CODE_REPLAYED,
    ONLINE_MEDIA,
    code_issuers,
    code_nonces_claim,
    code_verdicts,
)
from citycard.tenants.terminals.journeys import journey_due, journey_taps, journeys_of_transactions
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.crypto import Algorithm, issuer_purchase_tac_ok
from citycard.terminal_kit.hotlist import grace_minutes, listing_at

# Rejection reasons of issuer validation (returned to the acquirer as exceptions).
REASON_CARD_UNKNOWN = "card_unknown"
REASON_HOTLISTED = "hotlisted"
REASON_TAC_INVALID = "tac_invalid"
REASON_COUNTER_REPLAYED = "counter_replayed"
REASON_NOT_OURS = "not_our_card"
REASON_NO_FUNDS = "no_funds"  # a citizen-code merchant payment neither the credit line nor the account pays


def _tenant() -> Tenant:
    tenant = getattr(connection, "tenant", None)
    if tenant is None or tenant.schema_name == "public":
        raise DomainError(gettext("exchange services run in a tenant's schema"), code="no_tenant")
    return tenant


def record_id_for(*, schema: str, source_tx_id: int) -> str:
    """A clearing record's id: the schema that stored the tap and the tap's transaction id."""
    return f"{schema}-{source_tx_id}"


# --- outbox -------------------------------------------------------------------------------------------


def outbox_put(
    *,
    kind: str,
    message_id: str,
    body: dict[str, Any],
    actor: str,
    record_count: int = 0,
    now: dt.datetime | None = None,
    signing_key: TenantKey | None = None,
) -> OutboxMessage:
    """Seal ``body`` with this tenant's key (``signing_key``: its current signing key row, when the
    caller read it already) and put it in the outbox (once per message id)."""
    tenant = _tenant()
    now = now or timezone.now()
    document = envelope_seal(
        sender=tenant,
        recipient=PLATFORM,
        kind=kind,
        message_id=message_id,
        body=body,
        now=now,
        key=signing_key,
    )
    message = OutboxMessage(
        message_id=message_id,
        kind=kind,
        envelope=document,
        body_sha256=document["payload"]["body_sha256"],
        record_count=record_count,
        created_at=now,
        created_by=actor[:150],
    )
    OutboxMessage.objects.bulk_create([message], ignore_conflicts=True)
    return message


# The fields of a journey's taps the issuer checks (each tap's TAC and card counter).
_JOURNEY_TAP_FIELDS = (
    "source_tx_id",
    "tapped_at",
    "card_counter",
    "amount_fen",
    "terminal_id",
    "terminal_no",
    "terminal_seq",
    "algorithm",
    "tac",
)


def _journey_record(journey: Any, taps: dict[int, dict[str, Any]], common: dict[str, Any]) -> dict[str, Any]:
    """One clearing record for a whole gated journey (一次行程一条清算记录): the exit's identity (its
    transaction id names the record), the journey's fare (entry and exit together), origin to destination,
    and both taps with what the issuer checks of each."""
    exit_tap = taps[journey.exit_tx_id]
    parts = [("entry", journey.entry_tx_id), ("exit", journey.exit_tx_id)]
    record = {
        **common,
        **exit_tap,
        "amount_fen": sum(taps[tx]["amount_fen"] for _, tx in parts if tx is not None),
        "journey": {
            "key": journey.key,
            "status": journey.status,
            "origin": journey.origin,
            "destination": journey.destination,
            "line": journey.line,
            "entered_at": journey.entered_at.astimezone(BEIJING).isoformat() if journey.entered_at else None,
            "exited_at": exit_tap["tapped_at"],
        },
        "taps": [
            {"role": role, **{k: taps[tx][k] for k in _JOURNEY_TAP_FIELDS}}
            for role, tx in parts
            if tx is not None
        ],
    }
    entry = taps.get(journey.entry_tx_id) if journey.entry_tx_id else None
    if entry is not None:
        record["balance_before_fen"] = entry["balance_before_fen"]
    return record


def _half_record(journey: Any, record: dict[str, Any]) -> dict[str, Any]:
    """One clearing record for one tap of a released half journey (半程行程): the tap's own identity and
    the money it took, the journey as far as it is known (for an exit, its origin is what the card's entry
    record said) and ``half``: ``released`` (the tap cleared at the time-out) or ``late`` (the other half,
    arriving after the release)."""
    role = "entry" if record["source_tx_id"] == journey.entry_tx_id else "exit"
    return {
        **record,
        "journey": {
            "key": journey.key,
            "status": journey.status,
            "half": "released" if record["source_tx_id"] == journey.released_tx_id else "late",
            "origin": journey.origin,
            "destination": journey.destination,
            "line": journey.line,
            "entered_at": journey.entered_at.astimezone(BEIJING).isoformat() if journey.entered_at else None,
            "exited_at": journey.exited_at.astimezone(BEIJING).isoformat() if journey.exited_at else None,
        },
        "taps": [{"role": role, **{k: record[k] for k in _JOURNEY_TAP_FIELDS}}],
    }


def _clearing_items(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records to clear: a bus tap as it is; the metro gate taps as journeys — one record per whole
    journey (entry and exit, or an exit without entry), whichever of its taps this hand-off brings; a gate
    tap whose journey is not whole yet is held (its other tap brings the journey). One query for a batch
    of bus taps none, two for gate taps."""
    gated = [r["source_tx_id"] for r in records if r.get("service") != "bus"]
    journeys = journeys_of_transactions(gated) if gated else {}
    if not journeys:
        return [dict(r) for r in records]
    items: list[dict[str, Any]] = []
    due: dict[int, tuple[Any, dict[str, Any]]] = {}
    for record in records:
        journey = journeys.get(record["source_tx_id"])
        if journey is None:
            items.append(dict(record))
        elif journey.released_at is not None:
            # a half journey released after its time-out: each of its taps clears alone, with what it took
            # (nothing too: the issuer still sees and claims that tap's card counter; no money moves)
            items.append(_half_record(journey, record))
        elif journey_due(journey):
            due.setdefault(journey.pk, (journey, record))
    taps = journey_taps([j for j, _ in due.values()])
    for journey, record in due.values():
        common = {
            k: record[k] for k in ("acquirer", "issuer", "network", "card_no", "service", "card_scheme")
        }
        items.append(_journey_record(journey, taps, common))
    return items


def outbox_put_clearing_records(
    records: list[dict[str, Any]],
    actor: str,
    *,
    now: dt.datetime | None = None,
    signing_key: TenantKey | None = None,
) -> OutboxMessage | None:
    """ROAMING_SINK: the clearing records of roaming taps, as one signed envelope in the outbox.

    Each record gets its ``record_id`` (schema + transaction id); the message id is derived from the
    record ids, so handing the same taps over again is the same message (idempotent). A metro journey is
    one record, named by its exit tap, sent when its last tap arrives (``_clearing_items``): the same
    record id whichever tap came last or however often either is sent."""
    if not records:
        return None
    schema = _tenant().code
    body_records = []
    for item in _clearing_items(records):
        item["record_id"] = record_id_for(schema=schema, source_tx_id=item["source_tx_id"])
        body_records.append(item)
    if not body_records:
        return None  # only gate taps of journeys not yet whole
    body_records.sort(key=lambda r: r["source_tx_id"])
    digest = hashlib.sha256("|".join(r["record_id"] for r in body_records).encode()).hexdigest()
    return outbox_put(
        kind="clearing.records",
        message_id=f"clr-{schema}-{digest[:32]}",
        body={"records": body_records},
        actor=actor,
        record_count=len(body_records),
        now=now,
        signing_key=signing_key,
    )


@transaction.atomic
def outbox_mark(
    *, message_id: str, state: str, result: dict[str, Any], now: dt.datetime | None = None
) -> None:
    """Interop's answer to a collected message (collected, or refused with the reason)."""
    if state not in (OutboxState.COLLECTED, OutboxState.REFUSED):
        raise DomainError(
            gettext("outbox state %(state)r is not an answer") % {"state": state},
            code="invalid",
            field="state",
        )
    OutboxMessage.objects.filter(message_id=message_id).update(
        state=state, result=result, collected_at=now or timezone.now()
    )


# --- inbox --------------------------------------------------------------------------------------------


@transaction.atomic
def inbox_deliver(*, document: dict[str, Any], now: dt.datetime | None = None) -> InboxMessage:
    """Take a message the platform signed for this tenant. Same id and content → the stored message;
    same id, other content → conflict; a transmission seen before (same nonce) → replayed."""
    tenant = _tenant()
    opened = envelope_open(document, recipient=tenant.code, now=now)
    if opened.sender.code != PLATFORM:
        raise EnvelopeRefused(
            gettext("a tenant inbox takes messages from the platform, not %(sender)s")
            % {"sender": opened.sender.code},
            code="unknown_sender",
        )
    existing = InboxMessage.objects.filter(message_id=opened.message_id).first()
    if existing is not None:
        if existing.body_sha256 != opened.body_sha256:
            raise EnvelopeRefused(
                gettext("message %(message)s was already delivered with different content")
                % {"message": opened.message_id},
                code="conflict",
            )
        if existing.nonce == opened.nonce and existing.envelope != document:
            raise EnvelopeRefused(
                gettext("message %(message)s: nonce reused") % {"message": opened.message_id}, code="replayed"
            )
        return existing
    message = InboxMessage.objects.create(
        message_id=opened.message_id,
        kind=opened.kind,
        sender=opened.sender.code,
        envelope=document,
        body_sha256=opened.body_sha256,
        nonce=opened.nonce,
        received_at=now or timezone.now(),
    )
    body = opened.body
    if (
        CYCLE_REJECTIONS_SINK is not None
        and opened.kind == "clearing.reconciliation"
        and body.get("service") == MERCHANT_CYCLE_SERVICE
    ):
        # the issuer's rejections of this schema's own merchant payments, reversed (拒付冲正)
        _manifest, text = reconciliation_file(message_id=message.message_id)
        CYCLE_REJECTIONS_SINK(body, reconciliation_parse(text)[1], message.received_at)
    if CYCLE_SETTLEMENT_SINK is not None and opened.kind == "clearing.reconciliation":
        # every recipient books its own rows: a county reading its city's file too
        CYCLE_SETTLEMENT_SINK(message.message_id, opened.body, message.received_at)
    return message


# --- issuer validation ----------------------------------------------------------------------------------


def _local_date_time(tapped_at: str) -> tuple[bytes, bytes]:
    """The tap's Asia/Shanghai date (YYYYMMDD) and time (HHMMSS) as BCD bytes; a time written in +08:00
    (what terminals send) is read by position, any other offset is converted."""
    if len(tapped_at) == 25 and tapped_at.endswith("+08:00") and tapped_at[10] == "T":
        digits = (
            tapped_at[0:4]
            + tapped_at[5:7]
            + tapped_at[8:10]
            + tapped_at[11:13]
            + tapped_at[14:16]
            + tapped_at[17:19]
        )
        if digits.isdigit():
            dt.datetime.fromisoformat(tapped_at)  # still a real date and time
            raw = bytes.fromhex(digits)
            return raw[:4], raw[4:]
    local = dt.datetime.fromisoformat(tapped_at).astimezone(BEIJING)
    return bytes.fromhex(local.strftime("%Y%m%d")), bytes.fromhex(local.strftime("%H%M%S"))


def _tac_ok(record: dict[str, Any], master: bytes) -> bool:
    try:
        terminal_no = bytes.fromhex(record.get("terminal_no") or "")
        algorithm = Algorithm(int(record.get("algorithm", Algorithm.SM4)))
        tac = bytes.fromhex(record["tac"])
        date, time = _local_date_time(record["tapped_at"])
        amount, seq = int(record["amount_fen"]), int(record["terminal_seq"])
        head, tail = amount.to_bytes(4, "big"), terminal_no + seq.to_bytes(4, "big") + date + time
    except (ValueError, KeyError, TypeError, OverflowError):
        return False
    if len(terminal_no) != 6 or len(tac) != 4:
        return False
    # A purchase (06) or a composite purchase (09): the record does not say which.
    return issuer_purchase_tac_ok(master, record["card_no"], algorithm, tac, amount_type_free=(head, tail))


# What issuer validation checks, in order (listed in every validation answer). A citizen-code ride (fare
# medium 04) has no chip: its code is checked instead of the TAC and its nonce instead of the card counter
# (``code``, listed when the request has one).
CHECKS_RUN = ["issuer", "card_known", "hotlist", "tac", "counter"]
CODE_CHECK = "code"

# ``ISSUER_CODE_FARE_SINK(records, now)`` takes the citizen-code rides of its own cardholders in other cities
# that validation accepted, for this city to book against the cardholder (wired by citycard.tenants.credit,
# above exchange); idempotent by record id. None: nothing is booked.
IssuerCodeFareSink = Callable[[list[dict[str, Any]], dt.datetime], None]
ISSUER_CODE_FARE_SINK: IssuerCodeFareSink | None = None


def _is_code_ride(record: dict[str, Any]) -> bool:
    return record.get("card_scheme") in ONLINE_MEDIA


def _codes_check(
    records: list[dict[str, Any]], tenant: Tenant, now: dt.datetime
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """The rejections of citizen-code rides whose code does not prove them — signed by this city for the
    record's card, the ride within the code's validity — or whose code was spent before, here or by
    another record (``terminals.checks``, the same as the acquirer's verification stage), and the rides
    accepted. The nonce is claimed as ``record:<record id>``: validating again gives the same answer."""
    if not records:
        return [], []
    moments = [dt.datetime.fromisoformat(r["tapped_at"]) for r in records]
    verdicts = code_verdicts(
        [
            (r.get("code") or "", r["card_no"], tenant.code, at)
            for r, at in zip(records, moments, strict=True)
        ],
        code_issuers(tenant_codes=[tenant.code], moments=moments),
    )
    rejections, proven = [], []
    for record, verdict in zip(records, verdicts, strict=True):
        if isinstance(verdict, tuple):
            reason, detail = verdict
            message = detail.get("message") or f"the citizen code does not prove the ride ({reason})"
            rejections.append({"record_id": record["record_id"], "reason": reason, "message": message})
        else:
            proven.append((record, verdict))
    replayed = code_nonces_claim(
        [(p["tenant"], p["nonce"], f"record:{r['record_id']}", r["card_no"]) for r, p in proven], at=now
    )
    for i, first in sorted(replayed.items()):
        record = proven[i][0]
        rejections.append(
            {
                "record_id": record["record_id"],
                "reason": CODE_REPLAYED,
                "message": f"the citizen code of card {record['card_no']} was spent before by {first}",
            }
        )
    refused = {r["record_id"] for r in rejections}
    return rejections, [r for r, _ in proven if r["record_id"] not in refused]


# ``ISSUER_SPEND_SINK(records, now)`` books on the issuer's ledger its own cards' payments at another city's
# merchants, the records of a ``merchant`` cycle its validation accepted (wired by citycard.tenants.merchants,
# above exchange); None: nothing is booked. It must be idempotent by record id: a record is validated again
# with the same answer.
IssuerSpendSink = Callable[[list[dict[str, Any]], dt.datetime], None]
ISSUER_SPEND_SINK: IssuerSpendSink | None = None
MERCHANT_CYCLE_SERVICE = "merchant"

# ``ISSUER_CODE_PAYMENT_SINK(records, now)`` books against its cardholders the citizen-code payments at another
# city's merchants that its validation accepted (the records of a ``merchant`` cycle whose code proved them):
# onto the credit line or from the online account, payable to the acquirer (wired by citycard.tenants.credit,
# above exchange). It returns the rejections of the records it could not book (``no_funds``): they are
# rejected to the acquirer like any other. Idempotent by record id: a record booked before is accepted again.
IssuerCodePaymentSink = Callable[[list[dict[str, Any]], dt.datetime], list[dict[str, str]]]
ISSUER_CODE_PAYMENT_SINK: IssuerCodePaymentSink | None = None

# ``CYCLE_REJECTIONS_SINK(manifest, details, now)`` reverses on an acquirer's ledger the merchant payments of its
# own records that the issuer rejected, from a merchant-payment cycle's reconciliation file (wired by
# citycard.tenants.merchants); every schema reads its own records (a county's, in its city's file).
CycleRejectionsSink = Callable[[dict[str, Any], list[dict[str, str]], dt.datetime], Any]
CYCLE_REJECTIONS_SINK: CycleRejectionsSink | None = None

# ``CYCLE_SETTLEMENT_SINK(message_id, manifest, now)`` books on the recipient's ledger a settled cycle: the fees
# and the settlement of the records its ledger holds, from the reconciliation file the signed manifest names
# (wired by citycard.tenants.settlement, docs/merchants.md "The cycle's settlement on each ledger"); called
# once, when the manifest first arrives, in every recipient's schema (a county's too).
CycleSettlementSink = Callable[[str, dict[str, Any], dt.datetime], Any]
CYCLE_SETTLEMENT_SINK: CycleSettlementSink | None = None


@transaction.atomic
def clearing_validate(*, document: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """The issuer's validation of clearing records (清分校验), on its own data, answered signed.

    The request is a ``clearing.validate`` envelope from the platform with ``records`` (each: record_id,
    card_no, card_counter, amount_fen, tapped_at, terminal_no, terminal_seq, algorithm, tac) and
    ``hotlist_grace_minutes`` (a record may carry its own: the grace of the agreement version of its business
    date). Checks in this order, the first failing one is the reason: the card is ours; card known
    (``cards.card_facts``) and not hotlisted at the tap (``terminal_kit.hotlist.hotlisted`` with the record's
    grace, over ``cards.hotlist_listings``; one query each for the request); TAC valid under our key;
    counter not cleared before by another record. Re-validating a record gives the same answer (its counter
    is remembered with its id). The rejections are kept in the issuer's schema (``IssuerRejection``, one row
    per cycle and record, the latest answer) for its dashboard.
    Returns a ``clearing.validation`` envelope listing the rejections and the checks run.
    """
    tenant = _tenant()
    now = now or timezone.now()
    opened = envelope_open(document, recipient=tenant.code, now=now, kinds=("clearing.validate",))
    if opened.sender.code != PLATFORM:
        raise EnvelopeRefused(gettext("validation requests come from the platform"), code="unknown_sender")
    records = sorted(opened.body.get("records") or [], key=lambda r: r["record_id"])
    grace = grace_minutes(opened.body.get("hotlist_grace_minutes", 0))
    master = tenant_card_tac_master(tenant=tenant)
    card_nos = {r["card_no"] for r in records}
    facts = card_facts(card_nos=card_nos, at=now)
    listings = hotlist_listings(card_nos=card_nos)
    prefixes = {tenant.division_code, *tenant.counties.values_list("division_code", flat=True)}
    rejections: list[dict[str, str]] = []
    candidates: list[dict[str, Any]] = []
    for record in records:
        own = record.get("hotlist_grace_minutes")  # a late record's date may have its own grace
        grace_of = grace if own is None else grace_minutes(own)
        code_ride = _is_code_ride(record)
        reason, message = _first_failure(
            record, tenant, prefixes, facts, listings, grace_of, None if code_ride else master
        )
        if reason:
            rejections.append({"record_id": record["record_id"], "reason": reason, "message": message})
        else:
            candidates.append(record)
    code_rides = [r for r in candidates if _is_code_ride(r)]
    rejections.extend(_counters_claim([r for r in candidates if not _is_code_ride(r)], now))
    code_rejections, code_accepted = _codes_check(code_rides, tenant, now)
    rejections.extend(code_rejections)
    if (
        ISSUER_CODE_PAYMENT_SINK is not None
        and code_accepted
        and opened.body.get("service") == MERCHANT_CYCLE_SERVICE  # a merchant's payments, not rides
    ):
        rejections.extend(ISSUER_CODE_PAYMENT_SINK(code_accepted, now))
    rejections.sort(key=lambda r: r["record_id"])
    _rejections_keep(opened.body.get("cycle") or "", opened.message_id, records, rejections, now)
    refused = {r["record_id"] for r in rejections}
    if ISSUER_SPEND_SINK is not None and opened.body.get("service") == MERCHANT_CYCLE_SERVICE:
        ISSUER_SPEND_SINK([r for r in records if r["record_id"] not in refused and not _is_code_ride(r)], now)
    if (
        ISSUER_CODE_FARE_SINK is not None
        and code_accepted
        and opened.body.get("service") != MERCHANT_CYCLE_SERVICE  # rides, not a merchant's payments
    ):
        ISSUER_CODE_FARE_SINK(code_accepted, now)
    body = {
        "request": opened.message_id,
        "cycle": opened.body.get("cycle"),
        "validated": len(records),
        "rejected": rejections,
        "checks": list(CHECKS_RUN) + ([CODE_CHECK] if any(_is_code_ride(r) for r in records) else []),
    }
    return envelope_seal(
        sender=tenant,
        recipient=PLATFORM,
        kind="clearing.validation",
        message_id=f"{opened.message_id}.ans",
        body=body,
        now=now,
    )


def _first_failure(
    record, tenant: Tenant, prefixes, facts, listings, grace, master: bytes | None
) -> tuple[str, str]:
    """The first failing check of a record; ``master`` None: no TAC to check (a citizen-code ride)."""
    card_no = record["card_no"]
    if card_no[:6] not in prefixes:
        return REASON_NOT_OURS, f"card {card_no} is not issued by {tenant.code}"
    card = facts.get(card_no)
    if card is None:
        return REASON_CARD_UNKNOWN, f"card {card_no} is not known to the issuer"
    tapped_at = dt.datetime.fromisoformat(record["tapped_at"])
    listing = listing_at(listings.get(card_no, ()), at=tapped_at, grace=grace)
    if listing is not None:
        return REASON_HOTLISTED, (
            f"card {card_no} was hotlisted at {listing.listed_at.isoformat()}"
            f" ({listing.reason or 'no reason'}), before the tap beyond the grace period"
        )
    for tap in _taps_of(record) if master is not None else ():
        if not _tac_ok(tap, master):
            return (
                REASON_TAC_INVALID,
                f"the TAC of card {card_no} counter {tap['card_counter']} does not verify",
            )
    return "", ""


def _taps_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The card transactions a record stands for: a tap, or each tap of a metro journey (entry and exit,
    each with its own TAC and card counter)."""
    taps = record.get("taps")
    if not taps:
        return [record]
    return [{**tap, "card_no": record["card_no"]} for tap in taps]


def _rejections_keep(
    cycle: str,
    request: str,
    records: list[dict[str, Any]],
    rejections: list[dict[str, str]],
    now: dt.datetime,
) -> None:
    """Keep what this answer rejects (``IssuerRejection``), in the answer's transaction: the records it
    validated lose any earlier answer of the cycle, then its rejections are written — validating the same
    records again leaves one row each, with the latest answer. Two statements whatever the size."""
    by_id = {r["record_id"]: r for r in records}
    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM exchange_issuerrejection WHERE cycle = %s AND record_id = ANY(%s::text[])",
            [cycle, list(by_id)],
        )
    rows = [
        IssuerRejection(
            cycle=cycle,
            record_id=item["record_id"],
            request=request,
            card_no=by_id[item["record_id"]]["card_no"],
            # The platform names the acquirer (the participant that sent the record); a request without it
            # still has the acquiring schema in the record id (``record_id_for``).
            acquirer=by_id[item["record_id"]].get("acquirer") or item["record_id"].rsplit("-", 1)[0],
            amount_fen=int(by_id[item["record_id"]]["amount_fen"]),
            reason=item["reason"],
            message=item["message"],
            answered_at=now,
        )
        for item in rejections
    ]
    # An upsert: two workers answering the same request side by side (a redelivered task) wait for each
    # other on the unique index and leave one row, where a plain insert would fail the second.
    IssuerRejection.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["cycle", "record_id"],
        update_fields=["request", "card_no", "acquirer", "amount_fen", "reason", "message", "answered_at"],
    )


def _counters_claim(records: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, str]]:
    """Remember each record's (card, counter); a counter already claimed by another record is a replay.

    One statement inserts what is new and returns it; only the records it did not insert (already claimed,
    by themselves on a re-run or by another record) are looked up for their owner."""
    if not records:
        return []
    # A journey's record claims the counters of both its taps.
    claims = [(r["record_id"], tap) for r in records for tap in _taps_of(r)]
    cards = [tap["card_no"] for _, tap in claims]
    counters = [int(tap["card_counter"]) for _, tap in claims]
    ids = [record_id for record_id, _ in claims]
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO exchange_seencounter (card_no, card_counter, record_id, first_seen_at)"
            " SELECT c, n, r, %s FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS s(c, n, r)"
            " ORDER BY r, n ON CONFLICT (card_no, card_counter) DO NOTHING"
            " RETURNING card_no, card_counter, record_id",
            [now, cards, counters, ids],
        )
        inserted = {(row[0], row[1], row[2]) for row in cur.fetchall()}
        rest = [i for i, claim in enumerate(zip(cards, counters, ids, strict=True)) if claim not in inserted]
        owners: dict[str, str] = {}
        if rest:
            cur.execute(
                "SELECT s.r, k.record_id FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS s(c, n, r)"
                " JOIN exchange_seencounter k ON k.card_no = s.c AND k.card_counter = s.n WHERE k.record_id <> s.r",
                [[cards[i] for i in rest], [counters[i] for i in rest], [ids[i] for i in rest]],
            )
            owners = dict(cur.fetchall())
    return [
        {
            "record_id": r["record_id"],
            "reason": REASON_COUNTER_REPLAYED,
            "message": f"card {r['card_no']} counter {r['card_counter']} was already cleared"
            f" by {owners[r['record_id']]}",
        }
        for r in records
        if r["record_id"] in owners
    ]


# --- disputes and reconciliation ------------------------------------------------------------------------


def dispute_send(*, record_id: str, reason: str, actor: str, now: dt.datetime | None = None) -> OutboxMessage:
    """Dispute one cleared record (争议): a signed ``clearing.dispute`` message in the outbox."""
    tenant = _tenant()
    if not reason.strip():
        raise DomainError(gettext("a dispute needs a reason"), code="invalid", field="reason")
    return outbox_put(
        kind="clearing.dispute",
        message_id=f"dsp-{tenant.code}-{record_id}",
        body={"record_id": record_id, "reason": reason.strip()[:300]},
        actor=actor,
        now=now,
    )


def reconciliation_parse(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The totals row and the detail rows of a reconciliation file (format: docs/clearing.md)."""
    totals: dict[str, str] = {}
    details: list[dict[str, str]] = []
    section, header = "", None
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if row[0].startswith("#"):
            section, header = row[0].lstrip("# ").strip(), None
            continue
        if header is None:
            header = row
            continue
        item = dict(zip(header, row, strict=True))
        if section == "totals":
            totals = item
        elif section == "details":
            details.append(item)
    return totals, details


@transaction.atomic
def reconciliation_check(*, message_id: str, actor: str, now: dt.datetime | None = None) -> OutboxMessage:
    """Check a reconciliation file from the inbox the way the national medical platform does: totals
    first (对总账) — the records this tenant sent that the file lists, counted and summed from its own
    outbox, against the file's totals; only on a mismatch record by record (对明细账). The answer (a
    ``clearing.reconciliation`` confirmation or mismatch, with the differing records) goes to the outbox.
    The file is the one the signed manifest in the inbox names, fetched and checked by its digest."""
    tenant = _tenant()
    body, text = reconciliation_file(message_id=message_id)
    totals, details = reconciliation_parse(text)
    if len(details) != body["detail_rows"]:
        raise DomainError(
            gettext("reconciliation file %(message_id)s lists %(details)s records, its manifest %(body)s")
            % {"message_id": message_id, "details": len(details), "body": body["detail_rows"]},
            code="digest_mismatch",
        )
    # A city's file also lists its counties' taps; each schema checks the records it sent itself.
    acquired = [
        d for d in details if d["role"] == "acquirer" and d["status"] == "valid" and d["kind"] == "tap"
    ]
    mine = [d for d in acquired if d["record_id"].startswith(f"{tenant.code}-")]
    own = _own_sent(tenant, [d["record_id"] for d in mine])
    own_count = sum(1 for d in mine if d["record_id"] in own)
    own_amount = sum(own[d["record_id"]] for d in mine if d["record_id"] in own)
    if len(mine) == len(acquired) and all(d["kind"] == "tap" for d in details if d["role"] == "acquirer"):
        file_count, file_amount = int(totals["acquired_records"]), int(totals["acquired_amount_fen"])
    else:
        file_count, file_amount = len(mine), sum(int(d["amount_fen"]) for d in mine)
    mismatched: list[dict[str, Any]] = []
    if (own_count, own_amount) != (file_count, file_amount) or len(mine) != own_count:
        for d in mine:
            if own.get(d["record_id"]) != int(d["amount_fen"]):
                mismatched.append(
                    {
                        "record_id": d["record_id"],
                        "file_fen": int(d["amount_fen"]),
                        "own_fen": own.get(d["record_id"]),
                    }
                )
        if not mismatched:
            mismatched.append({"totals": {"file": [file_count, file_amount], "own": [own_count, own_amount]}})
    answer = {
        "cycle": body["cycle"],
        "file_sha256": body["sha256"],
        "result": "mismatch" if mismatched else "confirmed",
        "scope": tenant.code,
        "totals": {"acquired_records": own_count, "acquired_amount_fen": own_amount},
        "mismatched": mismatched,
    }
    return outbox_put(
        kind="clearing.reconciliation",
        message_id=f"rec-{tenant.code}-{body['cycle']}-{body['sha256'][:16]}",
        body=answer,
        actor=actor,
        now=now,
    )


def _own_sent(tenant: Tenant, record_ids: Iterable[str]) -> dict[str, int]:
    """Amount per record id of the clearing records this tenant (or its counties' schemas) sent."""
    wanted = set(record_ids)
    found: dict[str, int] = {}
    for message in OutboxMessage.objects.filter(kind="clearing.records").only("envelope"):
        for record in message.envelope["payload"]["body"]["records"]:
            if record["record_id"] in wanted:
                found[record["record_id"]] = int(record["amount_fen"])
    return found


# --- hotlist --------------------------------------------------------------------------------------------


def hotlist_send(*, actor: str, now: dt.datetime | None = None) -> OutboxMessage | None:
    """This city's hotlist for the network (``hotlist.update``): the delta since the version the platform
    applied last, or the full list the first time (or when the platform asks for it). None if unchanged."""
    tenant = _tenant()
    version = hotlist_version()
    if OutboxMessage.objects.filter(kind="hotlist.update", state=OutboxState.PENDING).exists():
        return None  # the platform has not taken the previous one yet
    last = (
        OutboxMessage.objects.filter(kind="hotlist.update", state=OutboxState.COLLECTED)
        .order_by("-id")
        .first()
    )
    applied = last.result.get("version") if last is not None and last.result.get("applied") else None
    if applied == version:
        return None
    payload = hotlist_payload(since=applied)
    suffix = "full" if "cards" in payload else f"d{applied}"
    return outbox_put(
        kind="hotlist.update",
        message_id=f"hot-{tenant.code}-{version}-{suffix}",
        body=payload,
        actor=actor,
        now=now,
    )
