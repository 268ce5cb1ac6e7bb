"""A tap (刷卡): read the card, check the hotlist, price the trip, debit, record — durably, never twice.

The order is the point: the PSAM's terminal sequence number and a ``pending`` record are committed before
DEBIT; the ``complete`` record with the card's TAC is committed before the rider hears the beep. If DEBIT
gets no answer (the card left the field), the record becomes ``torn`` and the rider is asked to tap again.
When that card comes back — a moment later, or after riding elsewhere — the torn record is settled from
what the card says now (``citycard.terminal_kit.recovery``: its counter and its transaction log): completed
and uploaded if the debit happened, voided if it did not, and the card is never refused for it. Its retap
is approved without a second charge; another card in between leaves the torn record alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from citycard.terminal_kit import i18n
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card import apdu as A
from citycard.terminal_kit.card.crypto import Algorithm
from citycard.terminal_kit.card.virtual import CATEGORY_BITS, PASS_BITS
from citycard.terminal_kit.cardno import CardNumberError, card_number_from_bcd, card_number_parse
from citycard.terminal_kit.ecode import CLOCK_ALLOWANCE_S, CodeRefused, EcodeVerifier, refusal_said
from citycard.terminal_kit.fares import FareError
from citycard.terminal_kit.hotlist import Hotlist
from citycard.terminal_kit.i18n import N_
from citycard.terminal_kit.reader import CardChannel, CardRemoved, ReaderError, Transport
from citycard.terminal_kit.recovery import RETAP_WINDOW, UNDECIDED_TAC, LogEntry, Verdict, torn_decide
from citycard.terminal_kit.sam import Psam, SamError
from citycard.terminal_kit.store import StoredTap, TapStore
from citycard.terminal_kit.transit import TripCodec, card_state


class CardProtocolError(Exception):
    """The card answered something the terminal cannot accept (malformed, out of order, wrong MAC)."""


class CardLocked(CardProtocolError):
    """The application is permanently locked (9303: a key's try counter ran out)."""


@dataclass(frozen=True)
class CardInfo:
    card_no: str
    issuer: str
    scheme_code: str
    categories: frozenset[str]
    valid_from: dt.date
    valid_to: dt.date
    passes: frozenset[str] = frozenset()  # transit passes on the card (e.g. the monthly pass)
    issuer_id: bytes = b""  # SFI 0x15 bytes 0–7, the PSAM's issuer diversification data
    serial: bytes = b""  # SFI 0x15 bytes 12–19, the card application serial keys are diversified by


@dataclass(frozen=True)
class TripInfo:
    tenant: str
    service: str
    route: str
    at: dt.datetime
    origin: str | None = None  # a gated journey's entry station
    destination: str | None = None  # its exit station


@dataclass(frozen=True)
class Quote:
    fare_fen: int
    state: dict[str, Any]
    trace: tuple[str, ...] = ()
    rule_id: str | None = None


class FareCalculator(Protocol):
    def quote(self, card: CardInfo, trip: TripInfo, state: dict[str, Any]) -> Quote: ...


@dataclass(frozen=True)
class FixedFare:
    """One fare for everyone (a terminal without a rule document, and the tests' baseline).

    Terminals in service price with the tenant's signed rule document instead:
    ``fare=citycard.terminal_kit.fares.load_signed(document, keys=tenant_keys)`` (a FareEngine)."""

    fen: int
    version: int = 0  # no rule document

    def quote(self, card: CardInfo, trip: TripInfo, state: dict[str, Any]) -> Quote:
        return Quote(fare_fen=self.fen, state=state, trace=(f"fixed fare {self.fen} fen",), rule_id="fixed")


@dataclass
class TapResult:
    outcome: str  # approved | declined | retap | blocked | no_card | error
    message: str
    card_no: str | None = None
    fare_fen: int | None = None
    balance_fen: int | None = None
    record: dict[str, Any] | None = None
    terminal_work_s: float = 0.0  # time spent outside card I/O
    card_io_s: float = 0.0
    refusal: str = ""  # a citizen code refused: why (ecode.CodeRefused.code)


def _bcd_to_date(raw: bytes) -> dt.date:
    text = raw.hex()
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as exc:
        raise CardProtocolError(i18n.said(N_("bad date %(text)s on the card"), text=text)) from exc


@dataclass
class Validator:
    """A bus validator / gate: one reader, one PSAM (in its own reader), one queue, the tenant's fares and
    hotlist."""

    transport: Transport
    sam: Psam
    store: TapStore
    fare: FareCalculator
    tenant: str
    service: str
    route: str
    hotlist: Hotlist = field(default_factory=Hotlist)
    clock: Any = None  # () -> aware datetime; default now in Asia/Shanghai
    # A metro gate (闸机): "entry" or "exit" at ``station`` (the rule document's station id); "" for a
    # validator that prices each tap on its own (a bus).
    gate: str = ""
    station: str = ""
    # The code scanner (扫码): the issuers whose citizen codes the validator verifies offline (its own
    # city's keys, and the visitors' home cities' the offline entitlement list brings), with the queue
    # database remembering the nonces spent here. None: the validator takes cards only.
    codes: EcodeVerifier | None = None
    _codec: tuple[Any, TripCodec] | None = field(default=None, repr=False)

    @property
    def rule_version(self) -> int:
        """The version of the rule document the fares come from (0: none), for the upload batch."""
        return int(getattr(self.fare, "version", 0))

    def _now(self) -> dt.datetime:
        return self.clock() if self.clock else dt.datetime.now(BEIJING)

    def tap(self) -> TapResult:
        started = time.perf_counter()
        io = _IoTimer(self.transport)
        channel = CardChannel(io)
        try:
            io.timed(self.transport.open)
        except ReaderError as exc:
            return TapResult("no_card", str(exc))
        try:
            result = self._tap(channel)
        except CardRemoved as exc:
            result = TapResult("retap", i18n.said(N_("card removed: %(exc)s; tap again"), exc=exc))
        except CardLocked as exc:
            result = TapResult("blocked", i18n.said(N_("card locked (应用锁定): %(exc)s"), exc=exc))
        except SamError as exc:  # before ReaderError: a PSAM failure is the terminal's, not the card's
            result = TapResult("error", str(exc))
        except (CardProtocolError, CardNumberError) as exc:
            result = TapResult("error", i18n.said(N_("card refused: %(exc)s"), exc=exc))
        except ReaderError as exc:
            result = TapResult("error", i18n.said(N_("reader: %(exc)s"), exc=exc))
        except FareError as exc:  # a route the rule document does not price: no debit
            result = TapResult("error", i18n.said(N_("fare: %(exc)s"), exc=exc))
        finally:
            io.timed(self.transport.close)
        result.card_io_s = io.spent
        result.terminal_work_s = time.perf_counter() - started - io.spent
        return result

    def ride_code(self, token: str) -> TapResult:
        """A ride paid by the citizen code the rider shows (电子市民码乘车, fare medium 04): ``code_ride``
        with this validator's queue, fares, hotlist, route, clock and PSAM's terminal number."""
        started = time.perf_counter()
        if self.codes is None:
            raise ValueError("this validator has no code scanner")
        if self.gate:
            result = TapResult(
                "declined",
                i18n.said(N_("a metro gate keeps the entry on the card: it takes no citizen code")),
            )
        else:
            result = code_ride(
                token=token,
                codes=self.codes,
                store=self.store,
                fare=self.fare,
                tenant=self.tenant,
                service=self.service,
                route=self.route,
                terminal_no=self.sam.terminal_id.hex(),
                hotlist=self.hotlist,
                at=self._now(),
                codec=self._trip_codec(),
            )
        result.terminal_work_s = time.perf_counter() - started
        return result

    # --- the steps -----------------------------------------------------------------------------------

    def _expect(self, response: A.Response, what: str, length: int | None = None) -> bytes:
        if not response.ok:
            raise CardProtocolError(
                i18n.said(N_("%(what)s: %(describe)s"), what=what, describe=response.describe())
            )
        if length is not None and len(response.data) != length:
            raise CardProtocolError(
                i18n.said(
                    N_("%(what)s: %(data)s bytes instead of %(length)s"),
                    what=what,
                    data=len(response.data),
                    length=length,
                )
            )
        return response.data

    def read_card(self, channel: CardChannel) -> tuple[CardInfo, bool]:
        selected = channel.send(A.select_aid())
        if selected.sw == A.SW_APPLICATION_LOCKED:
            raise CardLocked(
                i18n.said(N_("the e-purse application is locked (9303); the card goes to a service point"))
            )
        blocked = selected.sw == A.SW_FILE_INVALIDATED
        if not blocked:
            self._expect(selected, "SELECT")
        public = self._expect(channel.send(A.read_binary(A.SFI_PUBLIC, 30)), "READ BINARY 15", 30)
        management = self._expect(channel.send(A.read_binary(A.SFI_MANAGEMENT, 60)), "READ BINARY 17", 60)
        card_no = card_number_from_bcd(public[10:20])
        card_number_parse(card_no)
        if card_no[:6] != public[0:3].hex():
            raise CardProtocolError(
                i18n.said(
                    N_("issuer %(hex)s does not match card number %(no)s"), hex=public[0:3].hex(), no=card_no
                )
            )
        categories = frozenset(name for name, bit in CATEGORY_BITS.items() if management[1] & bit)
        passes = frozenset(name for name, bit in PASS_BITS.items() if management[2] & bit)
        info = CardInfo(
            card_no=card_no,
            issuer=card_no[:6],
            scheme_code=management[0:1].hex(),
            categories=categories,
            valid_from=_bcd_to_date(public[20:24]),
            valid_to=_bcd_to_date(public[24:28]),
            passes=passes,
            issuer_id=public[0:8],
            serial=public[12:20],
        )
        return info, blocked

    def _tap(self, channel: CardChannel) -> TapResult:
        card, blocked = self.read_card(channel)
        now = self._now()
        if blocked:
            return TapResult("blocked", i18n.said(N_("card blocked (挂失/黑名单卡)")), card_no=card.card_no)
        if self.hotlist.blocks(card.card_no, at=now):
            self._block(channel, card)
            return TapResult(
                "blocked", i18n.said(N_("card is on the hotlist and is now blocked")), card_no=card.card_no
            )
        if not card.valid_from <= now.date() <= card.valid_to:
            return TapResult("declined", i18n.said(N_("card expired or not yet valid")), card_no=card.card_no)
        torn = self.store.torn_for(card.card_no)
        if torn is not None:
            retap = self._recover(channel, torn, now)
            if retap is not None:
                return retap
        if self.gate:
            return self._gate_tap(channel, card, now)
        trip = TripInfo(tenant=self.tenant, service=self.service, route=self.route, at=now)
        said = self._read_trip(channel)  # the card's transit record: what it says of the journey
        codec = self._trip_codec()
        quote = self.fare.quote(card, trip, card_state(codec, said))
        if quote.fare_fen < 0:
            raise CardProtocolError(i18n.said(N_("the fare calculator returned a negative fare")))
        return self._debit(
            channel, card, quote, now, said=said, new_trip=None if said is None else codec.encode(quote.state)
        )

    def _gate_tap(self, channel: CardChannel, card: CardInfo, now: dt.datetime) -> TapResult:
        """A metro gate: the entry writes the entry into the card's transit record (and debits the entry
        amount, or an earlier journey's incomplete fare); the exit reads it, prices entry -> exit and
        debits — each one composite purchase (transaction type 09), so the record changes with the debit
        or not at all. Gate rules and prices: ``FareEngine.entry``/``exit``."""
        said = self._read_trip(channel)
        if said is None:
            raise CardProtocolError(
                i18n.said(N_("the card has no transit record (SFI 19): it cannot pass a gate"))
            )
        codec = self._trip_codec()
        state = card_state(codec, said)
        extra: dict[str, Any] = {"gate": self.gate, "station": self.station}
        if self.gate == "entry":
            trip = TripInfo(self.tenant, self.service, self.route, now, origin=self.station)
            quote = self.fare.entry(card, trip, state, terminal=self.sam.terminal_id.hex())
        elif self.gate == "exit":
            trip = TripInfo(self.tenant, self.service, self.route, now, destination=self.station)
            entry = state.get("e")
            if entry:
                at = dt.datetime.fromtimestamp(entry["t"] * 60, BEIJING)
                extra.update(
                    entry_station=entry["s"],
                    entry_line=entry["l"],
                    entry_at=at.isoformat(timespec="seconds"),
                    entry_terminal=entry["tm"],
                )
            quote = self.fare.exit(card, trip, state)
        else:
            raise CardProtocolError(i18n.said(N_("gate %(gate)r is neither entry nor exit"), gate=self.gate))
        if quote.fare_fen < 0:
            raise CardProtocolError(i18n.said(N_("the fare calculator returned a negative fare")))
        return self._debit(
            channel, card, quote, now, said=said, new_trip=codec.encode(quote.state), extra=extra
        )

    def _trip_codec(self) -> TripCodec:
        if self._codec is None or self._codec[0] is not self.fare:
            self._codec = (self.fare, TripCodec.for_fare(self.fare))
        return self._codec[1]

    def _read_trip(self, channel: CardChannel) -> bytes | None:
        """The card's transit record, or None for a card without one (a plain purchase, no journey)."""
        response = channel.send(A.read_record(A.SFI_TRANSIT, A.TRANSIT_RECORD_ID, A.TRANSIT_RECORD_SIZE))
        if response.sw in (A.SW_FILE_NOT_FOUND, A.SW_RECORD_NOT_FOUND):
            return None
        return self._expect(response, "READ RECORD of the transit record", A.TRANSIT_RECORD_SIZE)

    def _debit(
        self,
        channel: CardChannel,
        card: CardInfo,
        quote: Quote,
        now: dt.datetime,
        *,
        said: bytes | None = None,
        new_trip: bytes | None = None,
        extra: dict[str, Any] | None = None,
    ) -> TapResult:
        """The purchase: composite (the new transit record written with the debit) when ``new_trip`` is
        given, plain otherwise."""
        composite = new_trip is not None
        init = channel.send(
            A.initialize_purchase(
                key_index=1, amount=quote.fare_fen, terminal_id=self.sam.terminal_id, composite=composite
            )
        )
        if init.sw == A.SW_INSUFFICIENT_BALANCE:
            return TapResult(
                "declined",
                i18n.said(N_("insufficient balance (余额不足)")),
                card_no=card.card_no,
                fare_fen=quote.fare_fen,
            )
        data = self._expect(init, "INITIALIZE FOR PURCHASE", 15)
        balance, atc = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:6], "big")
        algorithm = _algorithm(data[10])
        random = data[11:15]
        if balance < quote.fare_fen:
            raise CardProtocolError(
                i18n.said(N_("card reported a balance below the fare but did not refuse"))
            )
        if new_trip is not None:  # cached by the card, written only with the debit
            self._expect(channel.send(A.update_capp_data_cache(new_trip)), "UPDATE CAPP DATA CACHE")
        kind = A.COMPOSITE if composite else A.PURCHASE
        date, tod = bytes.fromhex(now.strftime("%Y%m%d")), bytes.fromhex(now.strftime("%H%M%S"))
        auth = self.sam.purchase(
            card_serial=card.serial,
            issuer_id=card.issuer_id,
            key_version=data[9],
            algorithm=algorithm,
            random=random,
            atc=atc,
            amount=quote.fare_fen,
            kind=kind,
            date=date,
            time=tod,
        )
        seq = auth.terminal_seq
        record = {
            "card_no": card.card_no,
            "issuer": card.issuer,
            "card_counter": atc,
            "terminal_seq": seq,
            "amount_fen": quote.fare_fen,
            "balance_before_fen": balance,
            "balance_after_fen": balance - quote.fare_fen,
            "tapped_at": now.isoformat(timespec="seconds"),
            "service": self.service,
            "route": self.route,
            "tac": "",
            "kind": "purchase",
            "status": "pending",
            "card_scheme": card.scheme_code,
            "categories": sorted(card.categories),
            "passes": sorted(card.passes),  # what the fare was priced with, for the back office's recheck
            "fare_rule_id": quote.rule_id,
            "algorithm": int(algorithm),
            "terminal_no": self.sam.terminal_id.hex(),
            "tx_type": kind,  # 06 purchase, 09 composite: in MAC1, the TAC and the card's log
        }
        if said is not None:
            record["card_trip"] = said.hex()  # the transit record the fare was priced from
        if extra:
            record.update(extra)
        tap_id = self.store.tap_pending(record)
        try:
            response = channel.send(A.debit_purchase(terminal_seq=seq, date=date, time=tod, mac1=auth.mac1))
        except CardRemoved:
            self.store.tap_torn(tap_id)
            raise
        if response.sw == A.SW_BAD_MAC:
            self.store.tap_void(tap_id)  # the card refused MAC1: nothing was debited
            raise CardProtocolError(i18n.said(N_("the card refused MAC1 (9302): SAM and card keys disagree")))
        out = response.data
        if not response.ok or len(out) != 8 or not self.sam.mac2_valid(out[4:8]):
            # The card may have debited but did not prove it: unproven, resolved by PROVE on the next tap.
            self.store.tap_torn(tap_id)
            return TapResult(
                "retap",
                i18n.said(
                    N_("DEBIT answer not proven (%(describe)s); tap again"), describe=response.describe()
                ),
                card_no=card.card_no,
            )
        tac = out[0:4]
        record.update(tac=tac.hex(), status="complete")
        self.store.tap_complete(tap_id, record)
        return TapResult(
            "approved",
            i18n.said(N_("ok")),
            card_no=card.card_no,
            fare_fen=quote.fare_fen,
            balance_fen=balance - quote.fare_fen,
            record=record,
        )

    def _recover(self, channel: CardChannel, torn: StoredTap, now: dt.datetime) -> TapResult | None:
        """The card of a torn tap is back: settle the torn record from what the card says now
        (``citycard.terminal_kit.recovery``). Returns the result when this tap is the rider's retap of a
        debit that happened (no second charge), else None: the tap goes on as a new ride."""
        record = dict(torn.record)
        try:
            init = self._expect(
                channel.send(A.initialize_purchase(key_index=1, amount=0, terminal_id=self.sam.terminal_id)),
                "INITIALIZE FOR PURCHASE",
                15,
            )
            atc_now = int.from_bytes(init[4:6], "big")
            verdict = torn_decide(record, atc_now=atc_now, log=lambda n: self._log_entry(channel, n))
        except CardProtocolError as exc:
            verdict, atc_now = Verdict("undecided", f"the card's answers: {exc}"), -1
        if verdict.outcome == "not_happened":
            self.store.tap_void(torn.id)
            return None
        record["recovery"] = verdict.reason
        if verdict.outcome == "undecided":
            record.update(tac=UNDECIDED_TAC, status="torn_undecided")
            self.store.tap_complete(torn.id, record)
            return None
        last = atc_now == record["card_counter"] + 1  # our debit is still the card's last one
        proof = (
            channel.send(A.get_transaction_prove(atc=atc_now, kind=record.get("tx_type", A.PURCHASE)))
            if last
            else None
        )
        if proof is not None and proof.ok and len(proof.data) == 8:
            record.update(tac=proof.data[4:8].hex(), status="torn_resolved")
        else:  # the card's log record stands in for the TAC the card no longer gives
            record.update(
                tac=verdict.entry.raw.hex() if verdict.entry else UNDECIDED_TAC, status="torn_unproven"
            )
        self.store.tap_complete(torn.id, record)
        if not last or now - dt.datetime.fromisoformat(record["tapped_at"]) > RETAP_WINDOW:
            return None  # a new ride: it pays
        return TapResult(
            "approved",
            i18n.said(N_("earlier tap completed (no second charge)")),
            card_no=record["card_no"],
            fare_fen=record["amount_fen"],
            balance_fen=record["balance_after_fen"],
            record=record,
        )

    def _log_entry(self, channel: CardChannel, n: int) -> LogEntry | None:
        """The card's n-th newest log record, or None past the end."""
        response = channel.send(A.read_record(A.SFI_LOG, n, A.LOG_RECORD_SIZE))
        if response.sw == A.SW_RECORD_NOT_FOUND:
            return None
        try:
            return LogEntry.parse(self._expect(response, f"READ RECORD {n} of the log", A.LOG_RECORD_SIZE))
        except ValueError as exc:
            raise CardProtocolError(i18n.text_of(exc)) from exc

    def _block(self, channel: CardChannel, card: CardInfo) -> None:
        """APPLICATION BLOCK under the card's own algorithm: INITIALIZE FOR PURCHASE of 0 fen says which
        (SM4 or 3DES) without changing anything on the card."""
        init = self._expect(
            channel.send(A.initialize_purchase(key_index=1, amount=0, terminal_id=self.sam.terminal_id)),
            "INITIALIZE FOR PURCHASE",
            15,
        )
        challenge = self._expect(channel.send(A.get_challenge()), "GET CHALLENGE", 4)
        mac = self.sam.block_mac(
            card_serial=card.serial,
            issuer_id=card.issuer_id,
            key_version=init[9],
            algorithm=_algorithm(init[10]),
            challenge=challenge,
        )
        self._expect(channel.send(A.application_block(mac)), "APPLICATION BLOCK")


CODE_MEDIUM = "04"  # the fare medium of a ride paid by the citizen code (the record's card_scheme)


def code_ride(
    *,
    token: str,
    codes: EcodeVerifier,
    store: TapStore,
    fare: FareCalculator,
    tenant: str,
    service: str,
    route: str,
    terminal_no: str,
    hotlist: Hotlist,
    at: dt.datetime,
    codec: TripCodec | None = None,
) -> TapResult:
    """Take a ride by citizen code (电子市民码乘车): verify the code offline (``EcodeVerifier.check`` at
    ``at``: shape, issuer's key and signature, fields, the card its signer's, validity), refuse a card on
    the hotlist, price the ride, then spend the nonce and queue the ride in one transaction
    (``TapStore.code_ride_record``: a code shown again is refused as ``replayed``).

    The terminal reads no card, so it knows of the rider only the card number the code names: the ride is
    priced for fare medium ``04`` (the rule document's rules for that medium, else the standard fare), with
    no concession category, no pass and no journey (a code carries no transfer, cap or quota state); the
    record says so (``card_scheme`` 04, no categories, ``card_trip`` an empty transit record), and the back
    office re-prices it the same way. The fare is owed from the cardholder's online account or credit line
    (the back office books it after verifying the code again); the record carries the code as scanned,
    ``balance_before_fen`` 0 and ``balance_after_fen`` minus the fare (no e-purse moved), and, where a chip's
    TAC would be, the first 4 bytes of SHA-256 of the code (no card signed the ride)."""
    try:
        payload = codes.check(token, at=at.timestamp())
    except CodeRefused as exc:
        return TapResult("declined", refusal_said(exc), refusal=exc.code)
    card_no = payload["card_no"]
    if hotlist.blocks(card_no, at=at):
        return TapResult(
            "blocked", i18n.said(N_("card is on the hotlist: its citizen code is refused")), card_no=card_no
        )
    card = CardInfo(
        card_no=card_no,
        issuer=card_no[:6],
        scheme_code=CODE_MEDIUM,
        categories=frozenset(),
        valid_from=at.date(),
        valid_to=at.date(),
    )
    try:
        quote = fare.quote(card, TripInfo(tenant=tenant, service=service, route=route, at=at), {})
    except FareError as exc:
        return TapResult("error", i18n.said(N_("fare: %(exc)s"), exc=exc), card_no=card_no)
    if quote.fare_fen < 0:
        return TapResult(
            "error", i18n.said(N_("the fare calculator returned a negative fare")), card_no=card_no
        )
    codec = codec or TripCodec.for_fare(fare)
    record = {
        "card_no": card_no,
        "issuer": card_no[:6],
        "amount_fen": quote.fare_fen,
        "balance_before_fen": 0,
        "balance_after_fen": -quote.fare_fen,
        "tapped_at": at.isoformat(timespec="seconds"),
        "service": service,
        "route": route,
        "tac": hashlib.sha256(token.encode()).digest()[:4].hex(),
        "kind": "purchase",
        "status": "complete",
        "card_scheme": CODE_MEDIUM,
        "categories": [],
        "passes": [],
        "fare_rule_id": quote.rule_id,
        "algorithm": int(Algorithm.SM4),
        "terminal_no": terminal_no,
        "card_trip": codec.encode({}).hex(),  # the (empty) trip state the fare was priced from
        "code": token,
    }
    kept = store.code_ride_record(
        record=record,
        tenant=payload["tenant"],
        nonce=payload["nonce"],
        forget_after=payload["exp"] + CLOCK_ALLOWANCE_S,
        now=int(at.timestamp()),
    )
    if kept is None:
        refused = CodeRefused("this code was already used", code="replayed")
        return TapResult("declined", refusal_said(refused), card_no=card_no, refusal=refused.code)
    return TapResult(
        "approved",
        i18n.said(N_("ok (citizen code: the fare is charged to the cardholder's account)")),
        card_no=card_no,
        fare_fen=quote.fare_fen,
        record=kept,
    )


def _algorithm(raw: int) -> Algorithm:
    try:
        return Algorithm(raw)
    except ValueError as exc:
        raise CardProtocolError(f"unknown algorithm id {raw:02X}") from exc


class _IoTimer:
    """Wraps a transport to measure the time spent in card I/O."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.spent = 0.0

    def transmit(self, command: bytes) -> bytes:
        return self.timed(self._transport.transmit, command)

    def timed(self, call, *args):
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.spent += time.perf_counter() - started
