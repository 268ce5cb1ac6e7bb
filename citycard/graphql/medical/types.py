from __future__ import annotations

import graphene

from citycard.graphql.core.dataloaders import then
from citycard.graphql.core.types import NonNullList, global_id
from citycard.graphql.medical.dataloaders import ClaimOutcomeLoader
from citycard.tenants.medical.models import Coverage, ItemCategory
from citycard.tenants.medical.selectors import ClaimStatus
from citycard.tenants.medical.services import LineOutcome, Refusal

MedicalClaimStatusEnum = graphene.Enum(
    "MedicalClaimStatus",
    [
        ("SUBMITTED", ClaimStatus.SUBMITTED),
        ("ADJUDICATED", ClaimStatus.ADJUDICATED),
        ("REFUSED", ClaimStatus.REFUSED),
    ],
    description="SUBMITTED: sent to the insured place, no answer yet (the platform collects outboxes every "
    "15 minutes and the insured place answers at once); ADJUDICATED: fundFen and patientFen are final; "
    "REFUSED: nothing of the claim could be adjudicated (refusal says why), the patient pays all of it.",
)
MedicalClaimRefusalEnum = graphene.Enum(
    "MedicalClaimRefusal",
    [
        ("NOT_INSURED", Refusal.NOT_INSURED),
        ("YEAR_CLOSED", Refusal.YEAR_CLOSED),
        ("NO_POLICY", Refusal.NO_POLICY),
    ],
    description="Why the insured place could adjudicate nothing of a claim: the card is not insured there, "
    "the year of treatment is closed (年度清算), or no policy of the person's insured category was in force.",
)
MedicalLineOutcomeEnum = graphene.Enum(
    "MedicalLineOutcome",
    [
        ("COVERED", LineOutcome.COVERED),
        ("PARTLY_COVERED", LineOutcome.PARTLY_COVERED),
        ("SELF_PAY", LineOutcome.SELF_PAY),
        ("NOT_IN_CATALOGUE", LineOutcome.NOT_IN_CATALOGUE),
    ],
    description="A line at the treatment place: COVERED (甲类, eligible in full), PARTLY_COVERED (乙类, eligible "
    "after the self-pay share), SELF_PAY (丙类), NOT_IN_CATALOGUE (the patient pays it at the hospital's price).",
)
MedicalItemClassEnum = graphene.Enum(
    "MedicalItemClass", [(c.name, c.value) for c in Coverage], description="甲类 A, 乙类 B, 丙类 C."
)
MedicalItemCategoryEnum = graphene.Enum(
    "MedicalItemCategory",
    [(c.name, c.value) for c in ItemCategory],
    description="What an item is; the insured place's reimbursement ratio is per category.",
)


class MedicalClaimItemInput(graphene.InputObjectType):
    """One line of a claim as the hospital sends it."""

    code = graphene.String(required=True, description="The item's code in this city's catalogue (医保目录).")
    quantity = graphene.Int(required=True, description="A positive whole number.")
    unit_price_fen = graphene.Int(
        description="The hospital's unit price in fen: needed only for an item outside the catalogue (which "
        "the patient pays); catalogue items are priced at the catalogue's price."
    )
    name = graphene.String(description="The item's name, for an item outside the catalogue.")


# Resolved from the stored line, a dict: graphene's default resolver reads its keys.
class MedicalClaimLine(graphene.ObjectType):
    """One line of a claim, priced with the catalogue (amounts in fen)."""

    code = graphene.String(required=True)
    name = graphene.String(required=True)
    category = graphene.Field(MedicalItemCategoryEnum, description="Null outside the catalogue.")
    item_class = graphene.Field(MedicalItemClassEnum, description="Null outside the catalogue.")
    quantity = graphene.Int(required=True)
    unit_price_fen = graphene.Int(required=True)
    amount_fen = graphene.Int(required=True)
    eligible_fen = graphene.Int(required=True, description="What the insured place's policy applies to.")
    self_pay_fen = graphene.Int(required=True, description="What the patient pays whatever the policy.")
    outcome = graphene.Field(MedicalLineOutcomeEnum, required=True)

    @staticmethod
    def resolve_name(root, info):
        return root.get("name", "")

    @staticmethod
    def resolve_category(root, info):
        return root.get("category") or None

    @staticmethod
    def resolve_item_class(root, info):
        return root.get("coverage") or None

    @staticmethod
    def resolve_unit_price_fen(root, info):
        return root.get("unit_price_fen", 0)

    @staticmethod
    def resolve_self_pay_fen(root, info):
        return root.get("self_pay_fen", root["amount_fen"] - root["eligible_fen"])


class MedicalCategoryAdjudication(graphene.ObjectType):
    """The insured place's adjudication of one item category (amounts in fen)."""

    category = graphene.Field(MedicalItemCategoryEnum, required=True)
    eligible_fen = graphene.Int(required=True)
    deductible_fen = graphene.Int(required=True, description="What the year's 起付线 took of it.")
    ratio_bps = graphene.Int(required=True, description="报销比例 in basis points (8000 = 80%).")
    fund_fen = graphene.Int(required=True, description="Before the annual cap (封顶线) of the whole claim.")


def _with_outcome(root, info, fn):
    """``fn`` of the insured place's answer (None until it answered): read with the claim when the
    selector annotated it (``outcome``), else through the loader (one query for all claims asked)."""
    if hasattr(root, "outcome"):
        return fn(root.outcome)
    return then(ClaimOutcomeLoader(info.context).load(root.claim_id), fn)


class MedicalClaim(graphene.ObjectType):
    """A cross-city claim (异地就医) this hospital submitted: its lines as priced here and, once the insured
    place answered, the fund's and the patient's shares (fen)."""

    id = graphene.ID(required=True)
    claim_id = graphene.String(required=True, description="The hospital's own claim id.")
    card_number = graphene.String(required=True)
    hospital = graphene.String(required=True, description="The submitting app's name.")
    treated_at = graphene.DateTime(required=True)
    submitted_at = graphene.DateTime(required=True)
    total_fen = graphene.Int(required=True)
    eligible_fen = graphene.Int(required=True, description="The lines' eligible amounts, summed.")
    lines = NonNullList(MedicalClaimLine)
    status = graphene.Field(MedicalClaimStatusEnum, required=True)
    fund_fen = graphene.Int(description="What the insured place's fund pays (the hospital is advanced it).")
    patient_fen = graphene.Int(description="What the patient pays at the hospital: total − fund.")
    refusal = graphene.Field(MedicalClaimRefusalEnum)
    refusal_reason = graphene.String(description="The insured place's reason, in one line.")
    adjudication = NonNullList(
        MedicalCategoryAdjudication, description="Per item category; empty until adjudicated."
    )
    annual_cap_left_fen = graphene.Int(description="What the person's 封顶线 had left for this claim.")

    @staticmethod
    def resolve_id(root, info):
        return global_id("MedicalClaim", root.claim_id)

    @staticmethod
    def resolve_claim_id(root, info):
        return root.hospital_claim_no

    @staticmethod
    def resolve_card_number(root, info):
        return root.card_no

    @staticmethod
    def resolve_hospital(root, info):
        return root.department

    @staticmethod
    def resolve_eligible_fen(root, info):
        return sum(int(v) for v in root.eligible.values())

    @staticmethod
    def resolve_lines(root, info):
        return list(root.items)

    @staticmethod
    def resolve_status(root, info):
        def status(outcome):
            if outcome is None:
                return ClaimStatus.SUBMITTED
            return ClaimStatus.REFUSED if outcome.get("rejected") else ClaimStatus.ADJUDICATED

        return _with_outcome(root, info, status)

    @staticmethod
    def resolve_fund_fen(root, info):
        return _with_outcome(root, info, lambda o: o and o["fund_fen"])

    @staticmethod
    def resolve_patient_fen(root, info):
        return _with_outcome(root, info, lambda o: o and o["patient_fen"])

    @staticmethod
    def resolve_refusal(root, info):
        return _with_outcome(root, info, lambda o: (o or {}).get("rejected"))

    @staticmethod
    def resolve_refusal_reason(root, info):
        return _with_outcome(root, info, lambda o: (o or {}).get("reason"))

    @staticmethod
    def resolve_adjudication(root, info):
        def rows(outcome):
            categories = ((outcome or {}).get("detail") or {}).get("categories", {})
            return [MedicalCategoryAdjudication(category=k, **v) for k, v in sorted(categories.items())]

        return _with_outcome(root, info, rows)

    @staticmethod
    def resolve_annual_cap_left_fen(root, info):
        return _with_outcome(root, info, lambda o: ((o or {}).get("detail") or {}).get("cap_left_fen"))
