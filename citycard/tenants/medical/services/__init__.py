"""Cross-city medical settlement on the tenant side (异地就医直接结算), one module per topic:

* ``catalogue`` — the treatment place's catalogue (医保目录): ``catalogue_item_save``, ``catalogue_import``;
* ``claims`` — the treatment place prices its hospitals' claims and sends them: ``claim_submit``;
* ``policies`` — the insured place's policies (``policy_set``), each person's insured category for a year
  (``insured_year_set_category``), closing a year (``medical_year_close``);
* ``adjudication`` — the insured place adjudicates a claim under its policy: ``claim_adjudicate`` (run by
  interop in its schema).

The fund share is what the insured place owes the treatment place (cleared monthly); the patient pays the
rest at the hospital. Rounding: every basis-point share is rounded half-up, per line for the 乙类 self-pay
share and per item category for the fund share (docs/medical.md works examples).
"""

from citycard.tenants.medical.services.adjudication import Refusal, claim_adjudicate, fund_share
from citycard.tenants.medical.services.catalogue import (
    CatalogueImportReport,
    catalogue_import,
    catalogue_item_check,
    catalogue_item_save,
)
from citycard.tenants.medical.services.claims import (
    ClaimItem,
    LineOutcome,
    Priced,
    claim_price,
    claim_submit,
    share_fen,
)
from citycard.tenants.medical.services.policies import (
    insured_year_check,
    insured_year_set_category,
    medical_year_close,
    policy_check,
    policy_set,
)

__all__ = [
    "CatalogueImportReport",
    "ClaimItem",
    "LineOutcome",
    "Priced",
    "Refusal",
    "catalogue_import",
    "catalogue_item_check",
    "catalogue_item_save",
    "claim_adjudicate",
    "claim_price",
    "claim_submit",
    "fund_share",
    "insured_year_check",
    "insured_year_set_category",
    "medical_year_close",
    "policy_check",
    "policy_set",
    "share_fen",
]
