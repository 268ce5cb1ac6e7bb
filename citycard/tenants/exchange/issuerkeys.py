"""The issuer's card master keys, as its TAC verification uses them.

A real issuer keeps its card master keys in its HSM. The platform has no card-key store yet, so every
tenant issues (and verifies) with the development keys of ``citycard.terminal_kit.devkeys`` — the keys
the demo's and the tests' virtual cards are personalised with. Replacing this function is the one change
a per-tenant key store needs.
"""

from __future__ import annotations

from citycard.platform.models import Tenant
from citycard.terminal_kit.devkeys import SIM_KEYS


def issuer_tac_master(*, tenant: Tenant) -> bytes:
    return SIM_KEYS.tac_master
