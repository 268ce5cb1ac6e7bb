"""Development keys for the simulator and the demo (never for a real deployment: a tenant issues its cards
under its own keys and has its terminals' PSAMs loaded in its own key ceremony).

``sim_psam`` plays that ceremony for the simulator: a virtual PSAM loaded, through the audited
provisioning step, with the development purchase and maintenance masters for the issuers it must serve.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.crypto import Algorithm
from citycard.terminal_kit.card.psam import VirtualPsam
from citycard.terminal_kit.card.virtual import IssuerKeys
from citycard.terminal_kit.provision import PsamKey, psam_load_keys
from citycard.terminal_kit.reader import InProcessReader

SIM_KEYS = IssuerKeys(
    purchase_master=bytes.fromhex("00112233445566778899aabbccddeeff"),
    tac_master=bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
    load_master=bytes.fromhex("a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"),
    maintenance_master=bytes.fromhex("5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"),
)
SIM_PSAM_TRANSPORT_KEY = bytes.fromhex("c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3")


def sim_psam_keys(divisions: Iterable[str], keys: IssuerKeys = SIM_KEYS) -> list[PsamKey]:
    """The purchase and maintenance masters of ``keys`` for each issuer division, SM4 and 3DES."""
    return [
        PsamKey(usage=usage, issuer=division, version=keys.key_index, algorithm=algorithm, key=master)
        for division in sorted(set(divisions))
        for algorithm in Algorithm
        for usage, master in (("purchase", keys.purchase_master), ("maintenance", keys.maintenance_master))
    ]


def sim_psam(
    *,
    terminal_no: bytes,
    divisions: Iterable[str],
    audit: Path,
    keys: IssuerKeys = SIM_KEYS,
    actor: str = "simulator",
    now: dt.datetime | None = None,
    ttc: int = 0,
    memory: Path | None = None,
) -> VirtualPsam:
    """A virtual PSAM for terminal ``terminal_no``, provisioned (and audited in ``audit``) for ``divisions``;
    ``ttc`` is the last terminal transaction serial used (a terminal whose queue already holds taps starts
    after them), ``memory`` where it keeps its state."""
    psam = VirtualPsam(
        serial=bytes.fromhex("8601") + terminal_no + b"\x00\x01",
        terminal_no=terminal_no,
        transport_key=SIM_PSAM_TRANSPORT_KEY,
        ttc=ttc,
        memory=memory,
    )
    psam_load_keys(
        transport=InProcessReader(psam),
        transport_key=SIM_PSAM_TRANSPORT_KEY,
        keys=sim_psam_keys(divisions, keys),
        actor=actor,
        audit=audit,
        now=now or dt.datetime.now(BEIJING),
    )
    return psam


def sim_psam_kept(
    *,
    memory: Path,
    terminal_no: bytes,
    divisions: Iterable[str],
    audit: Path,
    keys: IssuerKeys = SIM_KEYS,
    actor: str = "simulator",
    ttc: int = 0,
) -> VirtualPsam:
    """The simulator's PSAM kept in ``memory`` (its transaction serial carries on across runs), provisioned
    the first time; a kept one is loaded again with the keys of ``divisions`` (an issuer new to it, or
    another issuer's test-card keys), through the same audited step."""
    if not memory.exists():
        return sim_psam(
            terminal_no=terminal_no,
            divisions=divisions,
            audit=audit,
            keys=keys,
            actor=actor,
            ttc=ttc,
            memory=memory,
        )
    psam = VirtualPsam.load(memory)
    psam_load_keys(
        transport=InProcessReader(psam),
        transport_key=SIM_PSAM_TRANSPORT_KEY,
        keys=sim_psam_keys(divisions, keys),
        actor=actor,
        audit=audit,
        now=dt.datetime.now(BEIJING),
    )
    return psam
