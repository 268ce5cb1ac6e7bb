"""Buying an entitlement and checking acceptance at a service point: thin over
citycard.tenants.entitlements (services and acceptance)."""

from __future__ import annotations

from typing import Any

import graphene

from citycard.graphql.cards.mutations.cards import REQUEST_KEY_MAX, card_number_valid, key_id_of
from citycard.graphql.core.access import access_log_read
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.entitlements.types import AcceptanceDecision, Entitlement
from citycard.interop.entitlements import acceptance_decide_anywhere
from citycard.platform.errors import DomainError
from citycard.platform.scopes import Scope
from citycard.tenants.entitlements.services import entitlement_buy

EntitlementBuyError = error_type(
    "EntitlementBuy",
    [
        "NOT_FOR_SALE",
        "NOT_ELIGIBLE",
        "ALREADY_HELD",
        "INSUFFICIENT_FUNDS",
        "NO_ACCOUNT",
        "NOT_APPROVED",
        "CONFLICT",
    ],
    "Why nothing was bought (nothing was paid or granted).",
)
AcceptanceCheckError = error_type(
    "AcceptanceCheck",
    ["NO_GRANT", "CONFLICT"],
    "Why no answer was given: CONFLICT, the useKey was used for another card or service point; NO_GRANT, "
    "the service point's department holds no data grant for names (a department without a grant gets "
    "nothing); NOT_FOUND, no open service point has that code.",
)


class EntitlementBuy(BaseMutation):
    entitlement = graphene.Field(Entitlement, description="The entitlement bought (the first, on a retry).")
    error_fields = {"card_no": "card_number", "type": "entitlement_type", "idempotency_key": "request_key"}

    class Arguments:
        card_number = graphene.String(required=True)
        entitlement_type = graphene.String(required=True, description="The type's code, e.g. park-pass.")
        request_key = graphene.String(
            required=True,
            description=f"The app's id of this purchase (1-{REQUEST_KEY_MAX} characters): a retry returns the "
            "first purchase and pays nothing again. Keys are per API key.",
        )

    class Meta:
        description = (
            "Buy an entitlement (e.g. the park annual pass, 公园年卡) for a card's holder, paid from the card's "
            "online account (市民卡账户) to the owning department; valid from today for the type's period."
        )
        permissions = [Scope.ENTITLEMENTS_BUY]
        error_type_class = EntitlementBuyError

    @classmethod
    def perform_mutation(
        cls, root: Any, info: Any, card_number: str, entitlement_type: str, request_key: str
    ) -> EntitlementBuy:
        number = card_number_valid(card_number)
        key = (request_key or "").strip()
        if not 1 <= len(key) <= REQUEST_KEY_MAX:
            raise DomainError(f"requestKey must be 1-{REQUEST_KEY_MAX} characters", field="request_key")
        grant = entitlement_buy(
            type=entitlement_type,
            card_no=number,
            idempotency_key=f"{key_id_of(info)}:{key}",
            actor=cls.actor(info),
        )
        access_log_read(
            info, object_type="cardholder", object_ids=[grant.cardholder_id], fields=["entitlements"]
        )
        return cls(entitlement=grant, errors=[])


class AcceptanceCheck(BaseMutation):
    decision = graphene.Field(AcceptanceDecision)
    error_fields = {"card_no": "card_number"}

    class Arguments:
        service_point = graphene.String(required=True, description="The service point's code.")
        card_number = graphene.String(description="A card number the terminal read and authenticated.")
        citizen_code = graphene.String(description="An electronic citizen code (电子市民码) as scanned.")
        use_key = graphene.String(description="The terminal's id of this use: a retry counts once.")

    class Meta:
        description = (
            "May this card or citizen code use this service point's service now (权益核验)? The answer is "
            "yes/no with a reason and a masked name; a yes is recorded as a use and counts against the quota. "
            "Each check is a read of the cardholder's name under the department's data grant, in their access log. "
            "A visitor's card or code (another city's) is answered from its home tenant's signed entitlements "
            "for the types the roaming network recognises."
        )
        permissions = [Scope.SERVICE_POINTS_ACCEPT]
        error_type_class = AcceptanceCheckError

    @classmethod
    def perform_mutation(
        cls,
        root: Any,
        info: Any,
        service_point: str,
        card_number: str | None = None,
        citizen_code: str | None = None,
        use_key: str | None = None,
    ) -> AcceptanceCheck:
        number = card_number_valid(card_number) if card_number is not None else None
        decision = acceptance_decide_anywhere(
            service_point=service_point,
            card_no=number,
            code=citizen_code,
            reader=cls.actor(info),
            use_key=f"{key_id_of(info)}:{use_key}" if use_key else None,
        )
        return cls(
            decision={
                "allowed": decision.allowed,
                "reason": decision.reason,
                "masked_name": decision.masked_name or None,
                "entitlement_type": decision.type_code or None,
                "remaining": decision.remaining,
                "home_tenant": decision.home_tenant or None,
            },
            errors=[],
        )
