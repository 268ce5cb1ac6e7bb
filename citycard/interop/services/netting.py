"""Netting and settlement (轧差与结算, docs/clearing.md, "Netting" and "Settlement"): the work of the
``cycle_net`` and ``cycle_settle`` steps (``services.cycles``), run inside their transaction.

* ``positions_net`` — the bilateral matrix (one cell per issuer and acquirer, each the sum of its valid
  records), the multilateral net positions (Σ = 0, held by a deferred trigger) and their ledger journal.
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

# The cycle is validated (netting refuses it otherwise), so every record not rejected is valid. The matrix
# never leaves PostgreSQL: one INSERT … SELECT (at 300 participants, ~90,000 cells: sending them to Python
# and back as arrays cost more than the aggregate). Per cell there is the row and its unique index only: the
# cells' cycle is checked once per statement (a trigger over the inserted rows), not by a foreign key's
# check per cell (migration 0019).
_BILATERAL_SQL = """
INSERT INTO interop_bilateralposition (cycle_id, issuer, acquirer, records, amount_fen, issuer_fee_fen,
    network_fee_fen, acquirer_due_fen)
SELECT %(cycle)s, issuer, acquirer, count(*), sum(amount_fen), sum(issuer_fee_fen), sum(network_fee_fen),
    sum(amount_fen) - sum(issuer_fee_fen) - sum(network_fee_fen)
FROM interop_clearingrecord WHERE cycle_id = %(cycle)s AND status <> 'rejected'
GROUP BY issuer, acquirer
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


def positions_net(*, cycle: ClearingCycle, now: dt.datetime) -> None:
    """The cycle's bilateral matrix and net positions, in SQL, posted to the ledger (one journal, Σ = 0).
    The cycle is validated: every record not rejected is valid."""
    params = {"cycle": cycle.pk, "operator": cycle.agreement.operator}
    with connection.cursor() as cur:
        cur.execute(_BILATERAL_SQL, params)
        cur.execute(_NET_SQL, params)
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
