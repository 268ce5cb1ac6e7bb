"""Stepping a clearing cycle (clearing staff): thin over citycard.interop.services' cycle steps.

Each step is the service's own transaction (locking the cycle row) inside the mutation's; a step whose
state is already reached returns the cycle unchanged, one asked out of order is ``CYCLE_STATE``, closing
before the cut-off ``BEFORE_CUT_OFF``; a refusal writes nothing. The service audits the step with the
staff member as actor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import graphene

from citycard.graphql.clearing import clock
from citycard.graphql.clearing.types import ClearingCycle, ClearingServiceEnum
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.core.types import enum_value
from citycard.interop.services import cycles
from citycard.platform.scopes import PlatformScope

STEP_CODES = ["CYCLE_STATE", "NO_AGREEMENT"]

ClearingCycleCloseError = error_type(
    "ClearingCycleClose", [*STEP_CODES, "BEFORE_CUT_OFF"], "Why a cycle was not closed (nothing was written)."
)
ClearingCycleValidateError = error_type(
    "ClearingCycleValidate", STEP_CODES, "Why a cycle was not validated (nothing was written)."
)
ClearingCycleNetError = error_type(
    "ClearingCycleNet", STEP_CODES, "Why a cycle was not netted (nothing was written)."
)
ClearingCycleSettleError = error_type(
    "ClearingCycleSettle", STEP_CODES, "Why a cycle was not settled (nothing was written)."
)


class CycleStepArguments:
    network = graphene.String(required=True, description="The network's code (yrd, gba).")
    service = graphene.Argument(ClearingServiceEnum, required=True)
    business_date = graphene.Date(required=True, description="Monthly cycles: any day of the month.")


class CycleStep(BaseMutation):
    cycle = graphene.Field(ClearingCycle)

    step: ClassVar[Callable[..., Any]]

    class Meta:
        abstract = True

    @classmethod
    def perform_mutation(cls, root, info, network, service, business_date):
        cycle = cycles.cycle_get_or_create(
            network_code=network.strip().lower(),
            service=str(enum_value(service)),
            business_date=business_date,
        )
        cycle = cls.step(cycle=cycle, now=clock.now(), actor=cls.actor(info))
        return cls(cycle=cycle, errors=[])


class ClearingCycleClose(CycleStep):
    step = staticmethod(cycles.cycle_close)

    class Arguments(CycleStepArguments):
        pass

    class Meta:
        description = (
            "Cut a cycle off (open → closed), not before its cut-off; the next cycle opens for late records."
        )
        permissions = [PlatformScope.CLEARING_MANAGE]
        error_type_class = ClearingCycleCloseError


class ClearingCycleValidate(CycleStep):
    step = staticmethod(cycles.cycle_validate)

    class Arguments(CycleStepArguments):
        pass

    class Meta:
        description = (
            "Each issuer validates its records in its own schema (closed → validated); rejected records "
            "become exceptions sent back to their acquirers."
        )
        permissions = [PlatformScope.CLEARING_MANAGE]
        error_type_class = ClearingCycleValidateError


class ClearingCycleNet(CycleStep):
    step = staticmethod(cycles.cycle_net)

    class Arguments(CycleStepArguments):
        pass

    class Meta:
        description = (
            "The bilateral matrix and multilateral net positions, posted to the ledger (validated → netted)."
        )
        permissions = [PlatformScope.CLEARING_MANAGE]
        error_type_class = ClearingCycleNetError


class ClearingCycleSettle(CycleStep):
    step = staticmethod(cycles.cycle_settle)

    class Arguments(CycleStepArguments):
        pass

    class Meta:
        description = (
            "Settlement instructions, their ledger journal and every participant's reconciliation file "
            "(netted → settled)."
        )
        permissions = [PlatformScope.CLEARING_MANAGE]
        error_type_class = ClearingCycleSettleError
