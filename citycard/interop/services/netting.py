"""Netting and settlement (轧差与结算, docs/clearing.md, "Netting" and "Settlement"): the work of the
``cycle_net`` and ``cycle_settle`` steps (``services.cycles``), run inside their transaction.

* ``positions_net`` — the bilateral matrix (one cell per issuer and acquirer, each the sum of its valid
  records; stored a row per issuer, ``MatrixRow``), the multilateral net positions (Σ = 0, held by a
  deferred trigger) and their ledger journal, the matrix and the positions in one statement.
* ``settlement_instruct`` — the settlement instructions through the network's settlement account on the
  value date, and their ledger journal (every journal balances: a deferred constraint).
* ``matrix_picture_store`` — the matrix as the console draws it, stored once at settlement.

Reading the results: ``selectors.bilateral_matrix``, ``net_positions``, ``settlement_instructions``.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection

from citycard.interop.models import (
    ClearingCycle,
    CyclePeriod,
    Journal,
    NetPosition,
    Posting,
    SettlementInstruction,
)
from citycard.interop.selectors import MATRIX_LARGEST, MATRIX_LIVE_SQL
from citycard.interop.terms import agreement_next_date

# The cycle is validated (netting refuses it otherwise), so every record not rejected is valid. One
# statement, one pass over the records, nothing leaving PostgreSQL: the cells (issuer × acquirer), stored as
# the matrix's rows (``MatrixRow``: one per issuer, its acquirers' figures as arrays in no particular order —
# at 300 participants 300 rows rather than ~90,000 cells, each of which cost a row and an index entry), and
# the multilateral net positions from the same cells. The arrays of a row stay aligned because every
# aggregate of a group is fed the same cells in the same order; ordering them by acquirer would sort every
# cell (at 300 participants that cost more than storing the rows), and every reader orders what it reads.
# Issuer pays amount − issuer fee; the acquirer receives amount − issuer fee − network fee; the operator
# receives the network fee (a leg only if some cell has one). Σ = 0 by construction, and checked by the
# deferred trigger on the positions.
_POSITIONS_SQL = """
WITH cells AS MATERIALIZED (
    SELECT issuer, acquirer, count(*) AS records, sum(amount_fen)::bigint AS amount_fen,
           sum(issuer_fee_fen)::bigint AS issuer_fee_fen, sum(network_fee_fen)::bigint AS network_fee_fen
    FROM interop_clearingrecord WHERE cycle_id = %(cycle)s AND status <> 'rejected'
    GROUP BY issuer, acquirer
), issuer_rows AS MATERIALIZED (
    SELECT issuer, array_agg(acquirer) AS acquirers, array_agg(records) AS records,
           array_agg(amount_fen) AS amount_fen, array_agg(issuer_fee_fen) AS issuer_fee_fen,
           array_agg(network_fee_fen) AS network_fee_fen, sum(amount_fen - issuer_fee_fen)::bigint AS payable,
           sum(network_fee_fen)::bigint AS network_fees, bool_or(network_fee_fen <> 0) AS any_network_fee
    FROM cells GROUP BY issuer
), matrix AS (
    INSERT INTO interop_matrixrow (cycle_id, issuer, acquirers, records, amount_fen, issuer_fee_fen,
        network_fee_fen)
    SELECT %(cycle)s, issuer, acquirers, records, amount_fen, issuer_fee_fen, network_fee_fen FROM issuer_rows
)
INSERT INTO interop_netposition (cycle_id, participant, receivable_fen, payable_fen, net_fen)
SELECT %(cycle)s, participant, sum(receivable), sum(payable), sum(receivable) - sum(payable)
FROM (
    SELECT acquirer AS participant, sum(amount_fen - issuer_fee_fen - network_fee_fen)::bigint AS receivable,
           0::bigint AS payable
    FROM cells GROUP BY acquirer
    UNION ALL
    SELECT issuer, 0, payable FROM issuer_rows
    UNION ALL
    SELECT %(operator)s, sum(network_fees)::bigint, 0 FROM issuer_rows HAVING bool_or(any_network_fee)
) AS legs
GROUP BY participant
"""


def positions_net(*, cycle: ClearingCycle, now: dt.datetime) -> None:
    """The cycle's bilateral matrix and net positions, in SQL, posted to the ledger (one journal, Σ = 0).
    The cycle is validated: every record not rejected is valid."""
    params = {"cycle": cycle.pk, "operator": cycle.agreement.operator}
    with connection.cursor() as cur:
        cur.execute(_POSITIONS_SQL, params)
        cur.execute("SET CONSTRAINTS interop_netposition_sums_to_zero IMMEDIATE")
    journal = Journal.objects.create(
        cycle=cycle, kind="positions", memo=f"net positions of {cycle.label}", created_at=now
    )
    Posting.objects.bulk_create(
        Posting(journal=journal, account=f"clearing:{p.participant}", amount_fen=-p.net_fen)
        for p in NetPosition.objects.filter(cycle=cycle).order_by("participant")
    )
    _ledger_check()


def _ledger_check() -> None:
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS interop_posting_balances IMMEDIATE")


def settlement_value_date(*, cycle: ClearingCycle) -> dt.date:
    """The settlement lag after the business date (a monthly cycle: after its month)."""
    agreement = cycle.agreement
    if agreement.period == CyclePeriod.MONTHLY:
        end = agreement_next_date(agreement=agreement, day=cycle.business_date)
        return end + dt.timedelta(days=agreement.settlement_lag_days)
    return cycle.business_date + dt.timedelta(days=agreement.settlement_lag_days)


def settlement_instruct(*, cycle: ClearingCycle, now: dt.datetime) -> None:
    """The netted cycle's settlement instructions (payers pay the settlement account, it pays the payees,
    on the value date) and their ledger journal."""
    account = cycle.agreement.settlement_account
    value_date = settlement_value_date(cycle=cycle)
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
        memo=f"settlement of {cycle.label} on {value_date}",
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


def matrix_picture_store(*, cycle: ClearingCycle) -> None:
    """Store the settled cycle's matrix as the console draws it (``MatrixPicture``): one statement, the
    aggregate never leaving PostgreSQL. The matrix is append-only, so the picture stays true."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO interop_matrixpicture (cycle_id, acquirers, issuers, points_json, largest)"
            f" SELECT %(cycle)s, a::jsonb, i::jsonb, p, l::jsonb FROM ({MATRIX_LIVE_SQL}) AS live(a, i, p, l)"
            " ON CONFLICT (cycle_id) DO NOTHING",
            {"cycle": cycle.pk, "largest": MATRIX_LARGEST},
        )
