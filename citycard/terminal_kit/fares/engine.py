"""The fare evaluator (计费): one pure function of rule document, card facts, trip and card state.

Terminals price taps with it offline; the back office previews fares and rechecks uploaded taps with
the same code. The order of evaluation (docs/fares.md has the long form):

1. **Who rides:** a card issued by one of the document's ``home_divisions`` is local; any other card
   is a visitor and gets the visitor policy for its home tenant, else its network, else the default —
   ``host_rules`` (the host's rules as for a local card, home categories not honoured),
   ``home_category`` (host's rules and the card's categories honoured) or ``no_concession`` (base fare).
2. **Base fare:** the fare product of highest priority for the service and route — and, for a journey
   from an entry station to an exit station (``Trip.origin``/``destination``), for their areas; its
   amount, or the cell of its distance table for the shortest way inside the gates.
3. **Leg rules:** every rule matching service, route set, timeframe, validity dates, rider categories,
   fare media (card scheme), passes and remaining quota is traced; the highest priority wins (ties,
   refused at publication, fall to the lower id).
4. **Transfer:** within a transfer rule's window and transfer count, the GTFS-Fares v2 price —
   type 0 (A+AB): this leg costs AB; type 1 (A+AB+B): B + AB; type 2 (AB): AB minus what the journey
   already paid — applies when cheaper than the leg fare.
5. **Caps:** each matching day/month cap limits the fare to what is left under it.

The state (``{"j": journey, "q": quota use, "c": cap spend}``, and ``"e"``: a metro entry not yet closed)
is small, JSON-safe, and never mutated: the quote returns the new state, which the caller keeps only if
the debit went through. ``entry`` and ``exit`` are the metro gates' (the gate rules: entry amount,
incomplete journeys, exit without entry, same-station exit).
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.fares.document import (
    CompiledRules,
    LegRule,
    Product,
    TransferRule,
    compile_document,
)
from citycard.terminal_kit.i18n import N_, said

_CACHE_LIMIT = 4096


class FareError(ValueError):
    """The trip cannot be priced (no fare product covers its service and route)."""


class CardFacts(Protocol):
    """What the evaluator needs of a card (terminal_kit.tap.CardInfo has these)."""

    issuer: str  # the issuer's 6-digit division code (first digits of the card number)
    scheme_code: str  # card scheme = fare media: 01 main card, 02 new-resident, 03 city pass, 04 e-code
    categories: frozenset[str]


class TripFacts(Protocol):
    service: str
    route: str
    at: dt.datetime  # aware


@dataclass(frozen=True)
class Card:
    """Card facts for callers that have no CardInfo (back office, CLI, tests)."""

    issuer: str
    scheme_code: str = "01"
    categories: frozenset[str] = frozenset()
    passes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Trip:
    service: str
    route: str
    at: dt.datetime
    tenant: str = ""
    origin: str | None = None  # the entry station (a gated journey, 进站)
    destination: str | None = None  # the exit station (出站)


@dataclass(frozen=True)
class FareQuote:
    fare_fen: int
    base_fen: int
    state: dict[str, Any]
    trace: tuple[str, ...]
    rule_id: str  # what set the fare: the winning leg rule, transfer, cap, or the base product
    matched: tuple[str, ...]  # every leg rule that matched, winner first
    winner: str | None  # the winning leg rule
    rule_version: int


def _period_key(period: str, day: dt.date) -> int:
    return day.toordinal() if period == "day" else day.year * 12 + day.month - 1


class FareEngine:
    """A compiled rule document with lookups memoised per (service, route)."""

    def __init__(self, rules: CompiledRules) -> None:
        self.rules = rules
        self.version = rules.version
        self.tenant = rules.tenant
        # Sorted once: highest priority first, then id, so the first match is the winner.
        self._products = sorted(rules.products, key=lambda p: (-p.priority, p.id))
        self._legs = sorted(rules.leg_rules, key=lambda r: (-r.priority, r.id))
        self._transfers = sorted(rules.transfer_rules, key=lambda t: (-t.priority, t.id))
        self._route_products: dict[tuple[str, str], tuple[Product, ...]] = {}
        self._route_legs: dict[tuple[str, str], tuple[LegRule, ...]] = {}
        self._route_transfers: dict[tuple[str, str, str, str], tuple[TransferRule, ...]] = {}
        self._distances: dict[tuple[str, str], dict[str, int]] = {}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> FareEngine:
        return cls(compile_document(payload))

    def prices(self, service: str, route: str) -> bool:
        """Whether some fare product covers ``route`` of ``service`` (a terminal set up on another route
        would refuse every tap with a FareError)."""
        return bool(self._products_for(service, route))

    # --- memoised lookups -----------------------------------------------------------------------------

    def _products_for(self, service: str, route: str) -> tuple[Product, ...]:
        key = (service, route)
        found = self._route_products.get(key)
        if found is None:
            found = tuple(
                p
                for p in self._products
                if p.service == service and (p.route_set is None or p.route_set.contains(route))
            )
            if len(self._route_products) > _CACHE_LIMIT:
                self._route_products.clear()
            self._route_products[key] = found
        return found

    def _legs_for(self, service: str, route: str) -> tuple[LegRule, ...]:
        key = (service, route)
        found = self._route_legs.get(key)
        if found is None:
            found = tuple(
                r
                for r in self._legs
                if (r.service is None or r.service == service)
                and (r.route_set is None or r.route_set.contains(route))
            )
            if len(self._route_legs) > _CACHE_LIMIT:
                self._route_legs.clear()
            self._route_legs[key] = found
        return found

    def _transfers_for(self, from_service: str, from_route: str, service: str, route: str) -> tuple:
        key = (from_service, from_route, service, route)
        found = self._route_transfers.get(key)
        if found is None:
            found = tuple(
                t
                for t in self._transfers
                if (t.from_service is None or t.from_service == from_service)
                and (t.to_service is None or t.to_service == service)
                and (t.from_route_set is None or t.from_route_set.contains(from_route))
                and (t.to_route_set is None or t.to_route_set.contains(route))
            )
            if len(self._route_transfers) > _CACHE_LIMIT:
                self._route_transfers.clear()
            self._route_transfers[key] = found
        return found

    def distance(self, measure: str, origin: str, destination: str) -> int:
        """The shortest distance inside the gates in metres (``km``) or stations (``stations``); lines
        meet at shared stations and at joins. FareError when the stations are not connected."""
        key = (measure, origin)
        found = self._distances.get(key)
        if found is None:
            if origin not in self.rules.stops:
                raise FareError(
                    said(
                        N_("station %(origin)r is not in the rules (v%(version)s)"),
                        origin=origin,
                        version=self.version,
                    )
                )
            weight = 1 if measure == "km" else 2
            found = {origin: 0}
            heap = [(0, origin)]
            graph = self.rules.graph
            while heap:
                d, stop = heapq.heappop(heap)
                if d > found[stop]:
                    continue
                for edge in graph.get(stop, ()):
                    nd = d + edge[weight]
                    if nd < found.get(edge[0], nd + 1):
                        found[edge[0]] = nd
                        heapq.heappush(heap, (nd, edge[0]))
            if len(self._distances) > _CACHE_LIMIT:
                self._distances.clear()
            self._distances[key] = found
        d = found.get(destination)
        if d is None:
            raise FareError(
                said(
                    N_("no way inside the gates from %(origin)s to %(destination)s (rules v%(version)s)"),
                    origin=origin,
                    destination=destination,
                    version=self.version,
                )
            )
        return d

    def _base(self, product: Product, trip: TripFacts) -> tuple[int, str]:
        """A product's base fare for the trip and the trace line saying where it came from."""
        origin, destination = getattr(trip, "origin", None), getattr(trip, "destination", None)
        pair = ""
        if product.from_area is not None or product.to_area is not None:
            pair = (
                f" for areas {product.from_area.id if product.from_area else '*'} -> "
                f"{product.to_area.id if product.to_area else '*'}"
            )
        if product.table is None:
            return product.amount_fen, f"base: product {product.id}{pair} {product.amount_fen} fen"
        table = product.table
        if table.measure == "od":
            priced = table.price_pair(origin, destination)
            if priced is None:
                raise FareError(
                    said(
                        N_("table %(id)s has no fare for %(origin)s -> %(destination)s (v%(version)s)"),
                        id=table.id,
                        origin=origin,
                        destination=destination,
                        version=self.version,
                    )
                )
            fare, cell = priced
            return fare, f"base: product {product.id}{pair}, {cell}"
        fare, cell = table.price(self.distance(table.measure, origin, destination))
        return fare, f"base: product {product.id}{pair}, {cell}"

    @staticmethod
    def _fits(product: Product, origin: str | None, destination: str | None) -> bool:
        if not product.needs_stations:
            return True
        if origin is None or destination is None:
            return False
        return (product.from_area is None or origin in product.from_area.stops) and (
            product.to_area is None or destination in product.to_area.stops
        )

    # --- gates: tap-in, tap-out ------------------------------------------------------------------------

    def gate_rules(self, service: str) -> Any:
        rules = self.rules.gates.get(service)
        if rules is None:
            raise FareError(
                said(
                    N_("no gate rules for %(service)s (rules v%(version)s)"),
                    service=service,
                    version=self.version,
                )
            )
        return rules

    def entry(
        self, card: CardFacts, trip: TripFacts, state: Mapping[str, Any] | None = None, *, terminal: str = ""
    ) -> FareQuote:
        """The entry gate (进站): writes the entry into the state; debits the configured entry amount and,
        when the card's last entry was never closed by an exit, the incomplete-journey fare."""
        state = dict(state or {})
        gates = self.gate_rules(trip.service)
        station = getattr(trip, "origin", None)
        if station not in self.rules.stops:
            raise FareError(
                said(
                    N_("entry station %(station)r is not in the rules (v%(version)s)"),
                    station=station,
                    version=self.version,
                )
            )
        now_min = int(trip.at.timestamp()) // 60
        trace = [f"entry at {station} line {trip.route}"]
        fare, rule_id = gates.entry_fen, "gate:entry"
        open_entry = state.get("e")
        if open_entry:
            late = now_min - open_entry["t"] > gates.time_limit_minutes
            why = "over the time limit" if late else "never closed by an exit"
            trace.append(
                f"previous entry at {open_entry['s']} ({now_min - open_entry['t']} min ago) {why}: "
                f"incomplete journey {gates.incomplete_fen} fen"
            )
            fare += gates.incomplete_fen
            rule_id = "gate:incomplete"
        if gates.entry_fen:
            trace.append(f"entry deposit {gates.entry_fen} fen, taken off the fare at the exit")
        state.pop("~e", None)  # another city's unfinished entry: its own rules, not ours, would price it
        state["e"] = {"s": station, "l": trip.route, "t": now_min, "tm": terminal, "d": gates.entry_fen}
        trace.append(f"fare {fare} fen (rule {rule_id})")
        return FareQuote(fare, fare, state, tuple(trace), rule_id, (), None, self.version)

    def exit(self, card: CardFacts, trip: TripFacts, state: Mapping[str, Any] | None = None) -> FareQuote:
        """The exit gate (出站): prices entry -> exit with :meth:`quote` (areas, distance table, rider,
        leg rules, transfer, caps), less the entry deposit; or the gate rules' fare for an exit without an
        entry, too late, or at the entry station within the same-station window. Clears the entry."""
        state = dict(state or {})
        gates = self.gate_rules(trip.service)
        station = getattr(trip, "destination", None)
        if station not in self.rules.stops:
            raise FareError(
                said(
                    N_("exit station %(station)r is not in the rules (v%(version)s)"),
                    station=station,
                    version=self.version,
                )
            )
        now_min = int(trip.at.timestamp()) // 60
        entry = state.pop("e", None)
        # An entry written by another city's gate (``~e``: another owner's stations) is no valid entry
        # here: this city's rule for an exit without an entry applies, and the exit closes it (the card
        # has left the gates; the other city would otherwise charge it again as incomplete).
        foreign = state.pop("~e", None)
        if not entry:
            trace = (
                f"exit at {station} without an entry"
                + (" (the card's entry is another city's gate)" if foreign else "")
                + f": penalty {gates.no_entry_fen} fen",
            )
            fare, rule_id = gates.no_entry_fen, "gate:no-entry"
        else:
            minutes = now_min - entry["t"]
            if minutes > gates.time_limit_minutes or minutes < 0:
                trace = (
                    f"entry at {entry['s']} {minutes} min ago, over the {gates.time_limit_minutes} min "
                    f"limit: incomplete journey {gates.incomplete_fen} fen",
                )
                fare, rule_id = gates.incomplete_fen, "gate:incomplete"
            elif entry["s"] == station and minutes <= gates.same_station_minutes:
                trace = (
                    f"exit at the entry station {station} after {minutes} min "
                    f"(<= {gates.same_station_minutes}): {gates.same_station_fen} fen",
                )
                fare, rule_id = max(0, gates.same_station_fen - entry.get("d", 0)), "gate:same-station"
            else:
                journey = Trip(
                    service=trip.service,
                    route=entry.get("l") or trip.route,
                    at=trip.at,
                    origin=entry["s"],
                    destination=station,
                )
                quote = self.quote(card, journey, state)
                paid = entry.get("d", 0)
                fare = max(0, quote.fare_fen - paid)
                trace = (f"journey {entry['s']} -> {station}, {minutes} min", *quote.trace)
                if paid:
                    trace += (f"entry deposit {paid} fen taken off: {fare} fen",)
                return FareQuote(
                    fare,
                    quote.base_fen,
                    quote.state,
                    trace,
                    quote.rule_id,
                    quote.matched,
                    quote.winner,
                    self.version,
                )
        return FareQuote(fare, fare, state, trace, rule_id, (), None, self.version)

    # --- evaluation -----------------------------------------------------------------------------------

    def quote(self, card: CardFacts, trip: TripFacts, state: Mapping[str, Any] | None = None) -> FareQuote:
        state = state or {}
        local_at = trip.at.astimezone(BEIJING)
        day = local_at.date()
        weekday = local_at.isoweekday()
        minute_of_day = local_at.hour * 60 + local_at.minute
        now_min = int(trip.at.timestamp()) // 60
        service, route = trip.service, trip.route
        trace: list[str] = []

        # 1. who rides
        issuer = card.issuer
        if issuer in self.rules.home_divisions:
            policy, categories, passes = "local", card.categories, getattr(card, "passes", frozenset())
            trace.append(f"rider: local card ({issuer}), scheme {card.scheme_code}")
        else:
            policy, why = self.rules.visitors.for_issuer(issuer)
            categories = card.categories if policy == "home_category" else frozenset()
            passes = frozenset()  # a pass is a product of its home city
            trace.append(
                f"rider: visitor card from {issuer}, policy {policy} ({why}), scheme {card.scheme_code}"
            )

        # 2. base fare
        origin, destination = getattr(trip, "origin", None), getattr(trip, "destination", None)
        base_product = None
        for product in self._products_for(service, route):
            if (
                (product.valid_from is None or product.valid_from <= day)
                and (product.valid_to is None or day <= product.valid_to)
                and self._fits(product, origin, destination)
            ):
                base_product = product
                break
        if base_product is None:
            values = {"service": service, "route": route, "day": day, "version": self.version}
            if origin or destination:
                template = N_(
                    "no fare product for %(service)s route %(route)s from %(origin)s to %(destination)s on"
                    " %(day)s (rules v%(version)s)"
                )
                values |= {"origin": origin, "destination": destination}
            else:
                template = N_(
                    "no fare product for %(service)s route %(route)s on %(day)s (rules v%(version)s)"
                )
            raise FareError(said(template, **values))
        base, line = self._base(base_product, trip)
        trace.append(line)
        if policy == "no_concession":
            trace.append(f"fare {base} fen: no concession for this visitor (base fare, no transfer or cap)")
            return FareQuote(base, base, dict(state), tuple(trace), base_product.id, (), None, self.version)

        # 3. leg rules
        quota_state: Mapping[str, Any] = state.get("q", {})
        matched: list[LegRule] = []
        scheme = card.scheme_code
        for rule in self._legs_for(service, route):
            if rule.valid_from is not None and day < rule.valid_from:
                continue
            if rule.valid_to is not None and day > rule.valid_to:
                continue
            if rule.timeframe is not None and not rule.timeframe.contains(weekday, minute_of_day):
                continue
            if rule.riders != "any" and (rule.riders == "local") != (policy == "local"):
                continue
            if rule.media and scheme not in rule.media:
                continue
            if rule.categories and not (rule.categories & categories):
                continue
            if rule.passes and not (rule.passes & passes):
                continue
            if rule.from_area is not None and origin not in rule.from_area.stops:
                continue
            if rule.to_area is not None and destination not in rule.to_area.stops:
                continue
            if rule.quota is not None:
                quota = rule.quota
                used = quota_state.get(quota.id)
                count = used[1] if used and used[0] == _period_key(quota.period, day) else 0
                if count >= quota.rides:
                    trace.append(f"skipped {rule.id}: quota {quota.id} used up ({count}/{quota.rides})")
                    continue
            matched.append(rule)
        winner = matched[0] if matched else None
        for rule in matched:
            trace.append(
                f"matched {rule.id} (priority {rule.priority}): {rule.describe()} -> {rule.price(base)} fen"
            )
        if winner is not None:
            fare = winner.price(base)
            rule_id = winner.id
            trace.append(f"winner {winner.id}: {fare} fen")
        else:
            fare, rule_id = base, base_product.id
            trace.append(f"no leg rule matched: base fare {base} fen")

        # 4. transfer
        journey = state.get("j")
        transfer = None
        if journey:
            for rule in self._transfers_for(journey["s"], journey["r"], service, route):
                since = now_min - (journey["t0"] if rule.measure == "first_tap" else journey["t"])
                if since < 0 or (rule.within_minutes is not None and since > rule.within_minutes):
                    continue
                if rule.max_transfers != -1 and journey["n"] >= rule.max_transfers:
                    trace.append(
                        f"transfer {rule.id}: already {journey['n']} of {rule.max_transfers} transfers"
                    )
                    continue
                if rule.transfer_type == 0:
                    price = rule.amount_fen
                elif rule.transfer_type == 1:
                    price = max(0, fare + rule.amount_fen)
                else:
                    price = max(0, rule.amount_fen - journey["p"])
                if price < fare:
                    trace.append(
                        f"transfer {rule.id} (type {rule.transfer_type}, {since} min, transfer "
                        f"{journey['n'] + 1}): {price} fen instead of {fare}"
                    )
                    fare, rule_id, transfer = price, rule.id, rule
                else:
                    trace.append(f"transfer {rule.id}: {price} fen is not cheaper than {fare}")
                break

        # 5. caps
        cap_state: Mapping[str, Any] = state.get("c", {})
        capped: list[tuple[str, int]] = []
        for cap in self.rules.caps:
            if cap.service is not None and cap.service != service:
                continue
            if cap.categories and not (cap.categories & categories):
                continue
            if cap.media and scheme not in cap.media:
                continue
            spent_entry = cap_state.get(cap.id)
            key = _period_key(cap.period, day)
            spent = spent_entry[1] if spent_entry and spent_entry[0] == key else 0
            left = max(0, cap.amount_fen - spent)
            capped.append((cap.id, key))
            if fare > left:
                trace.append(f"cap {cap.id} ({cap.period} {cap.amount_fen} fen, spent {spent}): {left} fen")
                fare, rule_id = left, cap.id

        # the new state
        new_state: dict[str, Any] = dict(state)
        if transfer is not None:
            new_state["j"] = {
                "t0": journey["t0"],
                "t": now_min,
                "n": journey["n"] + 1,
                "p": journey["p"] + fare,
                "s": service,
                "r": route,
            }
        else:
            new_state["j"] = {"t0": now_min, "t": now_min, "n": 0, "p": fare, "s": service, "r": route}
        if winner is not None and winner.quota is not None and transfer is None:
            quota = winner.quota
            key = _period_key(quota.period, day)
            used = quota_state.get(quota.id)
            count = used[1] if used and used[0] == key else 0
            new_state["q"] = {**quota_state, quota.id: [key, count + 1]}
            trace.append(f"quota {quota.id}: ride {count + 1} of {quota.rides} this {quota.period}")
        if capped:
            caps = dict(cap_state)
            for cap_id, key in capped:
                entry = caps.get(cap_id)
                caps[cap_id] = [key, (entry[1] if entry and entry[0] == key else 0) + fare]
            new_state["c"] = caps
        trace.append(f"fare {fare} fen (rule {rule_id})")
        return FareQuote(
            fare,
            base,
            new_state,
            tuple(trace),
            rule_id,
            tuple(r.id for r in matched),
            winner.id if winner else None,
            self.version,
        )
