from __future__ import annotations

import graphene

from citycard.graphql.core.connection import connection_args
from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.terminals import resolvers
from citycard.graphql.terminals.types import (
    Terminal,
    TerminalConnection,
    TerminalStatusEnum,
    TransactionConnection,
    TransactionFilterInput,
)
from citycard.platform.scopes import Scope


class TerminalQueries(graphene.ObjectType):
    terminals = PermissionsField(
        TerminalConnection,
        permissions=[Scope.TERMINALS_READ],
        description="This tenant's terminals, by terminal id.",
        **connection_args(status=graphene.Argument(TerminalStatusEnum), service=graphene.String()),
    )
    terminal = PermissionsField(
        Terminal,
        permissions=[Scope.TERMINALS_READ],
        description="One terminal of this tenant by its terminal id.",
        terminal_id=graphene.String(required=True),
    )
    transactions = PermissionsField(
        TransactionConnection,
        permissions=[Scope.TRANSACTIONS_READ],
        description="Transactions taken by this tenant's terminals, newest first (keyset cursors).",
        **connection_args(filter=graphene.Argument(TransactionFilterInput)),
    )
    card_transactions = PermissionsField(
        TransactionConnection,
        permissions=[Scope.TRANSACTIONS_READ],
        description="One card's transactions at this tenant's terminals, newest first. Logged as a read of the "
        "card's data against the caller.",
        **connection_args(
            card_number=graphene.String(required=True),
            tapped_from=graphene.DateTime(),
            tapped_to=graphene.DateTime(),
        ),
    )

    @staticmethod
    def resolve_terminals(root, info, status=None, service=None, **page):
        return resolvers.resolve_terminals(info, status=status, service=service, **page)

    @staticmethod
    def resolve_terminal(root, info, terminal_id):
        return resolvers.resolve_terminal(info, terminal_id=terminal_id)

    @staticmethod
    def resolve_transactions(root, info, filter=None, **page):
        return resolvers.resolve_transactions(info, **dict(filter or {}), **page)

    @staticmethod
    def resolve_card_transactions(root, info, card_number, tapped_from=None, tapped_to=None, **page):
        return resolvers.resolve_card_transactions(
            info, card_number=card_number, tapped_from=tapped_from, tapped_to=tapped_to, **page
        )
