"""The issuers' validation of a closed cycle (发卡方校验, docs/clearing.md, "Validation"): the work of the
``cycle_validate`` step (``services.cycles``).

* ``issuer_validate`` — one issuer's pending records sealed as ``clearing.validate`` requests, answered by
  the issuer in its own schema (``exchange.clearing_validate``), every signed answer checked; returns the
  issuer's checks and rejections. Top-level and keyword-only, for a process pool or a task queue.
* ``issuer_validation_store`` — the same, its answer kept for the step (the per-issuer Celery task).
* ``rejections_apply`` — the rejected records marked so, inside the step's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.db import connection, transaction
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.interop.models import ClearingCycle, CycleState, IssuerValidation
from citycard.interop.terms import agreement_business_date, agreement_version_in_force
from citycard.platform.db.commits import commit_unawaited
from citycard.platform.envelopes import PLATFORM, EnvelopeRefused, envelope_open, envelope_seal
from citycard.platform.models import Tenant
from citycard.tenants.exchange import services as exchange

VALIDATION_CHUNK = 5000

_VALIDATION_SQL = """
SELECT record_id, card_no, card_counter, amount_fen, data->>'tapped_at', COALESCE(data->>'terminal_no', ''),
       (data->>'terminal_seq')::bigint, COALESCE((data->>'algorithm')::int, 4), data->>'tac', acquirer,
       (data->'taps')::text, COALESCE(data->>'card_scheme', ''), data->>'code', data->>'service', data->>'route'
FROM interop_clearingrecord WHERE cycle_id = %s AND issuer = %s AND status = 'pending' ORDER BY record_id
"""


def _record_graces(cycle: ClearingCycle) -> Any:
    """``grace_of(tapped_at)``: the hotlist grace of the version in force on the record's business date
    (``grace_of(None)``: the cycle's own date's). A late record that joined this cycle keeps its date's."""
    agreement = cycle.agreement
    own = agreement_version_in_force(agreement=agreement, day=cycle.business_date).hotlist_grace_minutes
    if len({v.hotlist_grace_minutes for v in agreement.versions_ordered()}) == 1:
        return lambda tapped_at: own
    by_minute: dict[dt.datetime, int] = {}

    def grace_of(tapped_at: str | None) -> int:
        if tapped_at is None:
            return own
        minute = dt.datetime.fromisoformat(tapped_at).replace(second=0, microsecond=0)
        if minute not in by_minute:
            version = agreement.version_on(agreement_business_date(agreement=agreement, at=minute))
            by_minute[minute] = own if version is None else version.hotlist_grace_minutes
        return by_minute[minute]

    return grace_of


def _grace_entry(grace: int, default: int) -> dict[str, int]:
    return {} if grace == default else {"hotlist_grace_minutes": grace}


def issuer_validate(*, cycle_id: int, issuer_code: str, now: dt.datetime) -> dict[str, Any]:
    """Validation of one issuer's pending records of a cycle: the platform seals them as
    ``clearing.validate`` requests (5,000 records each), the issuer answers each in its own schema
    (``exchange.clearing_validate``), and every signed answer is checked (signature, sender, request).
    Returns the checks the issuer ran and its rejections, each with the record's acquirer and amount.

    Writes only in the issuer's schema, so issuers can run in parallel: top-level, for a process pool
    or a task queue, one issuer per job (see ``cycle_validate``)."""
    cycle = ClearingCycle.objects.select_related("agreement__network").get(pk=cycle_id)
    platform = Tenant.objects.get(schema_name="public")
    issuer = Tenant.objects.get(code=issuer_code)
    label = cycle.label
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
                "service": cycle.agreement.service,  # the issuer books its cards' merchant payments
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
                        "acquirer": r[9],
                        # a metro journey: each tap's TAC and counter (entry and exit)
                        **({"taps": json.loads(r[10])} if r[10] else {}),
                        **_grace_entry(grace_of(r[4]), grace_of(None)),
                        # a citizen-code ride: the code, checked by the issuer, and what it paid for
                        **(
                            {"card_scheme": r[11], "code": r[12] or "", "service": r[13], "route": r[14]}
                            if r[11] in exchange.ONLINE_MEDIA
                            else {}
                        ),
                    }
                    for r in chunk
                ],
            },
            now=now,
        )
        try:
            with transaction.atomic():
                # Asking again what a crash lost gives the same answer (the step asks an issuer whose
                # answer is missing): the commit need not wait for the disk (platform.db.commits).
                commit_unawaited()
                with tenant_context(issuer):
                    answer = exchange.clearing_validate(document=request, now=now)
        finally:
            connection.set_schema_to_public()
        opened = envelope_open(answer, recipient=PLATFORM, now=now, kinds=("clearing.validation",))
        if opened.sender.pk != issuer.pk or opened.body.get("request") != request["payload"]["message_id"]:
            raise EnvelopeRefused(
                gettext("the validation answer is not %(issuer)s's to this request")
                % {"issuer": issuer_code},
                code="malformed",
            )
        checks = opened.body["checks"]
        for item in opened.body["rejected"]:
            acquirer, amount = acquirer_of[item["record_id"]]
            rejections.append({**item, "acquirer": acquirer, "amount_fen": amount})
    return {"checks": checks, "rejected": rejections}


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
    result = issuer_validate(cycle_id=cycle_id, issuer_code=issuer_code, now=now)
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


def rejections_apply(*, cycle: ClearingCycle, rejected: list[dict[str, str]]) -> None:
    """Mark the issuer's rejected records of the cycle rejected, with their reason (one UPDATE)."""
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
