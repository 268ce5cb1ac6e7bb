"""Jobs for a spawned process pool in tests (tests/e2e/test_clearing_pool.py). A spawned child imports
this module before its initializer has set Django up, so nothing here imports Django at module level."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any


def child_init(env: dict[str, str]) -> None:
    """Use the test session's database (``tests.workers.worker_env``), then set Django up."""
    os.environ.update(env)
    import django

    django.setup()


def validate(cycle_id: int, issuer: str, now: dt.datetime) -> tuple[dict[str, Any], int]:
    from citycard.interop.services import issuer_validate

    return issuer_validate(cycle_id, issuer, now), os.getpid()


def packed(cycle_id: int, participant: str, totals: dict[str, int]) -> tuple[dict[str, Any], int]:
    from citycard.interop.services import reconciliation_packed

    return reconciliation_packed(cycle_id, participant, totals), os.getpid()
