"""What a tenant's terminals block (run in the tenant's schema): the hotlist ``GET /terminal/v1/hotlist`` serves.

A terminal must refuse every card it may see that is reported lost, wherever it was issued:

* the tenant's own hotlist (``cards_hotlistentry``: a city's cards; a county issues none of its own);
* for a county, its city's hotlist as the city publishes it (the ``hotlist`` publication, signed by the
  city, which the exchange round refreshes; a county never reads the city's schema);
* the network hotlist of every roaming network the tenant belongs to, as delivered to its inbox
  (``hotlist.network`` messages, exchange.selectors.network_hotlist).

The union is kept as its own versioned list (``TerminalHotlistHead`` / ``TerminalHotlistEntry``), so the
download can serve deltas as before. ``terminal_hotlist_refresh`` compares the fingerprint of the parts
(own version, city publication version, last inbox message) with the one the list was built from and,
when any part moved, rebuilds the union and bumps the version, even if the union came out the same: the
combined version grows whenever either part changes. The first build starts above the tenant's own
hotlist version, so a terminal holding a version of the old own-only list gets the full list.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from citycard.platform.errors import NotFound
from citycard.platform.publications import publication_latest
from citycard.platform.selectors import card_list_versioned
from citycard.tenants.cards.models import HotlistEntry, HotlistHead
from citycard.tenants.exchange.models import InboxMessage, TerminalHotlistEntry, TerminalHotlistHead
from citycard.tenants.exchange.selectors import network_hotlist

HEAD_PK = 1


def _own_version() -> int:
    return HotlistHead.objects.values_list("version", flat=True).filter(pk=1).first() or 0


def _city_publication():
    """The city's newest ``hotlist`` publication, for a county (None for a city, or none published)."""
    tenant = connection.tenant
    if getattr(tenant, "kind", "city") != "county":
        return None
    try:
        return publication_latest(tenant=tenant, kind="hotlist", inherit=True)
    except NotFound:
        return None


def _sources() -> dict[str, Any]:
    publication = _city_publication()
    last_inbox = (
        InboxMessage.objects.filter(kind="hotlist.network")
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return {
        "own": _own_version(),
        "city": publication.version if publication is not None else None,
        "inbox": last_inbox or 0,
    }


def _wanted() -> set[str]:
    cards = set(HotlistEntry.objects.filter(removed_at__isnull=True).values_list("card_no", flat=True))
    publication = _city_publication()
    if publication is not None:
        cards |= set(publication.document["payload"].get("cards", []))
    networks = set(
        InboxMessage.objects.filter(kind="hotlist.network")
        .values_list("envelope__payload__body__network", flat=True)
        .distinct()
    )
    for network in sorted(n for n in networks if n):
        cards |= set(network_hotlist(network=network)["cards"])
    return cards


def terminal_hotlist_refresh(*, now: dt.datetime | None = None) -> int:
    """Bring the served list up to date with its parts; returns its version (cheap when nothing moved)."""
    sources = _sources()
    head = TerminalHotlistHead.objects.filter(pk=HEAD_PK).first()
    if head is not None and head.sources == sources:
        return head.version
    with transaction.atomic():
        head, _ = TerminalHotlistHead.objects.get_or_create(pk=HEAD_PK)
        head = TerminalHotlistHead.objects.select_for_update().get(pk=HEAD_PK)
        sources = _sources()  # again, under the lock: another download may have built it meanwhile
        if head.sources == sources:
            return head.version
        if not head.sources:
            head.version = max(head.version, sources["own"])
        head.version += 1
        wanted = _wanted()
        live = set(
            TerminalHotlistEntry.objects.filter(version_removed__isnull=True).values_list(
                "card_no", flat=True
            )
        )
        TerminalHotlistEntry.objects.filter(
            version_removed__isnull=True, card_no__in=sorted(live - wanted)
        ).update(version_removed=head.version)
        TerminalHotlistEntry.objects.bulk_create(
            TerminalHotlistEntry(card_no=c, version_added=head.version) for c in sorted(wanted - live)
        )
        head.sources = sources
        head.changed_at = now or timezone.now()
        head.save(update_fields=["version", "sources", "changed_at"])
        return head.version


def terminal_hotlist_payload(*, since: int | None = None) -> dict[str, Any]:
    """The terminal hotlist as terminal_kit.hotlist takes it: the full list, or the delta since ``since``.

    A ``since`` newer than the current version (or negative) gets the full list."""
    version = terminal_hotlist_refresh()
    entries = TerminalHotlistEntry.objects.all()
    return {"kind": "hotlist", **card_list_versioned(entries=entries, version=version, since=since)}
