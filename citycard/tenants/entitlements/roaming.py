"""A visitor's card or code at a service point (异地权益核验), the tenant-side halves.

The interop layer (citycard.interop.entitlements) carries the exchange; each half runs in its own
tenant's schema and sees the other only through signed envelopes:

1. the acquirer (where the service point is) asks: ``visitor_query_seal`` — an ``entitlement.query``
   envelope to the card's home tenant naming the card and the recognised types;
2. the home tenant answers: ``visitor_query_answer`` — opens the query, reads its own card, hotlist and
   grants, logs the read in the cardholder's access log, and seals an ``entitlement.answer`` with what it
   vouches for (the recognised types held and their validity, hotlisted or not, the masked name);
3. the acquirer decides: ``visitor_decide`` — opens the answer (signature, recipient, validity), checks it
   answers its own query, applies its local type's quota and records the use.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from citycard.platform.audit.services import audit_record
from citycard.platform.envelopes import EnvelopeRefused, envelope_open, envelope_seal
from citycard.platform.errors import DomainError
from citycard.platform.keys import tenant_verifying_keys
from citycard.platform.models import Tenant
from citycard.tenants.cards.models import Card, CardState, HotlistEntry
from citycard.tenants.entitlements.acceptance import (
    Decision,
    _period_start,
    _start_utc,
    name_mask,
    service_point_for_acceptance,
)
from citycard.tenants.entitlements.models import (
    Entitlement,
    EntitlementListEntry,
    EntitlementType,
    TypeStatus,
    VisitorList,
    VisitorUse,
)
from citycard.tenants.entitlements.selectors import entitlement_list_version
from citycard.tenants.entitlements.services import list_version_bump
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.signing import SignatureError, b64decode, b64encode

QUERY, ANSWER = "entitlement.query", "entitlement.answer"
TTL = dt.timedelta(minutes=2)


def local_types_at(*, service_point: str, at: dt.datetime) -> list[str]:
    """The approved local types this service point accepts (after the department's grant check)."""
    point, _grant = service_point_for_acceptance(code=service_point, at=at)
    return list(
        EntitlementType.objects.filter(status=TypeStatus.APPROVED, service_points__contains=[point.code])
        .order_by("code")
        .values_list("code", flat=True)
    )


def visitor_query_seal(
    *, home: Tenant, card_no: str, types: list[str], service_point: str, at: dt.datetime
) -> dict[str, Any]:
    """The acquirer's signed question to the card's home tenant."""
    acquirer = connection.tenant
    return envelope_seal(
        sender=acquirer,
        recipient=home.code,
        kind=QUERY,
        message_id=f"entq:{acquirer.code}:{secrets.token_hex(12)}",
        body={
            "card_no": card_no,
            "types": sorted(types),
            "service_point": service_point,
            "at": at.isoformat(),
        },
        now=timezone.now(),  # the transmission's time; the use's own time is in the body
        ttl=TTL,
    )


@transaction.atomic
def visitor_query_answer(*, document: Any, now: dt.datetime) -> dict[str, Any]:
    """The home tenant's signed answer (run in its schema): only the recognised types asked about, only
    a masked name; the read is in the cardholder's access log (channel ``interop``, the asking tenant)."""
    home = connection.tenant
    opened = envelope_open(document, recipient=home.code, now=now, kinds=(QUERY,))
    body = opened.body
    card_no, types = str(body.get("card_no", "")), [str(t) for t in body.get("types", [])]
    at = dt.datetime.fromisoformat(body["at"])
    day = at.astimezone(BEIJING).date()
    answer: dict[str, Any] = {"query_id": opened.message_id, "card_no": card_no, "held": []}
    card = Card.objects.select_related("cardholder").filter(card_no=card_no).first()
    if card is None:
        answer["state"] = "unknown_card"
    elif HotlistEntry.objects.filter(card_no=card_no, removed_at__isnull=True, listed_at__lte=at).exists():
        answer["state"] = "card_hotlisted"
    elif card.state not in (CardState.ACTIVE, CardState.ISSUED) or card.cardholder is None:
        answer["state"] = "card_inactive"
    elif card.expires_on is not None and card.expires_on < day:
        answer["state"] = "card_expired"
    else:
        answer["state"] = "ok"
        answer["masked_name"] = name_mask(card.cardholder.name)
        answer["held"] = [
            {"type": code, "valid_from": start.isoformat(), "valid_to": end.isoformat() if end else None}
            for code, start, end in Entitlement.objects.filter(
                cardholder_id=card.cardholder_id,
                revoked_at__isnull=True,
                type__status=TypeStatus.APPROVED,
                type__code__in=types,
            ).values_list("type__code", "valid_from", "valid_to")
        ]
        audit_record(
            action="interop.read",
            actor=f"{opened.sender.code}:{body.get('service_point', '')}",
            object_type="interop",
            object_id=opened.sender.code,
            data={
                "operation": f"entitlement check by {opened.sender.code} (异地权益核验)",
                "reads": [
                    {
                        "type": "cardholder",
                        "ids": [str(card.cardholder_id)],
                        "fields": ["name", "entitlements"],
                    }
                ],
            },
        )
    return envelope_seal(
        sender=home,
        recipient=opened.sender.code,
        kind=ANSWER,
        message_id=f"enta:{home.code}:{secrets.token_hex(12)}",
        body=answer,
        now=now,
        ttl=TTL,
    )


@transaction.atomic
def visitor_decide(
    *,
    service_point: str,
    query: dict[str, Any],
    answer: Any,
    recognised: list[str],
    channel: str,
    at: dt.datetime,
    use_key: str | None = None,
) -> Decision:
    """The acquirer's decision on the home tenant's answer (run in the acquirer's schema)."""
    acquirer = connection.tenant
    home_code = query["payload"]["recipient"]
    try:
        opened = envelope_open(answer, recipient=acquirer.code, now=timezone.now(), kinds=(ANSWER,))
    except EnvelopeRefused as exc:
        raise DomainError(
            _("the home tenant's answer was refused: %(why)s") % {"why": exc}, code="bad_answer"
        ) from None
    body = opened.body
    if opened.sender.code != home_code or body.get("query_id") != query["payload"]["message_id"]:
        raise DomainError(_("the answer is not the home tenant's answer to this query"), code="bad_answer")
    card_no = body.get("card_no", "")
    if body.get("state") != "ok":
        return Decision(False, body.get("state", "unknown_card"), card_no, home_tenant=home_code)
    masked = body.get("masked_name", "")
    day = at.astimezone(BEIJING).date()
    held = [h for h in body.get("held", []) if h["type"] in recognised]
    if not held:
        return Decision(False, "not_entitled", card_no, masked, home_tenant=home_code)
    current = [
        h
        for h in held
        if dt.date.fromisoformat(h["valid_from"]) <= day
        and (h["valid_to"] is None or dt.date.fromisoformat(h["valid_to"]) >= day)
    ]
    if not current:
        return Decision(False, "expired", card_no, masked, home_tenant=home_code)
    if use_key and (done := VisitorUse.objects.filter(use_key=use_key).first()) is not None:
        if done.card_no != card_no or done.service_point != service_point:
            raise DomainError(_("this use key was used for another card or service point"), code="conflict")
        return Decision(True, "ok", card_no, masked, done.home_type, None, done.pk, home_code)
    kinds = {k.code: k for k in EntitlementType.objects.filter(code__in=[h["type"] for h in current])}
    for h in current:
        kind = kinds.get(h["type"])
        if kind is None:
            continue
        used = 0
        if kind.quota is not None:
            used = VisitorUse.objects.filter(
                card_no=card_no, type=kind, at__gte=_start_utc(_period_start(kind.quota_period, day))
            ).count()
            if used >= kind.quota:
                continue
        use = VisitorUse.objects.create(
            type=kind,
            home_tenant=home_code,
            home_type=h["type"],
            card_no=card_no,
            service_point=service_point,
            channel=channel,
            answer_id=opened.message_id,
            use_key=use_key or f"visitor:{opened.message_id}",
            at=at,
        )
        remaining = None if kind.quota is None else kind.quota - used - 1
        return Decision(True, "ok", card_no, masked, kind.code, remaining, use.pk, home_code)
    return Decision(False, "quota_used_up", card_no, masked, current[0]["type"], 0, home_tenant=home_code)


# --- visitors' entitlements for offline acceptance (异地权益名单) -----------------------------------------

VISITOR_LIST = "entitlement.visitor_list"


def visitor_list_seal(
    *, acquirer: str, types: list[str], since: int | None, now: dt.datetime
) -> dict[str, Any]:
    """The home tenant's signed list of its cardholders' entitlements of the recognised ``types`` for the
    acquirer's service points to decide offline (run in the home's schema): card numbers, types and
    validity only — no names. Full, or the delta on the home's list version ``since`` (as the hotlist);
    the version is the home's offline list version, so the acquirer never takes an older one."""
    home = connection.tenant
    kinds = sorted(set(types))
    version = entitlement_list_version()
    rows = EntitlementListEntry.objects.filter(home_tenant="", type_code__in=kinds)
    fields = ("card_no", "type_code", "valid_from", "valid_to")

    def row(c: str, t: str, f: dt.date, u: dt.date | None) -> list[Any]:
        return [c, t, f.isoformat(), u.isoformat() if u else None]

    body: dict[str, Any] = {
        "version": version,
        "types": kinds,
        # The keys that verify this home's citizen codes now (current, and retired ones within their
        # overlap), so the acquirer's gates verify its cardholders' codes offline; rotation is carried by
        # the next list.
        "code_keys": {
            key.key_id: {
                "public": b64encode(bytes(key.public_key)),
                "verify_until": key.verify_until.isoformat() if key.verify_until else None,
            }
            for key in tenant_verifying_keys(tenant=home, at=now)
        },
        "divisions": [home.division_code],
    }
    if since is None or since > version:
        live = rows.filter(version_removed__isnull=True).order_by("card_no", "type_code")
        body["entries"] = [row(*r) for r in live.values_list(*fields)]
        shared = len(body["entries"])
    else:
        added = rows.filter(version_removed__isnull=True, version_added__gt=since)
        removed = rows.filter(version_added__lte=since, version_removed__gt=since)
        body["delta"] = {
            "since": since,
            "added": [row(*r) for r in added.order_by("card_no", "type_code").values_list(*fields)],
            "removed": [list(r) for r in removed.order_by("card_no").values_list("card_no", "type_code")],
        }
        shared = len(body["delta"]["added"])
    if shared:
        audit_record(
            action="interop.share",
            actor=f"{acquirer}:visitor-list",
            object_type="interop",
            object_id=acquirer,
            data={
                "operation": f"visitors' entitlement list for {acquirer} (异地权益名单)",
                "types": kinds,
                "version": version,
                "rows": shared,
            },
        )
    return envelope_seal(
        sender=home,
        recipient=acquirer,
        kind=VISITOR_LIST,
        message_id=f"entl:{home.code}:{version}:{secrets.token_hex(8)}",
        body=body,
        now=now,
        ttl=TTL,
    )


@transaction.atomic
def visitor_list_take(*, document: Any, home: str, types: list[str], now: dt.datetime) -> dict[str, Any]:
    """Take a home tenant's signed visitor list into this tenant's offline list (run in the acquirer's
    schema): verified (signature, sender, recipient), never older than the version held, a delta only on
    the version held and for the same types; rows of that home not in it leave the list at the next
    version. Returns {"home", "version", "added", "removed"}; DomainError(bad_list) when refused."""
    acquirer = connection.tenant
    try:
        opened = envelope_open(document, recipient=acquirer.code, now=now, kinds=(VISITOR_LIST,))
    except EnvelopeRefused as exc:
        raise DomainError(
            _("the home tenant's visitor list was refused: %(why)s") % {"why": exc}, code="bad_list"
        ) from None
    if opened.sender.code != home:
        raise DomainError(_("the visitor list is not from %(home)s") % {"home": home}, code="bad_list")
    body = opened.body
    version, kinds = body.get("version"), sorted(set(body.get("types") or []))
    held = VisitorList.objects.select_for_update().filter(home_tenant=home).first()
    if not isinstance(version, int) or kinds != sorted(set(types)):
        raise DomainError(_("the visitor list does not cover the recognised types"), code="bad_list")
    if held is not None and version < held.version:
        raise DomainError(
            _("visitor list version %(got)s of %(home)s is not newer than the one held (%(held)s)")
            % {"got": version, "home": home, "held": held.version},
            code="bad_list",
        )
    live = EntitlementListEntry.objects.filter(home_tenant=home, version_removed__isnull=True)
    have = {(e.card_no, e.type_code, e.valid_from, e.valid_to): e.pk for e in live}

    def parsed(rows: list[Any]) -> set[tuple[str, str, dt.date, dt.date | None]]:
        return {
            (str(c), str(t), dt.date.fromisoformat(f), dt.date.fromisoformat(u) if u else None)
            for c, t, f, u in rows
            if t in kinds
        }

    if "entries" in body:
        wanted = parsed(body["entries"])
    else:
        delta = body.get("delta") or {}
        if held is None or delta.get("since") != held.version or sorted(held.types) != kinds:
            raise DomainError(
                _("the visitor list delta is not on the version held: the full list is needed"),
                code="bad_list",
            )
        gone_pairs = {(str(c), str(t)) for c, t in delta.get("removed", [])}
        added = parsed(delta.get("added", []))
        added_pairs = {(r[0], r[1]) for r in added}
        wanted = {r for r in have if (r[0], r[1]) not in gone_pairs | added_pairs} | added
    code_keys, divisions = _code_keys(body)
    keys_changed = held is None or (held.code_keys, list(held.divisions)) != (code_keys, divisions)
    gone, new = set(have) - wanted, wanted - set(have)
    if gone or new or keys_changed:
        # A new version of the offline list: its rows, or the keys it hands the terminals, changed.
        local_version = list_version_bump(at=now)
        EntitlementListEntry.objects.filter(pk__in=[have[r] for r in gone]).update(
            version_removed=local_version
        )
        EntitlementListEntry.objects.bulk_create(
            EntitlementListEntry(
                card_no=c,
                type_code=t,
                valid_from=f,
                valid_to=u,
                version_added=local_version,
                home_tenant=home,
                message_id=opened.message_id,
            )
            for c, t, f, u in sorted(new, key=lambda r: (r[0], r[1]))
        )
    VisitorList.objects.update_or_create(
        home_tenant=home,
        defaults={
            "version": version,
            "types": kinds,
            "message_id": opened.message_id,
            "rows": len(wanted),
            "taken_at": now,
            "code_keys": code_keys,
            "divisions": divisions,
        },
    )
    return {
        "home": home,
        "version": version,
        "added": len(new),
        "removed": len(gone),
        "keys": sorted(code_keys),
    }


def _code_keys(body: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The home's citizen-code keys and card divisions from its signed list, checked for shape (Ed25519
    public keys, a time with its offset or null); DomainError(bad_list) otherwise."""
    raw, divisions = body.get("code_keys") or {}, body.get("divisions") or []
    refused = DomainError(_("the visitor list's citizen-code keys are malformed"), code="bad_list")
    if not isinstance(raw, dict) or not isinstance(divisions, list):
        raise refused
    if not all(isinstance(d, str) and len(d) == 6 and d.isdigit() for d in divisions):
        raise refused
    keys: dict[str, dict[str, Any]] = {}
    for key_id, entry in sorted(raw.items()):
        if not isinstance(entry, dict) or not isinstance(key_id, str) or not 0 < len(key_id) <= 120:
            raise refused
        try:
            public = b64decode(str(entry.get("public", "")))
            until = entry.get("verify_until")
            if until is not None and dt.datetime.fromisoformat(until).tzinfo is None:
                raise ValueError(until)
        except (TypeError, ValueError, SignatureError):
            raise refused from None
        if len(public) != 32:
            raise refused
        keys[key_id] = {"public": entry["public"], "verify_until": until}
    return keys, sorted(set(divisions))


@transaction.atomic
def visitor_list_drop(*, home: str, now: dt.datetime) -> int:
    """Take a home's visitors out of the offline list (nothing recognised between the two any more)."""
    live = EntitlementListEntry.objects.filter(home_tenant=home, version_removed__isnull=True)
    gone = 0
    held_keys = VisitorList.objects.filter(home_tenant=home).exclude(code_keys={}).exists()
    if live.exists() or held_keys:  # the rows and the home's code keys leave the terminals' list
        local_version = list_version_bump(at=now)
        gone = live.update(version_removed=local_version)
    VisitorList.objects.filter(home_tenant=home).delete()
    return gone


def visitor_list_held(*, home: str) -> tuple[int | None, list[str]]:
    """The home's list version and types this tenant holds ((None, []) before the first)."""
    held = VisitorList.objects.filter(home_tenant=home).first()
    return (None, []) if held is None else (held.version, list(held.types))
