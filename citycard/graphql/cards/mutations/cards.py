"""Loss reports (挂失) and card applications (申领) by partner apps: thin over citycard.tenants.cards."""

from __future__ import annotations

from typing import Any

import graphene
from django.utils.translation import gettext

from citycard.graphql.cards.types import Card
from citycard.graphql.core.access import access_log_read
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.core.types import enum_value
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.scopes import Scope
from citycard.tenants.cards import selectors, services
from citycard.terminal_kit.cardno import CardNumberError, card_number_clean

REQUEST_KEY_MAX = 50

CardReportLostError = error_type(
    "CardReportLost",
    ["INVALID_STATE", "ID_MISMATCH", "TOO_MANY_ATTEMPTS", "ANONYMOUS_CARD", "BAD_CHECKSUM"],
    "Why a card was not reported lost (the card is unchanged; a failed ID check is counted and logged).",
)
CardApplyError = error_type(
    "CardApply",
    [
        "CARDHOLDER_NOT_FOUND",
        "NOT_ELIGIBLE",
        "ONE_PER_PERSON",
        "ONE_MAIN_CARD",
        "SCHEME_DISABLED",
        "COUNTY_READ_ONLY",
        "CONFLICT",
        "BAD_CHECKSUM",
    ],
    "Why no card was applied for (nothing was written).",
)
LossReasonEnum = graphene.Enum("LossReason", [("LOST", "lost"), ("STOLEN", "stolen")])


def card_number_valid(value: str) -> str:
    """A card-number argument of a mutation, by the one check (``terminal_kit.cardno.card_number_clean``);
    a wrong one is a DomainError, answered as data."""
    try:
        return card_number_clean(value or "")
    except CardNumberError as exc:
        raise DomainError(str(exc), code=exc.code, field="card_number") from exc


def key_id_of(info: Any) -> str:
    api_key = info.context.principal.api_key
    return api_key.key_id if api_key is not None else info.context.principal.actor


class CardReportLost(BaseMutation):
    card = graphene.Field(Card, description="The card, frozen and on the hotlist.")
    reported_at = graphene.DateTime(
        description="When the loss took effect (the earlier report's, on a retry)."
    )
    already_reported = graphene.Boolean(
        description="True when this key had reported the card lost before: the earlier report stands."
    )
    error_fields = {"card_no": "card_number", "state": "card_number"}

    class Arguments:
        card_number = graphene.String(required=True, description="The card's number.")
        id_number = graphene.String(
            required=True,
            description="The cardholder's resident ID number: checked through the blind index, never stored "
            "or returned.",
        )
        reason = graphene.Argument(LossReasonEnum, default_value="lost")

    class Meta:
        description = (
            "Report a card lost or stolen (挂失): it is frozen and goes on the hotlist at once. Only the "
            "holder's ID number unlocks it; anonymous cards cannot be reported. Retrying with the same key "
            "returns the earlier report (alreadyReported) rather than an error."
        )
        permissions = [Scope.CARDS_REPORT_LOSS]
        error_type_class = CardReportLostError

    @classmethod
    def perform_mutation(
        cls, root: Any, info: Any, card_number: str, id_number: str, reason: Any = "lost"
    ) -> CardReportLost:
        number = card_number_valid(card_number)
        card = selectors.card_get(card_no=number)
        if card is None:
            raise NotFound(gettext("no card of this tenant has this number"), field="card_number")
        services.card_loss_report_check(card=card)  # before the ID check: an anonymous card counts none
        access_log_read(info, object_type="cardholder", object_ids=[card.cardholder_id], fields=["id_number"])
        if not services.cardholder_verify_attempt(card_no=number, id_number=id_number):
            # Answered as data, not raised: the transaction commits, so the failed attempt stays counted.
            return cls.error_response(
                DomainError(
                    gettext("the ID number is not that of the card's holder"),
                    code="id_mismatch",
                    field="id_number",
                )
            )
        card, reported = services.card_report_lost_once(
            card_no=number, actor=cls.actor(info), reason=str(enum_value(reason))
        )
        return cls(card=card, reported_at=card.frozen_at, already_reported=not reported, errors=[])


class CardApply(BaseMutation):
    card = graphene.Field(Card, description="The card applied for (the first one's, on a retry).")
    error_fields = {"cardholder_id": "id_number", "card_no": "scheme_code"}

    class Arguments:
        scheme_code = graphene.String(required=True, description="The card scheme, e.g. 01.")
        id_number = graphene.String(
            description="The cardholder's resident ID number (registered at a service point); omit only for "
            "a scheme sold anonymously (不记名). Never returned."
        )
        request_key = graphene.String(
            required=True,
            description=f"The app's id of this request (1-{REQUEST_KEY_MAX} characters): a retry with the same "
            "key returns the card the first one created. Keys are per API key.",
        )

    class Meta:
        description = "Apply for a card (申领) for a registered cardholder, or an anonymous one."
        permissions = [Scope.CARDS_APPLY]
        error_type_class = CardApplyError

    @classmethod
    def perform_mutation(
        cls, root: Any, info: Any, scheme_code: str, request_key: str, id_number: str | None = None
    ) -> CardApply:
        key = (request_key or "").strip()
        if not 1 <= len(key) <= REQUEST_KEY_MAX:
            raise DomainError(
                gettext("requestKey must be 1-%(REQUEST_KEY_MAX)s characters")
                % {"REQUEST_KEY_MAX": REQUEST_KEY_MAX},
                field="request_key",
            )
        holder = None
        if id_number is not None:
            holder = selectors.cardholder_by_id_number(id_number=id_number)
            if holder is None:
                raise NotFound(
                    gettext(
                        "no cardholder is registered here with this ID number (register at a service point first)"
                    ),
                    code="cardholder_not_found",
                    field="id_number",
                )
            access_log_read(info, object_type="cardholder", object_ids=[holder.pk], fields=["id_number"])
        key_id = key_id_of(info)
        card = services.card_apply(
            scheme_code=scheme_code.strip(),
            cardholder_id=holder.pk if holder is not None else None,
            source=f"graphql:{key_id}",
            request_key=f"{key_id}:{key}",
            actor=cls.actor(info),
        )
        return cls(card=card, errors=[])
