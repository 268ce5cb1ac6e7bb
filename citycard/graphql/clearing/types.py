"""Roaming agreements, clearing cycles and what each produced (platform endpoint, clearing staff).

Everything a cycle lists (totals, matrix, positions, instructions, exceptions, disputes, reconciliation
files) is loaded per batch of cycles by the loaders of dataloaders.py, so a page of cycles costs the same
number of queries whatever its size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import graphene

from citycard.graphql.clearing import clock
from citycard.graphql.clearing.dataloaders import (
    EXCEPTION_LIST_MAX,
    MATRIX_LIST_MAX,
    CellPagesLoader,
    CycleByIdLoader,
    DisputesByCycleLoader,
    ExceptionGroupPagesLoader,
    ExceptionSummaryByCycleLoader,
    InstructionsByCycleLoader,
    MatrixByCycleLoader,
    NetPositionsByCycleLoader,
    ReconciliationFilesByCycleLoader,
    RecordPagesLoader,
    RecordTotalsByCycleLoader,
    VersionsByAgreementLoader,
)
from citycard.graphql.core.access import access_log_field
from citycard.graphql.core.connection import Connection, PageArgs, connection_args
from citycard.graphql.core.dataloaders import then
from citycard.graphql.core.errors import ApiError, ApiErrorCode
from citycard.graphql.core.types import NonNullList, enum_value, global_id
from citycard.graphql.tenancy.types import RoamingNetwork
from citycard.interop.models import (
    CyclePeriod,
    CycleState,
    DisputeState,
    RecordKind,
    RecordStatus,
    Service,
    VisitorPolicy,
)
from citycard.terminal_kit.beijing import BEIJING


def _enum(name: str, choices: type, description: str) -> type[graphene.Enum]:
    return graphene.Enum(name, [(c.name, c.value) for c in choices], description=description)


ClearingServiceEnum = _enum("ClearingService", Service, "What roams: transit taps or medical claims.")
ClearingCycleStateEnum = _enum(
    "ClearingCycleState",
    CycleState,
    "open → closed → validated → netted → settled; disputed beside settled while a dispute is open.",
)
ClearingPeriodEnum = _enum("ClearingPeriod", CyclePeriod, "How often a cycle closes.")
VisitorPolicyEnum = _enum("VisitorPolicy", VisitorPolicy, "What a visiting card pays.")
ClearingRecordStatusEnum = _enum("ClearingRecordStatus", RecordStatus, "A record's validation by its issuer.")
ClearingRecordKindEnum = _enum("ClearingRecordKind", RecordKind, "What a clearing record is.")
DisputeStateEnum = _enum("DisputeState", DisputeState, "Where a dispute stands.")
ReconciliationStateEnum = graphene.Enum(
    "ReconciliationState",
    [("SENT", "sent"), ("CONFIRMED", "confirmed"), ("MISMATCH", "mismatch")],
    description="sent: not every recipient answered; confirmed: all did; mismatch: one found a difference.",
)


class AgreementVersion(graphene.ObjectType):
    """One dated version of an agreement's terms (协议版本): in force from its effective date until the
    next version's; a record is priced and cleared by the version in force on its business date."""

    label = graphene.String(
        required=True, description="<network>-<service> v<number>, as fare traces name it."
    )
    number = graphene.Int(required=True, description="1, 2, 3… in the order the versions were added.")
    effective_from = graphene.Date(required=True, description="The first business date it prices and clears.")
    visitor_policy = graphene.Field(VisitorPolicyEnum, required=True)
    issuer_fee_bps = graphene.Int(required=True, description="Interchange the issuer keeps, basis points.")
    network_fee_bps = graphene.Int(
        required=True, description="The network operator's fee, borne by the acquirer, basis points."
    )
    cut_off = graphene.Time(required=True, description="Asia/Shanghai; business date D runs D to D+1 at it.")
    hotlist_grace_minutes = graphene.Int(required=True)
    note = graphene.String(required=True, description="Why it changed.")
    created_at = graphene.DateTime(required=True)
    created_by = graphene.String(required=True)

    @staticmethod
    def resolve_visitor_policy(root, info):
        return str(root.visitor_policy)


def _with_versions(root, info, fn):
    """``fn(agreement)`` once the agreement's versions are loaded (a batch for a page of agreements or cycles)."""

    def keep(versions):
        root._versions_ordered = versions
        return fn(root)

    return then(VersionsByAgreementLoader(info.context).load(root.pk), keep)


def _today() -> dt.date:
    return clock.now().astimezone(BEIJING).date()


def _today_term(name: str):
    def term(agreement):
        version = agreement.version_on(_today())
        if version is None:
            return None
        value = getattr(version, name)
        return str(value) if name == "visitor_policy" else value

    return staticmethod(lambda root, info: _with_versions(root, info, term))


class RoamingAgreement(graphene.ObjectType):
    """What roams in a network for one service and how it is cleared (漫游协议). The dated terms (visitor
    policy, fees, cut-off, grace) shown at the top level are the version in force today; ``versions`` lists
    them all."""

    id = graphene.ID(required=True)
    network = graphene.Field(RoamingNetwork, required=True)
    service = graphene.Field(ClearingServiceEnum, required=True)
    visitor_policy = graphene.Field(VisitorPolicyEnum, description="Of the version in force today.")
    issuer_fee_bps = graphene.Int(
        description="Interchange the issuer keeps, basis points (version in force today)."
    )
    network_fee_bps = graphene.Int(
        description="The network operator's fee, borne by the acquirer, basis points (version in force today)."
    )
    operator = graphene.String(required=True, description="The network operator as a settlement participant.")
    settlement_account = graphene.String(
        required=True, description="The network's settlement account: debtors pay it, it pays creditors."
    )
    period = graphene.Field(ClearingPeriodEnum, required=True)
    cut_off = graphene.Time(
        description="Asia/Shanghai; business date D runs D to D+1 at it (version in force today)."
    )
    settlement_lag_days = graphene.Int(required=True, description="Value date = business date + n (T+n).")
    dispute_window_days = graphene.Int(
        required=True, description="Days after settlement a party may dispute."
    )
    hotlist_grace_minutes = graphene.Int(description="Of the version in force today.")
    valid_from = graphene.Date(required=True)
    version_in_force = graphene.Field(
        AgreementVersion,
        on=graphene.Date(description="A business date (default today, Beijing time)."),
        description="The version that prices and clears that business date; null before the first.",
    )
    versions = NonNullList(AgreementVersion, description="Every version, by effective date then number.")

    resolve_visitor_policy = _today_term("visitor_policy")
    resolve_issuer_fee_bps = _today_term("issuer_fee_bps")
    resolve_network_fee_bps = _today_term("network_fee_bps")
    resolve_cut_off = _today_term("cut_off")
    resolve_hotlist_grace_minutes = _today_term("hotlist_grace_minutes")

    @staticmethod
    def resolve_id(root, info):
        return global_id("RoamingAgreement", f"{root.network.code}-{root.service}")

    @staticmethod
    def resolve_service(root, info):
        return str(root.service)

    @staticmethod
    def resolve_period(root, info):
        return str(root.period)

    @staticmethod
    def resolve_version_in_force(root, info, on=None):
        return _with_versions(root, info, lambda agreement: agreement.version_on(on or _today()))

    @staticmethod
    def resolve_versions(root, info):
        return _with_versions(root, info, lambda agreement: agreement.versions_ordered())


class CycleStateChange(graphene.ObjectType):
    state = graphene.Field(ClearingCycleStateEnum, required=True)
    at = graphene.DateTime(required=True)


class RecordTotals(graphene.ObjectType):
    records = graphene.Int(required=True)
    amount_fen = graphene.BigInt(required=True, description="Integer fen (BigInt: sums pass 2^31).")


class CycleTotals(graphene.ObjectType):
    """The cycle's records by status: pending (before validation), valid (netted), rejected (exceptions)."""

    records = graphene.Field(RecordTotals, required=True, description="All of them.")
    pending = graphene.Field(RecordTotals, required=True)
    valid = graphene.Field(RecordTotals, required=True)
    rejected = graphene.Field(RecordTotals, required=True)


class IssuerChecks(graphene.ObjectType):
    issuer = graphene.String(required=True)
    checks = NonNullList(graphene.String, description="The checks the issuer ran, in order.")


class BilateralPosition(graphene.ObjectType):
    """One cell of the bilateral matrix (双边轧差): what an issuer owes an acquirer for the valid records."""

    issuer = graphene.String(required=True)
    acquirer = graphene.String(required=True)
    records = graphene.Int(required=True)
    amount_fen = graphene.BigInt(required=True)
    issuer_fee_fen = graphene.BigInt(required=True)
    network_fee_fen = graphene.BigInt(required=True)
    acquirer_due_fen = graphene.BigInt(required=True, description="amount − issuer fee − network fee")


class BilateralPositionConnection(Connection):
    class Meta:
        node = BilateralPosition


BilateralOrderEnum = graphene.Enum(
    "BilateralPositionOrder",
    [("ISSUER_ACQUIRER", "issuer_acquirer"), ("AMOUNT_DESC", "amount_desc")],
    description="ISSUER_ACQUIRER: by issuer, then acquirer; AMOUNT_DESC: the largest flows first (then issuer,"
    " acquirer).",
)


class NetPosition(graphene.ObjectType):
    """A participant's multilateral net position (多边净额): receivable − payable."""

    participant = graphene.String(required=True)
    receivable_fen = graphene.BigInt(required=True)
    payable_fen = graphene.BigInt(required=True)
    net_fen = graphene.BigInt(required=True, description="Positive: it is paid; negative: it pays.")


class NetPositions(graphene.ObjectType):
    positions = NonNullList(NetPosition)
    sum_fen = graphene.BigInt(required=True, description="Σ net over the participants: 0 for every cycle.")
    balanced = graphene.Boolean(required=True, description="Σ net = 0.")


class SettlementInstruction(graphene.ObjectType):
    """Who pays whom on the value date (结算指令), through the network's settlement account."""

    payer = graphene.String(required=True)
    payee = graphene.String(required=True)
    amount_fen = graphene.BigInt(required=True)
    value_date = graphene.Date(required=True)


class ExceptionGroup(graphene.ObjectType):
    """Exceptions of one issuer × acquirer for one reason: records and amount (the acquirer bears them)."""

    issuer = graphene.String(required=True)
    acquirer = graphene.String(required=True)
    reason = graphene.String(required=True)
    records = graphene.Int(required=True)
    amount_fen = graphene.BigInt(required=True)


class ExceptionGroupConnection(Connection):
    class Meta:
        node = ExceptionGroup


class ReconciliationTotals(graphene.ObjectType):
    acquired_records = graphene.Int(required=True)
    acquired_amount_fen = graphene.BigInt(required=True)
    issued_records = graphene.Int(required=True)
    issued_amount_fen = graphene.BigInt(required=True)
    issuer_fees_fen = graphene.BigInt(required=True, description="Interchange received less paid.")
    network_fees_fen = graphene.BigInt(required=True)
    rejected_records = graphene.Int(required=True)
    rejected_amount_fen = graphene.BigInt(required=True)
    receivable_fen = graphene.BigInt(required=True)
    payable_fen = graphene.BigInt(required=True)
    net_fen = graphene.BigInt(required=True)


class ReconciliationAnswer(graphene.ObjectType):
    tenant = graphene.String(required=True, description="The schema that checked the records it sent.")
    result = graphene.String(required=True, description="confirmed or mismatch")
    mismatched_records = graphene.Int(required=True)


class ReconciliationFile(graphene.ObjectType):
    """A participant's reconciliation file (对账文件) and whether the recipients confirmed it."""

    participant = graphene.String(required=True)
    state = graphene.Field(ReconciliationStateEnum, required=True)
    confirmed = graphene.Boolean(required=True)
    sha256 = graphene.String(required=True)
    message_id = graphene.String(required=True)
    totals = graphene.Field(ReconciliationTotals, required=True)
    expected = NonNullList(graphene.String, description="Who must confirm: the participant and its counties.")
    answers = NonNullList(ReconciliationAnswer)
    answered_at = graphene.DateTime()

    @staticmethod
    def resolve_state(root, info):
        return root.state

    @staticmethod
    def resolve_confirmed(root, info):
        return root.state == "confirmed"

    @staticmethod
    def resolve_totals(root, info):
        return ReconciliationTotals(
            **{name: root.totals.get(name, 0) for name in ReconciliationTotals._meta.fields}
        )

    @staticmethod
    def resolve_expected(root, info):
        return list((root.answer or {}).get("expected", []))

    @staticmethod
    def resolve_answers(root, info):
        answers = (root.answer or {}).get("answers", {})
        return [
            ReconciliationAnswer(
                tenant=code,
                result=str(body.get("result", "")),
                mismatched_records=len(body.get("mismatched", []) or []),
            )
            for code, body in sorted(answers.items())
        ]


class ClearingRecord(graphene.ObjectType):
    """One record to clear (清算记录): what an issuer owes an acquirer for a roaming tap, a medical claim's fund
    share, or an adjustment reversing a disputed record."""

    record_id = graphene.String(required=True)
    kind = graphene.Field(ClearingRecordKindEnum, required=True)
    acquirer = graphene.String(required=True)
    issuer = graphene.String(required=True)
    card_number = graphene.String(required=True)
    card_counter = graphene.BigInt(required=True)
    amount_fen = graphene.BigInt(required=True)
    issuer_fee_fen = graphene.BigInt(required=True)
    network_fee_fen = graphene.BigInt(required=True)
    accepted_at = graphene.DateTime(required=True, description="When the acquirer's terminal accepted it.")
    received_at = graphene.DateTime(required=True)
    status = graphene.Field(ClearingRecordStatusEnum, required=True)
    reason = graphene.String(required=True, description="Why the issuer rejected it (empty if it did not).")
    reason_message = graphene.String(required=True)
    adjusts = graphene.String(description="The record an adjustment reverses.")
    cycle = graphene.Field(lambda: ClearingCycle, required=True)

    @staticmethod
    def resolve_card_number(root, info):
        access_log_field(info, object_type="clearing_record_card", object_id=root.card_no)
        return root.card_no

    @staticmethod
    def resolve_kind(root, info):
        return str(root.kind)

    @staticmethod
    def resolve_status(root, info):
        # Validation writes only the rejections: a pending record reads valid once its cycle is validated.
        if root.status != RecordStatus.PENDING:
            return str(root.status)
        if getattr(root, "current_status", None):
            return root.current_status
        if "cycle" in root._state.fields_cache:
            return root.status_in(root.cycle.state)
        return then(CycleByIdLoader(info.context).load(root.cycle_id), lambda c: root.status_in(c.state))

    @staticmethod
    def resolve_adjusts(root, info):
        return root.adjusts or None

    @staticmethod
    def resolve_cycle(root, info):
        return CycleByIdLoader(info.context).load(root.cycle_id)


class ClearingRecordConnection(Connection):
    class Meta:
        node = ClearingRecord


class Dispute(graphene.ObjectType):
    """A party's dispute of a settled record; accepted, it becomes an adjustment in a later cycle."""

    id = graphene.ID(required=True)
    record = graphene.Field(ClearingRecord, required=True)
    raised_by = graphene.String(required=True, description="The party (issuer or acquirer) disputing.")
    reason = graphene.String(required=True)
    raised_at = graphene.DateTime(required=True)
    state = graphene.Field(DisputeStateEnum, required=True)
    resolution = graphene.String(required=True)
    resolved_at = graphene.DateTime()
    resolved_by = graphene.String(required=True)
    adjustment = graphene.Field(ClearingRecord, description="The adjustment record, when accepted.")

    @staticmethod
    def resolve_id(root, info):
        return global_id("Dispute", root.pk)

    @staticmethod
    def resolve_state(root, info):
        return str(root.state)


class DisputeConnection(Connection):
    class Meta:
        node = Dispute


@dataclass(frozen=True)
class _Change:
    state: str
    at: dt.datetime


def state_history(cycle, disputes) -> list[_Change]:
    """The cycle's states in order: its steps' times, then settled ⇄ disputed as disputes opened and closed."""
    steps = [
        (CycleState.OPEN, cycle.opens_at),
        (CycleState.CLOSED, cycle.closed_at),
        (CycleState.VALIDATED, cycle.validated_at),
        (CycleState.NETTED, cycle.netted_at),
        (CycleState.SETTLED, cycle.settled_at),
    ]
    changes = [_Change(str(state), at) for state, at in steps if at is not None]
    if cycle.settled_at is None:
        return changes
    events = [(d.raised_at, 1) for d in disputes] + [
        (d.resolved_at, -1) for d in disputes if d.resolved_at is not None
    ]
    open_now = 0
    for at, step in sorted(events, key=lambda e: (e[0], -e[1])):
        before, open_now = open_now, open_now + step
        if before == 0 and open_now > 0:
            changes.append(_Change(str(CycleState.DISPUTED), at))
        elif before > 0 and open_now == 0:
            changes.append(_Change(str(CycleState.SETTLED), at))
    return changes


class ClearingCycle(graphene.ObjectType):
    """One clearing cycle of an agreement: a business date (daily) or a month (monthly)."""

    id = graphene.ID(required=True)
    label = graphene.String(required=True, description="<network>-<service>-<business date>")
    agreement = graphene.Field(RoamingAgreement, required=True)
    agreement_version = graphene.Field(
        AgreementVersion,
        description="The agreement version in force on the business date: its fees and cut-off.",
    )
    network = graphene.Field(RoamingNetwork, required=True)
    service = graphene.Field(ClearingServiceEnum, required=True)
    business_date = graphene.Date(required=True, description="Monthly cycles: the month's first day.")
    opens_at = graphene.DateTime(required=True)
    cut_off_at = graphene.DateTime(required=True)
    state = graphene.Field(ClearingCycleStateEnum, required=True)
    closed_at = graphene.DateTime()
    validated_at = graphene.DateTime()
    netted_at = graphene.DateTime()
    settled_at = graphene.DateTime()
    state_history = NonNullList(CycleStateChange, description="Each state the cycle reached, and when.")
    totals = graphene.Field(CycleTotals, required=True)
    validation_checks = NonNullList(IssuerChecks, description="The checks each issuer ran.")
    bilateral_matrix = NonNullList(
        BilateralPosition,
        description=(
            "Issuer × acquirer (empty until netted): every cell, or an issuer's or an acquirer's. A matrix of"
            f" more than {MATRIX_LIST_MAX} cells (a national network's has ~90,000) answers PAGINATION_REQUIRED:"
            " page it with bilateralCells, or give issuer or acquirer (the field is then null, the rest of the"
            " cycle answered)."
        ),
        required=False,
        issuer=graphene.String(description="Only this issuer's row."),
        acquirer=graphene.String(description="Only this acquirer's column."),
    )
    bilateral_cells = graphene.Field(
        BilateralPositionConnection,
        description=(
            "The bilateral matrix a page at a time (empty until netted): by issuer and acquirer, or the"
            " largest flows first (order: AMOUNT_DESC; first: 10 is the top ten); of one issuer or acquirer."
        ),
        **connection_args(
            issuer=graphene.String(),
            acquirer=graphene.String(),
            order=graphene.Argument(BilateralOrderEnum, default_value="issuer_acquirer"),
        ),
    )
    net_positions = graphene.Field(NetPositions, required=True, description="Empty until netted.")
    settlement_instructions = NonNullList(SettlementInstruction, description="Empty until settled.")
    exception_summary = NonNullList(
        ExceptionGroup,
        description=(
            "Exceptions per issuer, acquirer and reason (by issuer, acquirer, reason): every group, or an"
            f" issuer's, an acquirer's or a reason's. More than {EXCEPTION_LIST_MAX} groups (a national"
            " network's day has ~18,000) answers PAGINATION_REQUIRED: page them with exceptionGroups, or"
            " narrow them with issuer, acquirer or reason (the field is then null, the rest of the cycle"
            " answered)."
        ),
        required=False,
        issuer=graphene.String(description="Only this issuer's groups."),
        acquirer=graphene.String(description="Only this acquirer's groups."),
        reason=graphene.String(description="Only this reason's groups (e.g. tac_invalid)."),
    )
    exception_groups = graphene.Field(
        ExceptionGroupConnection,
        description=(
            "The exception groups a page at a time, by issuer, acquirer and reason; of one issuer, acquirer or"
            " reason."
        ),
        **connection_args(issuer=graphene.String(), acquirer=graphene.String(), reason=graphene.String()),
    )
    exceptions = graphene.Field(
        ClearingRecordConnection,
        description="The records the issuers rejected (by record id), with their reasons.",
        **connection_args(issuer=graphene.String(), acquirer=graphene.String(), reason=graphene.String()),
    )
    records = graphene.Field(
        ClearingRecordConnection,
        description=(
            "Its records by record id, filtered: a cell of the bilateral matrix is its issuer, its acquirer"
            " and status VALID; a status is as read (a record still pending in a validated cycle is valid)."
        ),
        **connection_args(
            issuer=graphene.String(),
            acquirer=graphene.String(),
            status=graphene.Argument(ClearingRecordStatusEnum),
        ),
    )
    disputes = NonNullList(Dispute, description="Disputes of its records, newest first.")
    reconciliation_files = NonNullList(ReconciliationFile, description="One per participant, once settled.")

    @staticmethod
    def resolve_id(root, info):
        return global_id("ClearingCycle", root.label)

    @staticmethod
    def resolve_label(root, info):
        return root.label

    @staticmethod
    def resolve_agreement_version(root, info):
        return _with_versions(
            root.agreement, info, lambda agreement: agreement.version_on(root.business_date)
        )

    @staticmethod
    def resolve_network(root, info):
        return root.agreement.network

    @staticmethod
    def resolve_service(root, info):
        return str(root.agreement.service)

    @staticmethod
    def resolve_state(root, info):
        return str(root.state)

    @staticmethod
    def resolve_state_history(root, info):
        return then(
            DisputesByCycleLoader(info.context).load(root.pk), lambda found: state_history(root, found)
        )

    @staticmethod
    def resolve_totals(root, info):
        def build(by_status):
            parts = {s: by_status.get(s, (0, 0)) for s in ("pending", "valid", "rejected")}
            total = (sum(n for n, _ in parts.values()), sum(a for _, a in parts.values()))
            return CycleTotals(
                records=RecordTotals(records=total[0], amount_fen=total[1]),
                **{s: RecordTotals(records=n, amount_fen=a) for s, (n, a) in parts.items()},
            )

        return then(RecordTotalsByCycleLoader(info.context).load(root.pk), build)

    @staticmethod
    def resolve_validation_checks(root, info):
        return [
            IssuerChecks(issuer=issuer, checks=list(checks))
            for issuer, checks in sorted((root.validation_checks or {}).items())
        ]

    @staticmethod
    def resolve_bilateral_matrix(root, info, issuer=None, acquirer=None):
        def listed(cells):
            if cells is None:
                raise ApiError(
                    f"the bilateral matrix of {root.label} has more than {MATRIX_LIST_MAX} cells: page it with"
                    " bilateralCells (first, after), or give issuer or acquirer",
                    ApiErrorCode.PAGINATION_REQUIRED,
                )
            return cells

        return then(
            MatrixByCycleLoader(info.context).load((root.pk, (issuer or None, acquirer or None))), listed
        )

    @staticmethod
    def resolve_bilateral_cells(
        root,
        info,
        first=None,
        last=None,
        after=None,
        before=None,
        issuer=None,
        acquirer=None,
        order="issuer_acquirer",
    ):
        page = PageArgs.of(first=first, last=last, after=after, before=before)
        return CellPagesLoader(info.context).load(
            (
                root.pk,
                page,
                (issuer or None, acquirer or None),
                enum_value(order) if order else "issuer_acquirer",
            )
        )

    @staticmethod
    def resolve_net_positions(root, info):
        def build(rows):
            total = sum(p.net_fen for p in rows)
            return NetPositions(positions=rows, sum_fen=total, balanced=total == 0)

        return then(NetPositionsByCycleLoader(info.context).load(root.pk), build)

    @staticmethod
    def resolve_settlement_instructions(root, info):
        return InstructionsByCycleLoader(info.context).load(root.pk)

    @staticmethod
    def resolve_exception_summary(root, info, issuer=None, acquirer=None, reason=None):
        def listed(groups):
            if groups is None:
                raise ApiError(
                    f"the exceptions of {root.label} fall in more than {EXCEPTION_LIST_MAX} groups: page them"
                    " with exceptionGroups (first, after), or give issuer, acquirer or reason",
                    ApiErrorCode.PAGINATION_REQUIRED,
                )
            return groups

        filters = (issuer or None, acquirer or None, reason or None)
        return then(ExceptionSummaryByCycleLoader(info.context).load((root.pk, filters)), listed)

    @staticmethod
    def resolve_exception_groups(
        root, info, first=None, last=None, after=None, before=None, issuer=None, acquirer=None, reason=None
    ):
        page = PageArgs.of(first=first, last=last, after=after, before=before)
        filters = (issuer or None, acquirer or None, reason or None)
        return ExceptionGroupPagesLoader(info.context).load((root.pk, page, filters))

    @staticmethod
    def resolve_exceptions(
        root, info, first=None, last=None, after=None, before=None, issuer=None, acquirer=None, reason=None
    ):
        page = PageArgs.of(first=first, last=last, after=after, before=before)
        filters = (issuer or None, acquirer or None, RecordStatus.REJECTED.value, reason or None)
        return RecordPagesLoader(info.context).load((root.pk, page, filters))

    @staticmethod
    def resolve_records(
        root, info, first=None, last=None, after=None, before=None, issuer=None, acquirer=None, status=None
    ):
        page = PageArgs.of(first=first, last=last, after=after, before=before)
        filters = (issuer or None, acquirer or None, enum_value(status) if status else None, None)
        return RecordPagesLoader(info.context).load((root.pk, page, filters))

    @staticmethod
    def resolve_disputes(root, info):
        return DisputesByCycleLoader(info.context).load(root.pk)

    @staticmethod
    def resolve_reconciliation_files(root, info):
        return ReconciliationFilesByCycleLoader(info.context).load(root.pk)


class ClearingCycleConnection(Connection):
    class Meta:
        node = ClearingCycle
