"""PSAM provisioning (密钥灌装): loading issuers' master keys into a terminal's PSAM, audited.

This is a key ceremony, not part of running a terminal: the validator never reads a key file. Each key
goes into the PSAM in its own WRITE KEY, enciphered and MACed under the PSAM's transport key over a fresh
PSAM challenge, so the APDU trace shows no key. For every key loaded, one line is appended to the audit
log (JSON lines): who loaded it, when, into which PSAM (serial and terminal number), which key (usage,
issuer, version, algorithm) and its key check value — never the key. Each line carries the SHA-256 of
the line before it, so a removed or edited line shows (``audit_verify``).

    citycard-terminal psam-load --psam-reader "Virtual PCD 00 01" --keys keys.json \\
        --transport-key transport.key --actor "张工 (杭州市民卡中心)" --audit psam-audit.jsonl
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import Algorithm, key_check_value
from citycard.terminal_kit.card.psam import issuer_id, transport_encipher, write_key_mac
from citycard.terminal_kit.i18n import N_, said
from citycard.terminal_kit.reader import CardChannel, Transport

USAGES = {"purchase": A.KEY_PURCHASE, "maintenance": A.KEY_MAINTENANCE}
GENESIS = "0" * 64


class ProvisioningError(Exception):
    """A key was not loaded (the PSAM refused it, or the key file is wrong); nothing about it is audited
    as loaded."""


@dataclass(frozen=True)
class PsamKey:
    usage: str  # "purchase" (MAC1 / MAC2) or "maintenance" (APPLICATION BLOCK)
    issuer: str  # the issuing tenant's division code, e.g. "330400"
    version: int
    algorithm: Algorithm
    key: bytes

    def __post_init__(self) -> None:
        if self.usage not in USAGES:
            raise ProvisioningError(
                said(
                    N_("key usage %(usage)r is not one of %(usages)s"),
                    usage=self.usage,
                    usages=", ".join(USAGES),
                )
            )
        if len(self.issuer) != 6 or not self.issuer.isdigit():
            raise ProvisioningError(
                said(N_("issuer %(issuer)r must be a 6-digit division code"), issuer=self.issuer)
            )
        if not 0 <= self.version <= 0xFF or len(self.key) != 16:
            raise ProvisioningError(said(N_("a key has a version 0..255 and 16 bytes")))


def keys_from_json(text: str) -> list[PsamKey]:
    """``[{"usage": "purchase", "issuer": "330400", "version": 1, "algorithm": "SM4", "key": "<32 hex>"}]``"""
    try:
        return [
            PsamKey(
                usage=item["usage"],
                issuer=item["issuer"],
                version=int(item["version"]),
                algorithm=Algorithm[item["algorithm"]],
                key=bytes.fromhex(item["key"]),
            )
            for item in json.loads(text)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvisioningError(said(N_("key file: %(exc)r"), exc=exc)) from exc


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


def _last_hash(audit: Path) -> str:
    if not audit.exists():
        return GENESIS
    lines = audit.read_text().splitlines()
    return _line_hash(lines[-1]) if lines else GENESIS


def _append(audit: Path, entry: dict[str, Any]) -> None:
    line = json.dumps(entry, ensure_ascii=False, sort_keys=True)
    with audit.open("a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


def psam_load_keys(
    *,
    transport: Transport,
    transport_key: bytes,
    keys: Sequence[PsamKey],
    actor: str,
    audit: Path,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """Load ``keys`` into the PSAM in ``transport``; return the audit entries appended to ``audit``."""
    if not actor.strip():
        raise ProvisioningError(said(N_("name who loads the keys (--actor): the audit log records it")))
    channel = CardChannel(transport)
    transport.open()
    try:
        serial = _data(channel, A.read_binary(A.SFI_PSAM_SERIAL, 10), "READ BINARY 0015")
        terminal_no = _data(channel, A.read_binary(A.SFI_PSAM_TERMINAL, 6), "READ BINARY 0016")
        entries = []
        for key in keys:
            challenge = _data(channel, A.get_challenge(), "GET CHALLENGE")
            body = (
                bytes([USAGES[key.usage]])
                + issuer_id(key.issuer)
                + bytes([key.version, int(key.algorithm)])
                + transport_encipher(transport_key, key.key)
            )
            _data(channel, A.write_key(body, write_key_mac(transport_key, challenge, body)), "WRITE KEY")
            entry = {
                "at": now.isoformat(timespec="seconds"),
                "actor": actor,
                "event": "psam_key_loaded",
                "psam_serial": serial.hex(),
                "terminal_no": terminal_no.hex(),
                "usage": key.usage,
                "issuer": key.issuer,
                "version": key.version,
                "algorithm": key.algorithm.name,
                "kcv": key_check_value(key.key, key.algorithm).hex(),
                "prev": _last_hash(audit),
            }
            _append(audit, entry)
            entries.append(entry)
        return entries
    finally:
        transport.close()


def _data(channel: CardChannel, command: bytes, what: str) -> bytes:
    response = channel.send(command)
    if not response.ok:
        raise ProvisioningError(
            said(N_("PSAM %(what)s: %(describe)s"), what=what, describe=response.describe())
        )
    return response.data


def audit_verify(audit: Path) -> int:
    """The number of entries if every line names the hash of the one before; ProvisioningError otherwise."""
    previous = GENESIS
    lines = audit.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if json.loads(line).get("prev") != previous:
            raise ProvisioningError(
                said(
                    N_("audit log line %(number)s does not follow line %(previous)s"),
                    number=number,
                    previous=number - 1,
                )
            )
        previous = _line_hash(line)
    return len(lines)
