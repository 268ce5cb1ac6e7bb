"""The upload's queries as prepared statements: one set per connection and schema, prepared together the
first time, a bounded number of schemas per connection, and plain SQL when turned off."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from citycard.tenants.terminals.ingest import batch_ingest, storage
from citycard.tenants.terminals.models import Transaction
from citycard.tenants.terminals.simulate import SimTerminal

from .conftest import cards, taps_for

pytestmark = pytest.mark.django_db


def _prepared_names() -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cur.fetchall()}


@pytest.fixture(autouse=True)
def _no_statements_yet(db):
    """Each test starts with a connection that has prepared nothing (the test connection outlives tests)."""
    connection.ensure_connection()
    with connection.cursor() as cur:
        cur.execute("DEALLOCATE ALL")
    storage.PREPARED.pop(connection.connection, None)


@pytest.fixture
def two_cities(tenant, register):
    made = []
    for code, division, terminal_id in (
        ("hangzhou", "330100", "HZ-BUS-0001"),
        ("jiaxing", "330400", "JX-BUS-0001"),
    ):
        city = tenant(code)
        sim = SimTerminal(terminal_id, code, route="1")
        with tenant_context(city):
            register(sim)
        made.append((city, sim, division))
    return made


def _upload(city, sim, division, now, n=3):
    body = sim.sign(sim.payload(taps_for(sim, cards(division, n, start=sim.seq + 1), now), created_at=now))
    with tenant_context(city), CaptureQueriesContext(connection) as queries:
        result = batch_ingest(tenant=city, body=body)
    return result, [q["sql"] for q in queries.captured_queries]


def test_each_schema_gets_its_statements_once(two_cities, now):
    (hangzhou, hz_sim, hz_div), (jiaxing, jx_sim, jx_div) = two_cities
    first, sql = _upload(hangzhou, hz_sim, hz_div, now)
    assert first.accepted == 3
    assert sum(q.startswith("PREPARE") for q in sql) == 1  # every statement of the upload, one round trip
    assert {f"{name}_hangzhou" for name in storage.STATEMENTS} <= _prepared_names()
    again, sql = _upload(hangzhou, hz_sim, hz_div, now)
    assert again.accepted == 3 and not any(q.startswith("PREPARE") for q in sql)
    assert any(q.startswith('EXECUTE "ingest_lookup_hangzhou"') for q in sql)
    other, sql = _upload(jiaxing, jx_sim, jx_div, now)
    assert other.accepted == 3 and sum(q.startswith("PREPARE") for q in sql) == 1
    assert any(q.startswith('EXECUTE "ingest_lock_jiaxing"') for q in sql)
    with tenant_context(hangzhou):
        assert Transaction.objects.count() == 6
    with tenant_context(jiaxing):
        assert Transaction.objects.count() == 3


def test_a_connection_keeps_a_bounded_number_of_schemas(two_cities, now, monkeypatch):
    (hangzhou, hz_sim, hz_div), (jiaxing, jx_sim, jx_div) = two_cities
    monkeypatch.setattr(storage, "_PREPARED_SCHEMAS", 1)
    _upload(hangzhou, hz_sim, hz_div, now)
    result, sql = _upload(jiaxing, jx_sim, jx_div, now)
    assert result.accepted == 3 and "DEALLOCATE ALL" in sql
    names = _prepared_names()
    assert "ingest_lookup_jiaxing" in names and "ingest_lookup_hangzhou" not in names
    result, sql = _upload(hangzhou, hz_sim, hz_div, now)  # prepared again, and the answer is the same
    assert result.accepted == 3 and "DEALLOCATE ALL" in sql


def test_turned_off_the_plain_sql_goes(two_cities, now, settings):
    (hangzhou, sim, division), _ = two_cities
    settings.TERMINAL_PREPARED_STATEMENTS = False
    result, sql = _upload(hangzhou, sim, division, now)
    assert result.accepted == 3
    assert not any(q.startswith(("PREPARE", "EXECUTE")) for q in sql)
    assert any("FOR NO KEY UPDATE" in q for q in sql)
