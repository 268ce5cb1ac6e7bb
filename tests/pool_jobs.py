"""Jobs for a spawned process pool in tests (tests/e2e/test_clearing_pool.py). A spawned child imports
this module before its initializer has set Django up, so nothing here imports Django at module level."""

from __future__ import annotations

import os
from typing import Any


def child_init(env: dict[str, str]) -> None:
    """Use the test session's database (``tests.workers.worker_env``), then set Django up."""
    os.environ.update(env)
    import django

    django.setup()


def validate(job: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """One ``issuers_map`` job (``issuer_validate``'s keyword arguments) and the process that ran it."""
    from citycard.interop.services.validation import issuer_validate

    return issuer_validate(**job), os.getpid()


def packed(job: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """One ``files_map`` job (``reconciliation_packed``'s keyword arguments) and the process that ran it."""
    from citycard.interop.services.reconciliation import reconciliation_packed

    return reconciliation_packed(**job), os.getpid()
