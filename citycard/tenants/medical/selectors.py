"""Reading medical claims (tenant side)."""

from __future__ import annotations

from typing import Any

from citycard.tenants.exchange.models import InboxMessage


def claim_outcome(*, claim_id: str) -> dict[str, Any] | None:
    """What the insured place decided for a claim our hospital submitted (fund share, patient share), once
    the platform delivered it to our inbox."""
    message = InboxMessage.objects.filter(kind="medical.result", message_id=f"mres-{claim_id}").first()
    return message.body if message else None
