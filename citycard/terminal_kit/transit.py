"""The transit record on the card (交通复合记录): the journey, transfer, cap and quota state, 100 bytes.

The card keeps the rider's trip state itself, in record 01 of SFI 0x19, written by UPDATE CAPP DATA
CACHE inside the composite purchase — so with the debit, atomically — and read (READ RECORD) by the next
validator, whatever bus, line or city it is on. ``TripCodec`` turns the record into the fare evaluator's
state (``{"j": journey, "q": quota use, "c": cap spend}``, citycard.terminal_kit.fares.engine) and back.

Layout (integers big-endian):

====== ==== ==========================================================================================
offset size
====== ==== ==========================================================================================
0      1    record id ``01``
1      1    length of what follows, ``62`` (98)
2      1    format ``01``
3      2    journey owner: the first 2 bytes of SHA-256(rule owner tenant code); ``0000`` no journey
5      1    service of the last leg: 1 + its index in ``SERVICES`` (bus 1, metro 2, …); 0 none
6      10   route of the last leg, UTF-8, padded with ``00``; a longer one: ``FF`` + 9 bytes of its tag
16     4    first tap of the journey, Unix minutes
20     2    last tap, minutes after the first
22     1    transfers made in the journey
23     3    fen paid in the journey
26     1    number of counters (at most 8)
27     72   8 counters of 9 bytes: kind (``01`` quota rides, ``02`` cap spend), id tag (2: the first 2 bytes
            of SHA-256(owner ":" rule id)), period (3: day ordinal for a day, year × 12 + month − 1 for a
            month), value (3: rides, or fen)
99     1    RFU ``00``
====== ==== ==========================================================================================

**Format 02** (written while the card is inside a gated system — between an entry and an exit — or when
it was last there) keeps the first 27 bytes of format 01 and holds the entry (进站信息) in place of the
last three counters:

====== ==== ==========================================================================================
offset size
====== ==== ==========================================================================================
26     1    number of counters (at most 5)
27     45   5 counters of 9 bytes, as above
72     2    entry owner: the first 2 bytes of SHA-256(rule owner tenant code)
74     1    entry status: ``01`` entered (in the system), ``00`` none
75     4    entry station: the first 4 bytes of SHA-256(owner ":" station id)
79     4    entry line, UTF-8, padded with ``00``; a longer one: ``FF`` + 3 bytes of its tag
83     4    entry time, Unix minutes
87     6    the entry gate's terminal number (the PSAM's)
93     3    fen debited at the entry (a deposit the exit takes off the fare)
96     4    RFU ``00``
====== ==== ==========================================================================================

An entry under another owner's rules (a gate of another city) is kept (``~e``) and gives no journey here;
the fare evaluator's exit closes it (this city's no-entry fare) and its entry replaces it.

Counters of rules the reading terminal does not know (another city's caps and quotas) are kept as they
are, under the key ``~<kind><tag>``, and written back. A journey written under another owner's rules
gives no transfer here; it is kept (``~j``) until this terminal writes its own. More than 8 counters: the
most recent periods are kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.fares.document import SERVICES

FORMAT = 0x01
FORMAT_GATED = 0x02
COUNTERS = 8
COUNTERS_GATED = 5
ENTERED = 0x01
QUOTA, CAP = 0x01, 0x02
_KINDS = {QUOTA: "q", CAP: "c"}
_MAX3 = 0xFFFFFF


class TransitRecordError(ValueError):
    """A transit record that is not in this format (another layout, a damaged write)."""


def _tag(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()[:2]


class TripCodec:
    """Encodes and decodes the transit record for the rules of one owner (a tenant's rule document)."""

    def __init__(
        self,
        owner: str,
        *,
        quotas: Iterable[str] = (),
        caps: Iterable[str] = (),
        stations: Iterable[str] = (),
        routes: Iterable[str] = (),
    ) -> None:
        self.owner = owner
        # Routes longer than their field (10 bytes for the last leg, 4 for the entry line) are written as a
        # tag (``FF`` + SHA-256(owner ":route:" route)), read back by the routes the rules know; never cut.
        self._routes: dict[bytes, str] = {}
        for route in routes:
            for size in (10, 4):
                if len(route.encode()) > size:
                    tag = self._route_tag(route, size)
                    self._routes[tag] = route if self._routes.get(tag, route) == route else ""
        self._stations: dict[bytes, str] = {}
        for station in stations:
            tag = hashlib.sha256(f"{owner}:{station}".encode()).digest()[:4]
            if tag in self._stations:
                raise ValueError(
                    f"stations {self._stations[tag]!r} and {station!r} share a transit-record tag"
                )
            self._stations[tag] = station
        self._station_tags = {v: k for k, v in self._stations.items()}
        self.owner_tag = _tag(owner) if owner else b"\x00\x00"
        self._ids: dict[tuple[int, bytes], str] = {}
        for kind, ids in ((QUOTA, quotas), (CAP, caps)):
            for rule_id in ids:
                key = (kind, _tag(f"{owner}:{rule_id}"))
                if key in self._ids and self._ids[key] != rule_id:
                    raise ValueError(
                        f"rule ids {self._ids[key]!r} and {rule_id!r} share a transit-record tag"
                    )
                self._ids[key] = rule_id
        self._tags = {(kind, rule_id): tag for (kind, tag), rule_id in self._ids.items()}

    def _route_tag(self, route: str, size: int) -> bytes:
        return b"\xff" + hashlib.sha256(f"{self.owner}:route:{route}".encode()).digest()[: size - 1]

    def _route_bytes(self, route: str, size: int) -> bytes:
        """A route in a field of ``size`` bytes: as UTF-8 when it fits, else its tag (UTF-8 never has FF)."""
        if route.startswith("~"):
            try:
                raw = bytes.fromhex(route[1:])
            except ValueError:
                raw = b""
            if len(raw) == size:
                return raw
        raw = route.encode()
        return raw.ljust(size, b"\x00") if len(raw) <= size else self._route_tag(route, size)

    def _route_text(self, raw: bytes) -> str:
        if raw[:1] == b"\xff":
            return self._routes.get(raw) or f"~{raw.hex()}"
        return raw.rstrip(b"\x00").decode("utf-8", "replace")

    @classmethod
    def for_fare(cls, fare: Any) -> TripCodec:
        """The codec for a fare calculator: a FareEngine's owner, quotas and caps; none for a fixed fare."""
        rules = getattr(fare, "rules", None)
        if rules is None:
            return cls("")
        return cls(
            rules.tenant,
            quotas=rules.quotas.keys(),
            caps=[cap.id for cap in rules.caps],
            stations=getattr(rules, "stops", {}).keys(),
            routes=_known_routes(rules),
        )

    # --- card → state --------------------------------------------------------------------------------

    def decode(self, raw: bytes) -> dict[str, Any]:
        if len(raw) != A.TRANSIT_RECORD_SIZE or raw[0] != A.TRANSIT_RECORD_ID or raw[1] != len(raw) - 2:
            raise TransitRecordError("not a transit record")
        if raw[2] not in (FORMAT, FORMAT_GATED):
            raise TransitRecordError(
                f"transit record format {raw[2]:02X} is not {FORMAT:02X} or {FORMAT_GATED:02X}"
            )
        gated = raw[2] == FORMAT_GATED
        state: dict[str, Any] = {}
        owner, journey = raw[3:5], raw[3:26]
        if owner != b"\x00\x00":
            if owner == self.owner_tag and self.owner:
                service = raw[5]
                if not 0 < service <= len(SERVICES):
                    raise TransitRecordError(f"unknown service code {service}")
                t0 = int.from_bytes(raw[16:20], "big")
                state["j"] = {
                    "t0": t0,
                    "t": t0 + int.from_bytes(raw[20:22], "big"),
                    "n": raw[22],
                    "p": int.from_bytes(raw[23:26], "big"),
                    "s": SERVICES[service - 1],
                    "r": self._route_text(raw[6:16]),
                }
            else:
                state["~j"] = journey.hex()
        count = raw[26]
        limit = COUNTERS_GATED if gated else COUNTERS
        if count > limit:
            raise TransitRecordError(f"{count} counters; a record of format {raw[2]:02X} holds {limit}")
        if gated:
            self._decode_entry(raw[72:96], state)
        for i in range(count):
            slot = raw[27 + 9 * i : 36 + 9 * i]
            kind, tag = slot[0], slot[1:3]
            if kind not in _KINDS:
                raise TransitRecordError(f"unknown counter kind {kind:02X}")
            period, value = int.from_bytes(slot[3:6], "big"), int.from_bytes(slot[6:9], "big")
            rule_id = self._ids.get((kind, tag), f"~{kind:02x}{tag.hex()}")
            state.setdefault(_KINDS[kind], {})[rule_id] = [period, value]
        return state

    def _decode_entry(self, raw: bytes, state: dict[str, Any]) -> None:
        if raw[2] != ENTERED:
            return
        if raw[0:2] != self.owner_tag or not self.owner:
            state["~e"] = raw.hex()
            return
        tag = raw[3:7]
        state["e"] = {
            "s": self._stations.get(tag, f"~{tag.hex()}"),
            "l": self._route_text(raw[7:11]),
            "t": int.from_bytes(raw[11:15], "big"),
            "tm": raw[15:21].hex(),
            "d": int.from_bytes(raw[21:24], "big"),
        }

    def _encode_entry(self, state: Mapping[str, Any]) -> bytes | None:
        entry = state.get("e")
        if entry:
            station = str(entry["s"])
            tag = (
                bytes.fromhex(station[1:])
                if station.startswith("~")
                else self._station_tags.get(station)
                or hashlib.sha256(f"{self.owner}:{station}".encode()).digest()[:4]
            )
            terminal = bytes.fromhex(entry.get("tm") or "")[:6]
            return (
                self.owner_tag
                + bytes([ENTERED])
                + tag
                + self._route_bytes(str(entry.get("l", "")), 4)
                + min(int(entry["t"]), 0xFFFFFFFF).to_bytes(4, "big")
                + terminal.ljust(6, b"\x00")
                + min(int(entry.get("d", 0)), _MAX3).to_bytes(3, "big")
            )
        if state.get("~e"):
            return bytes.fromhex(state["~e"])
        return None

    # --- state → card --------------------------------------------------------------------------------

    def encode(self, state: Mapping[str, Any]) -> bytes:
        journey = state.get("j")
        if journey:
            head = (
                self.owner_tag
                + bytes([SERVICES.index(journey["s"]) + 1])
                + self._route_bytes(str(journey["r"]), 10)
                + min(int(journey["t0"]), 0xFFFFFFFF).to_bytes(4, "big")
                + min(max(int(journey["t"]) - int(journey["t0"]), 0), 0xFFFF).to_bytes(2, "big")
                + bytes([min(int(journey["n"]), 0xFF)])
                + min(int(journey["p"]), _MAX3).to_bytes(3, "big")
            )
        elif state.get("~j"):
            head = bytes.fromhex(state["~j"])
        else:
            head = bytes(23)
        slots = []
        for kind, key in _KINDS.items():
            for rule_id, (period, value) in (state.get(key) or {}).items():
                if rule_id.startswith("~"):
                    tag = bytes.fromhex(rule_id[3:])
                else:
                    tag = self._tags.get((kind, rule_id)) or _tag(f"{self.owner}:{rule_id}")
                slots.append((min(int(period), _MAX3), kind, tag, min(int(value), _MAX3)))
        slots.sort(key=lambda s: -s[0])  # the most recent periods first
        entry = self._encode_entry(state)
        limit = COUNTERS if entry is None else COUNTERS_GATED
        body = bytearray()
        for period, kind, tag, value in slots[:limit]:
            body += bytes([kind]) + tag + period.to_bytes(3, "big") + value.to_bytes(3, "big")
        record = (
            bytes([A.TRANSIT_RECORD_ID, A.TRANSIT_RECORD_SIZE - 2, FORMAT if entry is None else FORMAT_GATED])
            + head
            + bytes([min(len(slots), limit)])
            + bytes(body).ljust(9 * limit, b"\x00")
        )
        record += b"\x00" if entry is None else entry.ljust(28, b"\x00")
        assert len(record) == A.TRANSIT_RECORD_SIZE
        return record


def _known_routes(rules: Any) -> set[str]:
    """Every route a rule document names: its known routes, its route sets' routes and its lines."""
    payload = getattr(rules, "payload", None) or {}
    routes: set[str] = set(getattr(rules, "lines", {}) or {})
    for names in (payload.get("known_routes") or {}).values():
        routes.update(str(n) for n in names)
    for item in (payload.get("route_sets") or {}).values():
        routes.update(str(n) for n in item.get("routes") or ())
    return routes


def card_state(codec: TripCodec, raw: bytes | None) -> dict[str, Any]:
    """The fare evaluator's state from what the card gave: no record, or one in another layout or damaged,
    counts as no journey (and the tap writes the record afresh). Terminal and back office both read it so."""
    if raw is None:
        return {}
    try:
        return codec.decode(raw)
    except TransitRecordError:
        return {}
