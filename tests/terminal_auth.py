"""Terminals that sign their requests (the hotlist download): register one, sign a request for the test client."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.tenants.terminals.services import terminal_register
from citycard.terminal_kit.signing import TerminalCredentials, public_key_bytes


def terminal_with_key(*, terminal_id: str, tenant_code: str) -> TerminalCredentials:
    """Register a terminal in the current tenant schema; the credentials it signs requests with."""
    key = Ed25519PrivateKey.generate()
    terminal_register(
        terminal_id=terminal_id,
        operator="Test Bus Co.",
        department="transport",
        service="bus",
        route="1",
        public_key=public_key_bytes(key),
        actor="test",
    )
    return TerminalCredentials(tenant=tenant_code, key_id=f"{terminal_id}:k1", key=key)


def signed(credentials: TerminalCredentials, path: str, *, at: dt.datetime | None = None) -> dict[str, str]:
    """The signature headers of ``GET path`` as Django test client arguments (``HTTP_X_TERMINAL_KEY``…)."""
    headers = credentials.headers(method="GET", path=path, at=at or dt.datetime.now(dt.UTC))
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
