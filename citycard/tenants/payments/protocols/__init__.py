"""The providers' protocols (渠道协议), both sides: what the city's adapter sends and checks, and what the
local sandbox (``..sandboxes``) answers. Pure Python and ``cryptography``: no Django here, so the sandbox
speaks exactly the protocol the adapter checks, byte for byte.

Every provider module offers the same adapter surface (``ChannelAdapter``) so the services never branch on
the provider: create an order and return the payment parameters the payer's app needs, verify and read an
asynchronous notification, query an order, refund, download and parse the daily statement (对账单), and
collect under a payer's standing agreement (代扣: no payer in the loop; the result comes as a notification).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from citycard.terminal_kit.beijing import BEIJING


class ProtocolError(Exception):
    """The provider's message cannot be trusted or read (bad signature, bad shape); nothing is credited."""

    def __init__(self, message: str, *, code: str = "protocol") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ChannelConfig:
    """One side's configuration of a channel: ids, URLs, its own private key and the other side's public key.

    The city's adapter holds the merchant private key and the provider's public key (platform certificate);
    the sandbox holds the reverse. ``secret`` is the symmetric key where the protocol has one (WeChat's
    APIv3 key, 32 bytes)."""

    merchant_id: str
    app_id: str = ""
    gateway_url: str = ""
    notify_url: str = ""
    private_key_pem: str = ""
    peer_public_key_pem: str = ""
    secret: str = ""
    serial_no: str = ""
    peer_serial_no: str = ""


@dataclass(frozen=True)
class PaymentResult:
    """What the provider says of an order: paid (with its amount and its own trade number) or not (yet)."""

    out_trade_no: str
    paid: bool
    amount_fen: int = 0
    provider_trade_no: str = ""
    paid_at: dt.datetime | None = None
    notify_id: str = ""
    state: str = ""


@dataclass(frozen=True)
class RefundResult:
    out_refund_no: str
    succeeded: bool
    provider_refund_no: str = ""
    state: str = ""


@dataclass(frozen=True)
class StatementLine:
    """One line of a provider's daily statement: a payment or a refund, amounts in fen."""

    kind: str  # "pay" | "refund"
    out_trade_no: str
    provider_trade_no: str
    amount_fen: int
    fee_fen: int = 0
    out_refund_no: str = ""
    at: dt.datetime | None = None


@dataclass
class Reply:
    """An HTTP answer: the adapter's acknowledgement of a notification, or the sandbox's response."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class ChannelAdapter(Protocol):
    provider: str
    config: ChannelConfig

    def order_create(self, *, out_trade_no: str, amount_fen: int, description: str) -> dict[str, Any]: ...
    def collect(
        self, *, out_trade_no: str, amount_fen: int, agreement_no: str, description: str
    ) -> dict[str, Any]: ...
    def notification_parse(self, *, headers: dict[str, str], body: bytes) -> PaymentResult: ...
    def notification_ack(self, *, ok: bool) -> Reply: ...
    def order_query(self, *, out_trade_no: str) -> PaymentResult: ...
    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, total_fen: int
    ) -> RefundResult: ...
    def statement_fetch(self, *, day: dt.date) -> bytes: ...
    def statement_parse(self, data: bytes) -> Iterator[StatementLine]: ...


# --- crypto -------------------------------------------------------------------------------------------


def rsa_keypair_pem() -> tuple[str, str]:
    """A new RSA-2048 key pair (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


_KEYS: dict[str, Any] = {}


def _private(pem: str) -> rsa.RSAPrivateKey:
    key = _KEYS.get(pem)
    if key is None:
        key = _KEYS[pem] = serialization.load_pem_private_key(pem.encode(), password=None)
    return key


def _public(pem: str) -> rsa.RSAPublicKey:
    key = _KEYS.get(pem)
    if key is None:
        key = _KEYS[pem] = serialization.load_pem_public_key(pem.encode())
    return key


def rsa_sign(private_pem: str, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64: the signature WeChat Pay v3, Alipay RSA2 and UnionPay 5.1 use."""
    signature = _private(private_pem).sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa_verify(public_pem: str, message: bytes, signature_b64: str) -> bool:
    try:
        _public(public_pem).verify(
            base64.b64decode(signature_b64, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def key_serial(public_pem: str) -> str:
    """A certificate serial stand-in: the hex SHA-256 of the public key's DER, first 20 bytes, upper case."""
    der = _public(public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize()[:20].hex().upper()


# --- money and time -------------------------------------------------------------------------------------


def yuan_text(fen: int) -> str:
    """Fen as the providers write yuan: ``88.80`` (Alipay's total_amount, WeChat's statement)."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def fen_of_yuan(text: str) -> int:
    """``88.8`` / ``88.80`` / ``-1.00`` to fen, exactly (no floats)."""
    if len(text) > 3 and text[-3] == "." and text[:-3].isdigit() and text[-2:].isdigit():
        return int(text[:-3]) * 100 + int(text[-2:])  # the common case, fast (a million lines a statement)
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    whole, _, part = text.partition(".")
    if not whole.isdigit() or (part and not part.isdigit()) or len(part) > 2:
        raise ProtocolError(f"not an amount in yuan: {text!r}", code="bad_amount")
    return sign * (int(whole) * 100 + int((part + "00")[:2]))


def beijing_now() -> dt.datetime:
    return dt.datetime.now(BEIJING)


def http(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None, timeout=10
) -> Reply:
    """One HTTP exchange with the provider (stdlib only); a transport failure is a ProtocolError."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers.items()))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(), dict(exc.headers.items()))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ProtocolError(f"the provider at {url} did not answer: {exc}", code="unreachable") from None


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
