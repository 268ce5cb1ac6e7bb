from __future__ import annotations

from typing import Any

from citycard.graphql.core.dataloaders import DataLoader
from citycard.tenants.medical.selectors import claim_outcomes


class ClaimOutcomeLoader(DataLoader[str, dict[str, Any] | None]):
    """The insured place's answer to submitted claims, by full claim id (None: not answered yet): one
    query per batch, whatever the number of claims and of their fields asking."""

    def batch_load(self, keys: list[str]) -> list[dict[str, Any] | None]:
        found = claim_outcomes(claim_ids=keys)
        return [found.get(key) for key in keys]
