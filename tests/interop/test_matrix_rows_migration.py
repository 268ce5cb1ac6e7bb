"""Migration 0020: the cells of a table of cells become a row per issuer, and the view of the same name reads
them back as they were; going back makes the table of cells again from the rows (the test's transaction
rolls the migrations back with it)."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from citycard.interop.services.cycles import cycle_get_or_create

pytestmark = pytest.mark.django_db

CELLS = [
    ("hangzhou", "jiaxing", 2, 400, 2, 0, 398),
    ("hangzhou", "shanghai", 1, 150, 1, 0, 149),
    ("jiaxing", "hangzhou", 5, 1000, 5, 1, 994),
]
COLUMNS = "issuer, acquirer, records, amount_fen, issuer_fee_fen, network_fee_fen, acquirer_due_fen"


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def _cells(cycle_id):
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {COLUMNS} FROM interop_bilateralposition WHERE cycle_id = %s ORDER BY issuer, acquirer",
            [cycle_id],
        )
        return cur.fetchall()


def test_the_cells_become_rows_per_issuer_and_read_back_the_same(yrd_transit):
    cycle = cycle_get_or_create(network_code="yrd", service="transit", business_date=dt.date(2026, 11, 21))
    _migrate([("interop", "0019_bilateral_cycle_checked_per_statement")])
    with connection.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE relname = 'interop_bilateralposition'")
        assert cur.fetchone() == ("r",)  # a table again
        cur.executemany(
            f"INSERT INTO interop_bilateralposition (cycle_id, {COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(cycle.pk, *cell) for cell in CELLS],
        )
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction: checks before ALTER TABLE
    _migrate([("interop", "0020_matrix_rows")])
    with connection.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE relname = 'interop_bilateralposition'")
        assert cur.fetchone() == ("v",)
        cur.execute(
            "SELECT issuer, acquirers, records, amount_fen FROM interop_matrixrow WHERE cycle_id = %s"
            " ORDER BY issuer",
            [cycle.pk],
        )
        assert cur.fetchall() == [
            ("hangzhou", ["jiaxing", "shanghai"], [2, 1], [400, 150]),
            ("jiaxing", ["hangzhou"], [5], [1000]),
        ]
    assert _cells(cycle.pk) == CELLS
