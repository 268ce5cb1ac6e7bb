"""Interop actions (public schema). docs/clearing.md tells the whole story; in short:

* ``agreement_set``, ``agreement_version_add`` (in ``agreements``) — a network's roaming agreement for a
  service and its dated versions; a record is priced and cleared by the version in force on its business date.
* ``message_receive`` — one envelope from a tenant: checked, deduplicated (same id + body → the earlier
  result; other body → conflict), replays and bad envelopes refused and logged.
* ``outbox_collect`` — read one tenant's outbox (through ``citycard.tenants.exchange`` in its schema),
  take each message, answer it in the outbox.
* ``cycle_close`` → ``cycle_validate`` → ``cycle_net`` → ``cycle_settle``: one transaction each; a step
  that already happened returns what it did, so every step can be re-run after a crash.
* ``cycles_resume_claim`` — the cycles left between steps (a worker died with their task) for the sweep
  to send again.
* ``dispute_resolve`` — an accepted dispute becomes an adjustment record in the next open cycle.

Tenants are reached only through ``citycard.tenants.exchange`` services run in their schema.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import zlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.interop.agreements import (
    agreement_get,
    agreement_set,
    agreement_version_add,
    business_date_of,
    cycle_window,
    fee_fen,
    version_in_force,
)
from citycard.interop.agreements import next_date as _next_date
from citycard.interop.hotlist import hotlist_update_receive
from citycard.interop.models import (
    AgreementVersion,
    BilateralPosition,
    ClearingCycle,
    ClearingRecord,
    CyclePeriod,
    CycleState,
    Dispute,
    DisputeState,
    IssuerValidation,
    Journal,
    MessageRefusal,
    NetPosition,
    Posting,
    ReceivedMessage,
    ReconciliationFile,
    RecordKind,
    RecordStatus,
    RoamingAgreement,
    SeenNonce,
    Service,
    SettlementInstruction,
)
from citycard.platform.audit.services import audit_record
from citycard.platform.envelopes import PLATFORM, EnvelopeRefused, Opened, envelope_open, envelope_seal
from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.platform.models import Tenant
from citycard.platform.selectors import networks_shared
from citycard.tenants.exchange import selectors as exchange_selectors
from citycard.tenants.exchange import services as exchange
from citycard.tenants.medical import services as medical

__all__ = [
    "agreement_get",
    "agreement_set",
    "agreement_version_add",
    "business_date_of",
    "cycle_window",
    "fee_fen",
]

log = logging.getLogger(__name__)
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
VALIDATION_CHUNK = 5000
TRANSIT_SERVICES = frozenset({"bus", "metro", "ferry", "tram", "coach", "bike", "taxi", "rail"})


# --- cycles: which one a moment belongs to --------------------------------------------------------------


def _cycle(agreement: RoamingAgreement, day: dt.date, *, lock: bool = False) -> ClearingCycle:
    opens_at, cut_off_at = cycle_window(agreement, day)
    cycle, _ = ClearingCycle.objects.get_or_create(
        agreement=agreement, business_date=day, defaults={"opens_at": opens_at, "cut_off_at": cut_off_at}
    )
    if lock:
        # A share lock: records of several senders join the open cycle at once (collections in parallel),
        # while closing (FOR UPDATE) waits for them and they for it, so none joins a closed cycle.
        with connection.cursor() as cur:
            cur.execute("SELECT 1 FROM interop_clearingcycle WHERE id = %s FOR SHARE", [cycle.pk])
        cycle.refresh_from_db()
    return cycle


def _open_cycle_from(agreement: RoamingAgreement, day: dt.date) -> ClearingCycle:
    """The cycle of ``day`` if it is still open, else the next open one (late records move forward;
    a closed cycle never reopens)."""
    while True:
        cycle = _cycle(agreement, day, lock=True)
        if cycle.state == CycleState.OPEN:
            return cycle
        day = _next_date(agreement, day)


def cycle_get(*, network_code: str, service: str, business_date: dt.date) -> ClearingCycle:
    agreement = agreement_get(network_code=network_code, service=service)
    if agreement.period == CyclePeriod.MONTHLY:
        business_date = business_date.replace(day=1)
    cycle = (
        ClearingCycle.objects.select_related("agreement__network")
        .filter(agreement=agreement, business_date=business_date)
        .first()
    )
    if cycle is None:
        cycle = _cycle(agreement, business_date)
        cycle = ClearingCycle.objects.select_related("agreement__network").get(pk=cycle.pk)
    return cycle


def cycle_label(cycle: ClearingCycle) -> str:
    return f"{cycle.agreement.network.code}-{cycle.agreement.service}-{cycle.business_date.isoformat()}"


# --- messages ---------------------------------------------------------------------------------------------


def _refuse(exc: EnvelopeRefused, document: Any, now: dt.datetime) -> None:
    payload = document.get("payload") if isinstance(document, dict) else None
    payload = payload if isinstance(payload, dict) else {}
    sender, message_id = str(payload.get("sender", ""))[:30], str(payload.get("message_id", ""))[:120]
    MessageRefusal.objects.create(
        sender=sender,
        message_id=message_id,
        kind=str(payload.get("kind", ""))[:40],
        code=exc.code,
        message=exc.message[:400],
        refused_at=now,
    )
    audit_record(
        action="interop.message_refused",
        actor=f"tenant:{sender}" if sender else "unknown",
        object_type="message",
        object_id=message_id,
        data={"code": exc.code, "message": exc.message[:400]},
    )
    log.warning("refused message %s from %s: %s (%s)", message_id, sender, exc.message, exc.code)


_HANDLERS: dict[str, Any] = {}


def message_receive(*, document: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """Take one envelope addressed to the platform and return the result of acting on it.

    Refusals raise EnvelopeRefused after being logged (MessageRefusal and the audit chain). The checks and
    the effects run in a savepoint that a refusal rolls back; the log is written after it, in the caller's
    transaction (outbox_collect commits it with the refused outbox message)."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            opened = envelope_open(document, recipient=PLATFORM, now=now, kinds=tuple(_HANDLERS))
            if SeenNonce.objects.filter(sender=opened.sender.code, nonce=opened.nonce).exists():
                raise EnvelopeRefused(
                    f"message {opened.message_id} from {opened.sender.code} was already received in this very "
                    "transmission (nonce seen): replay refused",
                    code="replayed",
                )
            SeenNonce.objects.create(
                sender=opened.sender.code, nonce=opened.nonce, message_id=opened.message_id, seen_at=now
            )
            earlier = (
                ReceivedMessage.objects.select_for_update()
                .filter(sender=opened.sender.code, message_id=opened.message_id)
                .first()
            )
            if earlier is not None:
                if earlier.body_sha256 != opened.body_sha256:
                    raise EnvelopeRefused(
                        f"message {opened.message_id} from {opened.sender.code} was already received with "
                        f"different content (sha256 {earlier.body_sha256[:12]}…, now {opened.body_sha256[:12]}…)",
                        code="conflict",
                    )
                return {**earlier.result, "idempotent": True}
            result = _HANDLERS[opened.kind](opened, now)
            ReceivedMessage.objects.create(
                sender=opened.sender.code,
                message_id=opened.message_id,
                kind=opened.kind,
                body_sha256=opened.body_sha256,
                key_id=opened.key_id,
                received_at=now,
                result=result,
            )
            return result
    except EnvelopeRefused as exc:
        _refuse(exc, document, now)
        raise


def _records_accept(opened: Opened, now: dt.datetime) -> dict[str, Any]:
    """A ``clearing.records`` message: each record into the open cycle of its acceptance time."""
    sender_city = opened.sender.clearing_tenant
    records = opened.body.get("records")
    if not isinstance(records, list):
        raise EnvelopeRefused("clearing.records needs a list of records", code="malformed")
    agreements: dict[str, RoamingAgreement] = {}
    cycles: dict[tuple[int, dt.date], ClearingCycle] = {}
    days: dict[tuple[int, dt.datetime], dt.date] = {}
    versions: dict[tuple[int, dt.date], AgreementVersion | None] = {}
    issuers: dict[str, Tenant | None] = {}
    rows = []
    for record in records:
        try:
            network = record["network"]
            service = Service.TRANSIT if record.get("service") in TRANSIT_SERVICES else record.get("service")
            accepted_at = dt.datetime.fromisoformat(record["tapped_at"])
            amount = record["amount_fen"]
            record_id = record["record_id"]
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeRefused(f"a clearing record is malformed: {exc}", code="malformed") from None
        if type(amount) is not int or amount < 0 or accepted_at.tzinfo is None:
            raise EnvelopeRefused(f"record {record_id}: bad amount or time", code="malformed")
        if record.get("acquirer") != sender_city.code:
            raise EnvelopeRefused(
                f"record {record_id} claims acquirer {record.get('acquirer')!r};"
                f" the sender clears as {sender_city.code}",
                code="malformed",
            )
        if not str(record_id).startswith(f"{opened.sender.code}-"):
            raise EnvelopeRefused(f"record id {record_id} is not {opened.sender.code}'s", code="malformed")
        issuer_code = record.get("issuer")
        if issuer_code not in issuers:
            issuers[issuer_code] = Tenant.objects.filter(code=issuer_code).first()
        if issuers[issuer_code] is None:
            raise EnvelopeRefused(f"record {record_id}: unknown issuer {issuer_code!r}", code="malformed")
        key = f"{network}/{service}"
        if key not in agreements:
            agreements[key] = agreement_get(network_code=network, service=service)
        agreement = agreements[key]
        # The business date moves with the minute at most (cut-offs are hours and minutes): computed once
        # per agreement and minute of the message, not per record.
        minute = (agreement.pk, accepted_at.replace(second=0, microsecond=0))
        day = days.get(minute)
        if day is None:
            day = days[minute] = business_date_of(agreement, accepted_at)
        cycle = cycles.get((agreement.pk, day))
        if cycle is None:
            cycle = cycles[(agreement.pk, day)] = _open_cycle_from(agreement, day)
        # Priced by the version in force on the record's business date, whenever it is collected (a late
        # record keeps its own date's terms in the later cycle it joins).
        version = versions.get((agreement.pk, day))
        if version is None:
            version = versions[(agreement.pk, day)] = agreement.version_on(day)
        if version is None:
            raise EnvelopeRefused(
                f"record {record_id}: agreement {agreement.label} has no version in force on {day}",
                code="malformed",
            )
        if type(record.get("card_counter")) is not int or not isinstance(record.get("card_no"), str):
            raise EnvelopeRefused(f"record {record_id}: bad card number or counter", code="malformed")
        rows.append(
            (cycle.pk, fee_fen(amount, version.issuer_fee_bps), fee_fen(amount, version.network_fee_bps))
        )
    inserted = _records_insert_json(
        records,
        rows,
        message_id=opened.message_id,
        acquirer=sender_city.code,
        now=now,
        body_json=opened.body_bytes.decode() if opened.body_bytes else None,
    )
    by_cycle: dict[str, int] = defaultdict(int)
    for row in rows:
        by_cycle[str(row[0])] += 1
    return {"records": len(rows), "new": inserted, "cycles": dict(by_cycle)}


_RECORD_COLUMNS = (
    "record_id, cycle_id, kind, message_id, acquirer, issuer, card_no, card_counter, amount_fen, issuer_fee_fen,"
    " network_fee_fen, accepted_at, received_at, data"
)


_INSERT_JSON_SQL = """
INSERT INTO interop_clearingrecord (record_id, cycle_id, kind, message_id, acquirer, issuer, card_no, card_counter,
    amount_fen, issuer_fee_fen, network_fee_fen, accepted_at, received_at, data, status, reason, reason_message,
    adjusts)
SELECT j.r->>'record_id', x.cycle_id, 'tap', %(message)s, %(acquirer)s, j.r->>'issuer', j.r->>'card_no',
    (j.r->>'card_counter')::bigint, (j.r->>'amount_fen')::bigint, x.ifee, x.nfee, (j.r->>'tapped_at')::timestamptz,
    %(received)s, j.r, 'pending', '', '', ''
FROM jsonb_array_elements(%(doc)s::jsonb -> 'records') WITH ORDINALITY AS j(r, n)
JOIN unnest(%(cycles)s::bigint[], %(ifees)s::bigint[], %(nfees)s::bigint[])
    WITH ORDINALITY AS x(cycle_id, ifee, nfee, n) ON x.n = j.n
ON CONFLICT (record_id) DO NOTHING
"""


def _records_insert_json(
    records: list[dict[str, Any]],
    rows: list[tuple[int, int, int]],
    *,
    message_id: str,
    acquirer: str,
    now: dt.datetime,
    body_json: str | None = None,
) -> int:
    """Insert the records of one message in one statement: PostgreSQL takes each record from the message's
    JSON (kept whole as ``data``), Python adds the cycle and the fees; a known record id is skipped.
    ``body_json`` is the body's JSON as the signature check serialised it (not serialised again)."""
    if not records:
        return 0
    with connection.cursor() as cur:
        cur.execute(
            _INSERT_JSON_SQL,
            {
                "message": message_id,
                "acquirer": acquirer,
                "received": now,
                "doc": body_json
                or json.dumps({"records": records}, ensure_ascii=False, separators=(",", ":")),
                "cycles": [r[0] for r in rows],
                "ifees": [r[1] for r in rows],
                "nfees": [r[2] for r in rows],
            },
        )
        return cur.rowcount


def records_insert(rows: list[list[Any]]) -> int:
    """COPY rows (in _RECORD_COLUMNS order) in; a record id already known is not inserted again."""
    if not rows:
        return 0
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    buffer.seek(0)
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS interop_record_stage (record_id text, cycle_id bigint, kind text,"
            " message_id text, acquirer text, issuer text, card_no text, card_counter bigint, amount_fen bigint,"
            " issuer_fee_fen bigint, network_fee_fen bigint, accepted_at timestamptz, received_at timestamptz,"
            " data jsonb) ON COMMIT DELETE ROWS; DELETE FROM interop_record_stage"
        )
        cur.cursor.copy_expert(
            f"COPY interop_record_stage ({_RECORD_COLUMNS}) FROM STDIN WITH (FORMAT csv)", buffer
        )
        cur.execute(
            f"INSERT INTO interop_clearingrecord ({_RECORD_COLUMNS}, status, reason, reason_message, adjusts)"
            f" SELECT {_RECORD_COLUMNS}, 'pending', '', '', '' FROM interop_record_stage"
            " ON CONFLICT (record_id) DO NOTHING"
        )
        return cur.rowcount


def _dispute_message(opened: Opened, now: dt.datetime) -> dict[str, Any]:
    dispute = dispute_raise(
        record_id=str(opened.body.get("record_id", "")),
        raised_by=opened.sender.clearing_tenant.code,
        reason=str(opened.body.get("reason", "")),
        now=now,
    )
    return {"dispute": dispute.pk, "state": dispute.state}


def _reconciliation_answer(opened: Opened, now: dt.datetime) -> dict[str, Any]:
    """A participant's (or one of its counties') answer to a reconciliation file. The file is confirmed
    once every schema whose taps it lists has confirmed; one mismatch makes it a mismatch."""
    body = opened.body
    participant = opened.sender.clearing_tenant.code
    file = (
        ReconciliationFile.objects.select_for_update()
        .filter(sha256=body.get("file_sha256"), participant=participant)
        .first()
    )
    if file is None:
        raise EnvelopeRefused(
            f"no reconciliation file {body.get('file_sha256')!r} for {participant}", code="malformed"
        )
    expected = file.answer.get("expected", [participant])
    if opened.sender.code not in expected:
        raise EnvelopeRefused(f"{opened.sender.code} was not sent file {file.message_id}", code="malformed")
    answers = {**file.answer.get("answers", {}), opened.sender.code: body}
    if any(a.get("result") != "confirmed" for a in answers.values()):
        state = "mismatch"
    elif set(answers) >= set(expected):
        state = "confirmed"
    else:
        state = "sent"
    file.answer = {"expected": expected, "answers": answers}
    file.state, file.answered_at = state, now
    file.save(update_fields=["answer", "state", "answered_at"])
    return {"reconciliation": file.pk, "state": state}


def _medical_claim(opened: Opened, now: dt.datetime) -> dict[str, Any]:
    """A treatment place's ``medical.claim``: the insured place adjudicates it in its own schema (signed
    request, signed answer); the fund share becomes a clearing record of the monthly medical cycle (the
    insured place owes the treatment place) and the outcome goes to the treatment place's inbox."""
    body = opened.body
    treatment = opened.sender.clearing_tenant
    claim_id, card_no = str(body.get("claim_id", "")), str(body.get("card_no", ""))
    if not claim_id.startswith(f"{opened.sender.code}-") or len(card_no) < 6:
        raise EnvelopeRefused("medical.claim needs the sender's claim_id and a card number", code="malformed")
    owner = Tenant.objects.filter(division_code=card_no[:6]).first()
    if owner is None or owner.is_platform:
        raise EnvelopeRefused(f"no tenant insures card {card_no}", code="malformed")
    insured = owner.clearing_tenant
    treated_at = dt.datetime.fromisoformat(body["treated_at"])
    local_day = treated_at.astimezone(SHANGHAI).date()
    shared = list(networks_shared(a=treatment, b=insured, on=local_day).values_list("code", flat=True))
    if not shared:
        raise EnvelopeRefused(f"{treatment.code} and {insured.code} share no network", code="malformed")
    agreement = agreement_get(network_code=shared[0], service=Service.MEDICAL)
    platform = Tenant.objects.get(schema_name="public")
    request = envelope_seal(
        sender=platform,
        recipient=insured.code,
        kind="medical.adjudicate",
        message_id=f"adj-{claim_id}",
        body=body,
        now=now,
    )
    with tenant_context(insured):
        answer = medical.claim_adjudicate(document=request, now=now)
    connection.set_schema_to_public()
    opened_answer = envelope_open(answer, recipient=PLATFORM, now=now, kinds=("medical.adjudication",))
    if opened_answer.sender.pk != insured.pk:
        raise EnvelopeRefused("the adjudication is not the insured place's", code="malformed")
    outcome = opened_answer.body
    if outcome["fund_fen"] > 0:
        day = business_date_of(agreement, treated_at)
        version = agreement.version_on(day)
        if version is None:
            raise EnvelopeRefused(
                f"claim {claim_id}: agreement {agreement.label} has no version in force on {day}",
                code="malformed",
            )
        cycle = _open_cycle_from(agreement, day)
        ClearingRecord.objects.get_or_create(
            record_id=claim_id,
            defaults={
                "cycle": cycle,
                "kind": RecordKind.CLAIM,
                "message_id": opened.message_id,
                "acquirer": treatment.code,
                "issuer": insured.code,
                "card_no": card_no,
                "card_counter": 0,
                "amount_fen": outcome["fund_fen"],
                "issuer_fee_fen": fee_fen(outcome["fund_fen"], version.issuer_fee_bps),
                "network_fee_fen": fee_fen(outcome["fund_fen"], version.network_fee_bps),
                "accepted_at": treated_at,
                "received_at": now,
                "status": RecordStatus.VALID,
                "data": {"claim": body, "adjudication": outcome},
            },
        )
    _deliver(treatment.code, kind="medical.result", message_id=f"mres-{claim_id}", body=outcome, now=now)
    return {"claim": claim_id, "fund_fen": outcome["fund_fen"], "patient_fen": outcome["patient_fen"]}


_HANDLERS.update(
    {
        "medical.claim": _medical_claim,
        "hotlist.update": hotlist_update_receive,
        "clearing.records": _records_accept,
        "clearing.dispute": _dispute_message,
        "clearing.reconciliation": _reconciliation_answer,
    }
)


def outbox_collect(*, tenant: Tenant, now: dt.datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Collect what ``tenant`` put in its outbox; each message is taken (or refused) and answered in the
    outbox in one transaction, so a crash leaves it pending and the next run takes it exactly once."""
    now = now or timezone.now()
    counts = {"collected": 0, "refused": 0}
    while True:
        with transaction.atomic():
            with tenant_context(tenant):
                pending = exchange_selectors.outbox_pending(limit=limit)
            for message_id, document in pending:
                try:
                    result = message_receive(document=document, now=now)
                    state = "collected"
                except EnvelopeRefused as exc:
                    result, state = {"refused": exc.code, "message": exc.message}, "refused"
                with tenant_context(tenant):
                    exchange.outbox_mark(message_id=message_id, state=state, result=result, now=now)
                counts[state] += 1
        connection.set_schema_to_public()
        if len(pending) < limit:
            return counts


def outboxes_collect(*, now: dt.datetime | None = None) -> dict[str, dict[str, int]]:
    """Collect every tenant's outbox (cities and counties), in division-code order."""
    done = {}
    for tenant in Tenant.objects.exclude(schema_name="public").order_by("division_code"):
        counts = outbox_collect(tenant=tenant, now=now)
        if any(counts.values()):
            done[tenant.code] = counts
    return done


def _deliver(tenant_code: str, *, kind: str, message_id: str, body: dict[str, Any], now: dt.datetime) -> None:
    """Seal ``body`` as the platform and put it in the tenant's inbox (run in its schema)."""
    platform = Tenant.objects.get(schema_name="public")
    document = envelope_seal(
        sender=platform, recipient=tenant_code, kind=kind, message_id=message_id, body=body, now=now
    )
    with tenant_context(Tenant.objects.get(code=tenant_code)):
        exchange.inbox_deliver(document=document, now=now)


# --- the cycle steps ---------------------------------------------------------------------------------------


def _locked(cycle: ClearingCycle) -> ClearingCycle:
    return ClearingCycle.objects.select_for_update().select_related("agreement__network").get(pk=cycle.pk)


def _refuse_step(cycle: ClearingCycle, step: str, needed: str) -> None:
    raise Conflict(
        gettext("cycle %(cycle)s is %(state)s; %(step)s needs it %(needed)s")
        % {"cycle": cycle_label(cycle), "state": cycle.state, "step": step, "needed": needed},
        code="cycle_state",
    )


_ORDER = [CycleState.OPEN, CycleState.CLOSED, CycleState.VALIDATED, CycleState.NETTED, CycleState.SETTLED]


def _past(cycle: ClearingCycle, state: str) -> bool:
    current = CycleState.SETTLED if cycle.state == CycleState.DISPUTED else cycle.state
    return _ORDER.index(current) >= _ORDER.index(state)


@transaction.atomic
def cycle_close(
    *, cycle: ClearingCycle, now: dt.datetime | None = None, actor: str = "system"
) -> ClearingCycle:
    """Cut the cycle off (open → closed): refused before its cut-off; the next cycle is opened so late
    records have somewhere to go. Closing a closed cycle returns it unchanged."""
    now = now or timezone.now()
    cycle = _locked(cycle)
    if _past(cycle, CycleState.CLOSED):
        return cycle
    if now < cycle.cut_off_at:
        raise Conflict(
            gettext("cycle %(cycle)s cuts off at %(cut_off)s; it cannot close before")
            % {"cycle": cycle_label(cycle), "cut_off": cycle.cut_off_at.astimezone(SHANGHAI).isoformat()},
            code="before_cut_off",
        )
    cycle.state, cycle.closed_at, cycle.progressed_at = CycleState.CLOSED, now, timezone.now()
    cycle.save(update_fields=["state", "closed_at", "progressed_at"])
    # Fresh statistics once the cycle's records are in: validation, netting (its parallel GROUP BY) and
    # settlement plan with the cycle's real size. A sample, not a scan, of the columns they filter and
    # group by (not the wide ``data``); no vacuum is needed: validation rewrites no record.
    with connection.cursor() as cur:
        cur.execute("ANALYZE interop_clearingrecord (cycle_id, issuer, acquirer, status, kind)")
    _cycle(cycle.agreement, _next_date(cycle.agreement, cycle.business_date))
    audit_record(action="interop.cycle_close", actor=actor, object_type="cycle", object_id=cycle_label(cycle))
    return cycle


_VALIDATION_SQL = """
SELECT record_id, card_no, card_counter, amount_fen, data->>'tapped_at', COALESCE(data->>'terminal_no', ''),
       (data->>'terminal_seq')::bigint, COALESCE((data->>'algorithm')::int, 4), data->>'tac', acquirer
FROM interop_clearingrecord WHERE cycle_id = %s AND issuer = %s AND status = 'pending' ORDER BY record_id
"""


def _record_graces(cycle: ClearingCycle) -> Any:
    """``grace_of(tapped_at)``: the hotlist grace of the version in force on the record's business date
    (``grace_of(None)``: the cycle's own date's). A late record that joined this cycle keeps its date's."""
    agreement = cycle.agreement
    own = version_in_force(agreement, cycle.business_date).hotlist_grace_minutes
    if len({v.hotlist_grace_minutes for v in agreement.versions_ordered()}) == 1:
        return lambda tapped_at: own
    by_minute: dict[dt.datetime, int] = {}

    def grace_of(tapped_at: str | None) -> int:
        if tapped_at is None:
            return own
        minute = dt.datetime.fromisoformat(tapped_at).replace(second=0, microsecond=0)
        if minute not in by_minute:
            version = agreement.version_on(business_date_of(agreement, minute))
            by_minute[minute] = own if version is None else version.hotlist_grace_minutes
        return by_minute[minute]

    return grace_of


def _grace_entry(grace: int, default: int) -> dict[str, int]:
    return {} if grace == default else {"hotlist_grace_minutes": grace}


def issuer_validate(cycle_id: int, issuer_code: str, now: dt.datetime) -> dict[str, Any]:
    """Validation of one issuer's pending records of a cycle: the platform seals them as
    ``clearing.validate`` requests (5,000 records each), the issuer answers each in its own schema
    (``exchange.clearing_validate``), and every signed answer is checked (signature, sender, request).
    Returns the checks the issuer ran and its rejections, each with the record's acquirer and amount.

    Writes only in the issuer's schema, so issuers can run in parallel: top-level, for a process pool
    or a task queue, one issuer per job (see ``cycle_validate``)."""
    cycle = ClearingCycle.objects.select_related("agreement__network").get(pk=cycle_id)
    platform = Tenant.objects.get(schema_name="public")
    issuer = Tenant.objects.get(code=issuer_code)
    label = cycle_label(cycle)
    with connection.cursor() as cur:
        cur.execute(_VALIDATION_SQL, [cycle.pk, issuer_code])
        rows = cur.fetchall()
    acquirer_of = {r[0]: (r[9], r[3]) for r in rows}
    grace_of = _record_graces(cycle)
    checks: list[str] = []
    rejections: list[dict[str, Any]] = []
    for start in range(0, len(rows), VALIDATION_CHUNK):
        chunk = rows[start : start + VALIDATION_CHUNK]
        request = envelope_seal(
            sender=platform,
            recipient=issuer_code,
            kind="clearing.validate",
            message_id=f"val-{label}-{issuer_code}-{start // VALIDATION_CHUNK}",
            body={
                "cycle": label,
                "hotlist_grace_minutes": grace_of(None),
                "records": [
                    {
                        "record_id": r[0],
                        "card_no": r[1],
                        "card_counter": r[2],
                        "amount_fen": r[3],
                        "tapped_at": r[4],
                        "terminal_no": r[5],
                        "terminal_seq": r[6],
                        "algorithm": r[7],
                        "tac": r[8],
                        **_grace_entry(grace_of(r[4]), grace_of(None)),
                    }
                    for r in chunk
                ],
            },
            now=now,
        )
        try:
            with tenant_context(issuer):
                answer = exchange.clearing_validate(document=request, now=now)
        finally:
            connection.set_schema_to_public()
        opened = envelope_open(answer, recipient=PLATFORM, now=now, kinds=("clearing.validation",))
        if opened.sender.pk != issuer.pk or opened.body.get("request") != request["payload"]["message_id"]:
            raise EnvelopeRefused(
                f"the validation answer is not {issuer_code}'s to this request", code="malformed"
            )
        checks = opened.body["checks"]
        for item in opened.body["rejected"]:
            acquirer, amount = acquirer_of[item["record_id"]]
            rejections.append({**item, "acquirer": acquirer, "amount_fen": amount})
    return {"checks": checks, "rejected": rejections}


def cycle_issuers_pending(cycle: ClearingCycle) -> list[str]:
    """The issuers with records awaiting validation in the cycle, in code order (the cycle's issuers from
    the index, then one probe each for a pending record)."""
    issuers = sorted({issuer for issuer, _acquirer in _cycle_pairs(cycle.pk)})
    with connection.cursor() as cur:
        cur.execute(
            "SELECT i FROM unnest(%s::text[]) AS i WHERE EXISTS (SELECT 1 FROM interop_clearingrecord"
            " WHERE cycle_id = %s AND issuer = i AND status = 'pending') ORDER BY i",
            [issuers, cycle.pk],
        )
        return [row[0] for row in cur.fetchall()]


@transaction.atomic
def issuer_validation_store(*, cycle_id: int, issuer_code: str, now: dt.datetime) -> IssuerValidation | None:
    """One issuer validates its records of a closed cycle (``issuer_validate``) and its answer is kept
    for the cycle's validation step, which joins every issuer's answer (a per-issuer Celery task each,
    ``interop.tasks.issuer_validation``). Idempotent: an answer already kept is returned as it is. None
    if the cycle is not closed (validated already, or not cut off yet: nothing to do or not yet).

    Holds a share lock of the cycle row, so the step (``FOR UPDATE``) waits for issuers in progress
    rather than asking them again, and issuers of one cycle run side by side."""
    with connection.cursor() as cur:
        cur.execute("SELECT state FROM interop_clearingcycle WHERE id = %s FOR SHARE", [cycle_id])
        row = cur.fetchone()
    if row is None or row[0] != CycleState.CLOSED:
        return None
    kept = IssuerValidation.objects.filter(cycle_id=cycle_id, issuer=issuer_code).first()
    if kept is not None:
        return kept
    result = issuer_validate(cycle_id, issuer_code, now)
    # Two workers given the same issuer: the second's claims wait for the first's (same answer); one
    # answer is kept.
    IssuerValidation.objects.bulk_create(
        [
            IssuerValidation(
                cycle_id=cycle_id,
                issuer=issuer_code,
                checks=result["checks"],
                rejected=result["rejected"],
                validated_at=now,
            )
        ],
        ignore_conflicts=True,
    )
    return IssuerValidation.objects.get(cycle_id=cycle_id, issuer=issuer_code)


def _issuers_validate_inline(jobs: list[tuple[int, str, dt.datetime]]) -> Iterable[dict[str, Any]]:
    return (issuer_validate(*job) for job in jobs)


@transaction.atomic
def cycle_validate(
    *,
    cycle: ClearingCycle,
    now: dt.datetime | None = None,
    actor: str = "system",
    issuers_map: Any = None,
) -> ClearingCycle:
    """Each issuer validates its records (closed → validated) in its own schema through
    ``exchange.clearing_validate`` (``issuer_validate``); rejected records go back to their acquirers as
    exceptions.

    An issuer whose answer was already kept (``issuer_validation_store``: the Celery tasks fan the
    issuers out before this step, docs/clearing.md "Orchestration") is not asked again. The others run
    through ``issuers_map``: called with the list of ``(cycle id, issuer, now)`` jobs for
    ``issuer_validate``, it returns their results in job order. By default they run one after the other
    in this transaction; a process pool's ``starmap`` over ``issuer_validate`` (benchmarks/clearing.py)
    runs them in parallel, each on its own connection committing in the issuer's schema only (re-validating
    a record gives the same answer, so a crash before this step commits changes nothing). The rejections
    are applied here, in issuer order, and the step commits as one transaction; only the rejections are
    written (the records left pending read valid once the cycle is validated, ``models.record_status``)."""
    now = now or timezone.now()
    cycle = _locked(cycle)
    if _past(cycle, CycleState.VALIDATED):
        return cycle
    if cycle.state != CycleState.CLOSED:
        _refuse_step(cycle, "validation", "closed")
    label = cycle_label(cycle)
    issuers = cycle_issuers_pending(cycle)
    kept = {
        v.issuer: {"checks": v.checks, "rejected": [dict(item) for item in v.rejected]}
        for v in IssuerValidation.objects.filter(cycle=cycle, issuer__in=issuers)
    }
    jobs = [(cycle.pk, issuer_code, now) for issuer_code in issuers if issuer_code not in kept]
    asked = dict(zip([job[1] for job in jobs], (issuers_map or _issuers_validate_inline)(jobs), strict=True))
    checks: dict[str, list[str]] = {}
    exceptions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for issuer_code in issuers:
        result = kept.get(issuer_code) or asked[issuer_code]
        checks[issuer_code] = result["checks"]
        rejected = result["rejected"]
        if rejected:
            _apply_rejections(cycle, rejected)
        for item in rejected:
            acquirer, amount = item.pop("acquirer"), item.pop("amount_fen")
            exceptions[acquirer].append({**item, "issuer": issuer_code, "amount_fen": amount})
    # Only the rejections are written: the records left pending are valid once the cycle is validated
    # (models.record_status), so no row of a million-record cycle is rewritten here.
    for acquirer in sorted(exceptions):
        _deliver(
            acquirer,
            kind="clearing.exceptions",
            message_id=f"exc-{label}-{acquirer}",
            body={"cycle": label, "exceptions": sorted(exceptions[acquirer], key=lambda e: e["record_id"])},
            now=now,
        )
    cycle.state, cycle.validated_at, cycle.validation_checks = CycleState.VALIDATED, now, checks
    cycle.progressed_at = timezone.now()
    cycle.save(update_fields=["state", "validated_at", "validation_checks", "progressed_at"])
    audit_record(
        action="interop.cycle_validate",
        actor=actor,
        object_type="cycle",
        object_id=label,
        data={
            "issuers": len(issuers),
            "answers_kept": len(kept),
            "exceptions": sum(len(v) for v in exceptions.values()),
        },
    )
    return cycle


def _apply_rejections(cycle: ClearingCycle, rejected: list[dict[str, str]]) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE interop_clearingrecord r SET status = 'rejected', reason = x.reason, reason_message = x.message"
            " FROM unnest(%s::text[], %s::text[], %s::text[]) AS x(record_id, reason, message)"
            " WHERE r.record_id = x.record_id AND r.cycle_id = %s",
            [
                [r["record_id"] for r in rejected],
                [r["reason"][:40] for r in rejected],
                [r["message"][:300] for r in rejected],
                cycle.pk,
            ],
        )


# The cycle is validated (netting refuses it otherwise), so every record not rejected is valid. The
# matrix is aggregated by a plain SELECT, which PostgreSQL may run with parallel workers (an
# INSERT … SELECT never is), and its few hundred cells are inserted from arrays.
_BILATERAL_SELECT_SQL = """
SELECT issuer, acquirer, count(*), sum(amount_fen), sum(issuer_fee_fen), sum(network_fee_fen)
FROM interop_clearingrecord WHERE cycle_id = %(cycle)s AND status <> 'rejected'
GROUP BY issuer, acquirer
"""
_BILATERAL_INSERT_SQL = """
INSERT INTO interop_bilateralposition (cycle_id, issuer, acquirer, records, amount_fen, issuer_fee_fen,
    network_fee_fen, acquirer_due_fen)
SELECT %(cycle)s, i, a, n, s, fi, fn, s - fi - fn
FROM unnest(%(issuers)s::text[], %(acquirers)s::text[], %(counts)s::bigint[], %(sums)s::bigint[],
    %(ifees)s::bigint[], %(nfees)s::bigint[]) AS m(i, a, n, s, fi, fn)
"""
# Issuer pays amount − issuer fee; the acquirer receives amount − issuer fee − network fee; the operator
# receives the network fee. Σ = 0 by construction, and checked by the deferred trigger on the table.
_NET_SQL = """
INSERT INTO interop_netposition (cycle_id, participant, receivable_fen, payable_fen, net_fen)
SELECT %(cycle)s, participant, sum(receivable), sum(payable), sum(receivable) - sum(payable)
FROM (
    SELECT acquirer AS participant, acquirer_due_fen AS receivable, 0::bigint AS payable
    FROM interop_bilateralposition WHERE cycle_id = %(cycle)s
    UNION ALL
    SELECT issuer, 0, amount_fen - issuer_fee_fen FROM interop_bilateralposition WHERE cycle_id = %(cycle)s
    UNION ALL
    SELECT %(operator)s, network_fee_fen, 0 FROM interop_bilateralposition
    WHERE cycle_id = %(cycle)s AND network_fee_fen <> 0
) AS legs
GROUP BY participant
"""


@transaction.atomic
def cycle_net(
    *, cycle: ClearingCycle, now: dt.datetime | None = None, actor: str = "system"
) -> ClearingCycle:
    """Bilateral matrix and multilateral net positions (validated → netted), in SQL; the positions are
    posted to the ledger (one journal, Σ = 0)."""
    now = now or timezone.now()
    cycle = _locked(cycle)
    if _past(cycle, CycleState.NETTED):
        return cycle
    if cycle.state != CycleState.VALIDATED:
        _refuse_step(cycle, "netting", "validated")
    params = {"cycle": cycle.pk, "operator": cycle.agreement.operator}
    with connection.cursor() as cur:
        cur.execute(_BILATERAL_SELECT_SQL, params)
        cells = cur.fetchall()
        if cells:
            columns = list(zip(*cells, strict=True))
            cur.execute(
                _BILATERAL_INSERT_SQL,
                {
                    "cycle": cycle.pk,
                    "issuers": list(columns[0]),
                    "acquirers": list(columns[1]),
                    "counts": [int(v) for v in columns[2]],
                    "sums": [int(v) for v in columns[3]],
                    "ifees": [int(v) for v in columns[4]],
                    "nfees": [int(v) for v in columns[5]],
                },
            )
        cur.execute(_NET_SQL, params)
        cur.execute("SET CONSTRAINTS interop_netposition_sums_to_zero IMMEDIATE")
    journal = Journal.objects.create(
        cycle=cycle, kind="positions", memo=f"net positions of {cycle_label(cycle)}", created_at=now
    )
    Posting.objects.bulk_create(
        Posting(journal=journal, account=f"clearing:{p.participant}", amount_fen=-p.net_fen)
        for p in NetPosition.objects.filter(cycle=cycle).order_by("participant")
    )
    _ledger_check()
    cycle.state, cycle.netted_at, cycle.progressed_at = CycleState.NETTED, now, timezone.now()
    cycle.save(update_fields=["state", "netted_at", "progressed_at"])
    audit_record(action="interop.cycle_net", actor=actor, object_type="cycle", object_id=cycle_label(cycle))
    return cycle


def _ledger_check() -> None:
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS interop_posting_balances IMMEDIATE")


@transaction.atomic
def cycle_settle(
    *,
    cycle: ClearingCycle,
    now: dt.datetime | None = None,
    actor: str = "system",
    files_map: Any = None,
) -> ClearingCycle:
    """Settlement instructions through the network's settlement account, their ledger journal, and a
    reconciliation file for every participant, stored once, its signed manifest delivered to its inbox
    (netted → settled).

    ``files_map`` writes the files: called with the ``(cycle id, participant, totals)`` jobs for
    ``reconciliation_packed``, it returns their results in job order (by default one after the other here;
    a process pool's ``starmap`` writes them in parallel — they only read what validation and netting
    committed). Storing and delivering them stays in this transaction."""
    now = now or timezone.now()
    cycle = _locked(cycle)
    if _past(cycle, CycleState.SETTLED):
        return cycle
    if cycle.state != CycleState.NETTED:
        _refuse_step(cycle, "settlement", "netted")
    agreement = cycle.agreement
    account = agreement.settlement_account
    value_date = cycle.business_date + dt.timedelta(days=agreement.settlement_lag_days)
    if agreement.period == CyclePeriod.MONTHLY:
        value_date = _next_date(agreement, cycle.business_date) + dt.timedelta(
            days=agreement.settlement_lag_days
        )
    positions = list(NetPosition.objects.filter(cycle=cycle).order_by("net_fen", "participant"))
    instructions = [
        SettlementInstruction(
            cycle=cycle, payer=p.participant, payee=account, amount_fen=-p.net_fen, value_date=value_date
        )
        for p in positions
        if p.net_fen < 0
    ] + [
        SettlementInstruction(
            cycle=cycle, payer=account, payee=p.participant, amount_fen=p.net_fen, value_date=value_date
        )
        for p in sorted(positions, key=lambda p: (-p.net_fen, p.participant))
        if p.net_fen > 0
    ]
    SettlementInstruction.objects.bulk_create(instructions)
    journal = Journal.objects.create(
        cycle=cycle,
        kind="settlement",
        memo=f"settlement of {cycle_label(cycle)} on {value_date}",
        created_at=now,
    )
    postings = []
    for p in positions:
        if p.net_fen:
            postings.append(
                Posting(journal=journal, account=f"clearing:{p.participant}", amount_fen=p.net_fen)
            )
            postings.append(Posting(journal=journal, account=f"settlement:{account}", amount_fen=-p.net_fen))
    Posting.objects.bulk_create(postings)
    _ledger_check()
    _reconciliation_files(cycle, now, files_map)
    cycle.state, cycle.settled_at, cycle.progressed_at = CycleState.SETTLED, now, timezone.now()
    cycle.save(update_fields=["state", "settled_at", "progressed_at"])
    audit_record(
        action="interop.cycle_settle", actor=actor, object_type="cycle", object_id=cycle_label(cycle)
    )
    return cycle


def cycle_run(
    *, cycle: ClearingCycle, now: dt.datetime | None = None, actor: str = "system"
) -> ClearingCycle:
    """Every step that has not happened yet, in order."""
    for step in (cycle_close, cycle_validate, cycle_net, cycle_settle):
        cycle = step(cycle=cycle, now=now, actor=actor)
    return cycle


# --- resuming cycles left between steps ---------------------------------------------------------------------

RESUMABLE_STATES = (CycleState.CLOSED, CycleState.VALIDATED, CycleState.NETTED)


@transaction.atomic
def cycles_resume_claim(
    *, older_than: dt.timedelta, now: dt.datetime | None = None, actor: str = "beat"
) -> list[ClearingCycle]:
    """The cycles left closed, validated or netted for longer than ``older_than`` since a step last moved
    them on or this sweep last resumed them (by the clock: ``progressed_at``, ``resumed_at``), each
    stamped as resumed, audited (``interop.cycle_resume``) and logged; the caller sends their processing
    again (``tasks.cycles_resume_stuck``). What leaves a cycle there: its task lost with a worker that
    died (on a broker that does not hand it out again), or a step that fails.

    A cycle whose row is locked is being worked on right now — a step holds it ``FOR UPDATE``, an issuer's
    validation ``FOR SHARE`` — and is skipped (``SKIP LOCKED``); so is one another sweep claimed, once
    that one commits (its ``resumed_at`` is then fresh). Sending a cycle again runs no step twice either
    way: each step locks the row and returns at once when its state is already reached."""
    now = now or timezone.now()
    stuck = list(
        ClearingCycle.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("agreement__network")
        # Cycles from before the clock was kept: their closing time.
        .annotate(last_moved=Coalesce(Greatest("progressed_at", "resumed_at"), "closed_at"))
        .filter(state__in=RESUMABLE_STATES, last_moved__lt=now - older_than)
        .order_by("last_moved", "pk")
    )
    for cycle in stuck:
        idle_s = int((now - cycle.last_moved).total_seconds())
        cycle.resumed_at, cycle.resumes = now, cycle.resumes + 1
        cycle.save(update_fields=["resumed_at", "resumes"])
        label = cycle_label(cycle)
        log.warning(
            "clearing: resuming cycle %s, %s for %d s since its last step (resume %d)",
            label,
            cycle.state,
            idle_s,
            cycle.resumes,
        )
        audit_record(
            action="interop.cycle_resume",
            actor=actor,
            object_type="cycle",
            object_id=label,
            data={"state": cycle.state, "idle_s": idle_s, "resumes": cycle.resumes},
        )
    return stuck


# --- reconciliation ---------------------------------------------------------------------------------------

RECONCILIATION_DETAIL_COLUMNS = [
    "record_id",
    "kind",
    "role",
    "counterparty",
    "card_no",
    "card_counter",
    "accepted_at",
    "amount_fen",
    "issuer_fee_fen",
    "network_fee_fen",
    "status",
    "reason",
    "adjusts",
]
RECONCILIATION_TOTAL_COLUMNS = [
    "cycle",
    "participant",
    "acquired_records",
    "acquired_amount_fen",
    "issued_records",
    "issued_amount_fen",
    "issuer_fees_fen",
    "network_fees_fen",
    "rejected_records",
    "rejected_amount_fen",
    "receivable_fen",
    "payable_fen",
    "net_fen",
]


_RECONCILIATION_DETAILS_SQL = """
COPY (SELECT record_id, kind, CASE WHEN acquirer = %(p)s THEN 'acquirer' ELSE 'issuer' END,
             CASE WHEN acquirer = %(p)s THEN issuer ELSE acquirer END, card_no, card_counter,
             to_char(accepted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD"T"HH24:MI:SS"+08:00"'),
             amount_fen, issuer_fee_fen, network_fee_fen,
             CASE status WHEN 'pending' THEN 'valid' ELSE status END, reason, adjusts
      FROM interop_clearingrecord WHERE cycle_id = %(cycle)s AND (acquirer = %(p)s OR issuer = %(p)s)
      ORDER BY record_id) TO STDOUT WITH (FORMAT csv)
"""

# The distinct (issuer, acquirer) pairs of a cycle by walking record_cycle_idx (a "loose index scan": one
# index probe per pair, a few hundred, instead of reading a million rows for DISTINCT).
_CYCLE_PAIRS_SQL = """
WITH RECURSIVE pair AS (
    (SELECT issuer, acquirer FROM interop_clearingrecord WHERE cycle_id = %(cycle)s
     ORDER BY issuer, acquirer LIMIT 1)
    UNION ALL
    SELECT next.issuer, next.acquirer FROM pair, LATERAL (
        SELECT issuer, acquirer FROM interop_clearingrecord
        WHERE cycle_id = %(cycle)s AND (issuer, acquirer) > (pair.issuer, pair.acquirer)
        ORDER BY issuer, acquirer LIMIT 1) AS next
)
SELECT issuer, acquirer FROM pair
"""


def _cycle_pairs(cycle_id: int) -> list[tuple[str, str]]:
    with connection.cursor() as cur:
        cur.execute(_CYCLE_PAIRS_SQL, {"cycle": cycle_id})
        return cur.fetchall()


def reconciliation_totals(cycle: ClearingCycle) -> dict[str, dict[str, int]]:
    """Every participant's totals row (docs/clearing.md), from the netted matrix (the valid records,
    each cell the sum of its records), one aggregate of the rejected records and the net positions."""
    totals: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(RECONCILIATION_TOTAL_COLUMNS[2:], 0)
    )
    for cell in BilateralPosition.objects.filter(cycle=cycle):
        acquirer, issuer = totals[cell.acquirer], totals[cell.issuer]
        acquirer["acquired_records"] += cell.records
        acquirer["acquired_amount_fen"] += cell.amount_fen
        acquirer["issuer_fees_fen"] -= cell.issuer_fee_fen
        acquirer["network_fees_fen"] += cell.network_fee_fen
        issuer["issued_records"] += cell.records
        issuer["issued_amount_fen"] += cell.amount_fen
        issuer["issuer_fees_fen"] += cell.issuer_fee_fen
    with connection.cursor() as cur:
        cur.execute(
            "SELECT acquirer, issuer, count(*), sum(amount_fen) FROM interop_clearingrecord"
            " WHERE cycle_id = %s AND status = 'rejected' GROUP BY acquirer, issuer",
            [cycle.pk],
        )
        for acquirer, issuer, count, amount in cur.fetchall():
            for party in (acquirer, issuer):
                totals[party]["rejected_records"] += int(count)
                totals[party]["rejected_amount_fen"] += int(amount)
    for position in NetPosition.objects.filter(cycle=cycle):
        row = totals[position.participant]
        row["receivable_fen"], row["payable_fen"] = position.receivable_fen, position.payable_fen
        row["net_fen"] = position.net_fen
    return dict(totals)


def reconciliation_csv(
    cycle: ClearingCycle, participant: str, totals: dict[str, int] | None = None
) -> tuple[str, dict[str, Any]]:
    """The reconciliation file of ``participant`` for ``cycle`` (format in docs/clearing.md): the totals
    (``reconciliation_totals`` unless given), the details straight out of PostgreSQL with COPY."""
    if totals is None:
        totals = reconciliation_totals(cycle).get(participant) or dict.fromkeys(
            RECONCILIATION_TOTAL_COLUMNS[2:], 0
        )
    params = {"p": participant, "cycle": cycle.pk}
    details = io.BytesIO()  # bytes, decoded once: a text buffer makes psycopg2 decode chunk by chunk
    with connection.cursor() as cur:
        cur.cursor.copy_expert(cur.cursor.mogrify(_RECONCILIATION_DETAILS_SQL, params).decode(), details)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["# totals"])
    writer.writerow(RECONCILIATION_TOTAL_COLUMNS)
    writer.writerow([cycle_label(cycle), participant, *[totals[c] for c in RECONCILIATION_TOTAL_COLUMNS[2:]]])
    writer.writerow(["# details"])
    writer.writerow(RECONCILIATION_DETAIL_COLUMNS)
    out.write(details.getvalue().decode())
    return out.getvalue(), totals


def _participants(cycle: ClearingCycle, pairs: list[tuple[str, str]]) -> list[str]:
    found = set(NetPosition.objects.filter(cycle=cycle).values_list("participant", flat=True))
    for issuer, acquirer in pairs:
        found.update((acquirer, issuer))
    return sorted(found)


def reconciliation_text(
    cycle_id: int, participant: str, totals: dict[str, int] | None = None
) -> tuple[str, dict[str, Any]]:
    """``reconciliation_csv`` by cycle id: top-level, for a process pool (see ``cycle_settle``)."""
    cycle = ClearingCycle.objects.select_related("agreement__network").get(pk=cycle_id)
    return reconciliation_csv(cycle, participant, totals)


def reconciliation_packed(cycle_id: int, participant: str, totals: dict[str, int]) -> dict[str, Any]:
    """A participant's file ready to store and announce: the text zlib-compressed, its SHA-256 and size,
    its detail rows and totals. Top-level, for a process pool (see ``cycle_settle``): the digest and the
    compression run where the text is written, and a sixth of the bytes travel back."""
    text, totals = reconciliation_text(cycle_id, participant, totals)
    data = text.encode()
    return {
        "csv_zlib": zlib.compress(data, 1),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        # Every line after the two section lines, the two header rows and the totals row.
        "detail_rows": text.count("\n") - 5,
        "totals": totals,
    }


def _reconciliation_packs(jobs: list[tuple[int, str, dict[str, int]]]) -> Iterable[dict[str, Any]]:
    return (reconciliation_packed(*job) for job in jobs)


def _reconciliation_files(cycle: ClearingCycle, now: dt.datetime, files_map: Any = None) -> None:
    """Each participant's file, stored once (``ReconciliationFile``), and its signed manifest (digest,
    size, rows and totals; not the text) delivered to it and to each of its counties whose taps it lists.
    The recipients fetch the text by its digest and check it against the manifest (docs/clearing.md)."""
    label = cycle_label(cycle)
    tenants = {t.code: t for t in Tenant.objects.exclude(schema_name="public")}
    pairs = _cycle_pairs(cycle.pk)
    # A city's file also goes to each of its counties whose terminals' taps it lists (the records came
    # from the county's own outbox); looked for only when an acquirer of the cycle has counties.
    cities = {t.clearing_tenant.code for t in tenants.values() if t.clearing_tenant.code != t.code}
    acquirers_with_counties = sorted(cities & {acquirer for _issuer, acquirer in pairs})
    sources: dict[str, set[str]] = defaultdict(set)
    if acquirers_with_counties:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT acquirer, split_part(record_id, '-', 1) FROM interop_clearingrecord"
                " WHERE cycle_id = %s AND acquirer = ANY(%s) AND kind = 'tap'"
                " AND split_part(record_id, '-', 1) <> acquirer",
                [cycle.pk, acquirers_with_counties],
            )
            for acquirer, schema in cur.fetchall():
                if schema in tenants and tenants[schema].clearing_tenant.code == acquirer:
                    sources[acquirer].add(schema)
    participants = _participants(cycle, pairs)
    all_totals = reconciliation_totals(cycle)
    empty = dict.fromkeys(RECONCILIATION_TOTAL_COLUMNS[2:], 0)
    jobs = [(cycle.pk, p, all_totals.get(p, empty)) for p in participants]
    packs = (files_map or _reconciliation_packs)(jobs)
    for participant, pack in zip(participants, packs, strict=True):
        message_id = f"rcn-{label}-{participant}"
        recipients = [participant, *sorted(sources.get(participant, ()))] if participant in tenants else []
        ReconciliationFile.objects.create(
            cycle=cycle,
            participant=participant,
            csv_zlib=pack["csv_zlib"],
            sha256=pack["sha256"],
            totals=pack["totals"],
            message_id=message_id,
            answer={"expected": recipients, "answers": {}},
        )
        manifest = {
            "cycle": label,
            "participant": participant,
            **{key: pack[key] for key in ("sha256", "bytes", "detail_rows", "totals")},
        }
        for code in recipients:
            _deliver(code, kind="clearing.reconciliation", message_id=message_id, body=manifest, now=now)


# --- disputes ---------------------------------------------------------------------------------------------


@transaction.atomic
def dispute_raise(
    *,
    record_id: str,
    raised_by: str,
    reason: str,
    now: dt.datetime | None = None,
    actor: str | None = None,
) -> Dispute:
    """A party to a settled record disputes it inside the agreement's window (refused outside it).
    ``actor``: who recorded it when not the party itself through its signed message (clearing staff
    taking a party's dispute by phone); audited as that actor, on behalf of ``raised_by``."""
    now = now or timezone.now()
    record = (
        ClearingRecord.objects.select_related("cycle__agreement__network").filter(record_id=record_id).first()
    )
    if record is None:
        raise NotFound(gettext("no clearing record %(record)r") % {"record": record_id}, field="record_id")
    if raised_by not in (record.acquirer, record.issuer):
        raise DomainError(
            gettext("%(party)s is not a party to record %(record)s")
            % {"party": raised_by, "record": record_id},
            code="not_a_party",
        )
    cycle = record.cycle
    if not _past(cycle, CycleState.SETTLED):
        raise Conflict(
            gettext("record %(record)s is in cycle %(cycle)s, not settled yet")
            % {"record": record_id, "cycle": cycle_label(cycle)},
            code="cycle_state",
        )
    deadline = cycle.settled_at + dt.timedelta(days=cycle.agreement.dispute_window_days)
    if now > deadline:
        raise DomainError(
            gettext("the dispute window of %(cycle)s ended at %(deadline)s")
            % {"cycle": cycle_label(cycle), "deadline": deadline.isoformat()},
            code="window_closed",
        )
    if record.kind == RecordKind.ADJUSTMENT:
        raise DomainError(gettext("an adjustment cannot be disputed"), code="invalid")
    existing = Dispute.objects.filter(record=record).exclude(state=DisputeState.REJECTED).first()
    if existing is not None:
        return existing
    dispute = Dispute.objects.create(record=record, raised_by=raised_by, reason=reason[:300], raised_at=now)
    ClearingCycle.objects.filter(pk=cycle.pk, state=CycleState.SETTLED).update(state=CycleState.DISPUTED)
    audit_record(
        action="interop.dispute_raise",
        actor=actor or f"tenant:{raised_by}",
        object_type="record",
        object_id=record_id,
        data={"reason": reason[:300], "raised_by": raised_by},
    )
    return dispute


@transaction.atomic
def dispute_resolve(
    *, dispute_id: int, accept: bool, resolution: str, actor: str, now: dt.datetime | None = None
) -> Dispute:
    """Accepted: an adjustment record reversing the disputed one (fees too) joins the open cycle of
    ``now``; the settled cycle is never edited. Rejected: nothing moves. Either way the cycle goes back
    to settled once no dispute of it is open."""
    now = now or timezone.now()
    dispute = (
        Dispute.objects.select_for_update()
        .select_related("record__cycle__agreement")
        .filter(pk=dispute_id)
        .first()
    )
    if dispute is None:
        raise NotFound(gettext("no dispute %(id)s") % {"id": dispute_id}, field="dispute")
    if dispute.state != DisputeState.OPEN:
        raise Conflict(
            gettext("dispute %(id)s is already %(state)s") % {"id": dispute_id, "state": dispute.state},
            code="dispute_state",
        )
    record = dispute.record
    if accept:
        agreement = record.cycle.agreement
        target = _open_cycle_from(agreement, business_date_of(agreement, now))
        adjustment = ClearingRecord.objects.create(
            record_id=f"adj-{record.record_id}",
            cycle=target,
            kind=RecordKind.ADJUSTMENT,
            message_id=f"dispute-{dispute.pk}",
            acquirer=record.acquirer,
            issuer=record.issuer,
            card_no=record.card_no,
            card_counter=record.card_counter,
            amount_fen=-record.amount_fen,
            issuer_fee_fen=-record.issuer_fee_fen,
            network_fee_fen=-record.network_fee_fen,
            accepted_at=now,
            received_at=now,
            status=RecordStatus.VALID,
            adjusts=record.record_id,
            data={"dispute": dispute.pk, "reason": dispute.reason},
        )
        dispute.adjustment = adjustment
    dispute.state = DisputeState.ACCEPTED if accept else DisputeState.REJECTED
    dispute.resolution, dispute.resolved_at, dispute.resolved_by = resolution[:300], now, actor[:150]
    dispute.save()
    cycle = record.cycle
    if not Dispute.objects.filter(record__cycle=cycle, state=DisputeState.OPEN).exists():
        ClearingCycle.objects.filter(pk=cycle.pk, state=CycleState.DISPUTED).update(state=CycleState.SETTLED)
    audit_record(
        action="interop.dispute_resolve",
        actor=actor,
        object_type="dispute",
        object_id=dispute.pk,
        data={"accepted": accept, "record": record.record_id},
    )
    return dispute


def due_cycles(*, now: dt.datetime | None = None) -> Iterable[ClearingCycle]:
    """Open cycles whose cut-off has passed (for the beat task)."""
    now = now or timezone.now()
    return (
        ClearingCycle.objects.filter(state=CycleState.OPEN, cut_off_at__lte=now)
        .select_related("agreement__network")
        .order_by("cut_off_at")
    )
