"""The platform key vault (密钥库): master keys, per-tenant signing and data keys, rotation.

Master keys come from the environment: ``CITYCARD_MASTER_KEY`` is ``<id>:<base64 of 32 bytes>``; during a
master-key rotation ``CITYCARD_MASTER_KEY_PREVIOUS`` holds the old one so both unwrap while
``citycard keys rotate --master`` re-wraps every tenant key under the new one (no downtime). With neither
set, a master key is generated once and kept in ``CITYCARD_DATA_DIR/master_key`` (development only).

Tenant keys are created with the tenant. Signing keys (Ed25519) sign everything that leaves the tenant;
rotating one keeps the old key verifiable for an overlap window. Data keys (AES-256-GCM) encrypt personal
data at rest; rotating one adds a new version and keeps the old ones for decryption. A city, as a card
issuer (发卡方), also holds its card TAC master key: every card's TAC key is diversified from it by card
number, so only the issuer can check the TAC of a tap on its cards (docs/terminal-protocol.md). It is not
rotated here: the cards personalised under it carry it for their whole life.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError, NotFound
from citycard.platform.models import KeyPurpose, Tenant, TenantKey, TenantKind
from citycard.terminal_kit.signing import (
    SignatureError,
    b64encode,
    public_key_bytes,
    sign_document,
    verify_document,
)

DEFAULT_OVERLAP = dt.timedelta(days=7)


# --- master keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterKeys:
    current_id: str
    keys: Mapping[str, bytes]

    def get(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise DomainError(
                gettext(
                    "master key %(key_id)r is not configured (set CITYCARD_MASTER_KEY or CITYCARD_MASTER_KEY_PREVIOUS)"
                )
                % {"key_id": key_id},
                code="master_key_missing",
            ) from None


def _parse_master(value: str, variable: str) -> tuple[str, bytes]:
    key_id, sep, b64 = value.strip().partition(":")
    try:
        raw = base64.b64decode(b64, validate=True) if sep else b""
    except ValueError:
        raw = b""
    if not key_id or len(raw) != 32:
        raise DomainError(
            gettext("%(variable)s must be '<id>:<base64 of 32 bytes>'") % {"variable": variable},
            code="bad_master_key",
        )
    return key_id, raw


@lru_cache(maxsize=1)
def master_keys() -> MasterKeys:
    current = os.environ.get("CITYCARD_MASTER_KEY", "").strip()
    if current:
        current_id, raw = _parse_master(current, "CITYCARD_MASTER_KEY")
    else:
        path = settings.DATA_DIR / "master_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"dev1:{base64.b64encode(secrets.token_bytes(32)).decode()}\n")
            path.chmod(0o600)
        current_id, raw = _parse_master(path.read_text(), str(path))
    keys = {current_id: raw}
    previous = os.environ.get("CITYCARD_MASTER_KEY_PREVIOUS", "").strip()
    if previous:
        prev_id, prev_raw = _parse_master(previous, "CITYCARD_MASTER_KEY_PREVIOUS")
        keys.setdefault(prev_id, prev_raw)
    return MasterKeys(current_id=current_id, keys=keys)


def _aad(tenant_code: str, purpose: str, key_id: str) -> bytes:
    return f"citycard-key|{tenant_code}|{purpose}|{key_id}".encode()


def _wrap(secret: bytes, *, tenant_code: str, purpose: str, key_id: str) -> tuple[str, bytes]:
    masters = master_keys()
    nonce = secrets.token_bytes(12)
    blob = nonce + AESGCM(masters.get(masters.current_id)).encrypt(
        nonce, secret, _aad(tenant_code, purpose, key_id)
    )
    return masters.current_id, blob


def _unwrap(key: TenantKey, tenant_code: str) -> bytes:
    master = master_keys().get(key.master_key_id)
    return _unwrap_blob(master, bytes(key.wrapped_secret), _aad(tenant_code, key.purpose, key.key_id))


@lru_cache(maxsize=256)
def _unwrap_blob(master: bytes, blob: bytes, aad: bytes) -> bytes:
    """Keyed by every input, so a cached answer can never be stale (a rotated key is another blob)."""
    return AESGCM(master).decrypt(blob[:12], blob[12:], aad)


@lru_cache(maxsize=64)
def _ed25519_private(secret: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(secret)


# --- tenant keys ------------------------------------------------------------------------------------


def _new_key(tenant: Tenant, purpose: str) -> TenantKey:
    version = (
        TenantKey.objects.filter(tenant=tenant, purpose=purpose)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
        or 0
    ) + 1
    key_id = f"{tenant.code}:{purpose[0]}{version}"
    public: bytes | None = None
    if purpose == KeyPurpose.SIGNING:
        private = Ed25519PrivateKey.generate()
        secret = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        public = public_key_bytes(private)
    elif purpose == KeyPurpose.CARD_TAC:
        secret = secrets.token_bytes(16)  # an SM4 key
    else:
        secret = AESGCM.generate_key(bit_length=256)
    master_id, blob = _wrap(secret, tenant_code=tenant.code, purpose=purpose, key_id=key_id)
    return TenantKey.objects.create(
        tenant=tenant,
        purpose=purpose,
        key_id=key_id,
        version=version,
        public_key=public,
        wrapped_secret=blob,
        master_key_id=master_id,
    )


def tenant_key_purposes(*, tenant: Tenant) -> list[str]:
    """The keys a tenant holds: signing and data keys; a city, as a card issuer, its card TAC master too."""
    purposes = [KeyPurpose.SIGNING.value, KeyPurpose.DATA.value]
    if tenant.kind == TenantKind.CITY:
        purposes.append(KeyPurpose.CARD_TAC.value)
    return purposes


@transaction.atomic
def tenant_keys_ensure(*, tenant: Tenant) -> None:
    """Give ``tenant`` a current signing key and data key (and a city its card TAC master) if it lacks one
    (called at tenant creation)."""
    for purpose in tenant_key_purposes(tenant=tenant):
        if not TenantKey.objects.filter(tenant=tenant, purpose=purpose, retired_at__isnull=True).exists():
            _new_key(tenant, purpose)


def _current(tenant: Tenant, purpose: str) -> TenantKey:
    key = TenantKey.objects.filter(tenant=tenant, purpose=purpose, retired_at__isnull=True).first()
    if key is None:
        tenant_keys_ensure(tenant=tenant)
        key = TenantKey.objects.get(tenant=tenant, purpose=purpose, retired_at__isnull=True)
    return key


def tenant_signing_key(*, tenant: Tenant) -> TenantKey:
    """The tenant's current signing key row, for a caller that seals many envelopes
    (``envelopes.envelope_seal(key=…)``) and reads it once."""
    return _current(tenant, KeyPurpose.SIGNING)


@transaction.atomic
def tenant_key_rotate(
    *, tenant: Tenant, purpose: str, overlap: dt.timedelta = DEFAULT_OVERLAP, actor: str = "system"
) -> TenantKey:
    """Replace the tenant's current key of ``purpose``; the old one keeps verifying/decrypting.

    A retired signing key verifies until now + ``overlap``; a retired data key decrypts forever (records
    encrypted under it are re-encrypted lazily or by ``citycard keys rotate``).
    """
    if purpose not in KeyPurpose.values:
        raise DomainError(
            gettext("unknown key purpose %(purpose)r; use one of %(values)s")
            % {"purpose": purpose, "values": ", ".join(KeyPurpose.values)},
            code="invalid",
            field="purpose",
        )
    if purpose == KeyPurpose.CARD_TAC:
        raise DomainError(
            gettext(
                "the card TAC master cannot be rotated: every card personalised under it computes its TACs with it"
            ),
            code="invalid",
            field="purpose",
        )
    if overlap < dt.timedelta(0):
        raise DomainError(gettext("the overlap window cannot be negative"), code="invalid", field="overlap")
    now = timezone.now()
    old = (
        TenantKey.objects.select_for_update()
        .filter(tenant=tenant, purpose=purpose, retired_at__isnull=True)
        .first()
    )
    if old is not None:
        old.retired_at = now
        old.verify_until = now + overlap if purpose == KeyPurpose.SIGNING else None
        old.save(update_fields=["retired_at", "verify_until"])
    new = _new_key(tenant, purpose)
    audit_record(
        action="key.rotate",
        actor=actor,
        object_type="tenant_key",
        object_id=new.key_id,
        data={
            "tenant": tenant.code,
            "purpose": purpose,
            "retired": old.key_id if old else None,
            "verify_until": old.verify_until.isoformat() if old and old.verify_until else None,
        },
    )
    return new


@transaction.atomic
def master_key_rewrap(*, actor: str = "system") -> int:
    """Re-wrap every tenant key not yet under the current master key; returns how many changed."""
    masters = master_keys()
    changed = 0
    for key in (
        TenantKey.objects.select_for_update()
        .exclude(master_key_id=masters.current_id)
        .select_related("tenant")
    ):
        secret = _unwrap(key, key.tenant.code)
        key.master_key_id, key.wrapped_secret = _wrap(
            secret, tenant_code=key.tenant.code, purpose=key.purpose, key_id=key.key_id
        )
        key.save(update_fields=["master_key_id", "wrapped_secret"])
        changed += 1
    audit_record(
        action="key.rewrap",
        actor=actor,
        object_type="master_key",
        object_id=masters.current_id,
        data={"rewrapped": changed},
    )
    return changed


def tenant_data_key(*, tenant: Tenant) -> tuple[str, bytes]:
    """The tenant's current data key: (key id, 32 raw bytes) for AES-256-GCM."""
    key = _current(tenant, KeyPurpose.DATA)
    return key.key_id, _unwrap(key, tenant.code)


def tenant_data_key_by_id(*, tenant: Tenant, key_id: str) -> bytes:
    key = TenantKey.objects.filter(tenant=tenant, purpose=KeyPurpose.DATA, key_id=key_id).first()
    if key is None:
        raise NotFound(
            gettext("tenant %(tenant)s has no data key %(key_id)r")
            % {"tenant": tenant.code, "key_id": key_id},
            code="unknown_key",
        )
    return _unwrap(key, tenant.code)


def tenant_card_tac_master(*, tenant: Tenant, key: TenantKey | None = None) -> bytes:
    """The issuer's card TAC master key (16 bytes, SM4). Counties issue no cards: their city's is used.

    ``key``: the issuer's card TAC key row when the caller has read it already (``tenant_current_key_sql``)."""
    issuer = tenant.clearing_tenant
    if issuer.kind != TenantKind.CITY:
        raise DomainError(
            gettext("%(tenant)s issues no cards and holds no card keys") % {"tenant": tenant.code},
            code="not_an_issuer",
        )
    if key is None or key.key_id is None:
        key = _current(issuer, KeyPurpose.CARD_TAC)
    return _unwrap(key, issuer.code)


def tenant_current_key_sql(alias: str, purpose: str) -> str:
    """A LEFT JOIN LATERAL fragment reading a tenant's current key of ``purpose`` (``%s``: the tenant's pk)
    as columns ``<alias>_key_id, <alias>_wrapped, <alias>_master``, so a hot path can read its keys in a
    query it makes anyway; ``current_key_from_row`` turns them back into an (unsaved) TenantKey."""
    if purpose not in KeyPurpose.values:
        raise ValueError(purpose)
    return (
        f" LEFT JOIN LATERAL (SELECT key_id AS {alias}_key_id, wrapped_secret AS {alias}_wrapped,"
        f" master_key_id AS {alias}_master FROM platform_tenantkey WHERE tenant_id = %s"
        f" AND purpose = '{purpose}' AND retired_at IS NULL ORDER BY version DESC LIMIT 1) {alias} ON true"
    )


def current_key_from_row(
    purpose: str, key_id: str | None, wrapped: Any, master_key_id: str | None
) -> TenantKey:
    """The key read through ``tenant_current_key_sql`` (``key_id`` None: the tenant has none yet)."""
    return TenantKey(purpose=purpose, key_id=key_id, wrapped_secret=wrapped, master_key_id=master_key_id)


def tenant_sign(
    *, tenant: Tenant, payload: Mapping[str, Any], key: TenantKey | None = None
) -> dict[str, Any]:
    """Sign ``payload`` with the tenant's current signing key (see terminal_kit.signing for the format).

    ``key``: another of the tenant's signing keys that still verifies (the keys document is signed with
    the oldest one, so terminals that hold only that one learn its successor: key_publication.py)."""
    if key is None:
        key = _current(tenant, KeyPurpose.SIGNING)
    elif key.tenant_id != tenant.pk or key.purpose != KeyPurpose.SIGNING:
        raise ValueError(f"{key.key_id} is not a signing key of {tenant.code}")
    private = Ed25519PrivateKey.from_private_bytes(_unwrap(key, tenant.code))
    return sign_document(payload, key=private, key_id=key.key_id)


def tenant_signature(*, tenant: Tenant, signed: bytes, key: TenantKey | None = None) -> dict[str, str]:
    """The ``signature`` object of a signed document over bytes already canonical (the caller built them).

    ``key``: the tenant's current signing key row when the caller has read it already (the upload path
    reads it with the terminal's key, ``tenant_current_key_sql``); read here otherwise."""
    if key is None or key.key_id is None:
        key = _current(tenant, KeyPurpose.SIGNING)
    private = _ed25519_private(_unwrap(key, tenant.code))
    return {"alg": "Ed25519", "key_id": key.key_id, "value": b64encode(private.sign(signed))}


def signed_body(canonical: bytes, signature_json: str) -> bytes:
    """The signed document's bytes from its canonical payload and its ``signature`` object as JSON text."""
    return b'{"payload":' + canonical + b',"signature":' + signature_json.encode() + b"}"


def tenant_verifying_keys(*, tenant: Tenant, at: dt.datetime | None = None) -> list[TenantKey]:
    """The signing key rows that verify for ``tenant`` at ``at`` (default now), oldest first: the current
    one, and the retired ones still within their overlap window (``verify_until`` after ``at``)."""
    at = at or timezone.now()
    return list(
        TenantKey.objects.filter(tenant=tenant, purpose=KeyPurpose.SIGNING)
        .filter(Q(retired_at__isnull=True) | Q(verify_until__gt=at))
        .order_by("version")
    )


def tenant_public_keys(*, tenant: Tenant, at: dt.datetime | None = None) -> dict[str, bytes]:
    """The signing keys that verify for ``tenant`` at ``at`` (default now): current plus overlapping."""
    return {row.key_id: bytes(row.public_key) for row in tenant_verifying_keys(tenant=tenant, at=at)}


def signing_public_key(
    *, key_id: str, at: dt.datetime | None = None
) -> tuple[Tenant, Ed25519PublicKey] | None:
    """Who owns ``key_id`` and its public key, if it verifies at ``at``; None otherwise."""
    at = at or timezone.now()
    row = (
        TenantKey.objects.filter(key_id=key_id, purpose=KeyPurpose.SIGNING)
        .filter(Q(retired_at__isnull=True) | Q(verify_until__gt=at))
        .select_related("tenant")
        .first()
    )
    if row is None:
        return None
    return row.tenant, Ed25519PublicKey.from_public_bytes(bytes(row.public_key))


def tenant_verify(
    *, document: Any, tenant: Tenant | None = None, at: dt.datetime | None = None
) -> tuple[Tenant, dict[str, Any]]:
    """Verify a tenant-signed document; return (signer, payload). With ``tenant``, the signer must be it."""
    signer: list[Tenant] = []

    def lookup(key_id: str) -> Ed25519PublicKey | None:
        found = signing_public_key(key_id=key_id, at=at)
        if found is None:
            return None
        signer.append(found[0])
        return found[1]

    payload = verify_document(document, keys=lookup)
    if tenant is not None and signer[0].pk != tenant.pk:
        raise SignatureError(
            f"document is signed by {signer[0].code}, not {tenant.code}", code="foreign_signer"
        )
    return signer[0], payload
