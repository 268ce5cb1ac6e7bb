"""Acceptance at a service point (核验): may this person use this service now? yes/no with a reason.

A gate, desk or POS presents a card number it read and authenticated through the terminal kit, or an
electronic citizen code (电子市民码) it scanned; the tenant answers online here, or the terminal answers
itself from the signed offline list (``selectors.entitlement_list_payload``; terminal_kit.entitlements) and
uploads its uses later (``entitlement_uses_upload``). Either way each use is recorded once and counts
against the type's quota.

Data governance (谁使用、谁负责): the service point's department must hold a data grant in force for the
cardholder's name; without one it gets nothing (``no_grant``). With one it gets yes/no and the masked name,
never the ID number, and the read lands in the cardholder's access log under that grant.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from citycard.platform.errors import Conflict, DomainError, NotFound
from citycard.platform.keys import tenant_public_keys, tenant_sign, tenant_signature
from citycard.platform.models import Tenant
from citycard.tenants.cards.models import Card, CardState, HotlistEntry
from citycard.tenants.departments.models import DataGrant, DataRead, ServicePoint
from citycard.tenants.entitlements.models import (
    CodeNonce,
    Entitlement,
    EntitlementListEntry,
    EntitlementType,
    EntitlementUse,
    QuotaPeriod,
    TypeStatus,
    UseChannel,
    VisitorUse,
)
from citycard.tenants.terminals.models import Terminal, TerminalKey
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.ecode import PREFIX, CodeIssuer, CodeRefused, EcodeVerifier
from citycard.terminal_kit.signing import SignatureError, b64decode, canonical_json, verify_document

# Reasons an answer carries (the terminal kit's offline decision uses the same words).
REASONS = (
    "ok",
    "not_entitled",
    "expired",
    "not_yet_valid",
    "quota_used_up",
    "card_hotlisted",
    "card_inactive",
    "card_expired",
    "unknown_card",
    "foreign_card",
    "code_expired",
    "code_replayed",
    "code_invalid",
    "card_unreadable",  # the terminal could not read or authenticate the card (offline only)
)
_CODE_REASONS = {"expired": "code_expired", "replayed": "code_replayed"}


def name_mask(name: str) -> str:
    """What a service point sees of a name: its first character (张*, 欧阳**)."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else ""


@dataclass(frozen=True)
class Decision:
    """The answer to a service point (核验结果)."""

    allowed: bool
    reason: str
    card_no: str = ""
    masked_name: str = ""
    type_code: str = ""
    remaining: int | None = None  # uses left in the period after this one (None: unlimited)
    use_id: int | None = None
    home_tenant: str = ""


def _period_start(period: str, day: dt.date) -> dt.date:
    if period == QuotaPeriod.DAY:
        return day
    if period == QuotaPeriod.MONTH:
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _start_utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=BEIJING)


class _NonceMemory:
    """The citizen codes accepted online, remembered in the tenant's schema (EcodeVerifier's store)."""

    def code_nonce_claim(self, *, tenant: str, nonce: str, forget_after: int, now: int) -> bool:
        CodeNonce.objects.filter(forget_after__lt=now).delete()
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO entitlements_codenonce (tenant, nonce, forget_after) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [tenant, nonce, forget_after],
            )
            return cur.rowcount == 1


def citizen_code_claimed_tenant(code: str) -> str | None:
    """The tenant a citizen code says issued it, unverified: only to pick whose keys verify it."""
    parts = code.split(".") if isinstance(code, str) and len(code) <= 1024 else []
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    tenant = payload.get("tenant") if isinstance(payload, dict) else None
    return tenant if isinstance(tenant, str) else None


def code_issuer(tenant: Tenant, *, at: dt.datetime | None = None) -> CodeIssuer:
    """The tenant as a citizen-code issuer: its division and its signing keys valid now."""
    return CodeIssuer(
        tenant.code, frozenset({tenant.division_code}), tenant_public_keys(tenant=tenant, at=at)
    )


def citizen_code_verify(*, code: str, at: dt.datetime) -> str:
    """The card number of a citizen code this tenant signed, spent now; CodeRefused otherwise."""
    tenant = connection.tenant
    verifier = EcodeVerifier(
        issuers=[code_issuer(tenant, at=at)], store=_NonceMemory(), clock=lambda: at.timestamp()
    )
    return verifier.verify(code)["card_no"]


def _grant_in_force(day: dt.date) -> Subquery:
    """The id of the service point's department's data grant for names in force on ``day`` (the newest)."""
    return Subquery(
        DataGrant.objects.filter(
            department_id=OuterRef("department_id"),
            revoked_at__isnull=True,
            valid_from__lte=day,
            fields__contains=["name"],
        )
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=day))
        .order_by("-valid_from")
        .values("pk")[:1]
    )


def service_point_for_acceptance(*, code: str, at: dt.datetime) -> tuple[ServicePoint, int]:
    """The open service point (its department joined) and the id of its department's data grant in force,
    in one query; NotFound / DomainError(no_grant)."""
    point = (
        ServicePoint.objects.select_related("department")
        .annotate(grant_in_force=_grant_in_force(at.astimezone(BEIJING).date()))
        .filter(code=code, active=True)
        .first()
    )
    if point is None:
        raise NotFound(_("no open service point of this tenant has this code"), field="service_point")
    if point.grant_in_force is None:
        raise DomainError(
            _(
                "department %(code)s holds no data grant for cardholders' names: "
                "a city administrator grants it before its service points can check entitlements"
            )
            % {"code": point.department.code},
            code="no_grant",
            field="service_point",
        )
    return point, point.grant_in_force


@transaction.atomic
def acceptance_decide(
    *,
    service_point: str,
    card_no: str | None = None,
    code: str | None = None,
    at: dt.datetime | None = None,
    reader: str,
    use_key: str | None = None,
    record: bool = True,
) -> Decision:
    """Answer a service point for a card number (read and authenticated by its terminal) or a citizen
    code, and record the use when allowed (``record``). ``use_key`` makes a retried request count once."""
    at = at or timezone.now()
    if (card_no is None) == (code is None):
        raise DomainError(_("give a card number or a citizen code"), field="card_no")
    point, grant_id = service_point_for_acceptance(code=service_point, at=at)
    if use_key:  # a retry (before the code: its nonce was spent by the first try): the first answer stands
        done = EntitlementUse.objects.filter(use_key=use_key).select_related("entitlement__type").first()
        if done is not None:
            if (card_no is not None and done.card_no != card_no) or done.service_point != point.code:
                raise Conflict(_("this use key was used for another card or service point"), field="use_key")
            return Decision(True, "ok", done.card_no, "", done.entitlement.type.code, None, done.pk)
    channel = UseChannel.CARD
    if code is not None:
        channel = UseChannel.CODE
        try:
            card_no = citizen_code_verify(code=code, at=at)
        except CodeRefused as exc:
            return Decision(False, _CODE_REASONS.get(exc.code, "code_invalid"))
    return _decide_card(point, grant_id, card_no, channel, at, reader, use_key, record)


def _decide_card(
    point: ServicePoint,
    grant_id: int,
    card_no: str,
    channel: str,
    at: dt.datetime,
    reader: str,
    use_key: str | None,
    record: bool,
) -> Decision:
    day = at.astimezone(BEIJING).date()
    listed = HotlistEntry.objects.filter(
        card_no=OuterRef("card_no"), removed_at__isnull=True, listed_at__lte=at
    )
    card = (
        Card.objects.select_related("cardholder")
        .annotate(hotlisted=Exists(listed))
        .filter(card_no=card_no)
        .first()
    )
    if card is None:
        own = getattr(connection.tenant, "division_code", None)
        return Decision(False, "unknown_card" if card_no[:6] == own else "foreign_card", card_no)
    if card.hotlisted:
        return Decision(False, "card_hotlisted", card_no)
    if card.state not in (CardState.ACTIVE, CardState.ISSUED):
        return Decision(False, "card_inactive", card_no)
    if card.expires_on is not None and card.expires_on < day:
        return Decision(False, "card_expired", card_no)
    if card.cardholder is None:
        return Decision(False, "not_entitled", card_no)
    holder = card.cardholder
    masked = name_mask(holder.name)
    DataRead.objects.create(
        grant_id=grant_id,
        department_id=point.department_id,
        cardholder_id=holder.pk,
        reader=reader,
        fields=["name"],
        reason=f"entitlement check at {point.code} (权益核验)",
        at=at,
    )
    year_start = _start_utc(day.replace(month=1, day=1))
    uses = EntitlementUse.objects.filter(entitlement=OuterRef("pk"), at__gte=year_start)
    grants = Entitlement.objects.select_related("type").annotate(
        # This period's uses of each grant, in the same query (a count subquery a period).
        used_day=_count(uses.filter(at__gte=_start_utc(day))),
        used_month=_count(uses.filter(at__gte=_start_utc(day.replace(day=1)))),
        used_year=_count(uses),
    )
    if record:  # the grants' rows serialise concurrent uses of one quota (a gate's retry, two gates)
        grants = grants.select_for_update(of=("self",))
    candidates = list(
        grants.filter(
            cardholder_id=holder.pk,
            revoked_at__isnull=True,
            type__status=TypeStatus.APPROVED,
            type__service_points__contains=[point.code],
        ).order_by("type__code")
    )
    if not candidates:
        return Decision(False, "not_entitled", card_no, masked)
    current = [e for e in candidates if e.valid_from <= day and (e.valid_to is None or e.valid_to >= day)]
    if not current:
        future = any(e.valid_from > day for e in candidates)
        return Decision(False, "not_yet_valid" if future else "expired", card_no, masked)
    for grant_row in current:
        kind = grant_row.type
        used = getattr(grant_row, f"used_{kind.quota_period}", 0)
        if kind.quota is not None and used >= kind.quota:
            continue
        remaining = None if kind.quota is None else kind.quota - used - (1 if record else 0)
        use_id = None
        if record:
            use = EntitlementUse.objects.create(
                entitlement=grant_row,
                service_point=point.code,
                card_no=card_no,
                channel=channel,
                use_key=use_key or f"online:{point.code}:{secrets.token_hex(12)}",
                at=at,
                recorded_at=timezone.now(),
            )
            use_id = use.pk
        return Decision(True, "ok", card_no, masked, kind.code, remaining, use_id)
    return Decision(False, "quota_used_up", card_no, masked, current[0].type.code, 0)


def _count(uses: QuerySet[EntitlementUse]) -> Subquery:
    return Coalesce(
        Subquery(uses.order_by().values("entitlement_id").annotate(n=Count("pk")).values("n")[:1]),
        Value(0),
    )


def decision_payload(decision: Decision) -> dict[str, Any]:
    """The answer as JSON for a terminal (what it shows: yes/no, reason, masked name)."""
    return {
        "allowed": decision.allowed,
        "reason": decision.reason,
        "card_no": decision.card_no,
        "masked_name": decision.masked_name,
        "type": decision.type_code,
        "remaining": decision.remaining,
    }


def citizen_code_issue(*, card_no: str, at: dt.datetime | None = None, lifetime_s: int = 60) -> str:
    """The electronic citizen code (电子市民码) a cardholder's phone shows for a live card of this tenant:
    a short-lived token signed with the tenant's key (terminal_kit.ecode), verified offline by terminals."""
    card = Card.objects.filter(card_no=card_no, state__in=(CardState.ACTIVE, CardState.ISSUED)).first()
    if card is None:
        raise NotFound(_("no live card %(card)r here") % {"card": card_no}, field="card_no")
    issued = int((at or timezone.now()).timestamp())
    tenant = connection.tenant
    payload = {
        "card_no": card_no,
        "tenant": tenant.code,
        "iat": issued,
        "exp": issued + lifetime_s,
        "nonce": secrets.token_hex(8),
    }
    raw = canonical_json(payload)
    signature = tenant_signature(tenant=tenant, signed=raw)

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([PREFIX, b64url(raw), b64url(b64decode(signature["value"])), signature["key_id"]])


def _terminal_document_open(document: Any, *, kind: str, now: dt.datetime) -> tuple[dict[str, Any], Terminal]:
    """The payload of a document signed by one of this tenant's active terminals' keys (current, or
    within its rotation overlap) and that terminal; DomainError(bad_signature / invalid) otherwise. One
    query for the key and its terminal."""
    found: dict[str, TerminalKey] = {}

    def key_of(key_id: str) -> bytes | None:
        row = (
            TerminalKey.objects.filter(key_id=key_id, terminal__status="active")
            .filter(Q(retired_at__isnull=True) | Q(verify_until__gt=now))
            .select_related("terminal")
            .first()
        )
        if row is None:
            return None
        found["key"] = row
        return bytes(row.public_key)

    try:
        payload = verify_document(document, keys=key_of)
    except SignatureError as exc:
        raise DomainError(
            _("the terminal's document was refused: %(why)s") % {"why": exc},
            code="bad_signature",
            field="document",
        ) from None
    terminal = found["key"].terminal
    if payload.get("kind") != kind or payload.get("terminal_id") != terminal.terminal_id:
        raise DomainError(
            _("not a %(kind)s document of the signing terminal") % {"kind": kind},
            code="invalid",
            field="document",
        )
    return payload, terminal


@dataclass(frozen=True)
class TerminalCheck:
    """A terminal's signed online question (``POST /terminal/v1/entitlement-check``), opened."""

    terminal_id: str
    service_point: str
    card_no: str | None
    code: str | None
    use_key: str  # the terminal's own key, namespaced by its id: a retried request counts once
    at: dt.datetime


def terminal_check_open(*, document: Any, now: dt.datetime) -> TerminalCheck:
    """Open a terminal's signed acceptance request (核验请求): signed by an active terminal of this tenant,
    made within the allowed clock skew, for a service point of the terminal's own department, naming a
    card number read and authenticated by the terminal or a scanned citizen code, with the terminal's
    use key. DomainError with a code otherwise (nothing decided, nothing written)."""
    payload, terminal = _terminal_document_open(document, kind="entitlement-check", now=now)
    card_no, code, use_key = payload.get("card_no"), payload.get("code"), payload.get("use_key")
    if (card_no is None) == (code is None) or not all(
        isinstance(v, str) and v for v in (payload.get("service_point"), use_key, card_no or code)
    ):
        raise DomainError(
            _("a check names a service point, a use key and a card number or a citizen code"),
            code="malformed",
            field="document",
        )
    try:
        at = dt.datetime.fromisoformat(str(payload.get("at")))
    except ValueError:
        at = None
    skew = settings.TERMINAL_MAX_CLOCK_SKEW_S
    if at is None or at.tzinfo is None or abs((now - at).total_seconds()) > skew:
        raise DomainError(
            _("the check was made at %(at)s, not within %(skew)s s of the back office's clock")
            % {"at": payload.get("at"), "skew": skew},
            code="clock_skew",
            field="document",
        )
    point = (
        ServicePoint.objects.filter(code=payload["service_point"], active=True)
        .values_list("department__code", flat=True)
        .first()
    )
    if point is None or point != terminal.department:
        raise DomainError(
            _("terminal %(terminal)s is not a terminal of service point %(point)s's department")
            % {"terminal": terminal.terminal_id, "point": payload["service_point"]},
            code="not_allowed",
            field="service_point",
        )
    return TerminalCheck(
        terminal.terminal_id,
        payload["service_point"],
        card_no,
        code,
        f"terminal:{terminal.terminal_id}:{use_key}"[:120],
        at,
    )


def terminal_decision_document(*, check: TerminalCheck, decision: Decision) -> dict[str, Any]:
    """The tenant-signed answer to a terminal's check: what it shows, bound to the terminal and its use key."""
    tenant = connection.tenant
    payload = {
        "kind": "entitlement-decision",
        "tenant": tenant.code,
        "terminal_id": check.terminal_id,
        "service_point": check.service_point,
        "use_key": check.use_key.split(":", 2)[2],
        "home_tenant": decision.home_tenant,
        **decision_payload(decision),
    }
    return tenant_sign(tenant=tenant, payload=payload)


@transaction.atomic
def entitlement_uses_upload(*, document: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """Take a terminal's signed batch of uses it accepted offline (terminal_kit.entitlements.UseQueue):
    signed by one of the terminal's keys, each use recorded once (by ``use_key``: a resent batch adds
    nothing) and counted against its quota. A use whose card or grant this tenant does not know is
    returned as rejected with a reason. Returns {"recorded", "duplicates", "rejected", "use_keys"}."""
    now = now or timezone.now()
    payload, terminal = _terminal_document_open(document, kind="entitlement-uses", now=now)
    uses = payload.get("uses") or []
    fields = ("use_key", "card_no", "type", "service_point", "channel", "at")
    for use in uses if isinstance(uses, list) else [None]:
        if not isinstance(use, dict) or not all(isinstance(use.get(f), str) and use.get(f) for f in fields):
            raise DomainError(
                _("each use has %(fields)s as text") % {"fields": ", ".join(fields)},
                code="malformed",
                field="document",
            )
        try:
            moment = dt.datetime.fromisoformat(use["at"])
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or use["channel"] not in UseChannel.values:
            raise DomainError(
                _("use %(key)s: a time with its offset and a channel") % {"key": use["use_key"]},
                code="malformed",
            )
    keys = [u["use_key"] for u in uses]
    seen = set(EntitlementUse.objects.filter(use_key__in=keys).values_list("use_key", flat=True))
    cards = {
        c.card_no: c.cardholder_id
        for c in Card.objects.filter(card_no__in={u["card_no"] for u in uses}).only(
            "card_no", "cardholder_id"
        )
    }
    # A use counts against the grant in force when it was made (revoked later or not).
    grants: dict[tuple[int, str], list[Entitlement]] = {}
    for g in Entitlement.objects.select_related("type").filter(
        cardholder_id__in={h for h in cards.values() if h}
    ):
        grants.setdefault((g.cardholder_id, g.type.code), []).append(g)
    strangers = {u["card_no"] for u in uses if u["card_no"] not in cards}
    visitors = {
        (e.card_no, e.type_code): (e.home_tenant, e.type_code, e.message_id)
        for e in EntitlementListEntry.objects.filter(card_no__in=strangers).exclude(home_tenant="")
    }
    kinds = {k.code: k for k in EntitlementType.objects.filter(code__in={t for _c, t in visitors})}
    seen_visitors = set(VisitorUse.objects.filter(use_key__in=keys).values_list("use_key", flat=True))
    recorded, rejected, visitor_uses = [], [], []
    for use in uses:
        if use["use_key"] in seen:
            continue
        at = dt.datetime.fromisoformat(use["at"])
        grant = next(
            (
                g
                for g in grants.get((cards.get(use["card_no"]), use["type"]), ())
                if g.granted_at <= at + dt.timedelta(minutes=5)
                and (g.revoked_at is None or g.revoked_at > at)
            ),
            None,
        )
        if grant is None and use["card_no"] not in cards:
            # A visitor's card (异地): accepted on its home tenant's signed visitor list.
            vouched = visitors.get((use["card_no"], use["type"]))
            if vouched is not None and vouched[1] in kinds and use["use_key"] not in seen_visitors:
                visitor_uses.append(
                    VisitorUse(
                        type=kinds[vouched[1]],
                        home_tenant=vouched[0],
                        home_type=use["type"],
                        card_no=use["card_no"],
                        service_point=use["service_point"],
                        channel=use["channel"],
                        answer_id=vouched[2],
                        use_key=use["use_key"],
                        at=at,
                    )
                )
                continue
            if vouched is not None:
                continue  # taken before (a resent batch)
        if grant is None:
            rejected.append({"use_key": use["use_key"], "reason": "not_entitled"})
            continue
        recorded.append(
            EntitlementUse(
                entitlement=grant,
                service_point=use["service_point"],
                card_no=use["card_no"],
                channel=use["channel"],
                offline=True,
                terminal_id=terminal.terminal_id,
                use_key=use["use_key"],
                at=at,
                recorded_at=now,
            )
        )
    EntitlementUse.objects.bulk_create(recorded, ignore_conflicts=True)
    VisitorUse.objects.bulk_create(visitor_uses, ignore_conflicts=True)
    return {
        "recorded": len(recorded) + len(visitor_uses),
        "duplicates": len(seen) + len(seen_visitors),
        "rejected": rejected,
        "use_keys": [u["use_key"] for u in uses if u["use_key"] not in {r["use_key"] for r in rejected}],
    }
