"""A difference's reason is stored in English and read in the reader's language: every sentence the
reconciliation's SQL writes is one reasons.py knows, and the ones with amounts are re-said in yuan."""

from __future__ import annotations

import re

from django.utils import translation

from citycard.tenants.payments import services
from citycard.tenants.payments.reasons import FIXED, reason_text


def _sql_sentences() -> list[str]:
    """The SQL's string literals of five words or more (its reasons), quotes un-doubled."""
    literals = re.findall(r"'((?:[^']|'')*)'", services._DIFFERENCES_SQL)
    return [lit.replace("''", "'") for lit in literals if len(lit.split()) >= 5]


def test_every_fixed_reason_the_sql_writes_is_known_and_translated():
    sentences = _sql_sentences()
    fixed = [s for s in sentences if not s.endswith(" fen") and " fen " not in s]
    assert sorted(fixed) == sorted(FIXED)
    with translation.override("zh-hans"):
        for sentence in FIXED:
            said = reason_text(sentence)
            assert said != sentence and re.search(r"[\u4e00-\u9fff]", said), sentence


def test_reasons_with_amounts_are_said_in_yuan():
    with translation.override("zh-hans"):
        assert reason_text("the statement says 1234 fen, the ledger credited 1000 fen") == (
            "对账单金额 ¥12.34，账务入账 ¥10.00"
        )
        assert "¥3.00" in reason_text(
            "the payer paid 300 fen against an order of 500 fen: nothing was credited"
        )
        assert (
            reason_text("the statement refunds 50 fen, the ledger 40 fen")
            == "对账单退款 ¥0.50，账务退款 ¥0.40"
        )
        payout = reason_text(
            "the bank received 9900 fen, the statement of 2026-11-21 nets 10000 fen (paid less refunded less fees)"
        )
        assert payout.startswith("银行到账 ¥99.00") and "2026-11-21" in payout
    with translation.override("en"):
        assert reason_text("the statement says 1234 fen, the ledger credited 1000 fen") == (
            "the statement says ¥12.34, the ledger credited ¥10.00"
        )
    assert reason_text("a reason written by hand") == "a reason written by hand"
