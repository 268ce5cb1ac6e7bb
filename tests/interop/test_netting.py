"""Netting and settlement: Σ net = 0 and a balanced ledger over random record sets (hypothesis), the
database refusing what does not balance, and every figure traced back to its records."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.interop.models import (
    CELL_ID_BASE,
    BilateralPosition,
    CycleState,
    Journal,
    MatrixRow,
    NetPosition,
    Posting,
    SettlementInstruction,
)
from citycard.interop.services.agreements import agreement_set
from citycard.interop.services.cycles import cycle_get_or_create, cycle_net, cycle_settle
from citycard.interop.services.records import records_insert
from citycard.interop.terms import fee_fen

from .conftest import DAY, at

pytestmark = pytest.mark.django_db
PARTIES = ["shanghai", "hangzhou", "jiaxing"]


def test_fees_round_half_up_per_record():
    assert fee_fen(200, 50) == 1  # 1.00
    assert fee_fen(100, 50) == 1  # 0.50 → 1
    assert fee_fen(99, 50) == 0  # 0.495 → 0
    assert fee_fen(300, 50) == 2  # 1.50 → 2
    assert fee_fen(-300, 50) == -2  # adjustments mirror the record
    assert fee_fen(12345, 0) == 0 and fee_fen(12345, 10000) == 12345


def _load(cycle, items):
    rows = []
    terms = cycle.agreement.version_on(cycle.business_date)
    for i, (acquirer, issuer, amount) in enumerate(items):
        rows.append(
            [
                f"{acquirer}-p{i}",
                cycle.pk,
                "tap",
                "m",
                acquirer,
                issuer,
                "3301000000000000000",
                i,
                amount,
                fee_fen(amount, terms.issuer_fee_bps),
                fee_fen(amount, terms.network_fee_bps),
                at(DAY, 9).isoformat(),
                at(DAY, 10).isoformat(),
                json.dumps({}),
            ]
        )
    records_insert(rows=rows)
    # Validated with no rejection: the records stay stored pending and read valid (models.record_status).
    type(cycle).objects.filter(pk=cycle.pk).update(state=CycleState.VALIDATED)


records = st.lists(
    st.tuples(st.sampled_from(PARTIES), st.sampled_from(PARTIES), st.integers(0, 500_000)).filter(
        lambda t: t[0] != t[1]
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=records, issuer_bps=st.integers(0, 300), network_bps=st.integers(0, 100))
def test_net_positions_sum_to_zero_and_the_ledger_balances(db, items, issuer_bps, network_bps):
    with transaction.atomic():
        agreement_set(
            network_code="yrd",
            service="transit",
            valid_from=dt.date(2020, 1, 1),
            issuer_fee_bps=issuer_bps,
            network_fee_bps=network_bps,
            actor="test",
        )
        cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY)
        _load(cycle, items)
        now = at(DAY + dt.timedelta(days=1), 6)
        cycle_net(cycle=cycle, now=now)
        cycle_settle(cycle=cycle, now=now)
        nets = dict(NetPosition.objects.filter(cycle=cycle).values_list("participant", "net_fen"))
        assert sum(nets.values()) == 0
        for journal in Journal.objects.filter(cycle=cycle):
            assert (journal.postings.aggregate(s=Sum("amount_fen"))["s"] or 0) == 0
        # After settlement every participant's clearing account is back to zero.
        for participant in nets:
            total = Posting.objects.filter(journal__cycle=cycle, account=f"clearing:{participant}").aggregate(
                s=Sum("amount_fen")
            )["s"]
            assert total == 0
        # Traceability: each cell of the matrix is its records' sums, the positions the matrix's.
        expected_cells: dict[tuple[str, str], list[int]] = {}
        for acquirer, issuer, amount in items:
            cell = expected_cells.setdefault((issuer, acquirer), [0, 0, 0, 0, 0])
            ifee, nfee = fee_fen(amount, issuer_bps), fee_fen(amount, network_bps)
            for i, figure in enumerate((1, amount, ifee, nfee, amount - ifee - nfee)):
                cell[i] += figure
        fields = ("records", "amount_fen", "issuer_fee_fen", "network_fee_fen", "acquirer_due_fen")
        assert {
            (c["issuer"], c["acquirer"]): [c[f] for f in fields]
            for c in BilateralPosition.objects.filter(cycle=cycle).values("issuer", "acquirer", *fields)
        } == expected_cells
        for participant, net in nets.items():
            expected = 0
            for acquirer, issuer, amount in items:
                ifee, nfee = fee_fen(amount, issuer_bps), fee_fen(amount, network_bps)
                if acquirer == participant:
                    expected += amount - ifee - nfee
                if issuer == participant:
                    expected -= amount - ifee
                if participant == "yrd-operator":
                    expected += nfee
            assert net == expected
        paid_in = (
            SettlementInstruction.objects.filter(cycle=cycle, payee="yrd-settlement").aggregate(
                s=Sum("amount_fen")
            )["s"]
            or 0
        )
        paid_out = (
            SettlementInstruction.objects.filter(cycle=cycle, payer="yrd-settlement").aggregate(
                s=Sum("amount_fen")
            )["s"]
            or 0
        )
        assert paid_in == paid_out == sum(n for n in nets.values() if n > 0)
        transaction.set_rollback(True)


def test_the_database_refuses_an_unbalanced_journal_and_unbalanced_positions(yrd_transit):
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY)
    with pytest.raises(DatabaseError, match="does not balance"), transaction.atomic():
        journal = Journal.objects.create(cycle=cycle, kind="probe", memo="x", created_at=at(DAY, 9))
        Posting.objects.create(journal=journal, account="a", amount_fen=5)
        Posting.objects.create(journal=journal, account="b", amount_fen=-4)
        with connection.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(DatabaseError, match="not zero"), transaction.atomic():
        NetPosition.objects.create(cycle=cycle, participant="x", receivable_fen=5, payable_fen=0, net_fen=5)
        with connection.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        journal = Journal.objects.create(cycle=cycle, kind="probe2", memo="x", created_at=at(DAY, 9))
        posting = Posting.objects.create(journal=journal, account="a", amount_fen=0)
        Posting.objects.filter(pk=posting.pk).update(amount_fen=1)


def test_the_matrix_is_stored_a_row_per_issuer_and_read_a_cell_per_acquirer(yrd_transit):
    # The matrix is stored as rows (an issuer's acquirers and their figures as arrays) and read as cells
    # through the view: each cell's id names its row; the acquirer's due is computed. The rows name a cycle
    # that exists (a foreign key), keep it, are append-only, and their arrays stay aligned.
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY)
    row = {
        "issuer": "jiaxing",
        "acquirers": ["shanghai", "hangzhou"],
        "records": [3, 1],
        "amount_fen": [600, 200],
        "issuer_fee_fen": [3, 1],
        "network_fee_fen": [1, 0],
    }
    with pytest.raises(DatabaseError, match="foreign key"), transaction.atomic():
        MatrixRow.objects.create(cycle_id=cycle.pk + 10_000, **row)
        with connection.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(DatabaseError, match="matrixrow_cells_aligned"), transaction.atomic():
        MatrixRow.objects.create(cycle=cycle, **{**row, "records": [3]})
    stored = MatrixRow.objects.create(cycle=cycle, **row)
    cells = list(BilateralPosition.objects.filter(cycle=cycle).order_by("acquirer"))
    assert [(c.issuer, c.acquirer, c.records, c.amount_fen, c.acquirer_due_fen) for c in cells] == [
        ("jiaxing", "hangzhou", 1, 200, 199),
        ("jiaxing", "shanghai", 3, 600, 596),
    ]
    assert {c.pk for c in cells} == {stored.pk * CELL_ID_BASE + 1, stored.pk * CELL_ID_BASE + 2}
    assert all(c.row_id == stored.pk and c.pk // CELL_ID_BASE == stored.pk for c in cells)
    assert [c.acquirer for c in cycle.bilateral.filter(acquirer="shanghai")] == ["shanghai"]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        MatrixRow.objects.filter(pk=stored.pk).update(records=[4, 1])
    with pytest.raises(DatabaseError, match="foreign key"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM interop_clearingcycle WHERE id = %s", [cycle.pk])
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_the_issuers_tap_time_fast_path_equals_the_conversion():
    import datetime as dt

    from citycard.tenants.exchange.services import _local_date_time

    shanghai = dt.timezone(dt.timedelta(hours=8))
    for text in (
        "2026-11-21T06:00:00+08:00",
        "2026-11-21T23:59:59+08:00",
        "2026-11-21T20:30:00+00:00",
        "2026-11-21T06:00:00.250000+08:00",
        "2026-12-31T16:00:01-05:00",
    ):
        local = dt.datetime.fromisoformat(text).astimezone(shanghai)
        expected = (bytes.fromhex(local.strftime("%Y%m%d")), bytes.fromhex(local.strftime("%H%M%S")))
        assert _local_date_time(text) == expected, text
    with pytest.raises(ValueError):
        _local_date_time("2026-13-41T06:00:00+08:00")


def test_signed_documents_refuse_floats_however_deep():
    from citycard.terminal_kit.signing import canonical_json

    for bad in ({"a": 1.5}, {"records": [{"n": 1}, {"n": 2.0}]}, [1, (2, [3.0])], {"x": {"y": [{"z": 1e3}]}}):
        with pytest.raises(TypeError):
            canonical_json(bad)
    assert canonical_json({"records": [{"n": 1, "s": "a", "b": True, "z": None}]})
