from __future__ import annotations

import graphene

from citycard.graphql.core.types import NonNullList, global_id


class EntitlementType(graphene.ObjectType):
    """A right a department loads onto cards (权益类型)."""

    code = graphene.String(required=True)
    name = graphene.String(required=True)
    department = graphene.String(required=True, description="The owning department's code.")
    price_fen = graphene.Int(required=True, description="Price in fen when bought; 0 when only granted.")
    period_days = graphene.Int(description="How long a bought one is valid, in days.")
    quota = graphene.Int(description="Uses per quota period; null: unlimited.")
    quota_period = graphene.String(required=True, description="none, day, month or year.")
    service_points = NonNullList(graphene.String, description="Codes of the service points that accept it.")

    @staticmethod
    def resolve_department(root, info):
        return root.department.code

    @staticmethod
    def resolve_service_points(root, info):
        return list(root.service_points)


class Entitlement(graphene.ObjectType):
    """One of a cardholder's entitlements (权益), with its validity and where it came from."""

    id = graphene.ID(required=True)
    type = graphene.Field(EntitlementType, required=True)
    valid_from = graphene.Date(required=True)
    valid_to = graphene.Date(description="Last day valid; null: open-ended.")
    source = graphene.String(required=True, description="auto, bought, batch or manual.")
    granted_at = graphene.DateTime(required=True)
    revoked_at = graphene.DateTime()
    uses_this_period = graphene.Int(description="Uses counted against the quota in the current period.")

    @staticmethod
    def resolve_id(root, info):
        return global_id("Entitlement", root.pk)

    @staticmethod
    def resolve_source(root, info):
        return str(root.source)


class CardEntitlements(graphene.ObjectType):
    card_number = graphene.String(required=True)
    entitlements = NonNullList(Entitlement)


class AcceptanceDecision(graphene.ObjectType):
    """The answer to a service point (核验结果): yes/no with a reason; only a masked name, never the ID."""

    allowed = graphene.Boolean(required=True)
    reason = graphene.String(
        required=True,
        description="ok, not_entitled, expired, not_yet_valid, quota_used_up, card_hotlisted, card_inactive, "
        "card_expired, unknown_card, foreign_card, code_expired, code_replayed or code_invalid.",
    )
    masked_name = graphene.String(description="The holder's name masked (王**), when the card is known.")
    entitlement_type = graphene.String(description="The type the use counted against.")
    remaining = graphene.Int(description="Uses left in the period after this one; null: unlimited.")
    home_tenant = graphene.String(description="For a visitor's card: the tenant that answered.")
