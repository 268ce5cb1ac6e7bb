from __future__ import annotations

import graphene

from citycard.graphql.core.connection import Connection
from citycard.graphql.core.types import NonNullList, global_id


class SubsidyProgramme(graphene.ObjectType):
    """A subsidy programme (补贴项目)."""

    code = graphene.String(required=True)
    name = graphene.String(required=True)
    department = graphene.String(required=True, description="Code of the paying department.")


class SubsidyItem(graphene.ObjectType):
    """One line of a payment (补贴明细), e.g. 耕地地力保护补贴 12000 fen."""

    item = graphene.String(required=True)
    amount_fen = graphene.Int(required=True)


class SubsidyPayment(graphene.ObjectType):
    """One payment of a programme's run into the cardholder's online account."""

    id = graphene.ID(required=True)
    programme = graphene.Field(SubsidyProgramme, required=True)
    period = graphene.String(required=True, description="e.g. 2026-11 or 2026")
    eligible_on = graphene.Date(required=True, description="The day eligibility was decided on.")
    paid_at = graphene.DateTime(required=True)
    amount_fen = graphene.Int(required=True)
    items = NonNullList(SubsidyItem)

    @staticmethod
    def resolve_id(root, info):
        return global_id("SubsidyPayment", root.pk)

    @staticmethod
    def resolve_programme(root, info):
        return root.run.programme

    @staticmethod
    def resolve_period(root, info):
        return root.run.period

    @staticmethod
    def resolve_eligible_on(root, info):
        return root.run.on

    @staticmethod
    def resolve_paid_at(root, info):
        return root.run.at

    @staticmethod
    def resolve_items(root, info):
        return list(root.items.all())


class SubsidyPaymentConnection(Connection):
    class Meta:
        node = SubsidyPayment
