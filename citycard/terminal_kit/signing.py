"""Signed documents: canonical JSON and Ed25519 signatures, shared by terminals and the back office.

A signed document is ``{"payload": {...}, "signature": {"alg": "Ed25519", "key_id": "...", "value": "<b64>"}}``;
the signature covers the canonical JSON of ``payload`` (UTF-8, keys sorted, no spaces, no floats).
Rule documents, hotlists, terminal batches and their acknowledgements, and interop envelopes all use it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from citycard.terminal_kit.i18n import N_, said

ALGORITHM = "Ed25519"


class SignatureError(ValueError):
    """A document whose signature is missing, malformed, by an unknown key, or wrong."""

    def __init__(self, message: str, *, code: str = "bad_signature") -> None:
        super().__init__(message)
        self.code = code


def _no_floats(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not allowed in a signed document (money is integer fen)")


def canonical_json(data: Any) -> bytes:
    """The exact bytes that get signed: sorted keys, compact separators, UTF-8, no floats."""
    reject_floats(data)
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_no_floats
    ).encode()


_SCALARS = (str, int, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


def reject_floats(data: Any) -> None:
    # Iterative and by exact type: this runs over every signed batch of 500 taps and every clearing
    # message (a million records a cycle). The value types of a dict or list are taken as a set, in C:
    # plain scalars only (a record) need no visit; otherwise only the containers among them are visited
    # (a tap's lists of categories and passes), and a float among them is refused at once.
    stack = [data]
    pop, extend = stack.pop, stack.extend
    scalars = _SCALAR_TYPES
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict or kind is list or kind is tuple:
            values = item.values() if kind is dict else item
            types = set(map(type, values))
            if types <= scalars:
                continue
            if float in types:
                raise TypeError("floats are not allowed in a signed document (money is integer fen)")
            extend([v for v in values if type(v) not in scalars])
        elif kind in _SCALARS:
            continue
        elif isinstance(item, float):
            raise TypeError("floats are not allowed in a signed document (money is integer fen)")
        elif isinstance(item, Mapping):
            extend(item.values())
        elif isinstance(item, list | tuple):
            extend(item)


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: str, *, what: str = "value") -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise SignatureError(said(N_("%(what)s is not valid base64"), what=what), code="malformed") from exc


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_document(payload: Mapping[str, Any], *, key: Ed25519PrivateKey, key_id: str) -> dict[str, Any]:
    """Wrap ``payload`` with an Ed25519 signature by ``key`` (named ``key_id`` for the verifier)."""
    signature = key.sign(canonical_json(payload))
    return {
        "payload": dict(payload),
        "signature": {"alg": ALGORITHM, "key_id": key_id, "value": b64encode(signature)},
    }


KeyLookup = Callable[[str], "Ed25519PublicKey | bytes | None"]


def verify_document(
    document: Any, *, keys: Mapping[str, Ed25519PublicKey | bytes] | KeyLookup
) -> dict[str, Any]:
    """Check a signed document and return its payload; raise SignatureError naming what is wrong.

    ``keys`` maps key ids to public keys (raw 32 bytes or key objects), or is a function doing so.
    """
    if not isinstance(document, Mapping):
        raise SignatureError(said(N_("a signed document must be a JSON object")), code="malformed")
    payload, signature = document.get("payload"), document.get("signature")
    if not isinstance(payload, Mapping):
        raise SignatureError(said(N_("signed document has no payload object")), code="malformed")
    if not isinstance(signature, Mapping):
        raise SignatureError(said(N_("document is not signed")), code="unsigned")
    if signature.get("alg") != ALGORITHM:
        raise SignatureError(
            said(N_("unsupported signature algorithm %(alg)r"), alg=signature.get("alg")), code="malformed"
        )
    key_id = signature.get("key_id")
    if not isinstance(key_id, str) or not key_id:
        raise SignatureError(said(N_("signature names no key_id")), code="malformed")
    public = keys(key_id) if callable(keys) else keys.get(key_id)
    if public is None:
        raise SignatureError(said(N_("signed by unknown key %(id)r"), id=key_id), code="unknown_key")
    if isinstance(public, bytes | bytearray | memoryview):
        public = Ed25519PublicKey.from_public_bytes(bytes(public))
    raw = b64decode(str(signature.get("value", "")), what="signature")
    try:
        public.verify(raw, canonical_json(payload))
    except InvalidSignature as exc:
        raise SignatureError(said(N_("signature by %(id)r does not match the payload"), id=key_id)) from exc
    except TypeError as exc:
        raise SignatureError(str(exc), code="malformed") from exc
    return dict(payload)


# --- signed requests ---------------------------------------------------------------------------------
# A request without a body (the hotlist download) is signed in three headers. The signature covers the
# canonical JSON of what identifies the request, so it cannot be moved to another path, query, tenant or
# time; the back office accepts it within its clock-skew window (docs/terminal-protocol.md).

KEY_HEADER, TIME_HEADER, SIGNATURE_HEADER = "X-Terminal-Key", "X-Terminal-Time", "X-Terminal-Signature"


def request_signing_bytes(*, method: str, path: str, tenant: str, key_id: str, at: str) -> bytes:
    """The bytes a terminal signs for a request: method, path with its query, tenant, key id and time."""
    return canonical_json(
        {
            "kind": "terminal-request",
            "method": method.upper(),
            "path": path,
            "tenant": tenant,
            "key_id": key_id,
            "at": at,
        }
    )


@dataclass(frozen=True)
class TerminalCredentials:
    """A terminal's identity at its tenant's back office: the key it signs with and that key's id."""

    tenant: str
    key_id: str  # "<terminal id>:k<version>", as registered
    key: Ed25519PrivateKey

    def headers(self, *, method: str, path: str, at: dt.datetime) -> dict[str, str]:
        at_text = at.astimezone(dt.UTC).isoformat(timespec="seconds")
        signed = request_signing_bytes(
            method=method, path=path, tenant=self.tenant, key_id=self.key_id, at=at_text
        )
        return {
            KEY_HEADER: self.key_id,
            TIME_HEADER: at_text,
            SIGNATURE_HEADER: b64encode(self.key.sign(signed)),
        }
