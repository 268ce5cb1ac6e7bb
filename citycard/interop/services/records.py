"""Clearing records joining cycles (清算记录, docs/clearing.md, "Records" and "Medical claims").

* A ``clearing.records`` message (an acquirer's taps): each record checked and priced by the agreement
  version in force on its business date, into the open cycle of that date (a late one: the next open),
  all inserted in one statement; a known record id is skipped.
* A ``medical.claim`` message (a treatment place's claim): the insured place adjudicates it in its own
  schema; the fund share becomes a record of the monthly medical cycle, the outcome goes to the treatment
  place's inbox.
* ``records_insert`` — COPY rows in (benchmarks and tests build cycles of a million records with it).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from typing import Any

from django.db import connection
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.interop.models import (
    ClearingRecord,
    RecordKind,
    RecordStatus,
    RoamingAgreement,
    Service,
)
from citycard.interop.selectors import agreement_get
from citycard.interop.services.cycles import cycle_open_from
from citycard.interop.services.messages import message_deliver, message_handler
from citycard.interop.terms import agreement_business_date, agreement_business_dates, fee_fen
from citycard.platform.envelopes import PLATFORM, EnvelopeRefused, Opened, envelope_open, envelope_seal
from citycard.platform.models import Tenant
from citycard.platform.selectors import networks_shared
from citycard.tenants.medical import services as medical
from citycard.terminal_kit.beijing import BEIJING

TRANSIT_SERVICES = frozenset({"bus", "metro", "ferry", "tram", "coach", "bike", "taxi", "rail"})


@message_handler("clearing.records")
def _records_accept(opened: Opened, now: dt.datetime) -> dict[str, Any]:
    """A ``clearing.records`` message: each record into the open cycle of its acceptance time."""
    sender_city = opened.sender.clearing_tenant
    records = opened.body.get("records")
    if not isinstance(records, list):
        raise EnvelopeRefused(gettext("clearing.records needs a list of records"), code="malformed")
    # Per message, not per record: the agreement of each network and service (with its business-date rule),
    # the open cycle and the version of each business date. A record then costs its checks, a time-zone
    # conversion and two fees.
    agreements: dict[tuple[Any, Any], tuple[RoamingAgreement, Any]] = {}
    terms: dict[tuple[int, dt.date], tuple[int, int, int]] = {}
    # The issuers named, read in one query (a national network's message names ~300: not a query each).
    codes = {r.get("issuer") for r in records if isinstance(r, dict) and isinstance(r.get("issuer"), str)}
    issuers: dict[str, Tenant] = {t.code: t for t in Tenant.objects.filter(code__in=codes)}
    acquirer_code, own_prefix = sender_city.code, f"{opened.sender.code}-"
    rows = []
    for record in records:
        try:
            network = record["network"]
            service = Service.TRANSIT if record.get("service") in TRANSIT_SERVICES else record.get("service")
            accepted_at = dt.datetime.fromisoformat(record["tapped_at"])
            amount = record["amount_fen"]
            record_id = record["record_id"]
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeRefused(
                gettext("a clearing record is malformed: %(error)s") % {"error": exc}, code="malformed"
            ) from None
        if type(amount) is not int or amount < 0 or accepted_at.tzinfo is None:
            raise EnvelopeRefused(
                gettext("record %(record)s: bad amount or time") % {"record": record_id}, code="malformed"
            )
        if record.get("acquirer") != acquirer_code:
            raise EnvelopeRefused(
                gettext("record %(record)s claims acquirer %(acquirer)r; the sender clears as %(sender)s")
                % {"record": record_id, "acquirer": record.get("acquirer"), "sender": acquirer_code},
                code="malformed",
            )
        if not str(record_id).startswith(own_prefix):
            raise EnvelopeRefused(
                gettext("record id %(record)s is not %(sender)s's")
                % {"record": record_id, "sender": opened.sender.code},
                code="malformed",
            )
        issuer_code = record.get("issuer")
        if issuers.get(issuer_code) is None:
            raise EnvelopeRefused(
                gettext("record %(record)s: unknown issuer %(issuer)r")
                % {"record": record_id, "issuer": issuer_code},
                code="malformed",
            )
        found = agreements.get((network, service))
        if found is None:
            agreement = agreement_get(network_code=network, service=service)
            found = agreements[(network, service)] = (
                agreement,
                agreement_business_dates(agreement=agreement),
            )
        agreement, business_date = found
        day = business_date(accepted_at)
        term = terms.get((agreement.pk, day))
        if term is None:
            # Priced by the version in force on the record's business date, whenever it is collected (a
            # late record keeps its own date's terms in the later cycle it joins).
            version = agreement.version_on(day)
            if version is None:
                raise EnvelopeRefused(
                    gettext("record %(record)s: agreement %(label)s has no version in force on %(day)s")
                    % {"record": record_id, "label": agreement.label, "day": day},
                    code="malformed",
                )
            cycle = cycle_open_from(agreement=agreement, day=day)
            term = terms[(agreement.pk, day)] = (cycle.pk, version.issuer_fee_bps, version.network_fee_bps)
        if type(record.get("card_counter")) is not int or not isinstance(record.get("card_no"), str):
            raise EnvelopeRefused(
                gettext("record %(record)s: bad card number or counter") % {"record": record_id},
                code="malformed",
            )
        rows.append((term[0], fee_fen(amount, term[1]), fee_fen(amount, term[2])))
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


def records_insert(*, rows: list[list[Any]]) -> int:
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


@message_handler("medical.claim")
def _medical_claim(opened: Opened, now: dt.datetime) -> dict[str, Any]:
    """A treatment place's ``medical.claim``: the insured place adjudicates it in its own schema (signed
    request, signed answer); the fund share becomes a clearing record of the monthly medical cycle (the
    insured place owes the treatment place) and the outcome goes to the treatment place's inbox."""
    body = opened.body
    treatment = opened.sender.clearing_tenant
    claim_id, card_no = str(body.get("claim_id", "")), str(body.get("card_no", ""))
    if not claim_id.startswith(f"{opened.sender.code}-") or len(card_no) < 6:
        raise EnvelopeRefused(
            gettext("medical.claim needs the sender's claim_id and a card number"), code="malformed"
        )
    owner = Tenant.objects.filter(division_code=card_no[:6]).first()
    if owner is None or owner.is_platform:
        raise EnvelopeRefused(
            gettext("no tenant insures card %(card)s") % {"card": card_no}, code="malformed"
        )
    insured = owner.clearing_tenant
    treated_at = dt.datetime.fromisoformat(body["treated_at"])
    local_day = treated_at.astimezone(BEIJING).date()
    shared = list(networks_shared(a=treatment, b=insured, on=local_day).values_list("code", flat=True))
    if not shared:
        raise EnvelopeRefused(
            gettext("%(treatment)s and %(insured)s share no network")
            % {"treatment": treatment.code, "insured": insured.code},
            code="malformed",
        )
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
        raise EnvelopeRefused(gettext("the adjudication is not the insured place's"), code="malformed")
    outcome = opened_answer.body
    if outcome["fund_fen"] > 0:
        day = agreement_business_date(agreement=agreement, at=treated_at)
        version = agreement.version_on(day)
        if version is None:
            raise EnvelopeRefused(
                gettext("claim %(claim_id)s: agreement %(label)s has no version in force on %(day)s")
                % {"claim_id": claim_id, "label": agreement.label, "day": day},
                code="malformed",
            )
        cycle = cycle_open_from(agreement=agreement, day=day)
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
    message_deliver(
        tenant_code=treatment.code,
        kind="medical.result",
        message_id=f"mres-{claim_id}",
        body=outcome,
        now=now,
    )
    return {"claim": claim_id, "fund_fen": outcome["fund_fen"], "patient_fen": outcome["patient_fen"]}
