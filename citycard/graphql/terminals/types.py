from __future__ import annotations

import graphene

from citycard.graphql.core.connection import Connection
from citycard.graphql.core.types import NonNullList, global_id
from citycard.graphql.terminals.dataloaders import JourneyByTransactionLoader, TerminalByTerminalIdLoader
from citycard.tenants.terminals.models import JourneyStatus, Routing, TerminalStatus

TerminalStatusEnum = graphene.Enum(
    "TerminalStatus",
    [(s.name, s.value) for s in TerminalStatus],
    description="Whether a terminal may upload.",
)
TransactionRoutingEnum = graphene.Enum(
    "TransactionRouting",
    [(r.name, r.value) for r in Routing],
    description="OWN: a card of this tenant; ROAMING: clears with the issuing tenant; HELD: an exception.",
)


class Terminal(graphene.ObjectType):
    """A bus validator, metro gate, POS or kiosk registered with this tenant (终端)."""

    id = graphene.ID(required=True)
    terminal_id = graphene.String(required=True, description="The id the terminal signs its uploads with.")
    operator = graphene.String(required=True)
    department = graphene.String(required=True)
    service = graphene.String(required=True, description="bus, metro, ferry, bike, park, library…")
    route = graphene.String(required=True, description="Route or line, for vehicles; empty otherwise.")
    location = graphene.String(required=True, description="Station or place, for fixed terminals.")
    gate = graphene.String(
        required=True, description="A metro gate: entry or exit (at its location); else empty."
    )
    status = graphene.Field(TerminalStatusEnum, required=True)
    registered_at = graphene.DateTime(required=True)

    @staticmethod
    def resolve_id(root, info):
        return global_id("Terminal", root.terminal_id)

    @staticmethod
    def resolve_status(root, info):
        return str(root.status)


class TerminalConnection(Connection):
    class Meta:
        node = Terminal


JourneyStatusEnum = graphene.Enum(
    "JourneyStatus",
    [(s.name, s.value) for s in JourneyStatus],
    description="OPEN: entered, no exit yet; COMPLETE; NO_ENTRY: an exit without entry; EXIT_ONLY: the entry "
    "tap has not arrived.",
)


class Journey(graphene.ObjectType):
    """A metro journey (进出站行程): a card's entry and exit taps paired. Amounts are integer fen (分)."""

    origin = graphene.String(required=True, description="The entry station (empty: no entry).")
    destination = graphene.String(required=True, description="The exit station (empty: not out yet).")
    line = graphene.String(required=True)
    entered_at = graphene.DateTime()
    exited_at = graphene.DateTime()
    entry_fen = graphene.Int(required=True, description="Debited at the entry gate.")
    exit_fen = graphene.Int(required=True, description="Debited at the exit gate.")
    fare_fen = graphene.Int(required=True, description="The journey's fare: entry and exit together.")
    status = graphene.Field(JourneyStatusEnum, required=True)
    released = graphene.Boolean(
        required=True,
        description="A half journey released to clearing after its time-out (半程行程超时清算): its tap cleared "
        "alone (a roaming card's as a record to its issuer; an own card's in the city's books). A late other "
        "half clears alone too; the journey stays released.",
    )
    released_at = graphene.DateTime(description="When the half was released; null if it never was.")
    released_transaction_id = graphene.ID(
        description="The released tap (the Transaction whose money cleared alone: the entry of an OPEN "
        "journey, the exit of an EXIT_ONLY one); null if never released."
    )

    @staticmethod
    def resolve_status(root, info):
        return str(root.status)

    @staticmethod
    def resolve_released(root, info):
        return root.released_at is not None

    @staticmethod
    def resolve_released_transaction_id(root, info):
        return None if root.released_tx_id is None else global_id("Transaction", root.released_tx_id)


class Transaction(graphene.ObjectType):
    """One tap or purchase taken by a terminal of this tenant (交易). Amounts are integer fen (分)."""

    id = graphene.ID(required=True)
    tapped_at = graphene.DateTime(required=True)
    received_at = graphene.DateTime(required=True)
    card_number = graphene.String(required=True)
    issuer_division = graphene.String(required=True, description="First 6 digits of the card number.")
    card_counter = graphene.Int(required=True, description="The card's transaction counter (ATC).")
    amount_fen = graphene.Int(required=True)
    balance_before_fen = graphene.Int(required=True)
    balance_after_fen = graphene.Int(required=True)
    service = graphene.String(required=True)
    route = graphene.String(required=True)
    kind = graphene.String(required=True)
    status = graphene.String(required=True)
    card_scheme = graphene.String(required=True)
    categories = NonNullList(graphene.String, description="Rider categories the fare was computed for.")
    fare_rule_id = graphene.String(required=True)
    routing = graphene.Field(TransactionRoutingEnum, required=True)
    issuer_tenant = graphene.String(required=True, description="Code of the issuing tenant, when known.")
    network = graphene.String(required=True, description="The roaming network a roaming tap clears in.")
    terminal_id = graphene.String(required=True)
    terminal = graphene.Field(Terminal, description="The terminal that took it (null if since removed).")
    journey = graphene.Field(
        Journey,
        description="For a metro gate's tap: the journey it is the entry or exit of, origin to destination.",
    )

    @staticmethod
    def resolve_id(root, info):
        return global_id("Transaction", root.id)

    @staticmethod
    def resolve_journey(root, info):
        return JourneyByTransactionLoader(info.context).load(root.id)

    @staticmethod
    def resolve_card_number(root, info):
        return root.card_no

    @staticmethod
    def resolve_issuer_division(root, info):
        return root.issuer

    @staticmethod
    def resolve_routing(root, info):
        return str(root.routing)

    @staticmethod
    def resolve_terminal(root, info):
        return TerminalByTerminalIdLoader(info.context).load(root.terminal_id)


class TransactionConnection(Connection):
    class Meta:
        node = Transaction


class TransactionFilterInput(graphene.InputObjectType):
    card_number = graphene.String(description="Only this card's transactions.")
    terminal_id = graphene.String(description="Only this terminal's transactions.")
    tapped_from = graphene.DateTime(description="Tapped at or after this time.")
    tapped_to = graphene.DateTime(description="Tapped before this time.")
    routing = graphene.Field(TransactionRoutingEnum)
