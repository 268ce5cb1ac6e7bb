from __future__ import annotations

from citycard.graphql.core.dataloaders import DataLoader, by_key
from citycard.tenants.terminals.models import Terminal


class TerminalByTerminalIdLoader(DataLoader[str, Terminal | None]):
    """Terminals of the current tenant schema by their terminal id (one query per batch)."""

    def batch_load(self, keys: list[str]) -> list[Terminal | None]:
        return by_key(Terminal.objects.filter(terminal_id__in=set(keys)), keys, "terminal_id")
