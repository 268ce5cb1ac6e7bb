"""Readiness: can this process reach what it needs (the database, the Celery broker)?

Each check opens its own short-lived connection with a timeout, so ``/readyz`` answers within a bounded
time even when a server is down or a network drops packets, and never waits on (or spoils) the request
connection that Django keeps open. The answer names only what is up or down; why goes to the log.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import psycopg2
from django.conf import settings
from django.db import connections
from kombu import Connection

from citycard.platform import embedded_redis

log = logging.getLogger(__name__)

OK, DOWN = "ok", "down"


def database_status(*, timeout_s: float) -> str:
    """``ok`` when the database answers ``SELECT 1`` within ``timeout_s``."""
    try:
        params = connections["default"].get_connection_params()
        params.pop("cursor_factory", None)
        # libpq counts connect_timeout in whole seconds (at least 2); the statement gets the rest.
        params["connect_timeout"] = max(2, math.ceil(timeout_s))
        conn = psycopg2.connect(**params)
        try:
            with conn.cursor() as cur:
                # LOCAL, in the statement's own transaction: a PgBouncer in transaction mode refuses a
                # statement_timeout among the connection's options and would keep a session-level SET.
                cur.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}; SELECT 1")
                cur.fetchone()
        finally:
            conn.close()
    except Exception as exc:  # any failure at all means "not ready"; the reason is for the log
        log.warning(
            "readiness: the database is down: %s", str(exc).strip().splitlines()[0] if str(exc) else exc
        )
        return DOWN
    return OK


def broker_status(*, timeout_s: float) -> str:
    """``ok`` when the Celery broker (CELERY_BROKER_URL) accepts a connection within ``timeout_s``.

    The embedded filesystem broker is up when its queue folder can be written; the embedded Redis is started
    here if no process has needed it yet (as sending the first task would), so a fresh deployment is ready."""
    url = settings.CELERY_BROKER_URL
    options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {})
    try:
        embedded = getattr(settings, "EMBEDDED_BROKER_DIR", None)
        if embedded is not None and url == embedded_redis.broker_url(embedded):
            embedded_redis.ensure_running(embedded)
        if url.startswith("filesystem://"):
            for folder in {options.get("data_folder_in"), options.get("data_folder_out")} - {None}:
                os.makedirs(folder, exist_ok=True)  # as the Celery app does when it first configures
                if not os.access(folder, os.W_OK):
                    raise OSError(f"the broker folder {folder} is not writable")
            return OK
        if url.startswith("memory://"):
            return OK
        # Redis and RabbitMQ: one attempt, no retries, every socket operation bounded.
        options.update({"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "max_retries": 0})
        with Connection(url, connect_timeout=timeout_s, transport_options=options) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout_s)
            conn.default_channel  # noqa: B018 - kombu's Redis transport sends PING when a channel opens
    except Exception as exc:
        log.warning("readiness: the broker is down: %s", exc)
        return DOWN
    return OK


def readiness(*, timeout_s: float | None = None) -> dict[str, str]:
    """``{"database": "ok"|"down", "broker": "ok"|"down"}``, both checked at once."""
    timeout = float(timeout_s if timeout_s is not None else settings.READINESS_TIMEOUT_S)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz") as pool:
        database = pool.submit(database_status, timeout_s=timeout)
        broker = pool.submit(broker_status, timeout_s=timeout)
        return {"database": database.result(), "broker": broker.result()}
