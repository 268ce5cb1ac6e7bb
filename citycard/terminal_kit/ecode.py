"""Electronic citizen code (电子市民码): short-lived QR tokens signed by the issuing tenant, verified offline.

A token is the signed-document format, compacted for a QR code: ``CC1.<base64url(canonical payload)>.
<base64url(signature)>.<key id>``. The payload carries ``card_no``, ``tenant``, ``iat`` and ``exp`` (Unix
seconds, about a minute apart) and a random ``nonce``. The terminal checks the signature with the tenant
keys it holds, the expiry (with a small clock allowance) and that it has not seen the nonce before.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.signing import SignatureError, canonical_json, verify_document

PREFIX = "CC1"
LIFETIME_S = 60
CLOCK_ALLOWANCE_S = 5


class CodeRefused(ValueError):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ecode_issue(
    *,
    card_no: str,
    tenant: str,
    key: Ed25519PrivateKey,
    key_id: str,
    now: float | None = None,
    lifetime_s: int = LIFETIME_S,
) -> str:
    """What the citizen's phone shows: a token for ``card_no`` valid for ``lifetime_s`` seconds."""
    issued = int(now if now is not None else time.time())
    payload = {
        "card_no": card_no,
        "tenant": tenant,
        "iat": issued,
        "exp": issued + lifetime_s,
        "nonce": secrets.token_hex(8),
    }
    raw = canonical_json(payload)
    return ".".join([PREFIX, _b64(raw), _b64(key.sign(raw)), key_id])


@dataclass
class EcodeVerifier:
    """Offline verification at a terminal: tenant keys, expiry, and a memory of recent nonces."""

    keys: dict[str, bytes]
    clock: Callable[[], float] = time.time
    remember: int = 10_000
    _seen: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def verify(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != PREFIX:
            raise CodeRefused("not an electronic citizen code", code="malformed")
        try:
            payload = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError) as exc:
            raise CodeRefused("the code is damaged", code="malformed") from exc
        document = {
            "payload": payload,
            "signature": {
                "alg": "Ed25519",
                "key_id": parts[3],
                "value": base64.b64encode(signature).decode(),
            },
        }
        try:
            verify_document(document, keys=self.keys)
        except SignatureError as exc:
            raise CodeRefused(f"signature refused: {exc}", code=exc.code) from exc
        now = self.clock()
        if not isinstance(payload.get("exp"), int) or payload["exp"] + CLOCK_ALLOWANCE_S < now:
            raise CodeRefused("the code has expired; refresh it on the phone", code="expired")
        if payload.get("iat", 0) - CLOCK_ALLOWANCE_S > now:
            raise CodeRefused("the code is dated in the future", code="not_yet_valid")
        nonce = str(payload.get("nonce"))
        if nonce in self._seen:
            raise CodeRefused("this code was already used", code="replayed")
        self._seen[nonce] = payload["exp"]
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return payload
