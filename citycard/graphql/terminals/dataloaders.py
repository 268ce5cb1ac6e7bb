from __future__ import annotations

from citycard.graphql.core.dataloaders import DataLoader, by_key
from citycard.tenants.terminals.models import Journey, Terminal


class TerminalByTerminalIdLoader(DataLoader[str, Terminal | None]):
    """Terminals of the current tenant schema by their terminal id (one query per batch)."""

    def batch_load(self, keys: list[str]) -> list[Terminal | None]:
        return by_key(Terminal.objects.filter(terminal_id__in=set(keys)), keys, "terminal_id")


class JourneyByTransactionLoader(DataLoader[int, Journey | None]):
    """The metro journey a transaction is the entry or exit of, by transaction id (one query per batch)."""

    def batch_load(self, keys: list[int]) -> list[Journey | None]:
        wanted = set(keys)
        found: dict[int, Journey] = {}
        for journey in Journey.objects.filter(entry_tx_id__in=wanted) | Journey.objects.filter(
            exit_tx_id__in=wanted
        ):
            for tx in (journey.entry_tx_id, journey.exit_tx_id):
                if tx in wanted:
                    found[tx] = journey
        return [found.get(k) for k in keys]
