"""Fares as data: the rule document, its compiler and the one evaluator terminals and back office share.

    engine = load_signed(document, keys=tenant_public_keys)   # verify the tenant's Ed25519 signature
    quote = engine.quote(card, trip, state)                   # fare in fen, new state, trace

Pure Python: no Django, nothing else of citycard (an import-linter contract keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from citycard.terminal_kit.fares.document import (
    FORMAT,
    CompiledRules,
    RuleDocumentError,
    compile_document,
)
from citycard.terminal_kit.fares.engine import Card, FareEngine, FareError, FareQuote, Trip
from citycard.terminal_kit.i18n import N_, said
from citycard.terminal_kit.signing import KeyLookup, SignatureError, verify_document

KIND = "fare_rules"

__all__ = [
    "FORMAT",
    "KIND",
    "Card",
    "CompiledRules",
    "FareEngine",
    "FareError",
    "FareQuote",
    "RuleDocumentError",
    "Trip",
    "compile_document",
    "load_signed",
]


def load_signed(
    document: Any, *, keys: Mapping[str, Any] | KeyLookup, tenant: str | None = None
) -> FareEngine:
    """Verify a signed rule document with the tenant's public keys and compile it.

    SignatureError for a tampered or foreign document, RuleDocumentError for a malformed one."""
    payload = verify_document(document, keys=keys)
    if payload.get("kind", KIND) != KIND:
        raise SignatureError(
            said(N_("document is a %(kind)r, not %(expected)s"), kind=payload.get("kind"), expected=KIND),
            code="wrong_kind",
        )
    if tenant is not None and payload.get("tenant") != tenant:
        raise SignatureError(
            said(
                N_("rule document is %(tenant)r's, not %(expected)r's"),
                tenant=payload.get("tenant"),
                expected=tenant,
            ),
            code="foreign_signer",
        )
    return FareEngine(compile_document(payload))
