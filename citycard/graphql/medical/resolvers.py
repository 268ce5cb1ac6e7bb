"""Medical claim reads for the tenant endpoint: thin over citycard.tenants.medical.selectors."""

from __future__ import annotations

from typing import Any

from citycard.graphql.core.access import access_log_read
from citycard.tenants.medical.models import Claim
from citycard.tenants.medical.selectors import claim_submitted


def hospital_key_of(info: Any) -> str:
    """What keeps one hospital's claim ids apart from another's: its API key's id."""
    principal = info.context.principal
    return principal.api_key.key_id if principal.api_key is not None else principal.actor


def resolve_medical_claim(info: Any, *, claim_id: str) -> Claim | None:
    """A claim this key submitted, by the hospital's claim id (null for any other); logged as a read of
    the card's data."""
    claim = claim_submitted(claim_no=claim_id.strip(), hospital_key=hospital_key_of(info))
    if claim is not None:
        access_log_read(info, object_type="card", object_ids=[claim.card_no], fields=["medical_claim"])
    return claim
