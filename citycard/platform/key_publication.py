"""The verification keys a site publishes at ``/.well-known/citycard-keys.json`` (docs/terminal-protocol.md).

Each tenant's domain serves the keys its terminals verify with: its own signing keys (the acknowledgements
of their uploads and the hotlist it serves are signed by it), its city's for a county (the fare rules it
inherits), and the platform's (which sign this document). The platform's domain serves the platform's
keys only. A key is listed while it verifies: the current one, and a retired one until the end of its
overlap window (``verify_until``). The document is signed by the platform with the oldest of its keys
that still verifies, so a terminal holding only that one can check it and learn its successor.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from citycard.platform.keys import tenant_sign, tenant_verifying_keys
from citycard.platform.models import Tenant, TenantKey, TenantKind
from citycard.terminal_kit.keyring import (
    KEYS_DOCUMENT,
    SIGNS_ACKNOWLEDGEMENTS,
    SIGNS_FARE_RULES,
    SIGNS_HOTLISTS,
    SIGNS_KEYS,
)
from citycard.terminal_kit.signing import b64encode


def platform_tenant() -> Tenant:
    return Tenant.objects.get(kind=TenantKind.PLATFORM)


def _iso(at: dt.datetime | None) -> str | None:
    return at.astimezone(dt.UTC).isoformat(timespec="seconds") if at else None


def _entry(key: TenantKey, *, tenant: Tenant, signs: list[str]) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "tenant": tenant.code,
        "alg": "Ed25519",
        "public_key": b64encode(bytes(key.public_key)),
        "signs": signs,
        "state": "current" if key.retired_at is None else "retired",
        "created_at": _iso(key.created_at),
        "retired_at": _iso(key.retired_at),
        "verify_until": _iso(key.verify_until),
    }


def terminal_keys(*, tenant: Tenant, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """What a terminal of ``tenant`` verifies, and with which key: one entry per key verifying at ``at``
    (id, owner, public key, what it signs, state and dates). Not the platform's keys."""
    at = at or timezone.now()
    signers: dict[int, tuple[Tenant, list[str]]] = {}
    if not tenant.is_platform:
        signers[tenant.pk] = (tenant, [SIGNS_ACKNOWLEDGEMENTS, SIGNS_HOTLISTS])
        city = tenant.clearing_tenant  # the owner of the fare rules: a county inherits its city's
        signers.setdefault(city.pk, (city, []))[1].append(SIGNS_FARE_RULES)
    return [
        _entry(key, tenant=owner, signs=signs)
        for owner, signs in signers.values()
        for key in tenant_verifying_keys(tenant=owner, at=at)
    ]


def keys_document(*, tenant: Tenant, at: dt.datetime | None = None) -> dict[str, Any]:
    """The platform-signed document ``tenant``'s domain serves: its terminals' keys and the platform's."""
    at = at or timezone.now()
    platform = platform_tenant()
    platform_keys = tenant_verifying_keys(tenant=platform, at=at)
    payload = {
        "kind": KEYS_DOCUMENT,
        "tenant": tenant.code,
        "issued_at": _iso(at),
        "keys": [
            *terminal_keys(tenant=tenant, at=at),
            *(_entry(key, tenant=platform, signs=[SIGNS_KEYS]) for key in platform_keys),
        ],
    }
    return tenant_sign(tenant=platform, payload=payload, key=platform_keys[0] if platform_keys else None)
