"""Signed messages between the platform and the tenants (docs/clearing.md, "Messages").

* ``message_receive`` — one envelope from a tenant: checked, deduplicated (same id + body → the earlier
  result; other body → conflict), replays and bad envelopes refused and logged, then handed to the handler
  of its kind.
* ``outbox_collect`` / ``outboxes_collect`` — read one tenant's (every tenant's) outbox through
  ``citycard.tenants.exchange`` in its schema, take each message, answer it in the outbox.
* ``message_deliver`` — seal a body as the platform and put it in a tenant's inbox.

Each kind's handler lives with its topic and is registered with ``message_handler`` when the services
package is imported: ``clearing.records`` and ``medical.claim`` (``records``), ``clearing.dispute``
(``disputes``), ``clearing.reconciliation`` (``reconciliation``), ``hotlist.update`` (``hotlist``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.interop.models import MessageRefusal, ReceivedMessage, SeenNonce
from citycard.platform.audit.services import audit_record
from citycard.platform.db.commits import commit_unawaited
from citycard.platform.envelopes import PLATFORM, EnvelopeRefused, Opened, envelope_open, envelope_seal
from citycard.platform.keys import tenant_signing_key
from citycard.platform.models import Tenant
from citycard.tenants.exchange import selectors as exchange_selectors
from citycard.tenants.exchange import services as exchange

log = logging.getLogger(__name__)

Handler = Callable[[Opened, dt.datetime], dict[str, Any]]
_HANDLERS: dict[str, Handler] = {}


def message_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that acts on an opened message of ``kind`` (called in ``message_receive``'s
    savepoint with the opened envelope and the time; returns the result kept for a repeat)."""

    def register(handler: Handler) -> Handler:
        _HANDLERS[kind] = handler
        return handler

    return register


def _refuse(exc: EnvelopeRefused, document: Any, now: dt.datetime) -> None:
    payload = document.get("payload") if isinstance(document, dict) else None
    payload = payload if isinstance(payload, dict) else {}
    sender, message_id = str(payload.get("sender", ""))[:30], str(payload.get("message_id", ""))[:120]
    MessageRefusal.objects.create(
        sender=sender,
        message_id=message_id,
        kind=str(payload.get("kind", ""))[:40],
        code=exc.code,
        message=exc.message[:400],
        refused_at=now,
    )
    audit_record(
        action="interop.message_refused",
        actor=f"tenant:{sender}" if sender else "unknown",
        object_type="message",
        object_id=message_id,
        data={"code": exc.code, "message": exc.message[:400]},
    )
    log.warning("refused message %s from %s: %s (%s)", message_id, sender, exc.message, exc.code)


def message_receive(*, document: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """Take one envelope addressed to the platform and return the result of acting on it.

    Refusals raise EnvelopeRefused after being logged (MessageRefusal and the audit chain). The checks and
    the effects run in a savepoint that a refusal rolls back; the log is written after it, in the caller's
    transaction (outbox_collect commits it with the refused outbox message)."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            opened = envelope_open(document, recipient=PLATFORM, now=now, kinds=tuple(_HANDLERS))
            if SeenNonce.objects.filter(sender=opened.sender.code, nonce=opened.nonce).exists():
                raise EnvelopeRefused(
                    gettext(
                        "message %(message)s from %(sender)s was already received in this very transmission "
                        "(nonce seen): replay refused"
                    )
                    % {"message": opened.message_id, "sender": opened.sender.code},
                    code="replayed",
                )
            SeenNonce.objects.create(
                sender=opened.sender.code, nonce=opened.nonce, message_id=opened.message_id, seen_at=now
            )
            earlier = (
                ReceivedMessage.objects.select_for_update()
                .filter(sender=opened.sender.code, message_id=opened.message_id)
                .first()
            )
            if earlier is not None:
                if earlier.body_sha256 != opened.body_sha256:
                    raise EnvelopeRefused(
                        gettext(
                            "message %(message)s from %(sender)s was already received with different content "
                            "(sha256 %(earlier_sha)s…, now %(sha)s…)"
                        )
                        % {
                            "message": opened.message_id,
                            "sender": opened.sender.code,
                            "earlier_sha": earlier.body_sha256[:12],
                            "sha": opened.body_sha256[:12],
                        },
                        code="conflict",
                    )
                return {**earlier.result, "idempotent": True}
            result = _HANDLERS[opened.kind](opened, now)
            ReceivedMessage.objects.create(
                sender=opened.sender.code,
                message_id=opened.message_id,
                kind=opened.kind,
                body_sha256=opened.body_sha256,
                key_id=opened.key_id,
                received_at=now,
                result=result,
            )
            return result
    except EnvelopeRefused as exc:
        _refuse(exc, document, now)
        raise


def outbox_collect(*, tenant: Tenant, now: dt.datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Collect what ``tenant`` put in its outbox; each message is taken (or refused) and answered in the
    outbox in one transaction, so a crash leaves it pending and the next run takes it exactly once."""
    now = now or timezone.now()
    counts = {"collected": 0, "refused": 0}
    while True:
        with transaction.atomic():
            # Collecting again what a crash lost is the same collection (a message left pending is taken
            # once): the commit need not wait for the disk (platform.db.commits).
            commit_unawaited()
            with tenant_context(tenant):
                pending = exchange_selectors.outbox_pending(limit=limit)
            for message_id, document in pending:
                try:
                    result = message_receive(document=document, now=now)
                    state = "collected"
                except EnvelopeRefused as exc:
                    result, state = {"refused": exc.code, "message": exc.message}, "refused"
                with tenant_context(tenant):
                    exchange.outbox_mark(message_id=message_id, state=state, result=result, now=now)
                counts[state] += 1
        connection.set_schema_to_public()
        if len(pending) < limit:
            return counts


def outboxes_collect(*, now: dt.datetime | None = None) -> dict[str, dict[str, int]]:
    """Collect every tenant's outbox (cities and counties), in division-code order."""
    done = {}
    for tenant in Tenant.objects.exclude(schema_name="public").order_by("division_code"):
        counts = outbox_collect(tenant=tenant, now=now)
        if any(counts.values()):
            done[tenant.code] = counts
    return done


def message_deliver(
    *, tenant_code: str, kind: str, message_id: str, body: dict[str, Any], now: dt.datetime
) -> None:
    """Seal ``body`` as the platform and put it in the tenant's inbox (run in its schema). Called inside the
    caller's transaction: the delivery commits with what it announces."""
    messages_deliver(deliveries=[(tenant_code, message_id, body)], kind=kind, now=now)


def messages_deliver(
    *, deliveries: list[tuple[str, str, dict[str, Any]]], kind: str, now: dt.datetime
) -> None:
    """``message_deliver`` of many messages of one kind, each ``(tenant code, message id, body)``: the
    platform, its signing key and the recipients read once (a national network's step delivers ~300 a
    kind), each message sealed and put in its recipient's inbox in its schema, in the given order."""
    if not deliveries:
        return
    platform = Tenant.objects.get(schema_name="public")
    key = tenant_signing_key(tenant=platform)
    recipients = {t.code: t for t in Tenant.objects.filter(code__in={code for code, _m, _b in deliveries})}
    for tenant_code, message_id, body in deliveries:
        document = envelope_seal(
            sender=platform,
            recipient=tenant_code,
            kind=kind,
            message_id=message_id,
            body=body,
            now=now,
            key=key,
        )
        if tenant_code not in recipients:
            raise Tenant.DoesNotExist(f"no tenant {tenant_code!r} to deliver {message_id} to")
        with tenant_context(recipients[tenant_code]):
            exchange.inbox_deliver(document=document, now=now)
