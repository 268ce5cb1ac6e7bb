"""Shared builders for terminal-kit tests: keys, cards, a validator over an in-process or PC/SC reader."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import tempfile
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.crypto import Algorithm
from citycard.terminal_kit.card.psam import VirtualPsam
from citycard.terminal_kit.card.virtual import CardProfile, IssuerKeys, VirtualCard
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.devkeys import sim_psam
from citycard.terminal_kit.keyring import SIGNS_ACKNOWLEDGEMENTS, SIGNS_FARE_RULES, SIGNS_HOTLISTS
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.sam import Psam
from citycard.terminal_kit.signing import b64encode, public_key_bytes, sign_document
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.tap import FixedFare, Validator

PURCHASE_MASTER = bytes.fromhex("00112233445566778899aabbccddeeff")
TAC_MASTER = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
LOAD_MASTER = bytes.fromhex("a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5")
MAINTENANCE_MASTER = bytes.fromhex("5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a")
TERMINAL_ID = bytes.fromhex("330100000001")
NOW = dt.datetime(2026, 11, 24, 8, 30, 0, tzinfo=BEIJING)


def keys(algorithm: Algorithm = Algorithm.SM4) -> IssuerKeys:
    return IssuerKeys(PURCHASE_MASTER, TAC_MASTER, LOAD_MASTER, MAINTENANCE_MASTER, algorithm=algorithm)


def card(
    serial: int = 1,
    *,
    balance: int = 5000,
    division: str = "330400",
    algorithm: Algorithm = Algorithm.SM4,
    categories: frozenset[str] = frozenset(),
    tac_master: bytes = TAC_MASTER,
) -> VirtualCard:
    number = card_number_build(division=division, scheme="01", serial=serial)
    return VirtualCard(
        CardProfile(card_no=number, categories=categories, holder_name="张三"),
        replace(keys(algorithm), tac_master=tac_master),
        balance=balance,
    )


# The issuers whose keys the tests' PSAMs hold (every division the tests issue cards in).
PSAM_DIVISIONS = ("330100", "330400", "310000", "441900", "440300")


@functools.cache
def _provisioned(terminal_id: bytes) -> VirtualPsam:
    with tempfile.TemporaryDirectory(prefix="citycard-psam-") as audit_dir:
        return sim_psam(
            terminal_no=terminal_id,
            divisions=PSAM_DIVISIONS,
            audit=Path(audit_dir) / "audit.jsonl",
            keys=keys(),
            actor="tests",
            now=NOW,
        )


def psam(terminal_id: bytes = TERMINAL_ID) -> VirtualPsam:
    """A virtual PSAM provisioned with the test masters (loaded once, through the audited step; copied)."""
    return copy.deepcopy(_provisioned(terminal_id))


def sam(terminal_id: bytes = TERMINAL_ID, psam_card: VirtualPsam | None = None) -> Psam:
    """The terminal's PSAM client over an in-process reader holding a virtual PSAM."""
    return Psam(InProcessReader(psam_card or psam(terminal_id)))


def validator(
    transport,
    tmp_path: Path,
    *,
    fare: int = 200,
    sam_client: Psam | None = None,
    service: str = "bus",
    route: str = "151",
    at: dt.datetime = NOW,
) -> Validator:
    """A Hangzhou terminal's validator over ``transport``, its queue in ``tmp_path``, its clock at ``at``: a
    bus of route 151 unless told (a park gate: ``fare=0, service="park", route=<its service point>``)."""
    return Validator(
        transport=transport,
        sam=sam_client or sam(),
        store=TapStore(tmp_path / "taps.sqlite"),
        fare=FixedFare(fare),
        tenant="hangzhou",
        service=service,
        route=route,
        clock=lambda: at,
    )


KEYS_NOW = dt.datetime(2026, 11, 24, 0, 40, tzinfo=dt.UTC)  # when the keys documents below are issued
# The platform, a county and its city, as their keys documents name them (test_keyring.py, test_cli.py).
PLATFORM = Ed25519PrivateKey.generate()
TONGLU = Ed25519PrivateKey.generate()
HANGZHOU = Ed25519PrivateKey.generate()


def entry(key_id: str, key: Ed25519PrivateKey, signs: list[str], verify_until: dt.datetime | None = None):
    return {
        "key_id": key_id,
        "tenant": key_id.split(":")[0],
        "alg": "Ed25519",
        "public_key": b64encode(public_key_bytes(key)),
        "signs": signs,
        "state": "current" if verify_until is None else "retired",
        "created_at": "2026-01-01T00:00:00+00:00",
        "retired_at": None if verify_until is None else "2026-11-20T00:00:00+00:00",
        "verify_until": None if verify_until is None else verify_until.isoformat(),
    }


def keys_document(
    *extra,
    tenant: str = "tonglu",
    issued_at: dt.datetime = KEYS_NOW,
    signer: Ed25519PrivateKey = PLATFORM,
    signer_id: str = "public:s1",
) -> dict:
    payload = {
        "kind": "citycard-keys",
        "tenant": tenant,
        "issued_at": issued_at.isoformat(),
        "keys": [
            entry("tonglu:s1", TONGLU, [SIGNS_ACKNOWLEDGEMENTS, SIGNS_HOTLISTS]),
            entry("hangzhou:s1", HANGZHOU, [SIGNS_FARE_RULES]),
            entry("public:s1", PLATFORM, ["keys"]),
            *extra,
        ],
    }
    return sign_document(payload, key=signer, key_id=signer_id)
