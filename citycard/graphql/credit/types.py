from __future__ import annotations

import graphene

from citycard.graphql.core.types import global_id


class CreditItem(graphene.ObjectType):
    """One payment deferred onto a credit line: a merchant payment on credit or a fare."""

    id = graphene.ID(required=True)
    kind = graphene.String(required=True, description="merchant or fare.")
    payee = graphene.String(required=True, description="The merchant's or the transit operator's name.")
    amount_fen = graphene.Int(required=True)
    at = graphene.DateTime(required=True)
    month = graphene.String(required=True, description="The Beijing month of the bill it is on, YYYY-MM.")

    @staticmethod
    def resolve_id(root, info):
        return global_id("CreditItem", root.pk)


class CreditBill(graphene.ObjectType):
    """A card's monthly credit bill (月度账单)."""

    month = graphene.String(required=True, description="Beijing month, YYYY-MM.")
    items_fen = graphene.Int(required=True, description="The month's items.")
    full_due_fen = graphene.Int(required=True)
    minimum_due_fen = graphene.Int(required=True)
    paid_fen = graphene.Int(required=True)
    outstanding_fen = graphene.Int(required=True)
    due_on = graphene.Date(required=True)
    state = graphene.String(required=True, description="open, paid or overdue.")
    items = graphene.List(graphene.NonNull(CreditItem), required=True)

    @staticmethod
    def resolve_items(root, info):
        return list(root.items.order_by("at", "id"))


class CreditHistoryEntry(graphene.ObjectType):
    """One movement on a card's credit line: an item deferred (positive) or a repayment (negative)."""

    at = graphene.DateTime(required=True)
    kind = graphene.String(required=True, description="merchant, fare or repayment.")
    description = graphene.String(required=True)
    amount_fen = graphene.Int(required=True, description="Positive: owed more; negative: repaid.")


class CreditHistory(graphene.ObjectType):
    """A card's credit line and its movements, newest first."""

    state = graphene.String(required=True, description="active, suspended or closed.")
    limit_fen = graphene.Int(required=True)
    owed_fen = graphene.Int(required=True)
    available_fen = graphene.Int(required=True)
    entries = graphene.List(graphene.NonNull(CreditHistoryEntry), required=True)
