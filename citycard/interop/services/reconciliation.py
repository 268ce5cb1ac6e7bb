"""Reconciliation files (对账文件, docs/clearing.md, "Reconciliation"): written by the ``cycle_settle`` step
(``services.cycles``) and answered by the participants.

* ``reconciliation_files_send`` — each participant's file, stored once, its signed manifest delivered to it
  and to each of its counties whose taps it lists (inside the settle step's transaction).
* ``reconciliation_totals``, ``reconciliation_csv`` (``reconciliation_text`` by cycle id),
  ``reconciliation_packed`` — what a file holds, written straight out of PostgreSQL; top-level and
  keyword-only, for a process pool.
* A ``clearing.reconciliation`` message answers a file (confirmed or mismatch).

A recipient fetches a file's text by its digest: ``selectors.reconciliation_file_text``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import zlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.utils.translation import gettext

from citycard.interop.models import ClearingCycle, ReconciliationFile
from citycard.interop.services.messages import message_handler, messages_deliver
from citycard.platform.envelopes import EnvelopeRefused, Opened
from citycard.platform.models import Tenant

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


# A participant's records: those it issued (the index's issuer prefix) and those it acquired. The index
# (cycle, issuer, acquirer) has no acquirer prefix, so the acquired ones are found with one descent per
# issuer of the cycle (``issuer = ANY`` of the issuers, read by a loose index walk of ~P steps), not by
# reading the cycle's whole index for every participant: a file costs its own rows, and P files cost the
# cycle's records twice, not P times (300 participants: 90,000 descents instead of 300 scans of 1M entries).
_RECONCILIATION_DETAILS_SQL = """
COPY (WITH RECURSIVE issuers(issuer) AS (
          (SELECT issuer FROM interop_clearingrecord WHERE cycle_id = %(cycle)s ORDER BY issuer LIMIT 1)
          UNION ALL
          SELECT (SELECT r.issuer FROM interop_clearingrecord r WHERE r.cycle_id = %(cycle)s
                  AND r.issuer > issuers.issuer ORDER BY r.issuer LIMIT 1)
          FROM issuers WHERE issuers.issuer IS NOT NULL)
      SELECT record_id, kind, CASE WHEN acquirer = %(p)s THEN 'acquirer' ELSE 'issuer' END,
             CASE WHEN acquirer = %(p)s THEN issuer ELSE acquirer END, card_no, card_counter,
             to_char(accepted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD"T"HH24:MI:SS"+08:00"'),
             amount_fen, issuer_fee_fen, network_fee_fen,
             CASE status WHEN 'pending' THEN 'valid' ELSE status END, reason, adjusts
      FROM interop_clearingrecord
      WHERE cycle_id = %(cycle)s AND (issuer = %(p)s OR (acquirer = %(p)s
            AND issuer = ANY(ARRAY(SELECT issuer FROM issuers WHERE issuer IS NOT NULL))))
      ORDER BY record_id) TO STDOUT WITH (FORMAT csv)
"""

# Every participant's totals row in one aggregate over the matrix (valid records), the rejected records
# (their partial index) and the net positions: set-based, whatever the number of participants.
_RECONCILIATION_TOTALS_SQL = """
WITH legs AS (
    SELECT acquirer AS participant, records AS acquired_records, amount_fen AS acquired_amount_fen,
           0::bigint AS issued_records, 0::bigint AS issued_amount_fen, -issuer_fee_fen AS issuer_fees_fen,
           network_fee_fen AS network_fees_fen, 0::bigint AS rejected_records, 0::bigint AS rejected_amount_fen
    FROM interop_bilateralposition WHERE cycle_id = %(cycle)s
    UNION ALL
    SELECT issuer, 0, 0, records, amount_fen, issuer_fee_fen, 0, 0, 0
    FROM interop_bilateralposition WHERE cycle_id = %(cycle)s
    UNION ALL
    SELECT party, 0, 0, 0, 0, 0, 0, count(*), sum(amount_fen)
    FROM interop_clearingrecord CROSS JOIN LATERAL (VALUES (acquirer), (issuer)) AS parties(party)
    WHERE cycle_id = %(cycle)s AND status = 'rejected' GROUP BY party
), sums AS (
    SELECT participant, sum(acquired_records) AS acquired_records, sum(acquired_amount_fen) AS acquired_amount_fen,
           sum(issued_records) AS issued_records, sum(issued_amount_fen) AS issued_amount_fen,
           sum(issuer_fees_fen) AS issuer_fees_fen, sum(network_fees_fen) AS network_fees_fen,
           sum(rejected_records) AS rejected_records, sum(rejected_amount_fen) AS rejected_amount_fen
    FROM legs GROUP BY participant
)
SELECT coalesce(s.participant, n.participant), coalesce(s.acquired_records, 0),
       coalesce(s.acquired_amount_fen, 0), coalesce(s.issued_records, 0), coalesce(s.issued_amount_fen, 0),
       coalesce(s.issuer_fees_fen, 0), coalesce(s.network_fees_fen, 0), coalesce(s.rejected_records, 0),
       coalesce(s.rejected_amount_fen, 0), coalesce(n.receivable_fen, 0), coalesce(n.payable_fen, 0),
       coalesce(n.net_fen, 0)
FROM sums s FULL JOIN (SELECT participant, receivable_fen, payable_fen, net_fen FROM interop_netposition
                       WHERE cycle_id = %(cycle)s) AS n ON n.participant = s.participant
"""


def reconciliation_totals(*, cycle: ClearingCycle) -> dict[str, dict[str, int]]:
    """Every participant's totals row (docs/clearing.md), from the netted matrix (the valid records,
    each cell the sum of its records), the rejected records and the net positions: one aggregate query.
    A participant with no figure at all has no entry (``reconciliation_csv`` then writes zeros)."""
    with connection.cursor() as cur:
        cur.execute(_RECONCILIATION_TOTALS_SQL, {"cycle": cycle.pk})
        return {
            row[0]: dict(zip(RECONCILIATION_TOTAL_COLUMNS[2:], (int(v) for v in row[1:]), strict=True))
            for row in cur.fetchall()
        }


def reconciliation_csv(
    *, cycle: ClearingCycle, participant: str, totals: dict[str, int] | None = None
) -> tuple[str, dict[str, Any]]:
    """The reconciliation file of ``participant`` for ``cycle`` (format in docs/clearing.md): the totals
    (``reconciliation_totals`` unless given), the details straight out of PostgreSQL with COPY."""
    if totals is None:
        totals = reconciliation_totals(cycle=cycle).get(participant) or dict.fromkeys(
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
    writer.writerow([cycle.label, participant, *[totals[c] for c in RECONCILIATION_TOTAL_COLUMNS[2:]]])
    writer.writerow(["# details"])
    writer.writerow(RECONCILIATION_DETAIL_COLUMNS)
    out.write(details.getvalue().decode())
    return out.getvalue(), totals


def _participants(cycle: ClearingCycle) -> list[str]:
    """Everyone with a figure in the cycle: the net positions (every issuer and acquirer of a valid record,
    and the operator) and the parties of the rejected records (their partial index). One query, without
    walking the cycle's issuer × acquirer pairs."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT participant FROM interop_netposition WHERE cycle_id = %(cycle)s"
            " UNION SELECT party FROM interop_clearingrecord"
            " CROSS JOIN LATERAL (VALUES (acquirer), (issuer)) AS parties(party)"
            " WHERE cycle_id = %(cycle)s AND status = 'rejected'",
            {"cycle": cycle.pk},
        )
        return sorted(row[0] for row in cur.fetchall())


def reconciliation_text(
    *, cycle_id: int, participant: str, totals: dict[str, int] | None = None
) -> tuple[str, dict[str, Any]]:
    """``reconciliation_csv`` by cycle id: top-level, for a process pool (see ``cycle_settle``)."""
    cycle = ClearingCycle.objects.select_related("agreement__network").get(pk=cycle_id)
    return reconciliation_csv(cycle=cycle, participant=participant, totals=totals)


def reconciliation_packed(*, cycle_id: int, participant: str, totals: dict[str, int]) -> dict[str, Any]:
    """A participant's file ready to store and announce: the text zlib-compressed, its SHA-256 and size,
    its detail rows and totals. Top-level, for a process pool (see ``cycle_settle``): the digest and the
    compression run where the text is written, and a sixth of the bytes travel back."""
    text, totals = reconciliation_text(cycle_id=cycle_id, participant=participant, totals=totals)
    data = text.encode()
    return {
        "csv_zlib": zlib.compress(data, 1),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        # Every line after the two section lines, the two header rows and the totals row.
        "detail_rows": text.count("\n") - 5,
        "totals": totals,
    }


def _reconciliation_packs(jobs: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return (reconciliation_packed(**job) for job in jobs)


def reconciliation_files_send(*, cycle: ClearingCycle, now: dt.datetime, files_map: Any = None) -> None:
    """Each participant's file, stored once (``ReconciliationFile``), and its signed manifest (digest,
    size, rows and totals; not the text) delivered to it and to each of its counties whose taps it lists.
    The recipients fetch the text by its digest and check it against the manifest (docs/clearing.md)."""
    label = cycle.label
    tenants = {t.code: t for t in Tenant.objects.exclude(schema_name="public").select_related("parent")}
    participants = _participants(cycle)
    # A city's file also goes to each of its counties whose terminals' taps it lists (the records came
    # from the county's own outbox); looked for only when an acquirer of the cycle has counties.
    cities = {t.clearing_tenant.code for t in tenants.values() if t.clearing_tenant.code != t.code}
    acquirers_with_counties = sorted(cities & set(participants))
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
    all_totals = reconciliation_totals(cycle=cycle)
    empty = dict.fromkeys(RECONCILIATION_TOTAL_COLUMNS[2:], 0)
    jobs = [
        {"cycle_id": cycle.pk, "participant": p, "totals": all_totals.get(p, empty)} for p in participants
    ]
    packs = (files_map or _reconciliation_packs)(jobs)
    files, manifests = [], []
    for participant, pack in zip(participants, packs, strict=True):
        message_id = f"rcn-{label}-{participant}"
        recipients = [participant, *sorted(sources.get(participant, ()))] if participant in tenants else []
        files.append(
            ReconciliationFile(
                cycle=cycle,
                participant=participant,
                csv_zlib=pack["csv_zlib"],
                sha256=pack["sha256"],
                totals=pack["totals"],
                message_id=message_id,
                answer={"expected": recipients, "answers": {}},
            )
        )
        manifest = {
            "cycle": label,
            "service": cycle.agreement.service,
            "participant": participant,
            **{key: pack[key] for key in ("sha256", "bytes", "detail_rows", "totals")},
        }
        manifests.append((message_id, recipients, manifest))
    # Stored in a few statements (a file is ~6× smaller than its text; 50 a statement keeps each small).
    ReconciliationFile.objects.bulk_create(files, batch_size=50)
    messages_deliver(
        deliveries=[
            (code, message_id, manifest)
            for message_id, recipients, manifest in manifests
            for code in recipients
        ],
        kind="clearing.reconciliation",
        now=now,
    )


@message_handler("clearing.reconciliation")
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
            gettext("no reconciliation file %(file_sha)r for %(participant)s")
            % {"file_sha": body.get("file_sha256"), "participant": participant},
            code="malformed",
        )
    expected = file.answer.get("expected", [participant])
    if opened.sender.code not in expected:
        raise EnvelopeRefused(
            gettext("%(sender)s was not sent file %(file)s")
            % {"sender": opened.sender.code, "file": file.message_id},
            code="malformed",
        )
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
