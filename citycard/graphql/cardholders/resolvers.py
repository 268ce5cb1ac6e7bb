"""Cardholder reads for the tenant endpoint: thin over citycard.tenants.cards and .fares selectors."""

from __future__ import annotations

import datetime as dt
from typing import Any

from citycard.graphql.core.access import access_log_read
from citycard.graphql.core.errors import ApiError, ApiErrorCode
from citycard.graphql.terminals.resolvers import card_number_check
from citycard.platform.errors import DomainError
from citycard.tenants.cards.models import CategoryCode
from citycard.tenants.cards.selectors import card_get, cardholder_categories, categories_on
from citycard.tenants.cards.services import cardholder_verify_attempt
from citycard.tenants.fares.selectors import concessions_for
from citycard.terminal_kit.beijing import BEIJING

CATEGORY_NAMES = dict(CategoryCode.choices)


def resolve_cardholder_verify(info: Any, *, card_number: str, id_number: str) -> dict[str, Any]:
    """Yes/no; every attempt is logged against the caller (the card number, never the ID number), and a
    card's failed attempts are bounded (``cardholder_verify_attempt``: beyond them, RATE_LIMITED)."""
    number = card_number_check(card_number)
    access_log_read(info, object_type="cardholder_verify", object_ids=[number], fields=["id_number"])
    try:
        matches = cardholder_verify_attempt(card_no=number, id_number=id_number)
    except DomainError as exc:
        if exc.code == "too_many_attempts":
            raise ApiError(exc.message, ApiErrorCode.RATE_LIMITED, argument="cardNumber") from None
        raise ApiError(
            f"idNumber: {exc.message}", ApiErrorCode.INVALID_ARGUMENT, argument="idNumber"
        ) from None
    return {"card_number": number, "matches": matches}


def resolve_cardholder_categories(
    info: Any, *, card_number: str, on_date: dt.date | None = None
) -> dict[str, Any] | None:
    """Null when the card is not this tenant's; an anonymous card has no categories."""
    number = card_number_check(card_number)
    card = card_get(card_no=number)
    if card is None:
        return None
    day = on_date or dt.datetime.now(BEIJING).date()
    rows = cardholder_categories(cardholder_id=card.cardholder_id) if card.cardholder_id is not None else []
    held = categories_on(rows, on=day)
    found = (
        concessions_for(tenant=info.context.tenant, categories=held, scheme=card.scheme.code, on=day)
        if held
        else None
    )
    if card.cardholder_id is not None:
        access_log_read(
            info, object_type="cardholder", object_ids=[card.cardholder_id], fields=["categories"]
        )
    return {
        "card_number": number,
        "on_date": day,
        "categories": [
            {
                "code": row.code,
                "name": CATEGORY_NAMES.get(row.code, row.code),
                "valid_from": row.valid_from,
                "valid_to": row.valid_to,
                "valid_on_date": row.code in held
                and row.valid_from <= day
                and (row.valid_to is None or row.valid_to >= day),
            }
            for row in rows
        ],
        "fare_rules_version": found.version if found else None,
        "fare_rules_owner": found.owner if found else None,
        "concessions": [
            {
                "rule_id": rule.id,
                "name": rule.name,
                "service": rule.service,
                "route_set": rule.route_set.id if rule.route_set else None,
                "timeframe": rule.timeframe.id if rule.timeframe else None,
                "categories": sorted(rule.categories & held),
                "kind": rule.kind,
                "value": rule.value,
                "description": rule.describe(),
                "priority": rule.priority,
                "quota": rule.quota,
                "valid_from": rule.valid_from,
                "valid_to": rule.valid_to,
            }
            for rule in (found.rules if found else ())
        ],
    }
