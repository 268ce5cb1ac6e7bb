"""Who signed the batch: the terminal key the signature names, read with everything else the upload needs
(storage.upload_lookup, one query), and one Ed25519 verification over the payload's canonical bytes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from citycard.platform.models import Tenant
from citycard.tenants.terminals.ingest.decode import BatchRefused, NotCommon
from citycard.tenants.terminals.ingest.storage import Lookup, upload_lookup
from citycard.terminal_kit.signing import b64decode


def signature_verify(
    *, document: dict[str, Any], canonical: bytes, tenant: Tenant, received_at: dt.datetime, common: bool
) -> Lookup:
    """The lookup of the key that signed ``document``, once its signature verified over ``canonical``,
    or BatchRefused (``common``, the common form's bytes, and the signature is over other ones: NotCommon,
    for the general path to decide)."""
    signature = document["signature"]
    if not isinstance(signature, dict) or signature.get("alg") != "Ed25519":
        raise BatchRefused("the signature must be {alg: Ed25519, key_id, value}", code="malformed")
    key_id = signature.get("key_id")
    if not isinstance(key_id, str) or not key_id:
        raise BatchRefused("the signature names no key_id", code="malformed")
    batch_id = document["payload"].get("batch_id")
    found = upload_lookup(
        key_id=key_id,
        batch_id=batch_id if isinstance(batch_id, str) else None,
        tenant_pk=tenant.pk,
        acquirer_pk=tenant.clearing_tenant.pk,
    )
    if found is None:
        raise BatchRefused(f"no terminal here signs with key {key_id!r}", code="unknown_terminal", status=403)
    key = found.key
    if key.retired_at is not None and (key.verify_until is None or key.verify_until <= received_at):
        raise BatchRefused(
            f"key {key_id!r} was rotated out and its overlap window has ended", code="key_expired", status=401
        )
    try:
        raw = b64decode(str(signature.get("value", "")), what="signature")
    except ValueError as exc:
        raise BatchRefused(str(exc), code="malformed") from None
    try:
        Ed25519PublicKey.from_public_bytes(bytes(key.public_key)).verify(raw, canonical)
    except InvalidSignature:
        if common:
            raise NotCommon from None
        raise BatchRefused(
            f"the signature by {key_id!r} does not match the batch", code="bad_signature", status=401
        ) from None
    return found
