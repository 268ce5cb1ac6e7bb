"""Electronic citizen code (电子市民码): short-lived QR tokens signed by the issuing tenant, verified offline.

A token is ``CC1.<base64url(canonical payload)>.<base64url(signature)>.<key id>``. The payload holds exactly
``card_no``, ``tenant``, ``iat`` and ``exp`` (integer Unix seconds) and a random hex ``nonce``. A terminal
accepts a code only if, in this order (each refusal is a ``CodeRefused`` with its ``code``):

1. it has the shape above, at most ``MAX_TOKEN_CHARS`` long, in strict base64url (``malformed``);
2. the key id is one of a known issuer's keys (``unknown_key``) and the signature covers the payload
   bytes exactly as sent (``bad_signature``);
3. the payload is canonical JSON with exactly the five fields, each of its type (``malformed`` /
   ``bad_field``, with ``field`` set);
4. the code's ``tenant`` is the tenant whose key signed it (``foreign_signer``) and the card number's
   division is one that tenant issues (``foreign_card``): a Jiaxing key cannot vouch for a Hangzhou card;
5. ``exp - iat`` is within the issuer's policy (``lifetime_too_long``), the code is not expired
   (``expired``) nor dated in the future (``not_yet_valid``), with ``CLOCK_ALLOWANCE_S`` either way;
6. its nonce was never accepted here before (``replayed``): the terminal's queue database remembers
   each accepted nonce until the code's expiry has passed, across restarts.

The back office checks a ride's code again after the upload (``EcodeVerifier.check``: steps 1–5 at the
tap's time, no store); it claims the nonces of a whole batch at once in its own database, across every
terminal (``citycard.tenants.terminals.checks.code_check``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from citycard.terminal_kit.cardno import CardNumberError, card_number_parse
from citycard.terminal_kit.i18n import N_, Said, said
from citycard.terminal_kit.signing import canonical_json
from citycard.terminal_kit.store import TapStore

PREFIX = "CC1"
LIFETIME_S = 60
CLOCK_ALLOWANCE_S = 5
MAX_TOKEN_CHARS = 1024  # a QR code a phone shows; anything longer is not a citizen code
FIELDS = frozenset({"card_no", "tenant", "iat", "exp", "nonce"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# The characters a token may have: base64url, the dots between its parts, a key id's ``tenant:s1``.
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:")
_NONCE = re.compile(r"[0-9a-f]{16,64}")
_TIME_MAX = 2**40  # Unix seconds, far beyond any plausible date


class CodeRefused(ValueError):
    """A code the terminal does not accept: ``code`` says why, ``field`` names a bad payload field."""

    def __init__(self, message: str, *, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


# What a rider is told when a validator refuses a code (CodeRefused.code), in the kit's catalogue.
REFUSALS = {
    "malformed": N_("not an electronic citizen code"),
    "unknown_key": N_("the code's issuer is not known to this terminal"),
    "bad_signature": N_("the code's signature does not hold"),
    "bad_field": N_("the code's content is not valid"),
    "foreign_signer": N_("the code is not signed by the city that issued the card"),
    "foreign_card": N_("the code is for a card its signer does not issue"),
    "lifetime_too_long": N_("the code is valid for longer than its issuer allows"),
    "expired": N_("the code has expired; refresh it on the phone"),
    "not_yet_valid": N_("the code is dated in the future"),
    "replayed": N_("this code was already used"),
}


def refusal_said(exc: CodeRefused) -> Said:
    """The refusal as the rider reads it (in the command's language through ``i18n.reason``/``translated``),
    its code beside it."""
    return said(
        N_("citizen code refused (%(code)s): %(why)s"),
        code=exc.code,
        why=said(REFUSALS.get(exc.code, N_("not an electronic citizen code"))),
    )


@dataclass(frozen=True)
class CodeIssuer:
    """What a terminal holds of a tenant that issues citizen codes: its public keys, the card-number
    divisions (GB/T 2260 codes, the first 6 digits) of the cards it issues, and its lifetime policy."""

    tenant: str
    divisions: frozenset[str]
    keys: Mapping[str, bytes]  # key id -> raw Ed25519 public key
    max_lifetime_s: int = LIFETIME_S

    def __post_init__(self) -> None:
        if not self.tenant or not self.divisions:
            raise ValueError("a code issuer has a tenant and at least one division")
        if any(len(d) != 6 or not d.isdigit() for d in self.divisions):
            raise ValueError(f"divisions of {self.tenant} must be 6-digit codes")
        if type(self.max_lifetime_s) is not int or not 0 < self.max_lifetime_s <= 3600:
            raise ValueError(f"{self.tenant}'s code lifetime must be 1..3600 seconds")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str, what: str) -> bytes:
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise CodeRefused(f"the code's {what} is not base64url", code="malformed")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CodeRefused(f"the code's {what} is not base64url", code="malformed") from exc


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


def _refuse_float(text: str) -> Any:
    raise ValueError(f"number {text} is not an integer")


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"field {name!r} appears twice")
        out[name] = value
    return out


def _payload(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(
            raw.decode("utf-8"),
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CodeRefused(f"the code's payload is not JSON: {exc}", code="malformed") from exc
    if type(payload) is not dict:
        raise CodeRefused("the code's payload is not a JSON object", code="malformed")
    if canonical_json(payload) != raw:
        raise CodeRefused("the code's payload is not in canonical form", code="malformed")
    return payload


def _check_fields(payload: dict[str, Any]) -> None:
    missing, unknown = sorted(FIELDS - payload.keys()), sorted(payload.keys() - FIELDS)
    if missing:
        raise CodeRefused(f"the code has no {missing[0]}", code="bad_field", field=missing[0])
    if unknown:
        raise CodeRefused(
            f"the code carries an unknown field {unknown[0]!r}", code="bad_field", field=unknown[0]
        )
    tenant = payload["tenant"]
    if type(tenant) is not str or not 0 < len(tenant) <= 40:
        raise CodeRefused("tenant must be a tenant code", code="bad_field", field="tenant")
    card_no = payload["card_no"]
    try:
        card_number_parse(card_no)
    except CardNumberError as exc:
        raise CodeRefused(f"card_no: {exc}", code="bad_field", field="card_no") from exc
    for name in ("iat", "exp"):
        value = payload[name]
        if type(value) is not int or not 0 <= value < _TIME_MAX:
            raise CodeRefused(f"{name} must be integer Unix seconds", code="bad_field", field=name)
    nonce = payload["nonce"]
    if type(nonce) is not str or not _NONCE.fullmatch(nonce):
        raise CodeRefused("nonce must be 16 to 64 lower-case hex digits", code="bad_field", field="nonce")
    if payload["exp"] <= payload["iat"]:
        raise CodeRefused("exp must come after iat", code="bad_field", field="exp")


@dataclass
class EcodeVerifier:
    """Offline verification at a terminal: the issuers it knows, and its queue database remembering the
    nonces it accepted (``TapStore.code_nonce_claim``)."""

    issuers: Iterable[CodeIssuer]
    store: TapStore | None
    clock: Callable[[], float] = time.time
    _by_key: dict[str, tuple[CodeIssuer, Ed25519PublicKey]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.issuers = tuple(self.issuers)
        for issuer in self.issuers:
            for key_id, public in issuer.keys.items():
                if key_id in self._by_key:
                    raise ValueError(f"key {key_id!r} is listed for two issuers")
                self._by_key[key_id] = (issuer, Ed25519PublicKey.from_public_bytes(bytes(public)))

    def verify(self, token: str) -> dict[str, Any]:
        """The payload of an acceptable code (now spent), or CodeRefused saying why not."""
        if self.store is None:
            raise ValueError("a verifier that spends codes needs a store of the nonces it accepted")
        payload, issuer, now = self._checked(token, now=None)
        if not self.store.code_nonce_claim(
            tenant=issuer.tenant,
            nonce=payload["nonce"],
            forget_after=payload["exp"] + CLOCK_ALLOWANCE_S,
            now=int(now),
        ):
            raise CodeRefused("this code was already used", code="replayed")
        return payload

    def check(self, token: str, *, at: float) -> dict[str, Any]:
        """Checks 1–5 of a code presented at Unix time ``at`` (the back office, after the ride: the tap's
        time instead of the clock), its nonce not claimed: the caller claims nonces in bulk. The payload,
        or CodeRefused saying why not."""
        return self._checked(token, now=at)[0]

    def _checked(self, token: str, *, now: float | None) -> tuple[dict[str, Any], CodeIssuer, float]:
        if type(token) is not str or len(token) > MAX_TOKEN_CHARS:
            raise CodeRefused("not an electronic citizen code", code="malformed")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != PREFIX:
            raise CodeRefused("not an electronic citizen code", code="malformed")
        raw, signature, key_id = _unb64(parts[1], "payload"), _unb64(parts[2], "signature"), parts[3]
        if len(signature) != 64:
            raise CodeRefused("the code's signature is not an Ed25519 signature", code="malformed")
        found = self._by_key.get(key_id)
        if found is None:
            raise CodeRefused(f"signed by unknown key {key_id!r}", code="unknown_key")
        issuer, public = found
        try:
            public.verify(signature, raw)
        except InvalidSignature as exc:
            raise CodeRefused(
                f"signature by {key_id!r} does not match the code", code="bad_signature"
            ) from exc
        payload = _payload(raw)
        _check_fields(payload)
        if payload["tenant"] != issuer.tenant:
            raise CodeRefused(
                f"a code for {payload['tenant']!r} signed with {issuer.tenant}'s key {key_id!r}",
                code="foreign_signer",
            )
        if payload["card_no"][:6] not in issuer.divisions:
            raise CodeRefused(
                f"card {payload['card_no']} is not one {issuer.tenant} issues", code="foreign_card"
            )
        lifetime = payload["exp"] - payload["iat"]
        if lifetime > issuer.max_lifetime_s:
            raise CodeRefused(
                f"the code is valid for {lifetime} s; {issuer.tenant} signs codes for {issuer.max_lifetime_s} s "
                "at most",
                code="lifetime_too_long",
            )
        now = self.clock() if now is None else now
        if payload["exp"] + CLOCK_ALLOWANCE_S < now:
            raise CodeRefused("the code has expired; refresh it on the phone", code="expired")
        if payload["iat"] - CLOCK_ALLOWANCE_S > now:
            raise CodeRefused("the code is dated in the future", code="not_yet_valid")
        return payload, issuer, now
