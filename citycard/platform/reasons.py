"""The codes machines exchange for why something was refused or needs a look, and the label a person reads
(docs/console.md, "Reasons and flags"). The code stays the machine's word (GraphQL, CSV, signed messages,
the ``reason`` columns); pages show the label with the code beside it (``reason_label`` in
``templatetags/people.py``), so a clerk can still quote the code.

- Clearing rejections (清分校验拒付): what an issuer's validation answers (``tenants.exchange.services``).
- Tap exceptions (异常): a roaming tap held, or a tap refused at ingestion (``tenants.terminals``).
- Review flags (待复核): a stored tap someone should look at (``tenants.terminals.checks``).
- Medical claim refusals (异地就医拒付): why the insured place adjudicated nothing of a claim
  (``tenants.medical.services.adjudication.Refusal``).
"""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

CLEARING_REJECTIONS = {
    "not_our_card": _("Not the issuer's card"),
    "card_unknown": _("Card unknown to the issuer"),
    "hotlisted": _("Card hotlisted"),
    "tac_invalid": _("TAC does not verify"),
    "counter_replayed": _("Card counter cleared before"),
    "code_missing": _("Citizen-code ride without its code"),
    "code_invalid": _("Citizen code does not verify"),
    "code_expired": _("Ride outside the citizen code's validity"),
    "code_other_card": _("Citizen code of another card"),
    "code_replayed": _("Citizen code used before"),
    "no_funds": _("Neither the cardholder's credit line nor online account can pay"),
}

TAP_EXCEPTIONS = {
    "unknown_issuer": _("No tenant issues this card"),
    "issuer_not_in_shared_network": _("Issuer outside every shared network"),
    "malformed": _("Malformed tap"),
    "bad_field": _("Field missing or invalid"),
    "bad_card_no": _("Invalid card number"),
    "issuer_mismatch": _("Issuer is not the card number's prefix"),
    "negative_amount": _("Negative amount"),
    "balance_mismatch": _("Balances do not add up"),
    "bad_tapped_at": _("Invalid tap time"),
    "tapped_at_out_of_range": _("Implausible tap time"),
    "bad_tac": _("Invalid TAC"),
    "unsupported_kind": _("Unsupported transaction kind"),
    "bad_status": _("Invalid status"),
    "conflict": _("Same tap sent again with other content"),
    "duplicate": _("Duplicate tap"),
}

REVIEW_FLAGS = {
    "clock_skew": _("Terminal clock skew"),
    "card_counter_gap": _("Card counter gap"),
    "unproven": _("No TAC to prove the tap"),
    "tac_invalid": _("TAC does not verify"),
    "fare_mismatch": _("Fare differs from the published rules"),
    "code_missing": _("Citizen-code ride without its code"),
    "code_invalid": _("Citizen code does not verify"),
    "code_expired": _("Ride outside the citizen code's validity"),
    "code_other_card": _("Citizen code of another card"),
    "code_replayed": _("Citizen code used before"),
}

MEDICAL_REFUSALS = {
    "not_insured": _("Not insured at the insured place"),
    "year_closed": _("Claim year closed"),
    "no_policy": _("No benefit policy in force"),
}

LABELS = {**TAP_EXCEPTIONS, **REVIEW_FLAGS, **CLEARING_REJECTIONS, **MEDICAL_REFUSALS}

# What a claim's outcome says the person is insured under (参保类别), as the medical app's choices name them.
INSURED_CATEGORIES = {
    "employee": _("Employees' basic medical insurance"),
    "resident": _("Urban and rural residents' medical insurance"),
}


def insured_category_text(code: str | None) -> str:
    """``职工医保 (employee)``; the bare code when it has no label."""
    if not code:
        return ""
    label = INSURED_CATEGORIES.get(code)
    return f"{label} ({code})" if label else code


def reason_label(code: str | None) -> str:
    """The label of a rejection reason, exception reason or review-flag code in the active language; the code
    itself for one this vocabulary does not know (a newer peer's), so nothing is ever hidden."""
    if not code:
        return ""
    label = LABELS.get(code)
    return str(label) if label is not None else code


def reason_text(code: str | None) -> str:
    """Label and code in plain text, ``卡片已列入黑名单 (hotlisted)``; the bare code when it has no label."""
    if not code:
        return ""
    label = reason_label(code)
    return code if label == code else f"{label} ({code})"


def reason_html(code: str | None) -> str:
    """Label with the code beside it, for a page: ``卡片已列入黑名单 <code>hotlisted</code>``."""
    if not code:
        return ""
    label = reason_label(code)
    if label == code:
        return format_html("<code>{}</code>", code)
    return format_html('{} <code class="muted">{}</code>', label, code)
