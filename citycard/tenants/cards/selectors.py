"""Reading schemes, cardholders, cards and the hotlist.

``card_facts`` is what ingestion checks and other packages use: one query whatever the number of cards.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.keys import tenant_verify
from citycard.platform.publications import publication_latest
from citycard.platform.selectors import card_list_versioned
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
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.hotlist import Listing, listing_at


@dataclass(frozen=True)
class CardFacts:
    card_no: str
    state: str
    scheme_code: str
    categories: frozenset[str]


_FACTS_SQL = """
SELECT c.card_no, c.state, s.code,
       COALESCE((SELECT array_agg(DISTINCT k.code) FROM cards_cardholdercategory k
                  WHERE k.cardholder_id = c.cardholder_id AND k.valid_from <= %(day)s
                    AND (k.valid_to IS NULL OR k.valid_to >= %(day)s)), '{}')
  FROM cards_card c
  JOIN cards_cardscheme s ON s.id = c.scheme_id
 WHERE c.card_no = ANY(%(cards)s)
"""


def card_facts(*, card_nos: Iterable[str], at: dt.datetime | None = None) -> dict[str, CardFacts]:
    """What is known of these cards at ``at`` (default now), in the current tenant's schema: state, scheme,
    rider categories valid that day (Beijing time). One query; cards not found are absent. (Whether a tap
    was on a hotlisted card: ``taps_hotlisted`` / ``hotlist_listings``, by the one hotlist rule.)"""
    numbers = sorted({str(n) for n in card_nos})
    if not numbers:
        return {}
    at = at or timezone.now()
    day = at.astimezone(BEIJING).date()
    with connection.cursor() as cur:
        cur.execute(_FACTS_SQL, {"cards": numbers, "day": day})
        rows = cur.fetchall()
    return {
        r[0]: CardFacts(
            card_no=r[0],
            state=r[1],
            scheme_code=r[2],
            categories=frozenset(r[3]),
        )
        for r in rows
    }


def hotlist_version() -> int:
    return HotlistHead.objects.values_list("version", flat=True).get(pk=1)


def hotlist_payload(*, since: int | None = None) -> dict[str, Any]:
    """The hotlist as terminals take it (terminal_kit.hotlist): the full list, or the delta since version
    ``since`` (cards added and removed after it). A ``since`` newer than the current version gets the full
    list (the terminal's copy is not ours)."""
    entries = HotlistEntry.objects.all()
    return {"kind": "hotlist", **card_list_versioned(entries=entries, version=hotlist_version(), since=since)}


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
        raise DomainError(gettext("name a cardholder, a card or an ID number"), field="cardholder")
    if holder is None:
        raise NotFound(gettext("no cardholder for %(asked)s") % {"asked": asked}, field="cardholder")
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


def hotlist_listings(*, card_nos: Iterable[str]) -> dict[str, list[Listing]]:
    """Every hotlist period of these cards (ours or not), past and present: card number -> listings. One
    query (the numbers as one array: ingestion asks for thousands at once). Whether a tap was on a
    hotlisted card is ``terminal_kit.hotlist.listing_at`` over them."""
    numbers = {str(n) for n in card_nos}
    if not numbers:
        return {}
    out: dict[str, list[Listing]] = {}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT card_no, listed_at, removed_at, reason FROM cards_hotlistentry"
            " WHERE card_no = ANY(%s::varchar[])",
            [pg_array(numbers)],
        )
        for card_no, listed_at, removed_at, reason in cur.fetchall():
            out.setdefault(card_no, []).append(
                Listing(listed_at=listed_at, removed_at=removed_at, reason=reason)
            )
    return out


def taps_hotlisted(
    *, taps: Sequence[tuple[str, dt.datetime, dt.timedelta]]
) -> dict[int, tuple[dt.datetime, str]]:
    """Which of these (card number, tap time, grace) were taps on a hotlisted card, by the one rule
    (``terminal_kit.hotlist.hotlisted``: listed at least ``grace`` before the tap, not removed by it):
    position -> (listed_at, reason). One query."""
    listings = hotlist_listings(card_nos={card_no for card_no, _at, _grace in taps})
    found: dict[int, tuple[dt.datetime, str]] = {}
    for i, (card_no, at, grace) in enumerate(taps):
        if card_no not in listings:  # nearly every card: never on the hotlist
            continue
        listing = listing_at(listings[card_no], at=at, grace=grace)
        if listing is not None:
            found[i] = (listing.listed_at, listing.reason)
    return found


# --- the access log of a cardholder's data (个人信息查询记录) ------------------------------------


@dataclass(frozen=True)
class AccessLogEntry:
    """One read of a cardholder's data (个人信息查询记录): when, who, under which grant, key or session."""

    at: dt.datetime
    reader: str
    channel: str  # "grant", "api_key", "user", "admin", "interop" (another tenant's service point)
    under: str  # the grant (department and number), the API key id, or the signed-in user
    fields: tuple[str, ...]
    purpose: str  # the stated reason, or the GraphQL operation / admin page


# More reads of a cardholder's data kept by apps above cards (``departments`` adds its grant reads in its
# ``AppConfig.ready``): each ``source(cardholder_id=...)`` returns entries, in one query.
ACCESS_LOG_SOURCES: list[Callable[..., Iterable[AccessLogEntry]]] = []

# Audit actions that are reads of personal data, with the channel they came through.
READ_ACTIONS = ("graphql.read", "admin.read", "interop.read")

# A read (``{"type", "ids", "fields", "path"}``, as citycard.graphql.core.context.AccessLog writes them)
# names a cardholder by id under these types, and by card number under any other.
_BY_HOLDER_ID = ("cardholder",)


def cardholder_access_log(
    *, cardholder_id: int, card_numbers: list[str] | None = None
) -> list[AccessLogEntry]:
    """Every read of one cardholder's data, newest first: departments' reads through their grants, partner
    apps' and users' GraphQL reads (of the cardholder, or of any of their cards, listings included) and
    officers' admin views. Two queries whatever the history's length: the read log and the audit chain.

    Departments' grant reads come from ``ACCESS_LOG_SOURCES`` (departments registers its own at app
    loading: cards sits below departments and does not import it)."""
    if card_numbers is None:
        card_numbers = list(
            Card.objects.filter(cardholder_id=cardholder_id).values_list("card_no", flat=True)
        )
    out = [entry for source in ACCESS_LOG_SOURCES for entry in source(cardholder_id=cardholder_id)]
    entries = AuditEntry.objects.filter(action__in=READ_ACTIONS).extra(
        where=[
            "EXISTS (SELECT 1 FROM jsonb_array_elements(payload::jsonb -> 'reads') AS r"
            " WHERE (r ->> 'type' = ANY(%s) AND r -> 'ids' ? %s) OR r -> 'ids' ?| %s)"
        ],
        params=[list(_BY_HOLDER_ID), str(cardholder_id), card_numbers],
    )
    for entry in entries.order_by("-seq"):
        payload = json.loads(entry.payload)
        mine = [
            r
            for r in payload.get("reads", ())
            if (r.get("type") in _BY_HOLDER_ID and str(cardholder_id) in r.get("ids", ()))
            or set(card_numbers) & set(r.get("ids", ()))
        ]
        fields = sorted({f for r in mine for f in r.get("fields") or ()})
        if entry.action == "admin.read":
            channel, under, purpose = "admin", entry.actor, payload.get("page", "")
        else:
            channel = entry.object_type or "user"  # "interop": another tenant's service point, by envelope
            channel = "api_key" if channel == "apikey" else channel
            under, purpose = entry.object_id, payload.get("operation") or "GraphQL"
        out.append(
            AccessLogEntry(
                at=entry.at,
                reader=entry.actor,
                channel=channel,
                under=under,
                fields=tuple(fields),
                purpose=purpose,
            )
        )
    out.sort(key=lambda e: e.at, reverse=True)
    return out


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
