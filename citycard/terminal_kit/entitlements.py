"""Entitlements at a gate, desk or POS (权益核验), offline first: the tenant's signed entitlement list,
the use queue, and the gate that reads a card or a citizen code and answers yes/no with a reason.

The list is ``{"kind": "entitlements", "tenant", "version", "types": {code: {quota, quota_period,
service_points}}, "entries": [[card_no, type, from, to], …]}`` signed with the tenant's key, or a delta on
the version held (``"delta": {"since", "added": [...], "removed": [[card_no, type], …]}``). Like the
hotlist, a version not newer than the one held is refused: a terminal never goes back to an older list.

Rows are kept in two sorted ``array('q')`` columns (card number as an integer; type index, first and last
day packed in one integer): 16 bytes a row, looked up by bisection. The answer reasons are those of the
back office (``citycard.tenants.entitlements.acceptance.REASONS``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import urllib.error
import urllib.request
import uuid
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.ecode import CodeIssuer, CodeRefused, EcodeVerifier
from citycard.terminal_kit.keyring import SIGNS_ACKNOWLEDGEMENTS, keyring_held
from citycard.terminal_kit.signing import SignatureError, TerminalCredentials, sign_document, verify_document
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.tap import Validator

KIND = "entitlements"
USES_KIND = "entitlement-uses"
CHECK_KIND = "entitlement-check"
DECISION_KIND = "entitlement-decision"
CHECK_PATH = "/terminal/v1/entitlement-check"
_OPEN_END = (1 << 20) - 1  # "no last day" in the packed column
_DAY_BITS = 20  # a date's ordinal (< 1,048,576: until the year 2870)


class EntitlementListError(ValueError):
    pass


class EntitlementDeltaMismatch(EntitlementListError):
    """A delta on another version than the one held: the full list is needed."""


def _day(text: str | None) -> int:
    return _OPEN_END if text is None else dt.date.fromisoformat(text).toordinal()


@dataclass(frozen=True)
class OfflineDecision:
    allowed: bool
    reason: str
    card_no: str = ""
    type_code: str = ""
    remaining: int | None = None


@dataclass(frozen=True)
class OnlineDecision(OfflineDecision):
    """The back office's tenant-signed answer (在线核验): also the masked name and, for a visitor, the
    home tenant that vouched."""

    masked_name: str = ""
    home_tenant: str = ""
    online: bool = True
    use_key: str = ""  # the terminal's key for this use (the back office recorded it under it)


HttpPost = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


def urllib_post(url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class CheckUnavailable(Exception):
    """The back office did not answer usably (network, refusal, a bad signature): decide offline."""


@dataclass
class OnlineChecker:
    """Ask the back office online, signing each check with the terminal's key (like a batch of uses);
    the answer is verified with the tenant's keys and must be the answer to this very check (the
    terminal, the service point and the use key it chose). A retried check with the same use key counts
    once at the back office."""

    base_url: str  # the tenant's site
    tenant_keys: Mapping[str, bytes]
    credentials: TerminalCredentials
    post: HttpPost = urllib_post
    host: str | None = None

    @property
    def terminal_id(self) -> str:
        return self.credentials.key_id.rsplit(":", 1)[0]

    def check(
        self,
        *,
        service_point: str,
        at: dt.datetime,
        card_no: str | None = None,
        code: str | None = None,
        use_key: str | None = None,
    ) -> OnlineDecision:
        use_key = use_key or f"{service_point}:{uuid.uuid4().hex}"
        payload: dict[str, Any] = {
            "kind": CHECK_KIND,
            "tenant": self.credentials.tenant,
            "terminal_id": self.terminal_id,
            "service_point": service_point,
            "use_key": use_key,
            "at": at.isoformat(),
        }
        payload.update({"card_no": card_no} if code is None else {"code": code})
        document = sign_document(payload, key=self.credentials.key, key_id=self.credentials.key_id)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.host:
            headers["Host"] = self.host
        try:
            status, body = self.post(
                self.base_url.rstrip("/") + CHECK_PATH, json.dumps(document).encode(), headers
            )
        except OSError as exc:
            raise CheckUnavailable(f"the back office did not answer: {exc}") from exc
        if status != 200:
            raise CheckUnavailable(f"the check was answered {status}: {body[:200].decode(errors='replace')}")
        try:
            answer = verify_document(json.loads(body), keys=self.tenant_keys)
        except (ValueError, SignatureError) as exc:
            raise CheckUnavailable(f"the answer was refused: {exc}") from exc
        expected = (DECISION_KIND, self.terminal_id, service_point, use_key)
        if (
            answer.get("kind"),
            answer.get("terminal_id"),
            answer.get("service_point"),
            answer.get("use_key"),
        ) != (expected):
            raise CheckUnavailable("the answer is not the answer to this check")
        return OnlineDecision(
            bool(answer.get("allowed")),
            str(answer.get("reason", "")),
            str(answer.get("card_no") or ""),
            str(answer.get("type") or ""),
            answer.get("remaining"),
            str(answer.get("masked_name") or ""),
            str(answer.get("home_tenant") or ""),
            use_key=use_key,
        )


@dataclass
class EntitlementList:
    """The list a terminal holds (empty, version 0, before the first download)."""

    tenant: str = ""
    version: int = 0
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    type_codes: list[str] = field(default_factory=list)
    cards: array = field(default_factory=lambda: array("q"))
    packed: array = field(default_factory=lambda: array("q"))
    # Visitors' home tenants' citizen-code keys, vouched for by each home's signed visitor list and
    # passed on in this tenant-signed list: {home: {"divisions": [...], "keys": {key id: {"public",
    # "verify_until"}}}} (several keys by id while a rotation overlaps).
    code_issuer_keys: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cards)

    def nbytes(self) -> int:
        """The memory of the two columns (what grows with the list)."""
        return self.cards.itemsize * len(self.cards) + self.packed.itemsize * len(self.packed)

    def rows(self) -> Iterable[tuple[str, str, int, int]]:
        for card, value in zip(self.cards, self.packed, strict=True):
            yield (
                str(card).zfill(19),
                self.type_codes[value >> (2 * _DAY_BITS)],
                (value >> _DAY_BITS) & _OPEN_END,
                value & _OPEN_END,
            )

    def code_issuers(self, *, at: dt.datetime) -> list[CodeIssuer]:
        """The visitors' home tenants as citizen-code issuers (电子市民码), with the keys that verify at
        ``at`` (a retired key past its overlap is left out), for the gate's code scanner."""
        out = []
        for home, issuer in sorted(self.code_issuer_keys.items()):
            keys = {
                key_id: base64.b64decode(entry["public"])
                for key_id, entry in issuer.get("keys", {}).items()
                if entry.get("verify_until") is None or dt.datetime.fromisoformat(entry["verify_until"]) > at
            }
            if keys and issuer.get("divisions"):
                out.append(CodeIssuer(home, frozenset(issuer["divisions"]), keys))
        return out

    @classmethod
    def _build(
        cls,
        *,
        tenant: str,
        version: int,
        types: dict[str, Any],
        rows: Iterable[tuple[str, str, int, int]],
        code_issuer_keys: dict[str, Any] | None = None,
    ) -> EntitlementList:
        codes = sorted(types)
        index = {code: i for i, code in enumerate(codes)}
        keyed = sorted(
            (int(card), (index[code] << (2 * _DAY_BITS)) | (start << _DAY_BITS) | end)
            for card, code, start, end in rows
            if code in index
        )
        return cls(
            tenant=tenant,
            version=version,
            types=types,
            type_codes=codes,
            cards=array("q", (k for k, _ in keyed)),
            packed=array("q", (v for _, v in keyed)),
            code_issuer_keys=code_issuer_keys or {},
        )

    def apply(self, document: Any, *, keys: Mapping[str, bytes]) -> EntitlementList:
        """A newer list from a signed document (full, or a delta on this version); older ones refused."""
        payload = verify_document(document, keys=keys)
        if payload.get("kind") != KIND:
            raise EntitlementListError(f"document is a {payload.get('kind')!r}, not an entitlement list")
        version = payload.get("version")
        if not isinstance(version, int) or version <= self.version:
            raise EntitlementListError(
                f"entitlement list version {version} is not newer than the one held ({self.version})"
            )
        types = payload.get("types") or {}
        tenant = str(payload.get("tenant", ""))
        issuers = payload.get("code_issuers") or {}  # in full in a list and in a delta
        if "entries" in payload:
            rows = [(c, t, _day(f), _day(u)) for c, t, f, u in payload["entries"]]
            return self._build(
                tenant=tenant, version=version, types=types, rows=rows, code_issuer_keys=issuers
            )
        delta = payload.get("delta") or {}
        if delta.get("since") != self.version:
            raise EntitlementDeltaMismatch(
                f"delta is on version {delta.get('since')}, this terminal holds {self.version}"
            )
        removed = {(c, t) for c, t in delta.get("removed", [])}
        kept = [r for r in self.rows() if (r[0], r[1]) not in removed]
        added = [(c, t, _day(f), _day(u)) for c, t, f, u in delta.get("added", [])]
        return self._build(
            tenant=tenant, version=version, types=types, rows=kept + added, code_issuer_keys=issuers
        )

    def entitlements(self, card_no: str) -> list[tuple[str, int, int]]:
        """(type, first day ordinal, last day ordinal) of one card."""
        key = int(card_no)
        i = bisect_left(self.cards, key)
        out = []
        while i < len(self.cards) and self.cards[i] == key:
            value = self.packed[i]
            out.append(
                (
                    self.type_codes[value >> (2 * _DAY_BITS)],
                    (value >> _DAY_BITS) & _OPEN_END,
                    value & _OPEN_END,
                )
            )
            i += 1
        return out

    def decide(
        self,
        *,
        card_no: str,
        service_point: str,
        day: dt.date,
        used: Callable[[str, str, dt.date], int] = lambda card, code, since: 0,
    ) -> OfflineDecision:
        """May this card use this service point on ``day``? ``used(card, type, since)``: the uses this
        terminal recorded of that type since the quota period began."""
        held = [
            (code, start, end)
            for code, start, end in self.entitlements(card_no)
            if service_point in self.types.get(code, {}).get("service_points", ())
        ]
        if not held:
            return OfflineDecision(False, "not_entitled", card_no)
        today = day.toordinal()
        current = [h for h in held if h[1] <= today <= h[2]]
        if not current:
            future = any(start > today for _, start, _ in held)
            return OfflineDecision(False, "not_yet_valid" if future else "expired", card_no)
        for code, _, _ in current:
            rule = self.types[code]
            quota, period = rule.get("quota"), rule.get("quota_period", "none")
            if quota is None:
                return OfflineDecision(True, "ok", card_no, code, None)
            since = (
                day
                if period == "day"
                else day.replace(day=1)
                if period == "month"
                else day.replace(month=1, day=1)
            )
            count = used(card_no, code, since)
            if count < quota:
                return OfflineDecision(True, "ok", card_no, code, quota - count - 1)
        return OfflineDecision(False, "quota_used_up", card_no, current[0][0], 0)


HELD = "entitlements"  # the queue database's documents row


def list_keep(store: TapStore, held: EntitlementList) -> None:
    """Keep the verified list in the terminal's queue database (its two columns as bytes, 16 a row), so a
    restarted terminal decides offline with what it had and asks only for the delta."""
    store.document_put(
        kind=HELD,
        version=held.version,
        body={
            "tenant": held.tenant,
            "types": held.types,
            "type_codes": held.type_codes,
            "cards": base64.b64encode(held.cards.tobytes()).decode(),
            "packed": base64.b64encode(held.packed.tobytes()).decode(),
            "code_issuers": held.code_issuer_keys,
        },
    )


def list_held(store: TapStore) -> EntitlementList:
    """The list this terminal holds (empty, version 0, before the first download)."""
    kept = store.document_get(HELD)
    if kept is None:
        return EntitlementList()
    version, body = kept
    cards, packed = array("q"), array("q")
    cards.frombytes(base64.b64decode(body["cards"]))
    packed.frombytes(base64.b64decode(body["packed"]))
    return EntitlementList(
        tenant=body["tenant"],
        version=version,
        types=body["types"],
        type_codes=list(body["type_codes"]),
        cards=cards,
        packed=packed,
        code_issuer_keys=body.get("code_issuers") or {},
    )


def code_issuers_held(
    store: TapStore, *, tenant: str, divisions: Iterable[str], at: dt.datetime
) -> list[CodeIssuer]:
    """The citizen-code issuers (电子市民码) a validator verifies with offline, all from what it synced: its
    own city — the tenant's signing keys from the keys document ``sync`` took (the keys that sign its
    acknowledgements sign its citizen codes too) for the card divisions it issues, ``divisions`` — and the
    visitors' home cities the offline entitlement list it holds names (their keys vouched for by each
    home's signed visitor list, ``EntitlementList.code_issuers``). Only keys that verify at ``at``."""
    issuers: list[CodeIssuer] = []
    ring = keyring_held(store)
    divisions = frozenset(divisions)
    if ring is not None and divisions:
        own = {
            key_id: public
            for key_id, public in ring.keys(SIGNS_ACKNOWLEDGEMENTS, at=at).items()
            if any(e["key_id"] == key_id and e["tenant"] == tenant for e in ring.entries)
        }
        if own:
            issuers.append(CodeIssuer(tenant, divisions, own))
    issuers += [i for i in list_held(store).code_issuers(at=at) if i.tenant != tenant]
    return issuers


_SCHEMA = """
CREATE TABLE IF NOT EXISTS uses (
    use_key TEXT PRIMARY KEY,
    card_no TEXT NOT NULL,
    type TEXT NOT NULL,
    service_point TEXT NOT NULL,
    channel TEXT NOT NULL,
    at TEXT NOT NULL,
    day TEXT NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS uses_card ON uses (card_no, type, day);
"""


class UseQueue:
    """The uses a terminal accepted offline (SQLite), until the back office acknowledged them."""

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def record(
        self,
        *,
        card_no: str,
        type_code: str,
        service_point: str,
        channel: str,
        at: dt.datetime,
        use_key: str | None = None,
        recorded_online: bool = False,
    ) -> str:
        """Keep a use this terminal accepted. ``recorded_online``: the back office approved it online and
        recorded it itself (under ``use_key``), so it counts here against the quota like an offline use —
        a gate falling back to offline right after still sees it — but is never uploaded again. Recording
        the same use key twice keeps the first."""
        key = use_key or f"{service_point}:{uuid.uuid4().hex}"
        self.db.execute(
            "INSERT OR IGNORE INTO uses (use_key, card_no, type, service_point, channel, at, day, uploaded)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                key,
                card_no,
                type_code,
                service_point,
                channel,
                at.isoformat(),
                at.astimezone(BEIJING).date().isoformat(),
                1 if recorded_online else 0,
            ),
        )
        return key

    def used(self, card_no: str, type_code: str, since: dt.date) -> int:
        row = self.db.execute(
            "SELECT count(*) FROM uses WHERE card_no = ? AND type = ? AND day >= ?",
            (card_no, type_code, since.isoformat()),
        ).fetchone()
        return int(row[0])

    def batch(
        self, *, tenant: str, terminal_id: str, key: Ed25519PrivateKey, key_id: str
    ) -> dict[str, Any] | None:
        """The uses not yet acknowledged, as a signed batch (None when there are none). Sending the same
        uses again is harmless: the back office counts each ``use_key`` once."""
        rows = self.db.execute(
            "SELECT use_key, card_no, type, service_point, channel, at FROM uses WHERE uploaded = 0 ORDER BY at"
        ).fetchall()
        if not rows:
            return None
        uses = [
            {"use_key": k, "card_no": c, "type": t, "service_point": p, "channel": ch, "at": at}
            for k, c, t, p, ch, at in rows
        ]
        payload = {"kind": USES_KIND, "tenant": tenant, "terminal_id": terminal_id, "uses": uses}
        return sign_document(payload, key=key, key_id=key_id)

    def acknowledged(self, use_keys: Iterable[str]) -> None:
        self.db.executemany("UPDATE uses SET uploaded = 1 WHERE use_key = ?", [(k,) for k in use_keys])

    def acknowledgement_take(self, document: Any, *, tenant_keys: Mapping[str, bytes]) -> dict[str, Any]:
        """The back office's answer to an uploaded batch, verified with the tenant's keys: the uses it took
        are sent no more; those it rejected stay for a person to look at. Returns the answer's payload."""
        payload = verify_document(document, keys=tenant_keys)
        if payload.get("kind") != "entitlement-uses-ack":
            raise EntitlementListError(
                f"document is a {payload.get('kind')!r}, not an acknowledgement of uses"
            )
        self.acknowledged(payload.get("use_keys", []))
        return payload


@dataclass
class Gate:
    """A service point's terminal deciding offline: a card tapped (read and authenticated by the
    validator: card number and validity from the card, a zero-amount purchase whose MAC2 and TAC prove
    the card holds its issuer's keys, the hotlist checked) or a citizen code scanned (verified with the
    issuer's keys, its nonce spent)."""

    service_point: str
    entitlements: EntitlementList
    uses: UseQueue
    validator: Validator | None = None
    codes: EcodeVerifier | None = None
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(BEIJING)
    # Online first when set: the back office answers (and records the use); offline from the list when
    # it does not answer.
    online: OnlineChecker | None = None
    _verifiers: dict[tuple[Any, ...], EcodeVerifier] = field(default_factory=dict, init=False, repr=False)

    def _ask(
        self, *, channel: str, card_no: str | None = None, code: str | None = None
    ) -> OnlineDecision | None:
        if self.online is None:
            return None
        at = self.clock()
        try:
            decision = self.online.check(service_point=self.service_point, at=at, card_no=card_no, code=code)
        except CheckUnavailable:
            return None
        if decision.allowed and decision.card_no and decision.type_code:
            # Counted here too (already recorded by the back office, so never uploaded): if the
            # connection drops right after, the offline quota still includes this use.
            self.uses.record(
                card_no=decision.card_no,
                type_code=decision.type_code,
                service_point=self.service_point,
                channel=channel,
                at=at,
                use_key=f"online:{decision.use_key}",
                recorded_online=True,
            )
        return decision

    def _answer(self, card_no: str, channel: str) -> OfflineDecision:
        now = self.clock()
        decision = self.entitlements.decide(
            card_no=card_no,
            service_point=self.service_point,
            day=now.astimezone(BEIJING).date(),
            used=self.uses.used,
        )
        if decision.allowed:
            self.uses.record(
                card_no=card_no,
                type_code=decision.type_code,
                service_point=self.service_point,
                channel=channel,
                at=now,
            )
        return decision

    def _code_verifier(self, codes: EcodeVerifier) -> EcodeVerifier:
        """The scanner's verifier with the visitors' home tenants the held list names added (their keys
        came signed through the list: no key is given to the gate by hand); issuers the scanner was given
        itself come first. Rebuilt only when the keys valid now change."""
        given = {issuer.tenant for issuer in codes.issuers}
        extra = [i for i in self.entitlements.code_issuers(at=self.clock()) if i.tenant not in given]
        if not extra:
            return codes
        which = tuple((i.tenant, tuple(sorted(i.keys))) for i in extra)
        cached = self._verifiers.get(which)
        if cached is None:
            cached = EcodeVerifier(issuers=[*codes.issuers, *extra], store=codes.store, clock=codes.clock)
            self._verifiers = {which: cached}
        return cached

    def present_card(self) -> OfflineDecision:
        if self.validator is None:
            raise ValueError("this gate has no card reader")
        tap = self.validator.tap()
        if tap.outcome == "blocked":
            return OfflineDecision(False, "card_hotlisted", tap.card_no or "")
        if tap.outcome == "declined" and "expired" in tap.message:
            return OfflineDecision(False, "card_expired", tap.card_no or "")
        if tap.outcome != "approved" or not tap.card_no:
            return OfflineDecision(False, "card_unreadable", tap.card_no or "")
        return self._ask(channel="card", card_no=tap.card_no) or self._answer(tap.card_no, "card")

    def present_code(self, token: str) -> OfflineDecision:
        if self.codes is None:
            raise ValueError("this gate has no code scanner")
        asked = self._ask(
            channel="code", code=token
        )  # the back office verifies the code and spends its nonce
        if asked is not None:
            return asked
        try:
            payload = self._code_verifier(self.codes).verify(token)
        except CodeRefused as exc:
            reason = {"expired": "code_expired", "replayed": "code_replayed"}.get(exc.code, "code_invalid")
            return OfflineDecision(False, reason)
        return self._answer(payload["card_no"], "code")
