"""The test suite's embedded PostgreSQL skips flushing to disk (CITYCARD_PG_DURABLE=off); a kept one never."""

from __future__ import annotations

import psycopg2
import pytest

from citycard.platform import embedded_pg


def _conf(tmp_path):
    conf = tmp_path / "postgresql.conf"
    conf.write_text("# initdb's settings\n")
    return conf


def test_a_kept_cluster_flushes_to_disk(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYCARD_PG_DURABLE", raising=False)
    conf = _conf(tmp_path)
    assert embedded_pg._tune(tmp_path) is True
    assert "max_connections = 300" in conf.read_text()
    assert "fsync" not in conf.read_text()
    assert embedded_pg._tune(tmp_path) is False


@pytest.mark.parametrize("value", ["off", "OFF", "0", "no", "false"])
def test_a_throwaway_cluster_does_not(tmp_path, monkeypatch, value):
    monkeypatch.setenv("CITYCARD_PG_DURABLE", value)
    conf = _conf(tmp_path)
    assert embedded_pg._tune(tmp_path) is True
    text = conf.read_text()
    assert "fsync = off" in text and "full_page_writes = off" in text
    assert embedded_pg._tune(tmp_path) is False  # once
    assert conf.read_text() == text


def test_a_tuned_cluster_asked_to_be_throwaway_gets_only_that(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYCARD_PG_DURABLE", raising=False)
    conf = _conf(tmp_path)
    embedded_pg._tune(tmp_path)
    monkeypatch.setenv("CITYCARD_PG_DURABLE", "off")
    assert embedded_pg._tune(tmp_path) is True
    text = conf.read_text()
    assert text.count("max_connections = 300") == 1 and "fsync = off" in text


def test_the_server_runs_with_what_was_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYCARD_PG_DURABLE", "off")
    pgdata = tmp_path / "pg"
    address = embedded_pg.ensure_running(pgdata)
    try:
        conn = psycopg2.connect(host=address.host, port=address.port, user=address.user, dbname="postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT name, setting FROM pg_settings"
                    " WHERE name IN ('fsync', 'full_page_writes', 'max_connections')"
                )
                settings = dict(cur.fetchall())
        finally:
            conn.close()
        assert settings == {"fsync": "off", "full_page_writes": "off", "max_connections": "300"}
    finally:
        embedded_pg.stop(pgdata)
        embedded_pg._started_here.discard(pgdata.resolve())


def test_make_test_asks_for_a_throwaway_cluster():
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "CITYCARD_DATA_DIR=$(CURDIR)/.citycard/test CITYCARD_PG_DURABLE=off" in makefile
