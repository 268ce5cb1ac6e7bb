"""Personal data at rest (个人信息保护): resident ID numbers and phone numbers.

* Encrypted with AES-256-GCM under the tenant's current data key (``citycard.platform.keys``: wrapped by
  the master key, rotated by ``citycard keys rotate``); the row keeps the key id so old rows still decrypt
  after a rotation and ``citycard cards reencrypt`` moves them to the current key.
* Looked up through a blind index: HMAC-SHA256 keyed per tenant, the key derived (HKDF) from the tenant's
  *first* data key so the index survives data-key rotations.
* Shown masked everywhere (``3****************4``, ``138****5678``, ``浙江省杭州市****``). The ID mask keeps
  only its first and last characters: the usual 6+4 mask hides nothing but the birth date, and a birth date
  is easy to learn (a 70th-birthday concession, an age), so 6+4 plus a birth date is the whole number. No
  column keeps the birth date either: it stays inside the encrypted ID number, and only the birth decade
  (``50后``) is stored for statistics (docs/security.md).
* GB 11643 resident identity numbers: 17 digits + check character (0-9 or X), with birth date and sex.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.db import connection
from django.utils.translation import gettext

from citycard.platform.errors import DomainError
from citycard.platform.keys import tenant_data_key, tenant_data_key_by_id
from citycard.platform.models import KeyPurpose, Tenant, TenantKey

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


@dataclass(frozen=True)
class IdNumber:
    """A checked resident identity number (公民身份号码) and what it says."""

    number: str
    division: str
    birth_date: dt.date
    sex: str  # "M" / "F": the 17th digit (顺序码) is odd for men


def id_check_char(body17: str) -> str:
    """The GB 11643 check character (校验码) of the first 17 digits."""
    return _CHECK[sum(int(c) * w for c, w in zip(body17, _WEIGHTS, strict=True)) % 11]


def id_number_parse(value: str, *, field: str = "id_number") -> IdNumber:
    """Check an 18-character ID number; DomainError names what is wrong."""
    number = (value or "").strip().upper()
    if len(number) != 18 or not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise DomainError(
            gettext("the ID number must be 17 digits and a digit or X (18 characters)"), field=field
        )
    if id_check_char(number[:17]) != number[17]:
        raise DomainError(
            gettext("the ID number's check character should be %(expected)s, not %(given)s")
            % {"expected": id_check_char(number[:17]), "given": number[17]},
            code="bad_checksum",
            field=field,
        )
    try:
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise DomainError(
            gettext("the ID number's birth date %(number)s is not a date") % {"number": number[6:14]},
            field=field,
        ) from None
    if birth.year < 1890 or birth > dt.date.today():
        raise DomainError(
            gettext("the ID number's birth date %(birth)s is not plausible") % {"birth": birth}, field=field
        )
    return IdNumber(number, number[:6], birth, "M" if int(number[16]) % 2 else "F")


def id_number_build(*, division: str, birth_date: dt.date, sequence: int) -> str:
    """A valid ID number (for demos, tests and benchmarks): division, birth date, 3-digit sequence."""
    body = f"{division}{birth_date:%Y%m%d}{sequence % 1000:03d}"
    return body + id_check_char(body)


def phone_normalise(value: str, *, field: str = "phone") -> str:
    phone = "".join(c for c in (value or "") if c.isdigit() or c == "+")
    if phone.startswith("+86"):
        phone = phone[3:]
    if not (len(phone) == 11 and phone.isdigit() and phone[0] == "1"):
        raise DomainError(
            gettext("the phone must be an 11-digit mainland mobile number (1xxxxxxxxxx)"), field=field
        )
    return phone


def id_mask(number: str) -> str:
    """``3****************4``: the first and last characters only (see the module's docstring)."""
    return f"{number[:1]}{'*' * 16}{number[-1:]}" if len(number) == 18 else "*" * len(number)


def phone_mask(phone: str) -> str:
    """``138****5678``: the carrier prefix and the last four digits (the national practice)."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) == 11 else "*" * len(phone)


ADDRESS_SHOWN = 6


def address_mask(address: str) -> str:
    """``浙江省杭州市****``: the first six characters (province and city, at most a district), then four stars
    whatever the length, so neither the street nor the address's length shows."""
    address = (address or "").strip()
    if not address:
        return ""
    shown = ADDRESS_SHOWN if len(address) > ADDRESS_SHOWN else max(len(address) // 3, 1)
    return address[:shown] + "****"


def birth_decade(birth_date: dt.date) -> int:
    """The decade of birth (出生年代): 1958 → 1950. What statistics need, and far from a birth date."""
    return birth_date.year // 10 * 10


def decade_label(decade: int | None) -> str:
    """``50后``, ``00后``: how a decade of birth is said."""
    return "" if decade is None else f"{decade % 100:02d}后"


# --- keys ---------------------------------------------------------------------------------------------


def current_tenant() -> Tenant:
    tenant = getattr(connection, "tenant", None)
    if tenant is None or getattr(tenant, "schema_name", "public") == "public":
        raise DomainError(
            gettext("personal data lives in a tenant schema; no tenant is active"), code="no_tenant"
        )
    return tenant


class Sealer:
    """Encrypts, decrypts and blind-indexes for one tenant; build one per operation (bulk paths reuse it).

    Unwrapped keys live only as long as the Sealer, never in a module-level cache."""

    def __init__(self, tenant: Tenant | None = None) -> None:
        self.tenant = tenant or current_tenant()
        self.key_id, key = tenant_data_key(tenant=self.tenant)
        self._aead = {self.key_id: AESGCM(key)}
        first = (
            TenantKey.objects.filter(tenant=self.tenant, purpose=KeyPurpose.DATA)
            .order_by("version")
            .values_list("key_id", flat=True)
            .first()
        )
        root = key if first == self.key_id else tenant_data_key_by_id(tenant=self.tenant, key_id=first)
        self._blind_key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=f"citycard-blind|{self.tenant.code}".encode(),
        ).derive(root)

    def _aad(self, field: str) -> bytes:
        return f"citycard-pii|{self.tenant.code}|{field}".encode()

    def seal(self, field: str, plaintext: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead[self.key_id].encrypt(nonce, plaintext.encode(), self._aad(field))

    def open(self, field: str, blob: bytes | memoryview, key_id: str) -> str:
        aead = self._aead.get(key_id)
        if aead is None:
            aead = self._aead[key_id] = AESGCM(tenant_data_key_by_id(tenant=self.tenant, key_id=key_id))
        raw = bytes(blob)
        return aead.decrypt(raw[:12], raw[12:], self._aad(field)).decode()

    def blind(self, field: str, value: str) -> str:
        """Keyed blind index (盲索引): equal values give equal digests; the digest reveals nothing."""
        return hmac.new(self._blind_key, f"{field}|{value}".encode(), hashlib.sha256).hexdigest()
