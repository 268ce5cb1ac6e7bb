"""A simulated day of roaming in a network (模拟漫游日), for operators and clearing clerks trying the product.

``roaming_day_simulate`` does what a network's day does, through the real paths: in every member city it
registers a simulator terminal (``SIM-<NETWORK>-<CITY>``, its Ed25519 key kept in ``SIMULATOR_DIR``),
each member city issues test cards (scheme 03, city transit card; re-runs reuse them), riders present
those cards to the validators of the other member cities (``terminal_kit``: virtual cards, a PSAM, the
city's published fare rules, TACs under each issuer's key), each terminal's queue is signed into batches
and ingested by the acquirer exactly as an HTTP upload is (``terminals.ingest.batch_ingest``), and the
verification stage hands the roaming taps to the acquirers' outboxes for the day's clearing cycle.

Re-running for a network and date that already has simulated taps is refused (nothing written), naming
what is there; ``again=True`` adds another day's worth of rides on top (new taps, never a repeated one:
the cards' counters and the terminals' sequence numbers carry on, kept in ``SIMULATOR_DIR``,
``$CITYCARD_DATA_DIR/simulator`` unless ``CITYCARD_SIMULATOR_DIR`` names another).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context

from citycard.platform.errors import DomainError
from citycard.platform.keys import tenant_public_keys
from citycard.platform.models import Tenant, TenantKind
from citycard.platform.selectors import network_members
from citycard.platform.services import network_get
from citycard.tenants.cards.models import CardState
from citycard.tenants.cards.services import card_activate, card_apply, card_issue, card_produce, schemes_seed
from citycard.tenants.terminals.demo import _card_keys, _fare
from citycard.tenants.terminals.ingest import batch_ingest
from citycard.tenants.terminals.models import Terminal, Transaction
from citycard.tenants.terminals.services import terminal_key_rotate, terminal_register
from citycard.tenants.terminals.tasks import batches_verify_all
from citycard.terminal_kit.card.virtual import VirtualCard
from citycard.terminal_kit.day import BEIJING, Wallet, day_ride
from citycard.terminal_kit.devkeys import sim_psam_kept
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.sam import Psam
from citycard.terminal_kit.signing import public_key_bytes
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.tap import FixedFare, Validator

CARD_SCHEME = "03"  # 城市通卡: a transit card without real-name requirements
CARD_SOURCE = "roaming-simulate"
STEPS = (
    (CardState.APPLIED, card_produce),
    (CardState.PRODUCED, card_issue),
    (CardState.ISSUED, card_activate),
)
ROUTES = ("1", "11", "22", "101", "K1")  # tried in order: the first the city's fare rules price


@dataclass
class PairTotals:
    """What one host city's terminal took from one issuer's cards."""

    acquirer: str
    issuer: str
    taps: int = 0  # stored by the acquirer's ingestion
    roaming: int = 0  # of them, routed to the issuer for clearing
    amount_fen: int = 0


@dataclass
class RoamingDay:
    network: str
    business_date: dt.date
    taps: int
    outcomes: dict[str, int]
    pairs: list[PairTotals]
    terminals: list[str]
    cards: dict[str, int]  # issuer -> test cards ridden
    batches: int
    again: bool
    earlier_taps: int = 0
    verification: dict = field(default_factory=dict)


def _directory() -> Path:
    directory = Path(settings.SIMULATOR_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _terminal_key(
    terminal_id: str, *, operator: str, route: str, actor: str
) -> tuple[Ed25519PrivateKey, str]:
    """The simulator terminal of the current tenant, registered once, and its private key (kept in the data
    directory; a terminal registered elsewhere, whose key this directory lacks, gets a new key by rotation)."""
    path = _directory() / f"{terminal_id}.key.json"
    known = Terminal.objects.filter(terminal_id=terminal_id).first()
    if path.exists():
        held = json.loads(path.read_text())
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(held["key"]))
        if known is not None and known.keys.filter(key_id=held["key_id"], retired_at__isnull=True).exists():
            return key, held["key_id"]
    key = Ed25519PrivateKey.generate()
    if known is None:
        terminal_register(
            terminal_id=terminal_id,
            operator=operator,
            department="transport",
            service="bus",
            route=route,
            public_key=public_key_bytes(key),
            actor=actor,
        )
        key_id = f"{terminal_id}:k1"
    else:
        key_id = terminal_key_rotate(
            terminal_id=terminal_id, public_key=public_key_bytes(key), overlap=dt.timedelta(0), actor=actor
        ).key_id
    path.touch(mode=0o600)
    path.write_text(json.dumps({"key_id": key_id, "key": base64.b64encode(key.private_bytes_raw()).decode()}))
    return key, key_id


def _test_cards(city: Tenant, count: int, *, network: str, issued_at: dt.datetime, actor: str) -> list[str]:
    """``count`` active test cards of ``city`` (the same ones on every run: one application key each)."""
    numbers = []
    with tenant_context(city):
        schemes_seed(actor=actor)
        for n in range(1, count + 1):
            card = card_apply(
                scheme_code=CARD_SCHEME,
                source=CARD_SOURCE,
                request_key=f"{CARD_SOURCE}:{network}:{n}",
                actor=actor,
                at=issued_at,
            )
            for before, step in STEPS:  # a card an earlier run left half-way goes on from its state
                if card.state == before:
                    card = step(card_no=card.card_no, actor=actor, at=issued_at)
            numbers.append(card.card_no)
    return numbers


def _route(fare) -> str:
    if isinstance(fare, FixedFare):
        return ROUTES[0]
    return next((r for r in ROUTES if fare.prices("bus", r)), ROUTES[0])


@dataclass
class _Host:
    tenant: Tenant
    terminal_id: str
    key: Ed25519PrivateKey
    key_id: str
    validator: Validator


def _host(city: Tenant, network: str, divisions: set[str], actor: str) -> _Host:
    terminal_id = f"SIM-{network.upper()}-{city.code.upper()}"[:40]
    with tenant_context(city):
        fare = _fare(city)
        route = _route(fare)
        if not isinstance(fare, FixedFare) and not fare.prices("bus", route):
            fare = FixedFare(200)  # rules that price none of the routes tried: the fixed fare
        key, key_id = _terminal_key(
            terminal_id, operator=f"{city.name_zh}公交（模拟）", route=route, actor=actor
        )
    store = TapStore(_directory() / f"{terminal_id}.sqlite")
    psam = sim_psam_kept(
        memory=_directory() / f"{terminal_id}.psam.json",
        terminal_no=bytes.fromhex(f"{city.division_code}900001"),
        divisions=divisions,  # every member city's: a city that joined since is loaded at the next run
        audit=_directory() / "psam-audit.jsonl",
        actor=actor,
        ttc=store.last_terminal_seq(),
    )
    validator = Validator(
        transport=InProcessReader(),
        sam=Psam(InProcessReader(psam)),
        store=store,
        fare=fare,
        tenant=city.code,
        service="bus",
        route=route,
    )
    return _Host(tenant=city, terminal_id=terminal_id, key=key, key_id=key_id, validator=validator)


def _simulated_taps(cities: list[Tenant], network: str, day: dt.date) -> int:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=BEIJING)
    total = 0
    for city in cities:
        with tenant_context(city):
            total += Transaction.objects.filter(
                terminal_id=f"SIM-{network.upper()}-{city.code.upper()}"[:40],
                tapped_at__gte=start,
                tapped_at__lt=start + dt.timedelta(days=1),
            ).count()
    return total


def roaming_day_simulate(
    *,
    network_code: str,
    business_date: dt.date,
    taps: int,
    actor: str,
    seed: int | None = None,
    cards_per_city: int = 20,
    again: bool = False,
) -> RoamingDay:
    """``taps`` rides of member cities' cards on other member cities' buses on ``business_date``, uploaded
    and verified (see the module's docstring). DomainError, nothing written, for an unknown network, fewer
    than two member cities on that date, a date in the future, or a day simulated already (without
    ``again``)."""
    network = network_get(network_code)
    if not 1 <= taps <= 100_000:
        raise DomainError(gettext("--taps must be between 1 and 100000"), code="invalid", field="taps")
    if business_date > timezone.now().astimezone(BEIJING).date():
        raise DomainError(
            gettext("%(business_date)s is in the future: simulate a day that has begun")
            % {"business_date": business_date},
            code="invalid",
        )
    cities = [m.tenant for m in network_members(network_code=network.code, on=business_date) if m.via is None]
    cities = [c for c in cities if c.kind == TenantKind.CITY and c.is_active]
    if len(cities) < 2:
        raise DomainError(
            gettext(
                "network %(network)s has %(cities)s member cities on %(business_date)s: roaming needs two"
            )
            % {"network": network.code, "cities": len(cities), "business_date": business_date},
            code="invalid",
        )
    earlier = _simulated_taps(cities, network.code, business_date)
    if earlier and not again:
        raise DomainError(
            gettext(
                "network %(network)s already has %(earlier)s simulated taps on "
                "%(business_date)s: nothing done (--again adds more rides to that day)"
            )
            % {"network": network.code, "earlier": earlier, "business_date": business_date},
            code="already_simulated",
        )
    rng = random.Random(seed)
    issued_at = min(
        dt.datetime.combine(business_date - dt.timedelta(days=30), dt.time(10), tzinfo=BEIJING),
        timezone.now(),
    )
    cards: list[VirtualCard] = []
    wallet = Wallet(_directory() / f"cards-{network.code}.json")
    divisions = {c.division_code for c in cities}
    for city in cities:
        for card_no in _test_cards(
            city, cards_per_city, network=network.code, issued_at=issued_at, actor=actor
        ):
            cards.append(wallet.card(card_no, _card_keys(card_no[:6])))
    hosts = {city.division_code: _host(city, network.code, divisions, actor) for city in cities}
    ridden: dict[str, set[str]] = {}

    def present(card: VirtualCard, at: dt.datetime) -> str:
        issuer = card.profile.card_no[:6]
        host = hosts[rng.choice(sorted(d for d in hosts if d != issuer))]
        host.validator.clock = lambda: at
        host.validator.transport.insert(card)
        outcome = host.validator.tap().outcome
        wallet.keep(card)
        ridden.setdefault(issuer, set()).add(card.profile.card_no)
        return outcome

    outcomes = day_ride(present=present, cards=cards, day=business_date, taps=taps, rng=rng)
    wallet.save()
    batches = _upload(hosts.values())
    verification = batches_verify_all()
    pairs = _pairs(hosts.values(), business_date, {c.division_code: c.code for c in cities})
    return RoamingDay(
        network=network.code,
        business_date=business_date,
        taps=taps,
        outcomes=outcomes,
        pairs=pairs,
        terminals=[h.terminal_id for h in hosts.values()],
        cards={hosts[d].tenant.code: len(n) for d, n in sorted(ridden.items())},
        batches=batches,
        again=again,
        earlier_taps=earlier,
        verification=verification,
    )


def _upload(hosts) -> int:
    """Each terminal's queue, signed into batches and ingested by its city as an HTTP upload is."""
    count = 0
    for host in hosts:
        with tenant_context(host.tenant):
            while True:
                document = host.validator.store.batch_open(
                    terminal_id=host.terminal_id,
                    tenant=host.tenant.code,
                    key=host.key,
                    key_id=host.key_id,
                    rule_version=host.validator.rule_version,
                    hotlist_version=0,
                    now=timezone.now(),
                )
                if document is None:
                    break
                result = batch_ingest(
                    tenant=host.tenant, body=json.dumps(document, ensure_ascii=False).encode()
                )
                host.validator.store.batch_acknowledged(
                    batch_id=document["payload"]["batch_id"],
                    ack=json.loads(result.body),
                    tenant_keys=tenant_public_keys(tenant=host.tenant),
                )
                count += 1
    return count


def _pairs(hosts, day: dt.date, codes: dict[str, str]) -> list[PairTotals]:
    """Per host city and issuer: the simulator terminal's stored taps of that day (all runs of it)."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=BEIJING)
    pairs = []
    for host in hosts:
        with tenant_context(host.tenant):
            rows = Transaction.objects.filter(
                terminal_id=host.terminal_id, tapped_at__gte=start, tapped_at__lt=start + dt.timedelta(days=1)
            ).values_list("issuer", "routing", "amount_fen")
            by_issuer: dict[str, PairTotals] = {}
            for issuer, routing, amount in rows:
                pair = by_issuer.setdefault(
                    issuer, PairTotals(acquirer=host.tenant.code, issuer=codes.get(issuer, issuer))
                )
                pair.taps += 1
                pair.amount_fen += amount
                pair.roaming += routing == "roaming"
            pairs.extend(by_issuer[k] for k in sorted(by_issuer))
    return pairs
