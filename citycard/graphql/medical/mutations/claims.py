"""A hospital's cross-city claim (异地就医) submitted by its partner app: thin over
citycard.tenants.medical.services.claim_submit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import graphene

from citycard.graphql.core.access import access_log_read
from citycard.graphql.core.mutations import BaseMutation, error_type
from citycard.graphql.core.types import NonNullList
from citycard.graphql.medical.resolvers import hospital_key_of
from citycard.graphql.medical.types import MedicalClaim, MedicalClaimItemInput
from citycard.platform.scopes import Scope
from citycard.tenants.medical import services

MedicalClaimSubmitError = error_type(
    "MedicalClaimSubmit",
    ["CONFLICT", "PRICE_REQUIRED", "BAD_CHECKSUM", "UNKNOWN_INSURED_PLACE", "NOT_ROAMING", "NO_NETWORK"],
    "Why a claim was not submitted (nothing was written): CONFLICT, the claim id was used before with other "
    "content; PRICE_REQUIRED, a line outside the catalogue has no unitPriceFen; BAD_CHECKSUM, the card "
    "number's check digit is wrong; UNKNOWN_INSURED_PLACE, no city issues that card; NOT_ROAMING, the card "
    "is this city's own (settle locally); NO_NETWORK, its city and this one roam in no common network.",
)


class MedicalClaimSubmit(BaseMutation):
    claim = graphene.Field(MedicalClaim, description="The claim as priced here (the first one, on a retry).")
    already_submitted = graphene.Boolean(
        description="True when this key had submitted the same claim before: the first one stands."
    )
    error_fields = {"claim_no": "claim_id", "card_no": "card_number"}

    class Arguments:
        claim_id = graphene.String(
            required=True,
            description="The hospital's own claim id (1-40 letters, digits or . _ : / -): a retry with the same "
            "id and content returns the first claim; the same id with other content is CONFLICT. Ids are per "
            "API key.",
        )
        card_number = graphene.String(required=True, description="The insured person's card (19 digits).")
        treated_at = graphene.DateTime(
            required=True, description="When the patient was treated (with offset)."
        )
        items = NonNullList(MedicalClaimItemInput, description="The lines of the bill.")

    class Meta:
        description = (
            "Submit a visiting insured person's claim (异地就医直接结算). It is priced with this city's catalogue "
            "at once — 甲类 eligible in full, 乙类 after the self-pay share, 丙类 and items outside the catalogue "
            "paid by the patient — and sent to the insured place, which applies its policy (起付线, 报销比例, "
            "封顶线) when the platform next collects the outbox (every 15 minutes): ask "
            "`medicalClaim(claimId:)` for status, fundFen and patientFen. The insured place refuses a claim as "
            "a whole only when nothing of it can be adjudicated (unknown person, closed year, no policy), with "
            "the reason."
        )
        permissions = [Scope.MEDICAL_CLAIMS]
        error_type_class = MedicalClaimSubmitError

    @classmethod
    def perform_mutation(
        cls, root: Any, info: Any, claim_id: str, card_number: str, treated_at: dt.datetime, items: list[Any]
    ) -> MedicalClaimSubmit:
        principal = info.context.principal
        claim, created = services.claim_submit(
            claim_no=(claim_id or "").strip(),
            card_no=(card_number or "").strip(),
            department=principal.api_key.name if principal.api_key is not None else principal.actor,
            treated_at=treated_at,
            items=[
                services.ClaimItem(i.code.strip(), i.quantity, i.unit_price_fen, (i.name or "").strip())
                for i in items
            ],
            actor=cls.actor(info),
            hospital_key=hospital_key_of(info),
        )
        access_log_read(info, object_type="card", object_ids=[claim.card_no], fields=["medical_claim"])
        return cls(claim=claim, already_submitted=not created, errors=[])
