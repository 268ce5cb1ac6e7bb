"""Reading a tenant's mailboxes (run in the tenant's schema)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from citycard.tenants.exchange.models import InboxMessage, OutboxMessage, OutboxState


def outbox_pending(*, limit: int = 500) -> list[tuple[str, dict[str, Any]]]:
    """(message id, signed envelope) of the messages waiting to be collected, oldest first, locked so two
    collectors never take the same message (the second skips it)."""
    rows = (
        OutboxMessage.objects.select_for_update(skip_locked=True)
        .filter(state=OutboxState.PENDING)
        .order_by("id")
        .values_list("message_id", "envelope")[:limit]
    )
    return list(rows)


def inbox_messages(*, kind: str | None = None) -> QuerySet[InboxMessage]:
    qs = InboxMessage.objects.all()
    return qs.filter(kind=kind) if kind else qs


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
