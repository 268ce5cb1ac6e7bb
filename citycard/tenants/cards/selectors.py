"""Reading schemes, cardholders, cards and the hotlist.

``card_facts`` is what ingestion checks and other packages use: one query whatever the number of cards.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.sqlarrays import pg_array
from citycard.tenants.cards.models import (
    Card,
    Cardholder,
    CardholderCategory,
    CardScheme,
    HotlistEntry,
    HotlistHead,
)
from citycard.tenants.cards.pii import Sealer, id_mask, id_number_parse, phone_normalise

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


@dataclass(frozen=True)
class CardFacts:
    card_no: str
    state: str
    scheme_code: str
    categories: frozenset[str]
    hotlisted_at: dt.datetime | None
    hotlist_reason: str


_FACTS_SQL = """
SELECT c.card_no, c.state, s.code,
       COALESCE((SELECT array_agg(DISTINCT k.code) FROM cards_cardholdercategory k
                  WHERE k.cardholder_id = c.cardholder_id AND k.valid_from <= %(day)s
                    AND (k.valid_to IS NULL OR k.valid_to >= %(day)s)), '{}'),
       h.listed_at, COALESCE(h.reason, '')
  FROM cards_card c
  JOIN cards_cardscheme s ON s.id = c.scheme_id
  LEFT JOIN LATERAL (SELECT e.listed_at, e.reason FROM cards_hotlistentry e
                      WHERE e.card_no = c.card_no AND e.listed_at <= %(at)s
                        AND (e.removed_at IS NULL OR e.removed_at > %(at)s)
                      ORDER BY e.listed_at DESC LIMIT 1) h ON true
 WHERE c.card_no = ANY(%(cards)s)
"""


def card_facts(*, card_nos: Iterable[str], at: dt.datetime | None = None) -> dict[str, CardFacts]:
    """What is known of these cards at ``at`` (default now), in the current tenant's schema: state, scheme,
    rider categories valid that day (Asia/Shanghai), and the hotlist listing in force then. One query;
    cards not found are absent."""
    numbers = sorted({str(n) for n in card_nos})
    if not numbers:
        return {}
    at = at or timezone.now()
    day = at.astimezone(SHANGHAI).date()
    with connection.cursor() as cur:
        cur.execute(_FACTS_SQL, {"cards": numbers, "at": at, "day": day})
        rows = cur.fetchall()
    return {
        r[0]: CardFacts(
            card_no=r[0],
            state=r[1],
            scheme_code=r[2],
            categories=frozenset(r[3]),
            hotlisted_at=r[4],
            hotlist_reason=r[5],
        )
        for r in rows
    }


def hotlist_as_of(*, card_nos: Iterable[str], at: dt.datetime) -> dict[str, tuple[dt.datetime, str]]:
    """For each card on the hotlist at ``at``: (listed_at, reason). One query (any card number, ours or not)."""
    numbers = sorted({str(n) for n in card_nos})
    if not numbers:
        return {}
    rows = (
        HotlistEntry.objects.filter(card_no__in=numbers, listed_at__lte=at)
        .filter(Q(removed_at__isnull=True) | Q(removed_at__gt=at))
        .values_list("card_no", "listed_at", "reason")
    )
    return {card_no: (listed_at, reason) for card_no, listed_at, reason in rows}


def hotlist_version() -> int:
    return HotlistHead.objects.values_list("version", flat=True).get(pk=1)


def hotlist_payload(*, since: int | None = None) -> dict[str, Any]:
    """The hotlist as terminals take it (terminal_kit.hotlist): the full list, or the delta since version
    ``since`` (cards added and removed after it). A ``since`` newer than the current version gets the full
    list (the terminal's copy is not ours)."""
    version = hotlist_version()
    if since is None or since < 0 or since > version:
        cards = sorted(HotlistEntry.objects.filter(removed_at__isnull=True).values_list("card_no", flat=True))
        return {"kind": "hotlist", "version": version, "cards": cards}
    added = HotlistEntry.objects.filter(removed_at__isnull=True, version_added__gt=since)
    removed = HotlistEntry.objects.filter(version_added__lte=since, version_removed__gt=since)
    # A card removed then listed again after ``since`` appears in both: it is on the list now.
    added_set = set(added.values_list("card_no", flat=True))
    removed_set = set(removed.values_list("card_no", flat=True)) - added_set
    return {
        "kind": "hotlist",
        "version": version,
        "delta": {"since": since, "added": sorted(added_set), "removed": sorted(removed_set)},
    }


def scheme_document() -> dict[str, Any]:
    """This tenant's schemes as published data (for counties and partners): no serial counters."""
    schemes = []
    for s in CardScheme.objects.order_by("code"):
        schemes.append(
            {
                "code": s.code,
                "name_zh": s.name_zh,
                "name_en": s.name_en,
                "is_main": s.is_main,
                "eligibility": list(s.eligibility),
                "real_name": s.real_name,
                "anonymous_allowed": s.anonymous_allowed,
                "one_per_person": s.one_per_person,
                "virtual": s.virtual,
                "applications": list(s.applications),
                "validity_years": s.validity_years,
                "card_fee_fen": s.card_fee_fen,
                "replacement_fee_fen": s.replacement_fee_fen,
                "account_overdraft_fen": s.account_overdraft_fen,
                "enabled": s.enabled,
            }
        )
    return {"schemes": schemes}


def schemes_visible(*, tenant) -> list[dict[str, Any]]:
    """The card schemes a tenant works with: its own, or for a county its city's published ones (read-only,
    verified against the city's signature)."""
    if tenant.kind != "county":
        return scheme_document()["schemes"]
    from citycard.platform.keys import tenant_verify
    from citycard.platform.publications import publication_latest

    publication = publication_latest(tenant=tenant, kind="card-schemes", inherit=True)
    _, payload = tenant_verify(document=publication.document, tenant=tenant.clearing_tenant)
    return list(payload["schemes"])


SEARCH_REF = "ref:"


def cardholder_search_ref(*, query: str) -> str | None:
    """The search term that stands for an ID or phone number: ``ref:`` and its blind index, so that a
    search's address (browser history, server logs, the page's own links) never holds the number itself.
    None for anything else (names and card numbers are searched as typed)."""
    text = (query or "").strip()
    if len(text) == 18:
        try:
            return SEARCH_REF + Sealer().blind("id", id_number_parse(text).number)
        except DomainError:
            return None
    if len(text) in (11, 14) and text.lstrip("+").isdigit():
        try:
            return SEARCH_REF + Sealer().blind("phone", phone_normalise(text))
        except DomainError:
            return None
    return None


def cardholder_search(*, query: str) -> QuerySet[Cardholder]:
    """Cardholders by ID number (through the blind index), phone, card number, name (prefix), or the
    ``ref:`` term of an ID or phone number (``cardholder_search_ref``)."""
    text = (query or "").strip()
    qs = Cardholder.objects.all()
    if not text:
        return qs.none()
    if text.startswith(SEARCH_REF):
        digest = text[len(SEARCH_REF) :]
        return qs.filter(Q(id_blind=digest) | Q(phone_blind=digest)) if digest else qs.none()
    if len(text) == 18:
        try:
            number = id_number_parse(text).number
        except DomainError:
            pass
        else:
            return qs.filter(id_blind=Sealer().blind("id", number))
    if len(text) == 19 and text.isdigit():
        return qs.filter(cards__card_no=text).distinct()
    if len(text) == 11 and text.isdigit():
        try:
            return qs.filter(phone_blind=Sealer().blind("phone", phone_normalise(text)))
        except DomainError:
            pass
    return qs.filter(name__startswith=text)


def cardholder_find(
    *, cardholder_id: int | None = None, card_no: str | None = None, id_number: str | None = None
) -> Cardholder:
    """One cardholder by number, by one of their cards or by ID number; NotFound names what was asked."""
    qs = Cardholder.objects.all()
    if cardholder_id is not None:
        holder, asked = qs.filter(pk=cardholder_id).first(), f"cardholder {cardholder_id}"
    elif card_no:
        holder, asked = qs.filter(cards__card_no=card_no.strip()).first(), f"card {card_no.strip()}"
    elif id_number:
        number = id_number_parse(id_number).number
        holder, asked = (
            qs.filter(id_blind=Sealer().blind("id", number)).first(),
            f"ID number {id_mask(number)}",
        )
    else:
        raise DomainError("name a cardholder, a card or an ID number", field="cardholder")
    if holder is None:
        raise NotFound(f"no cardholder for {asked}", field="cardholder")
    return holder


def cardholder_pii(*, cardholder: Cardholder) -> dict[str, str]:
    """Decrypt a cardholder's ID number, phone and address, with the birth date the ID number holds (only
    through a logged data grant or an officer action)."""
    sealer = Sealer()
    id_number = sealer.open("id", cardholder.id_cipher, cardholder.key_id)
    return {
        "id_number": id_number,
        "birth_date": f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}",
        "phone": sealer.open("phone", cardholder.phone_cipher, cardholder.key_id)
        if cardholder.phone_cipher is not None
        else "",
        "address": sealer.open("address", cardholder.address_cipher, cardholder.key_id)
        if cardholder.address_cipher is not None
        else "",
    }


def card_get(*, card_no: str) -> Card | None:
    return Card.objects.select_related("scheme", "cardholder").filter(card_no=card_no).first()


def cards_of(*, cardholder_id: int) -> QuerySet[Card]:
    return (
        Card.objects.select_related("scheme")
        .filter(cardholder_id=cardholder_id)
        .order_by("applied_at", "card_no")
    )


_TAPS_HOTLISTED_SQL = """
SELECT s.i, e.listed_at, e.reason
  FROM unnest(%s::int[], %s::varchar[], %s::timestamptz[]) AS s(i, card_no, tapped_at)
  CROSS JOIN LATERAL (SELECT h.listed_at, h.reason FROM cards_hotlistentry h
                       WHERE h.card_no = s.card_no AND h.listed_at <= s.tapped_at - %s::interval
                         AND (h.removed_at IS NULL OR h.removed_at > s.tapped_at)
                       ORDER BY h.listed_at DESC LIMIT 1) e
"""


def taps_hotlisted(
    *, taps: list[tuple[str, dt.datetime]], grace: dt.timedelta
) -> dict[int, tuple[dt.datetime, str]]:
    """Which of these (card number, tap time) pairs were taken on a card that had been on the hotlist for
    longer than ``grace`` at the tap (and was still on it): position -> (listed_at, reason). One query."""
    if not taps:
        return {}
    with connection.cursor() as cur:
        cur.execute(
            _TAPS_HOTLISTED_SQL,
            [
                pg_array(range(len(taps))),
                pg_array(t[0] for t in taps),
                pg_array(t[1] for t in taps),
                grace,
            ],
        )
        return {i: (listed_at, reason) for i, listed_at, reason in cur.fetchall()}


# --- partner reads (GraphQL): lookups through the blind index, never returning the ID number ---------


def cardholder_by_id_number(*, id_number: str, field: str = "id_number") -> Cardholder | None:
    """The cardholder registered with this ID number (found through the blind index), or None.

    A malformed ID number is a DomainError naming ``field``."""
    number = id_number_parse(id_number, field=field).number
    return Cardholder.objects.filter(id_blind=Sealer().blind("id", number)).first()


def cardholder_verify(*, card_no: str, id_number: str) -> bool:
    """Whether ``card_no`` is a card of this tenant held by the person with ``id_number`` (实名核验).

    Compared through the blind index (the ID number is never decrypted); False for an unknown or anonymous
    card. A malformed ID number is a DomainError (field ``id_number``)."""
    # The keyed hash first, whatever the card: an unknown card takes as long to answer as a known one.
    given = Sealer().blind("id", id_number_parse(id_number).number)
    blind = Card.objects.filter(card_no=card_no).values_list("cardholder__id_blind", flat=True).first()
    return hmac.compare_digest(blind or "", given) and bool(blind)


def cardholder_categories(*, cardholder_id: int) -> list[CardholderCategory]:
    """A cardholder's rider categories (every period, current or not), by code and start. One query."""
    return list(CardholderCategory.objects.filter(cardholder_id=cardholder_id).order_by("code", "valid_from"))


def categories_on(categories: Iterable[CardholderCategory], *, on: dt.date) -> frozenset[str]:
    """The category codes valid on ``on`` among ``categories``."""
    return frozenset(
        c.code for c in categories if c.valid_from <= on and (c.valid_to is None or c.valid_to >= on)
    )
