from __future__ import annotations

from typing import Any

import graphene

from citycard.graphql.cards.dataloaders import BalancesByCardLoader
from citycard.graphql.core.connection import connection_args
from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.core.types import NonNullList, global_id
from citycard.graphql.terminals.types import TransactionConnection
from citycard.platform.scopes import Scope
from citycard.tenants.cards.models import Application, CardState
from citycard.terminal_kit.beijing import BEIJING

CardStateEnum = graphene.Enum(
    "CardState",
    [(s.name, s.value) for s in CardState],
    description="Where a card is in its lifecycle: APPLIED → PRODUCED → ISSUED → ACTIVE ⇄ FROZEN (lost); "
    "REPLACED and CANCELLED are closed.",
)
CardApplicationEnum = graphene.Enum(
    "CardApplication",
    [(a.name, a.value) for a in Application],
    description="A function a card scheme enables (社保, 电子钱包, 市民卡账户, 图书馆, 公园年卡, 就医).",
)


class CardScheme(graphene.ObjectType):
    """A card scheme (卡种): its code is digits 7-8 of the card number."""

    code = graphene.String(required=True)
    name_zh = graphene.String(required=True)
    name_en = graphene.String(required=True)
    is_main = graphene.Boolean(required=True, description="The main citizen card: one per person.")
    virtual = graphene.Boolean(required=True, description="No chip: shown as a signed QR code.")
    real_name = graphene.Boolean(required=True, description="Issued to a named cardholder (实名).")
    validity_years = graphene.Int(required=True)
    applications = NonNullList(CardApplicationEnum)

    @staticmethod
    def resolve_applications(root, info):
        return list(root.applications)


class CardBalance(graphene.ObjectType):
    """What a card holds, in fen (分): the online account and the back office's mirror of the e-purse."""

    account_open = graphene.Boolean(
        required=True, description="Whether the cardholder has an online account."
    )
    account_fen = graphene.Int(description="Online account (市民卡账户) balance; null without an account.")
    account_overdraft_fen = graphene.Int(description="How far the online account may go below zero.")
    purse_shadow_fen = graphene.Int(
        description="E-purse shadow balance (电子钱包影子余额) as of the last tap uploaded or load; null when "
        "the card has none. The chip's own balance may be newer."
    )
    purse_counter = graphene.Int(description="The card transaction counter the shadow balance follows.")
    purse_updated_at = graphene.DateTime()

    @staticmethod
    def resolve_account_open(root, info):
        return root.account is not None

    @staticmethod
    def resolve_account_fen(root, info):
        return root.account.balance_fen if root.account is not None else None

    @staticmethod
    def resolve_account_overdraft_fen(root, info):
        return root.account.overdraft_fen if root.account is not None else None

    @staticmethod
    def resolve_purse_shadow_fen(root, info):
        return root.shadow.balance_fen if root.shadow is not None else None

    @staticmethod
    def resolve_purse_counter(root, info):
        return root.shadow.last_counter if root.shadow is not None else None

    @staticmethod
    def resolve_purse_updated_at(root, info):
        return root.shadow.updated_at if root.shadow is not None else None


class Card(graphene.ObjectType):
    """A card of this tenant (卡). Reading one is logged against the caller."""

    id = graphene.ID(required=True)
    number = graphene.String(required=True)
    state = graphene.Field(CardStateEnum, required=True)
    scheme = graphene.Field(CardScheme, required=True)
    applications = NonNullList(CardApplicationEnum, description="What the card's scheme enables.")
    named = graphene.Boolean(required=True, description="Held by a named cardholder (false: anonymous).")
    is_main = graphene.Boolean(required=True)
    applied_at = graphene.DateTime(required=True)
    issued_at = graphene.DateTime()
    activated_at = graphene.DateTime()
    social_security_activated_at = graphene.DateTime()
    frozen_at = graphene.DateTime(description="When it was reported lost (挂失), while frozen.")
    closed_at = graphene.DateTime(description="When it was replaced or cancelled.")
    valid_from = graphene.Date(description="First day of validity: the day it was issued (Asia/Shanghai).")
    expires_on = graphene.Date(description="Last day of validity (set when issued).")
    balance = PermissionsField(
        graphene.NonNull(CardBalance),
        permissions=[Scope.CARDS_READ],
        description="Online account and e-purse shadow balances.",
    )
    transactions = PermissionsField(
        TransactionConnection,
        permissions=[Scope.TRANSACTIONS_READ],
        description="The card's transactions at this tenant's terminals, newest first (keyset cursors).",
        **connection_args(tapped_from=graphene.DateTime(), tapped_to=graphene.DateTime()),
    )

    @staticmethod
    def resolve_id(root, info):
        return global_id("Card", root.card_no)

    @staticmethod
    def resolve_number(root, info):
        return root.card_no

    @staticmethod
    def resolve_state(root, info):
        return str(root.state)

    @staticmethod
    def resolve_applications(root, info):
        return list(root.scheme.applications)

    @staticmethod
    def resolve_named(root, info):
        return root.cardholder_id is not None

    @staticmethod
    def resolve_social_security_activated_at(root, info):
        return root.ss_activated_at

    @staticmethod
    def resolve_valid_from(root, info):
        return root.issued_at.astimezone(BEIJING).date() if root.issued_at else None

    @staticmethod
    def resolve_balance(root, info):
        return BalancesByCardLoader(info.context).load((root.card_no, root.cardholder_id))

    @staticmethod
    def resolve_transactions(root, info, **kwargs: Any):
        from citycard.graphql.terminals.resolvers import resolve_card_transactions

        return resolve_card_transactions(info, card_number=root.card_no, **kwargs)
