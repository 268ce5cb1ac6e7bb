"""The downloaded hotlist (黑名单): a tenant-signed, versioned list of blocked card numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citycard.terminal_kit.signing import verify_document


class HotlistError(ValueError):
    pass


class HotlistDeltaMismatch(HotlistError):
    """A delta made on another version than the one held: the full list is needed."""


@dataclass
class Hotlist:
    tenant: str = ""
    version: int = 0
    cards: frozenset[str] = field(default_factory=frozenset)

    def __contains__(self, card_no: object) -> bool:
        return card_no in self.cards

    def apply(self, document: Any, *, keys: dict[str, bytes]) -> Hotlist:
        """A newer hotlist from a signed document (full list, or a delta on this version); older ones refused."""
        payload = verify_document(document, keys=keys)
        if payload.get("kind") not in {"hotlist", "network-hotlist"}:
            raise HotlistError(f"document is a {payload.get('kind')!r}, not a hotlist")
        version = payload.get("version")
        if not isinstance(version, int) or version <= self.version:
            raise HotlistError(f"hotlist version {version} is not newer than the one held ({self.version})")
        if "cards" in payload:
            cards = {entry["card_no"] if isinstance(entry, dict) else entry for entry in payload["cards"]}
        else:
            delta = payload.get("delta") or {}
            if delta.get("since") != self.version:
                raise HotlistDeltaMismatch(
                    f"delta is on version {delta.get('since')}, this terminal holds {self.version}"
                )
            cards = (set(self.cards) | set(delta.get("added", []))) - set(delta.get("removed", []))
        return Hotlist(tenant=str(payload.get("tenant", "")), version=version, cards=frozenset(cards))
