from __future__ import annotations

import graphene

from citycard.graphql.core.types import NonNullList
from citycard.tenants.cards.models import CategoryCode

RiderCategoryCodeEnum = graphene.Enum(
    "RiderCategoryCode",
    [(c.name, c.value) for c in CategoryCode],
    description="Rider categories (敬老/学生/爱心/优抚/低保).",
)
ConcessionKindEnum = graphene.Enum(
    "ConcessionKind",
    [("PERCENT", "percent"), ("FIXED", "fixed"), ("FREE", "free"), ("MINUS", "minus")],
    description="PERCENT: pay value/100 % of the base fare; FIXED: pay value fen; FREE; MINUS: value fen off.",
)


class CardholderVerification(graphene.ObjectType):
    """The answer of a verification (实名核验): whether the ID number is that of the card's holder."""

    card_number = graphene.String(required=True)
    matches = graphene.Boolean(
        required=True,
        description="True when the card is this tenant's and its holder has the ID number given; false for "
        "any other card, an anonymous card or another person.",
    )


class RiderCategory(graphene.ObjectType):
    """A rider category the cardholder belongs to for a period."""

    code = graphene.Field(RiderCategoryCodeEnum, required=True)
    name = graphene.String(required=True)
    valid_from = graphene.Date(required=True)
    valid_to = graphene.Date(description="Last day valid; null: open-ended.")
    valid_on_date = graphene.Boolean(required=True, description="Whether it is valid on the day asked about.")


class ConcessionQuota(graphene.ObjectType):
    id = graphene.String(required=True)
    name = graphene.String(required=True)
    period = graphene.String(required=True, description="day or month")
    rides = graphene.Int(required=True)


class Concession(graphene.ObjectType):
    """A concession (优惠规则) of the published fare rules that the cardholder's categories qualify for."""

    rule_id = graphene.String(required=True)
    name = graphene.String(required=True)
    service = graphene.String(description="bus, metro…; null: every service.")
    route_set = graphene.String(description="The route set it is limited to; null: every route.")
    timeframe = graphene.String(description="The timeframe it is limited to (e.g. off-peak); null: any time.")
    categories = NonNullList(RiderCategoryCodeEnum, description="The rule's categories the cardholder has.")
    kind = graphene.Field(ConcessionKindEnum, required=True)
    value = graphene.Int(required=True, description="Basis points for PERCENT, fen for FIXED and MINUS.")
    description = graphene.String(required=True, description="e.g. '50% of base', 'free'.")
    priority = graphene.Int(required=True, description="The highest priority matching rule prices a ride.")
    quota = graphene.Field(ConcessionQuota, description="Rides per period it is limited to, if any.")
    valid_from = graphene.Date()
    valid_to = graphene.Date()


class CardholderCategories(graphene.ObjectType):
    """A card's holder's rider categories and the concessions they give under the published fare rules."""

    card_number = graphene.String(required=True)
    on_date = graphene.Date(required=True, description="The day categories and rules were taken as of.")
    categories = NonNullList(RiderCategory, description="Every period, current or not, by code and start.")
    fare_rules_version = graphene.Int(
        description="The published fare rules read; null when none are published or no category is held."
    )
    fare_rules_owner = graphene.String(description="Whose rules (a county rides on its city's).")
    concessions = NonNullList(
        Concession,
        description="Rules naming a category valid on onDate, for local riders, the card's scheme, no pass "
        "needed; highest priority first. A ride still depends on route, time of day and quota.",
    )
