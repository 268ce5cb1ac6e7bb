"""APDUs of the e-purse command set and the status words the card answers with."""

from __future__ import annotations

from dataclasses import dataclass

AID_TUNION = bytes.fromhex("A000000632010105")  # JT/T 978 T-Union e-purse application

# ISO/IEC 7816-4
SW_OK = 0x9000
SW_FILE_INVALIDATED = 0x6283
SW_WRONG_LENGTH = 0x6700
SW_LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
SW_SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
SW_CHAINING_NOT_SUPPORTED = 0x6884
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_AUTHENTICATION_BLOCKED = 0x6983
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_CURRENT_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_WRONG_P1P2 = 0x6A86
SW_DATA_NOT_FOUND = 0x6A88
SW_WRONG_OFFSET = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
# PBOC e-purse / JT/T 978
SW_BAD_MAC = 0x9302
SW_APPLICATION_LOCKED = 0x9303
SW_INSUFFICIENT_BALANCE = 0x9401
SW_KEY_INDEX_NOT_SUPPORTED = 0x9403
SW_NO_SUCH_TRANSACTION = 0x9406
SW_MAC_ERROR_LOAD = 0x9302

SW_NAMES = {
    SW_OK: "ok",
    SW_FILE_INVALIDATED: "application blocked",
    SW_WRONG_LENGTH: "wrong length",
    SW_LOGICAL_CHANNEL_NOT_SUPPORTED: "logical channel not supported",
    SW_SECURE_MESSAGING_NOT_SUPPORTED: "secure messaging not supported",
    SW_CHAINING_NOT_SUPPORTED: "command chaining not supported",
    SW_INCOMPATIBLE_FILE: "command incompatible with file structure",
    SW_SECURITY_NOT_SATISFIED: "security status not satisfied",
    SW_AUTHENTICATION_BLOCKED: "authentication method blocked",
    SW_CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    SW_NO_CURRENT_EF: "command not allowed (no current EF)",
    SW_WRONG_DATA: "incorrect data",
    SW_FILE_NOT_FOUND: "file or application not found",
    SW_RECORD_NOT_FOUND: "record not found",
    SW_WRONG_P1P2: "wrong P1/P2",
    SW_DATA_NOT_FOUND: "referenced data not found",
    SW_WRONG_OFFSET: "offset outside the file",
    SW_INS_NOT_SUPPORTED: "instruction not supported",
    SW_CLA_NOT_SUPPORTED: "class not supported",
    SW_BAD_MAC: "MAC invalid",
    SW_APPLICATION_LOCKED: "application permanently locked",
    SW_INSUFFICIENT_BALANCE: "insufficient balance",
    SW_KEY_INDEX_NOT_SUPPORTED: "key index not supported",
    SW_NO_SUCH_TRANSACTION: "no such transaction",
}

PURCHASE = 0x06  # transaction types (log, MAC1, TAC, GET TRANSACTION PROVE)
COMPOSITE = 0x09

SFI_PUBLIC = 0x15  # issuer, card number, validity (30 bytes)
SFI_HOLDER = 0x16  # holder information (55 bytes)
SFI_MANAGEMENT = 0x17  # management information (60 bytes): scheme, categories
SFI_LOG = 0x18  # transaction log, 23-byte records
SFI_TRANSIT = 0x19  # the transit record (composite application data), record 01
TRANSIT_RECORD_ID = 0x01
TRANSIT_RECORD_SIZE = 100  # layout in citycard/terminal_kit/transit.py
LOG_RECORD_SIZE = 23


@dataclass(frozen=True)
class Response:
    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK

    @classmethod
    def parse(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise ValueError("a response APDU has at least the two status bytes")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))

    def describe(self) -> str:
        return f"{self.sw:04X} ({SW_NAMES.get(self.sw, 'unknown status')})"


def select_aid(aid: bytes = AID_TUNION) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid + b"\x00"


def read_binary(sfi: int, length: int, offset: int = 0) -> bytes:
    return bytes([0x00, 0xB0, 0x80 | sfi, offset, length])


def read_record(sfi: int, record: int, length: int = 23) -> bytes:
    return bytes([0x00, 0xB2, record, (sfi << 3) | 4, length])


def get_balance() -> bytes:
    return bytes.fromhex("805C000204")


def initialize_purchase(*, key_index: int, amount: int, terminal_id: bytes, composite: bool = False) -> bytes:
    """INITIALIZE FOR PURCHASE (P1 01), or INITIALIZE FOR CAPP PURCHASE (P1 03) for the composite purchase."""
    p1 = 0x03 if composite else 0x01
    return bytes([0x80, 0x50, p1, 0x02, 0x0B, key_index]) + amount.to_bytes(4, "big") + terminal_id + b"\x0f"


def update_capp_data_cache(
    record: bytes, *, sfi: int = SFI_TRANSIT, record_id: int = TRANSIT_RECORD_ID
) -> bytes:
    """UPDATE CAPP DATA CACHE: the record the card writes with the composite debit that follows."""
    return bytes([0x80, 0xDC, record_id, sfi << 3, len(record)]) + record


def debit_purchase(*, terminal_seq: int, date: bytes, time: bytes, mac1: bytes) -> bytes:
    return (
        bytes([0x80, 0x54, 0x01, 0x00, 0x0F]) + terminal_seq.to_bytes(4, "big") + date + time + mac1 + b"\x08"
    )


def get_transaction_prove(*, atc: int, kind: int = 0x06) -> bytes:
    return bytes([0x80, 0x5A, 0x00, kind, 0x02]) + atc.to_bytes(2, "big") + b"\x08"


def initialize_load(*, key_index: int, amount: int, terminal_id: bytes) -> bytes:
    return (
        bytes([0x80, 0x50, 0x00, 0x02, 0x0B, key_index]) + amount.to_bytes(4, "big") + terminal_id + b"\x10"
    )


def credit_load(*, date: bytes, time: bytes, mac2: bytes) -> bytes:
    return bytes([0x80, 0x52, 0x00, 0x00, 0x0B]) + date + time + mac2 + b"\x04"


def get_challenge() -> bytes:
    return bytes.fromhex("0084000004")


def application_block(mac: bytes) -> bytes:
    return bytes([0x84, 0x1E, 0x00, 0x00, 0x04]) + mac


def get_response(length: int) -> bytes:
    return bytes([0x00, 0xC0, 0x00, 0x00, length])


# --- the PSAM (the terminal's secure access module, in its own reader) ---------------------------------

PSAM_DF = bytes.fromhex("1001")  # the PSAM's e-purse application
SFI_PSAM_SERIAL = 0x15  # PSAM serial number (10 bytes)
SFI_PSAM_TERMINAL = 0x16  # the terminal number (6 bytes)
KEY_PURCHASE = 0x01  # key usages a PSAM holds: purchase masters (MAC1/MAC2) …
KEY_MAINTENANCE = 0x02  # … and maintenance masters (the APPLICATION BLOCK MAC)


def select_file(fid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x00, 0x00, len(fid)]) + fid


def init_sam_for_purchase(
    *,
    random: bytes,
    atc: int,
    amount: int,
    kind: int,
    date: bytes,
    time: bytes,
    key_version: int,
    algorithm: int,
    card_serial: bytes,
    issuer_id: bytes,
) -> bytes:
    """INIT SAM FOR PURCHASE ``80 70 00 00 24``: the PSAM answers its terminal transaction serial (4) and
    MAC1 (4)."""
    data = (
        random
        + atc.to_bytes(2, "big")
        + amount.to_bytes(4, "big")
        + bytes([kind])
        + date
        + time
        + bytes([key_version, algorithm])
        + card_serial
        + issuer_id
    )
    return bytes([0x80, 0x70, 0x00, 0x00, len(data)]) + data + b"\x08"


def credit_sam_for_purchase(mac2: bytes) -> bytes:
    """CREDIT SAM FOR PURCHASE ``80 72 00 00 04``: ``9000`` if the card's MAC2 is right."""
    return bytes([0x80, 0x72, 0x00, 0x00, 0x04]) + mac2


def init_for_descrypt(
    *, usage: int, key_version: int, algorithm: int, card_serial: bytes, issuer_id: bytes
) -> bytes:
    """``80 1A``: choose the PSAM key (usage, version, algorithm, issuer) and diversify it for one card."""
    data = bytes([algorithm]) + card_serial + issuer_id
    return bytes([0x80, 0x1A, usage, key_version, len(data)]) + data


def descrypt_mac(data: bytes) -> bytes:
    """``80 FA 05 00``: the MAC of ``data`` under the key ``80 1A`` prepared."""
    return bytes([0x80, 0xFA, 0x05, 0x00, len(data)]) + data + b"\x04"


def write_key(body: bytes, mac: bytes) -> bytes:
    """WRITE KEY ``84 D4 00 00``: usage(1) issuer id(8) version(1) algorithm(1) key under the transport key(16),
    then the MAC(4) over the challenge, the header and that body."""
    return bytes([0x84, 0xD4, 0x00, 0x00, len(body) + 4]) + body + mac
