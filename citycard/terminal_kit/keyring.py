"""The keys a terminal verifies with (密钥环), fetched from its tenant's ``/.well-known/citycard-keys.json``.

The document is signed by the platform and lists, per key: its id, owner, Ed25519 public key (base64),
what it signs (``acknowledgements``, ``hotlists``, ``fare_rules``; ``keys`` for the platform's own), its
state and dates (docs/terminal-protocol.md). The terminal trusts it when it verifies under a platform key
it trusts: the keys of a ``--platform-key`` file (pinned), or those of the last document it took. With
neither (a new terminal, no pin) it trusts the platform key the document itself lists, once: trust on first
use, said so on the command line. What it took is kept in the queue database, so an upload verifies its
acknowledgement with the keys held, and a terminal restarted offline still holds them. Each use takes
only the keys that sign that kind of document and still verify on the terminal's clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from citycard.terminal_kit.i18n import N_, said, text_of
from citycard.terminal_kit.signing import SignatureError, b64decode, verify_document
from citycard.terminal_kit.store import TapStore

KEYS_DOCUMENT = "citycard-keys"
SIGNS_ACKNOWLEDGEMENTS = "acknowledgements"
SIGNS_HOTLISTS = "hotlists"
SIGNS_FARE_RULES = "fare_rules"
SIGNS_KEYS = "keys"
_STORED = "keys"  # the queue database's documents row


class KeysRefused(ValueError):
    """A keys document the terminal does not take; it keeps the keys it held."""


@dataclass(frozen=True)
class KeyRing:
    tenant: str
    issued_at: dt.datetime
    entries: tuple[dict[str, Any], ...]

    def keys(self, signs: str, *, at: dt.datetime) -> dict[str, bytes]:
        """The public keys that sign ``signs`` and still verify at ``at``: {key id: 32 raw bytes}."""
        return {
            e["key_id"]: b64decode(e["public_key"], what=f"public key of {e['key_id']}")
            for e in self.entries
            if signs in e["signs"] and (e["verify_until"] is None or _time(e["verify_until"]) > at)
        }


def _time(text: Any) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise KeysRefused(said(N_("%(text)r is not an ISO 8601 time"), text=text)) from None
    if at.tzinfo is None:
        raise KeysRefused(said(N_("%(text)r has no UTC offset"), text=text))
    return at


def _entry(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("key_id"), str) or not raw["key_id"]:
        raise KeysRefused(said(N_("a key entry has no key_id")))
    key_id = raw["key_id"]
    if raw.get("alg") != "Ed25519":
        raise KeysRefused(said(N_("key %(id)r is not an Ed25519 key"), id=key_id))
    try:
        public = b64decode(str(raw.get("public_key", "")), what=f"public key of {key_id!r}")
    except SignatureError as exc:
        raise KeysRefused(text_of(exc)) from None
    if len(public) != 32:
        raise KeysRefused(said(N_("public key of %(id)r is not 32 bytes"), id=key_id))
    signs = raw.get("signs")
    if not isinstance(signs, list) or not all(isinstance(s, str) for s in signs):
        raise KeysRefused(said(N_("key %(id)r does not say what it signs"), id=key_id))
    verify_until = raw.get("verify_until")
    if verify_until is not None:
        _time(verify_until)
    return {
        "key_id": key_id,
        "tenant": str(raw.get("tenant", "")),
        "alg": "Ed25519",
        "public_key": raw["public_key"],
        "signs": list(signs),
        "state": str(raw.get("state", "")),
        "verify_until": verify_until,
    }


def _ring(payload: Mapping[str, Any]) -> KeyRing:
    entries = payload.get("keys")
    if not isinstance(entries, list):
        raise KeysRefused(said(N_("the document lists no keys")))
    return KeyRing(
        tenant=str(payload.get("tenant", "")),
        issued_at=_time(payload.get("issued_at")),
        entries=tuple(_entry(e) for e in entries),
    )


def keyring_held(store: TapStore) -> KeyRing | None:
    """The keys this terminal took last (None before its first sync)."""
    held = store.document_get(_STORED)
    return None if held is None else _ring(held[1])


@dataclass(frozen=True)
class KeysTaken:
    ring: KeyRing
    first_use: bool  # trusted on first use: no pinned key, none held
    signed_by: str  # the platform key that signed it


def keyring_take(
    document: Any,
    *,
    store: TapStore,
    tenant: str,
    pinned: Mapping[str, bytes] | None,
    now: dt.datetime,
) -> KeysTaken:
    """Verify a keys document for ``tenant`` and keep it; raise KeysRefused naming what is wrong.

    Trusted: the ``pinned`` platform keys and the platform keys of the document held; with neither, the
    platform key the document lists for itself (trust on first use). A document older than the one held
    is refused (a replayed one would bring back keys since retired)."""
    held = keyring_held(store)
    trusted = dict(pinned or {})
    if held is not None:
        trusted.update(held.keys(SIGNS_KEYS, at=now))
    first_use = not trusted
    if first_use:
        if not isinstance(document, Mapping) or not isinstance(document.get("payload"), Mapping):
            raise KeysRefused(said(N_("the keys document has no payload")))
        if document["payload"].get("kind") != KEYS_DOCUMENT:
            raise KeysRefused(
                said(
                    N_("the document is a %(kind)r, not a %(document)r"),
                    kind=document["payload"].get("kind"),
                    document=KEYS_DOCUMENT,
                )
            )
        trusted = _ring(document["payload"]).keys(SIGNS_KEYS, at=now)
    try:
        payload = verify_document(document, keys=trusted)
    except SignatureError as exc:
        if exc.code == "unknown_key":
            if pinned:
                template = N_(
                    "the keys document is %(exc)s, not by a platform key this terminal trusts (--platform-key)"
                )
            else:
                template = N_("the keys document is %(exc)s, not by a platform key this terminal trusts")
            raise KeysRefused(said(template, exc=exc)) from None
        raise KeysRefused(said(N_("the keys document was refused: %(exc)s"), exc=exc)) from None
    if payload.get("kind") != KEYS_DOCUMENT:
        raise KeysRefused(
            said(
                N_("the document is a %(kind)r, not a %(document)r"),
                kind=payload.get("kind"),
                document=KEYS_DOCUMENT,
            )
        )
    if payload.get("tenant") != tenant:
        raise KeysRefused(
            said(
                N_("the keys document is for %(tenant)r, not %(expected)r"),
                tenant=payload.get("tenant"),
                expected=tenant,
            )
        )
    ring = _ring(payload)
    if held is not None and ring.issued_at < held.issued_at:
        raise KeysRefused(
            said(
                N_("the keys document was issued at %(at)s, before the one held"),
                at=f"{ring.issued_at:%Y-%m-%d %H:%M:%S}",
            )
        )
    # Keys past their overlap window are dropped now: a later document will not list them either.
    kept = [e for e in ring.entries if e["verify_until"] is None or _time(e["verify_until"]) > now]
    store.document_put(
        kind=_STORED,
        version=int(ring.issued_at.timestamp()),
        body={"tenant": ring.tenant, "issued_at": payload["issued_at"], "keys": kept},
    )
    return KeysTaken(
        ring=KeyRing(ring.tenant, ring.issued_at, tuple(kept)),
        first_use=first_use,
        signed_by=document["signature"]["key_id"],
    )
