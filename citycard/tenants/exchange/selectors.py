"""Reading a tenant's mailboxes (run in the tenant's schema)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils.translation import gettext

from citycard.platform.envelopes import document_loads
from citycard.platform.errors import DomainError, NotFound
from citycard.tenants.exchange.models import InboxMessage, OutboxMessage, OutboxState

# Where the text of a reconciliation file is fetched from, by participant and SHA-256: the platform's
# clearing registers its store (interop.apps); the tenant layer does not import interop.
ReconciliationSource = Callable[..., "str | None"]
_reconciliation_sources: list[ReconciliationSource] = []


def reconciliation_source_register(source: ReconciliationSource) -> None:
    if source not in _reconciliation_sources:
        _reconciliation_sources.append(source)


def reconciliation_file(*, message_id: str) -> tuple[dict[str, Any], str]:
    """A reconciliation file delivered to this tenant: the manifest the platform signed (cycle,
    participant, SHA-256, size, detail rows, totals) from the inbox, and the file's text fetched by that
    digest. The text is refused (``digest_mismatch``) unless its SHA-256 and size are the manifest's."""
    message = InboxMessage.objects.filter(message_id=message_id, kind="clearing.reconciliation").first()
    if message is None:
        raise NotFound(
            gettext("no reconciliation file %(message_id)r in the inbox") % {"message_id": message_id},
            field="message_id",
        )
    manifest = message.body
    for source in _reconciliation_sources:
        text = source(participant=manifest["participant"], sha256=manifest["sha256"])
        if text is not None:
            break
    else:
        raise NotFound(
            gettext("reconciliation file %(manifest)s… is not available")
            % {"manifest": manifest["sha256"][:12]},
            field="message_id",
        )
    data = text.encode()
    if hashlib.sha256(data).hexdigest() != manifest["sha256"] or len(data) != manifest["bytes"]:
        raise DomainError(
            gettext(
                "the reconciliation file fetched for %(message_id)s is not the one its signed manifest names"
            )
            % {"message_id": message_id},
            code="digest_mismatch",
        )
    return manifest, text


def outbox_pending(*, limit: int = 500) -> list[tuple[str, dict[str, Any]]]:
    """(message id, signed envelope) of the messages waiting to be collected, oldest first, locked so two
    collectors never take the same message (the second skips it)."""
    # The envelope as text, parsed here (``document_loads``): the JSONField would parse it with json.loads.
    rows = (
        OutboxMessage.objects.select_for_update(skip_locked=True)
        .filter(state=OutboxState.PENDING)
        .order_by("id")
        .annotate(text=Cast("envelope", TextField()))
        .values_list("message_id", "text")[:limit]
    )
    return [(message_id, document_loads(text)) for message_id, text in rows]


def inbox_exceptions() -> list[dict[str, Any]]:
    """The clearing exceptions delivered to this tenant (records the issuer rejected), oldest first."""
    found = []
    for message in InboxMessage.objects.filter(kind="clearing.exceptions").order_by("id"):
        for item in message.body["exceptions"]:
            found.append({**item, "cycle": message.body["cycle"]})
    return found


def network_hotlist(*, network: str) -> dict[str, Any]:
    """The network hotlist as delivered to this tenant: the last full list with every later delta applied
    in version order (``{"network", "version", "cards"}``)."""
    cards: set[str] = set()
    version = 0
    messages = sorted(
        (
            m.body
            for m in InboxMessage.objects.filter(kind="hotlist.network")
            if m.body.get("network") == network
        ),
        key=lambda b: b["version"],
    )
    for body in messages:
        if "cards" in body:
            cards, version = set(body["cards"]), body["version"]
        elif body["delta"]["since"] == version:
            cards = (cards | set(body["delta"]["added"])) - set(body["delta"]["removed"])
            version = body["version"]
    return {"network": network, "version": version, "cards": sorted(cards)}
