from citycard.graphql.clearing.mutations.agreements import RoamingAgreementVersionAdd
from citycard.graphql.clearing.mutations.cycles import (
    ClearingCycleClose,
    ClearingCycleNet,
    ClearingCycleSettle,
    ClearingCycleValidate,
)
from citycard.graphql.clearing.mutations.disputes import DisputeRaise, DisputeResolve

__all__ = [
    "ClearingCycleClose",
    "ClearingCycleNet",
    "ClearingCycleSettle",
    "ClearingCycleValidate",
    "DisputeRaise",
    "DisputeResolve",
    "RoamingAgreementVersionAdd",
]
