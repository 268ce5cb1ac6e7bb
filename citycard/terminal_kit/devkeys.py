"""Development master keys for the simulator and the demo (never for a real deployment: a tenant provisions
its terminals' SAMs and issues its cards under its own keys)."""

from __future__ import annotations

from citycard.terminal_kit.card.virtual import IssuerKeys

SIM_KEYS = IssuerKeys(
    purchase_master=bytes.fromhex("00112233445566778899aabbccddeeff"),
    tac_master=bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
    load_master=bytes.fromhex("a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"),
    maintenance_master=bytes.fromhex("5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"),
)
