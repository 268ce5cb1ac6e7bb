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

from citycard.platform.audit.services import audit_record
from citycard.platform.envelopes import EnvelopeRefused, envelope_open, envelope_seal
from citycard.platform.errors import DomainError
from citycard.platform.models import Tenant
from citycard.tenants.cards.models import Card, CardState, HotlistEntry
from citycard.tenants.entitlements.acceptance import (
    Decision,
    _period_start,
    _start_utc,
    name_mask,
    service_point_for_acceptance,
)
from citycard.tenants.entitlements.models import Entitlement, EntitlementType, TypeStatus, VisitorUse
from citycard.terminal_kit.beijing import BEIJING

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
        raise DomainError(f"the home tenant's answer was refused: {exc}", code="bad_answer") from None
    body = opened.body
    if opened.sender.code != home_code or body.get("query_id") != query["payload"]["message_id"]:
        raise DomainError("the answer is not the home tenant's answer to this query", code="bad_answer")
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
            raise DomainError("this use key was used for another card or service point", code="conflict")
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
