"""The network hotlist (网络黑名单): a card reported lost in one city reaches every member of the network.

Each member city sends its own hotlist to the platform as signed ``hotlist.update`` envelopes from its
outbox (``exchange.services.hotlist_send``): the full list the first time, then the delta since the
version the platform applied. The platform keeps, per network, the union of its members' lists with a
version that moves on every change, and delivers to every member (cities and the counties roaming through
them) the delta since what it delivered last, or the full list the first time, as a signed
``hotlist.network`` message in the inbox. ``hotlists_exchange`` does the round (the beat task runs it
every cycle), so a card listed before a cycle's run is in every member's inbox after it.

* A ``hotlist.update`` message: a member's full list or delta, applied to each of its networks.
* ``network_hotlists_deliver`` — each network's hotlist (the delta since the last delivery) to every member.
* ``hotlists_exchange`` — one round: the cities' changes sent, the outboxes collected, the lists delivered.

Reading a network's list (full, or the delta since a version): ``selectors.network_hotlist``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.interop.models import HotlistDelivery, MemberHotlist, NetworkHotlist, NetworkHotlistEntry
from citycard.interop.selectors import network_hotlist
from citycard.interop.services.messages import message_deliver, message_handler, outboxes_collect
from citycard.platform.envelopes import EnvelopeRefused, Opened
from citycard.platform.models import RoamingNetwork, Tenant
from citycard.platform.selectors import network_members, tenant_networks
from citycard.tenants.cards.services import hotlist_publish
from citycard.tenants.exchange import services as exchange
from citycard.terminal_kit.beijing import BEIJING


def _apply(network: RoamingNetwork, issuer: str, added: set[str], removed: set[str], now: dt.datetime) -> int:
    head, _ = NetworkHotlist.objects.select_for_update().get_or_create(network=network)
    live = set(
        NetworkHotlistEntry.objects.filter(network=network, version_removed__isnull=True).values_list(
            "card_no", flat=True
        )
    )
    to_add = sorted(added - live)
    to_remove = sorted(
        removed
        & set(
            NetworkHotlistEntry.objects.filter(
                network=network, issuer=issuer, version_removed__isnull=True
            ).values_list("card_no", flat=True)
        )
    )
    if not to_add and not to_remove:
        return head.version
    head.version += 1
    head.changed_at = now
    head.save(update_fields=["version", "changed_at"])
    NetworkHotlistEntry.objects.filter(
        network=network, card_no__in=to_remove, version_removed__isnull=True
    ).update(version_removed=head.version)
    NetworkHotlistEntry.objects.bulk_create(
        NetworkHotlistEntry(network=network, card_no=c, issuer=issuer, version_added=head.version)
        for c in to_add
    )
    return head.version


@message_handler("hotlist.update")
def _update_receive(opened: Opened, now: dt.datetime) -> dict[str, Any]:
    """A member's ``hotlist.update``: a full list, or a delta that must follow the version applied last."""
    city = opened.sender.clearing_tenant
    body = opened.body
    version = body.get("version")
    if type(version) is not int:
        raise EnvelopeRefused(gettext("hotlist.update needs an integer version"), code="malformed")
    state = MemberHotlist.objects.select_for_update().filter(tenant=city.code).first()
    allowed = {city.division_code, *city.counties.values_list("division_code", flat=True)}
    networks = list(tenant_networks(tenant=city, on=now.astimezone(BEIJING).date()))
    if "cards" in body:
        cards = {c for c in body["cards"] if isinstance(c, str)}
        if any(c[:6] not in allowed for c in cards):
            raise EnvelopeRefused(
                gettext("%(city)s may only list its own cards") % {"city": city.code}, code="malformed"
            )
        for network in networks:
            current = set(
                NetworkHotlistEntry.objects.filter(
                    network=network, issuer=city.code, version_removed__isnull=True
                ).values_list("card_no", flat=True)
            )
            _apply(network, city.code, cards - current, current - cards, now)
    else:
        delta = body.get("delta") or {}
        applied = state.version if state else None
        if applied is None or delta.get("since") != applied:
            return {"applied": False, "need_full": True, "have": applied}
        for network in networks:
            _apply(network, city.code, set(delta.get("added", [])), set(delta.get("removed", [])), now)
    MemberHotlist.objects.update_or_create(tenant=city.code, defaults={"version": version, "applied_at": now})
    return {"applied": True, "version": version, "networks": [n.code for n in networks]}


@transaction.atomic
def network_hotlists_deliver(*, now: dt.datetime | None = None) -> int:
    """Deliver each network's hotlist to every member's inbox: the delta since the last delivery."""
    now = now or timezone.now()
    delivered = 0
    for network in RoamingNetwork.objects.order_by("code"):
        head = NetworkHotlist.objects.filter(network=network).first()
        version = head.version if head else 0
        for member in network_members(network_code=network.code):
            code = member.tenant.code
            last = HotlistDelivery.objects.filter(network=network, tenant=code).first()
            if last is not None and last.version == version:
                continue
            payload = network_hotlist(network_code=network.code, since=last.version if last else None)
            message_deliver(
                tenant_code=code,
                kind="hotlist.network",
                message_id=f"nhl-{network.code}-{code}-{version}",
                body=payload,
                now=now,
            )
            HotlistDelivery.objects.update_or_create(
                network=network, tenant=code, defaults={"version": version}
            )
            delivered += 1
    return delivered


def hotlists_exchange(*, now: dt.datetime | None = None) -> dict[str, int]:
    """One round: every city puts its hotlist change in its outbox (and publishes its hotlist for its
    counties), the platform collects the outboxes and delivers the network hotlists. Terminals get the
    result on their next download (exchange.terminal_hotlist)."""
    now = now or timezone.now()
    sent = 0
    for city in Tenant.objects.filter(kind="city").order_by("division_code"):
        with tenant_context(city):
            if exchange.hotlist_send(actor="interop", now=now) is not None:
                sent += 1
            if city.counties.exists():
                hotlist_publish(actor="interop")  # for its counties' terminals; unchanged: no new version
    outboxes_collect(now=now)
    return {"sent": sent, "delivered": network_hotlists_deliver(now=now)}
