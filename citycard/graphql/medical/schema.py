from __future__ import annotations

import graphene

from citycard.graphql.core.permissions import PermissionsField
from citycard.graphql.medical import resolvers
from citycard.graphql.medical.mutations.claims import MedicalClaimSubmit
from citycard.graphql.medical.types import MedicalClaim
from citycard.platform.scopes import Scope


class MedicalQueries(graphene.ObjectType):
    medical_claim = PermissionsField(
        MedicalClaim,
        permissions=[Scope.MEDICAL_CLAIMS],
        description="A cross-city claim this API key submitted, by the hospital's claim id: its lines and, once "
        "the insured place answered, the fund's and the patient's shares; null for any other id. Logged as a "
        "read of the card's data.",
        claim_id=graphene.String(required=True),
    )

    @staticmethod
    def resolve_medical_claim(root, info, claim_id):
        return resolvers.resolve_medical_claim(info, claim_id=claim_id)


class MedicalMutations(graphene.ObjectType):
    medical_claim_submit = MedicalClaimSubmit.Field()
