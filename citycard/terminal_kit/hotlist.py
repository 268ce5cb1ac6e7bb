"""The hotlist (黑名单): the one rule of what "hotlisted" means, and the terminal's downloaded copy.

**The rule** (``hotlisted``), used by the terminal, the back office's ingestion check (``hotlist_check``)
and the issuer's validation of roaming records (``clearing_validate``): a tap at ``at`` is on a hotlisted
card when a listing of the card began at least ``grace`` before the tap and had not ended by it —
``listed_at + grace <= at < removed_at`` (``removed_at`` None: still listed). The edges: a tap exactly
``grace`` after the listing is hotlisted; a tap before the listing, or at or after its removal, is not.
The hotlist is taken as it stood at the tap, whatever happened to it since.

**The grace** is the time a terminal may take to learn of a listing, always in minutes: the tenant's
setting ``CITYCARD_HOTLIST_GRACE_MINUTES`` for its own cards at ingestion; a roaming agreement's
``hotlist_grace_minutes`` (of the records' business date) for the issuer's validation of cleared records;
none (``NO_GRACE``) on the terminal itself, which applies the list it holds from the moment it holds it.

**The terminal's copy** (``Hotlist``): a tenant-signed, versioned list of blocked card numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from citycard.terminal_kit.signing import verify_document

NO_GRACE = dt.timedelta(0)


@dataclass(frozen=True)
class Listing:
    """One period of a card on the hotlist: from ``listed_at`` until ``removed_at`` (None: still listed)."""

    listed_at: dt.datetime
    removed_at: dt.datetime | None = None
    reason: str = ""


def hotlisted(listing: Listing, *, at: dt.datetime, grace: dt.timedelta) -> bool:
    """Whether ``listing`` makes a tap at ``at`` a tap on a hotlisted card: listed at least ``grace`` before
    the tap, not removed by it (``listed_at + grace <= at < removed_at``)."""
    return listing.listed_at + grace <= at and (listing.removed_at is None or at < listing.removed_at)


def listing_at(listings: Iterable[Listing], *, at: dt.datetime, grace: dt.timedelta) -> Listing | None:
    """The listing (the latest listed, of those that count) that makes a tap at ``at`` hotlisted; None
    when the card was not hotlisted then (``hotlisted``)."""
    found = [entry for entry in listings if hotlisted(entry, at=at, grace=grace)]
    return max(found, key=lambda entry: entry.listed_at) if found else None


def grace_minutes(minutes: int) -> dt.timedelta:
    """A hotlist grace as a duration: every grace is given in whole minutes (setting and agreements)."""
    return dt.timedelta(minutes=int(minutes))


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

    def blocks(self, card_no: str, *, at: dt.datetime) -> bool:
        """Whether the terminal refuses a tap at ``at`` (``hotlisted``, with ``NO_GRACE``). The list held
        names cards only: each was listed by the time the terminal took the list, so at or before ``at``,
        and none of them removed (a removal is a newer list without the card)."""
        if card_no not in self.cards:
            return False
        return hotlisted(Listing(listed_at=at), at=at, grace=NO_GRACE)

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
