"""Commits that do not wait for the disk (citycard/platform/db/commits.py): only in a transaction the caller
opened itself, and only for that transaction."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from citycard.platform.db.commits import commit_unawaited

pytestmark = pytest.mark.django_db


def _setting() -> str:
    with connection.cursor() as cur:
        cur.execute("SHOW synchronous_commit")
        return cur.fetchone()[0]


def test_a_transaction_somebody_else_opened_keeps_waiting_for_the_disk():
    # The test runs inside pytest-django's transaction (the outermost block): a block here is nested in it,
    # as a service is in a caller's transaction.
    with transaction.atomic():
        assert commit_unawaited() is False
        assert _setting() == "on"
        with transaction.atomic():
            assert commit_unawaited() is False
    assert _setting() == "on"


def test_the_callers_own_transaction_commits_without_waiting_and_only_it():
    seen: dict[str, object] = {}

    def own_connection() -> None:
        # A thread has a connection of its own, in autocommit: its block is the outermost one.
        try:
            with transaction.atomic():
                seen["applied"] = commit_unawaited()
                seen["inside"] = _setting()
            seen["after"] = _setting()
            with transaction.atomic():
                seen["next"] = _setting()
        finally:
            connection.close()

    thread = threading.Thread(target=own_connection)
    thread.start()
    thread.join()
    assert seen == {"applied": True, "inside": "off", "after": "on", "next": "on"}
