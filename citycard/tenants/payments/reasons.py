"""The reasons reconciliation writes on a difference (差错原因), read in the reader's language.

The statement's SQL and the payout check store each reason as an English sentence (the record a clerk,
an export or an auditor reads the same way whatever the language of the day); a page or a command shows
it through ``reason_text``: the fixed sentences translated as they are, the ones carrying amounts re-said
with the amounts in yuan. A sentence this module does not know is shown as stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.utils.translation import gettext, gettext_noop

from citycard.terminal_kit.money import yuan

# Every fixed sentence services.py writes (tests/tenants/payments/test_reasons.py keeps the list whole).
FIXED = (
    gettext_noop("the provider took a payment for an order this city never opened"),
    gettext_noop("paid at the provider, no notification or query credited it"),
    gettext_noop("credited in the ledger, not in the provider's statement of the day"),
    gettext_noop("the provider refunded money this city's ledger never gave back"),
    gettext_noop("refunded in the ledger, not in the provider's statement of the day"),
)


def _amounts(template: str, *names: str) -> Callable[[re.Match[str]], str]:
    def say(match: re.Match[str]) -> str:
        values = {
            name: yuan(int(match.group(name))) if name != "day" else match.group(name) for name in names
        }
        return gettext(template) % values

    return say


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(
            r"the payer paid (?P<paid>\d+) fen against an order of (?P<order>\d+) fen: nothing was credited"
        ),
        _amounts(
            gettext_noop("the payer paid %(paid)s against an order of %(order)s: nothing was credited"),
            "paid",
            "order",
        ),
    ),
    (
        re.compile(r"the statement says (?P<statement>\d+) fen, the ledger credited (?P<ledger>\d+) fen"),
        _amounts(
            gettext_noop("the statement says %(statement)s, the ledger credited %(ledger)s"),
            "statement",
            "ledger",
        ),
    ),
    (
        re.compile(r"the statement refunds (?P<statement>\d+) fen, the ledger (?P<ledger>\d+) fen"),
        _amounts(
            gettext_noop("the statement refunds %(statement)s, the ledger %(ledger)s"), "statement", "ledger"
        ),
    ),
    (
        re.compile(
            r"the bank received (?P<received>\d+) fen, the statement of (?P<day>\S+) nets (?P<expected>\d+) fen"
            r" \(paid less refunded less fees\)"
        ),
        _amounts(
            gettext_noop(
                "the bank received %(received)s, the statement of %(day)s nets %(expected)s "
                "(paid less refunded less fees)"
            ),
            "received",
            "day",
            "expected",
        ),
    ),
)


def reason_text(reason: str) -> str:
    """``reason`` as stored, in the active language."""
    if reason in FIXED:
        return gettext(reason)
    for pattern, say in _PATTERNS:
        match = pattern.fullmatch(reason)
        if match is not None:
            return say(match)
    return reason
