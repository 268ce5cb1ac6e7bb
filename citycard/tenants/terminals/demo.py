"""Demo step: a few terminals per demo tenant tap virtual cards (terminal_kit) and upload one signed batch each."""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.platform.errors import NotFound
from citycard.platform.keys import tenant_card_tac_master, tenant_public_keys
from citycard.platform.models import Tenant
from citycard.platform.publications import publication_latest
from citycard.platform.selectors import tenant_by_division
from citycard.tenants.terminals.ingest import IngestResult, batch_ingest
from citycard.tenants.terminals.journeys import half_release_minutes
from citycard.tenants.terminals.models import Journey, ReviewFlag, Terminal, Transaction
from citycard.tenants.terminals.selectors import cards_last_taps
from citycard.tenants.terminals.services import half_journeys_release, terminal_register
from citycard.tenants.terminals.simulate import SimTerminal
from citycard.tenants.terminals.tasks import batches_verify_all
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.psam import VirtualPsam
from citycard.terminal_kit.card.virtual import CardProfile, IssuerKeys, VirtualCard
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.devkeys import SIM_KEYS, sim_psam
from citycard.terminal_kit.ecode import CodeIssuer, EcodeVerifier
from citycard.terminal_kit.fares import KIND as FARE_RULES
from citycard.terminal_kit.fares import load_signed
from citycard.terminal_kit.money import yuan
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.sam import Psam
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.tap import FixedFare, TapResult, Validator

# Some riders are elderly (敬老) or disabled (爱心卡); the fourth has a bus monthly pass.
_CARD_CATEGORIES = {1: frozenset({"elderly"}), 2: frozenset({"disabled"})}
# Which issuers' cards each demo tenant's terminals see (own cards, roaming partners, a stranger).
_VISITORS = {"yrd": ["310000", "330100", "330400"], "gba": ["441900", "440300"]}


def _demo_key(terminal_id: str) -> Ed25519PrivateKey:
    """A deterministic key per demo terminal, so re-running the demo signs with the registered key."""
    seed = terminal_id.encode().ljust(32, b"\0")[:32]
    return Ed25519PrivateKey.from_private_bytes(seed)


def _card_keys(division: str) -> IssuerKeys:
    """The keys a demo card is personalised with: the development purchase key the demo's PSAMs are loaded
    with and, for a card of a tenant on the platform, that issuer's own TAC master from the key vault."""
    issuer = tenant_by_division(division)
    if issuer is None or issuer.is_platform:
        return SIM_KEYS  # a stranger's card: no issuer here can check its TAC anyway
    return replace(SIM_KEYS, tac_master=tenant_card_tac_master(tenant=issuer))


def _fare(tenant):
    """What a terminal of ``tenant`` downloads: its city's signed rule document, verified with the city's
    public keys (a fixed 2-yuan fare if no rules were published)."""
    try:
        publication = publication_latest(tenant=tenant, kind=FARE_RULES, inherit=True)
    except NotFound:
        return FixedFare(200)
    return load_signed(publication.document, keys=tenant_public_keys(tenant=publication.tenant))


def _psam(terminal_id: str, terminal_no: bytes, store: TapStore) -> VirtualPsam:
    """The terminal's (simulated) PSAM, its memory under the data directory so its transaction serial
    carries on between demo runs; the first time, the demo's key ceremony loads it (audited in
    terminals/psam-audit.jsonl) with the development masters of every issuer whose cards the demo rides."""
    directory = Path(settings.DATA_DIR) / "terminals"
    memory = directory / f"{terminal_id}.psam.json"
    if memory.exists():
        return VirtualPsam.load(memory)
    divisions = {d for ds in _VISITORS.values() for d in ds} | {"110000"}
    divisions |= set(Tenant.objects.exclude(division_code=None).values_list("division_code", flat=True))
    return sim_psam(
        terminal_no=terminal_no,
        divisions=divisions,
        audit=directory / "psam-audit.jsonl",
        actor="demo",
        ttc=store.last_terminal_seq(),
        memory=memory,
    )


# The demo metros (line 1 of the fare seeds) and the roaming card that rides each: a Shanghai card in
# Hangzhou (the Yangtze River Delta network), a Dongguan card in Shenzhen (the Greater Bay Area).
_METRO_RIDERS = {"hangzhou": ("hz", "310000"), "shenzhen": ("sz", "441900")}


def _metro_rides(tenant, code: str, city, now: dt.datetime, card_keys: dict) -> list[tuple]:
    """A metro entry gate and an exit gate of line 1 in a host city: a roaming card and a local card tap in
    at the first station and out at the eighth (the distance table prices the journey), and each gate
    uploads one signed batch. Returns the uploads as ``demo_step`` lists them."""
    prefix, visitor = _METRO_RIDERS[code]
    uploads = []
    cards = []
    # 901 and 902 ride entry to exit; 903 (the visitor) and 904 (a local card) enter and never exit: half
    # journeys, entered longer ago than the time-out, so the release of this run settles them.
    riders = [
        (issuer, card_number_build(division=issuer, scheme="01", serial=serial))
        for issuer, serial in (
            (visitor, 901),
            (city.division_code, 902),
            (visitor, 903),
            (city.division_code, 904),
        )
    ]
    carried = cards_last_taps(card_nos=[card_no for _, card_no in riders])
    for issuer, card_no in riders:
        cards.append(
            _chip(
                card_no, issuer, card_keys, carried, balance=5000, offline_atc=0, profile=CardProfile(card_no)
            )
        )
    gates = []
    for n, gate, station in ((91, "entry", f"{prefix}-1-01"), (92, "exit", f"{prefix}-1-08")):
        terminal_id = f"{code[:3].upper()}-GATE-{n:03d}"
        sim = SimTerminal(terminal_id, code, route="1", private_key=_demo_key(terminal_id))
        if not Terminal.objects.filter(terminal_id=terminal_id).exists():
            terminal_register(
                terminal_id=terminal_id,
                operator=f"{tenant.name_zh}地铁",
                department="transport",
                service="metro",
                route="1",
                location=station,
                gate=gate,
                public_key=sim.public_key,
                actor="demo",
            )
        validator = _validator(tenant, terminal_id, n, "1", city.division_code)
        validator.service, validator.gate, validator.station = "metro", gate, station
        gates.append((terminal_id, validator, []))
    half_ago = half_release_minutes(tenant=tenant, at=now) + 10
    # A journey is keyed by the card, the gate and the minute of its entry (as the chip's trip record
    # has it): a re-run within the minute of the last would land on the same journeys. Each run's gate taps
    # come at least a minute after the previous run's, and the halves stay past their time-out.
    later = _minutes_after_last_run(
        [card_no for _, card_no in riders[2:]], now - dt.timedelta(minutes=half_ago)
    )
    entry_validator, entry_taps = gates[0][1], gates[0][2]
    for card in cards[2:]:  # the halves' entries first: the gate's queue is in the order it tapped
        entry_validator.transport.insert(card)
        entry_validator.clock = lambda: now - dt.timedelta(minutes=half_ago - later)
        entry_taps.append(entry_validator.tap())
    for (_, validator, taps), minutes in zip(gates, (40, 20), strict=True):
        for card in cards[:2]:
            validator.transport.insert(card)
            validator.clock = lambda minutes=minutes: now - dt.timedelta(minutes=minutes - later)
            taps.append(validator.tap())
    for terminal_id, validator, taps in gates:
        upload = validator_upload(validator, tenant=tenant, terminal_id=terminal_id, now=now, resend=True)
        if upload is not None:
            uploads.append((tenant, code, terminal_id, taps, upload.result, upload.again, upload.batch_id))
    return uploads


def _minutes_after_last_run(card_nos: list[str], at: dt.datetime) -> int:
    """How many minutes after ``at`` this run's metro taps must come so that each falls in a later minute
    than the same card's tap of the run before (0 on a first run, or when the last run is long past)."""
    last = (
        Transaction.objects.filter(card_no__in=card_nos)
        .order_by("-tapped_at")
        .values_list("tapped_at", flat=True)[:1]
    )
    if not last:
        return 0
    next_minute = last[0].replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    return max(0, -(-int((next_minute - at).total_seconds()) // 60))


def _chip(
    card_no: str,
    issuer: str,
    card_keys: dict,
    carried: dict[str, tuple[int, int]],
    *,
    balance: int,
    offline_atc: int,
    profile: CardProfile,
) -> VirtualCard:
    """A demo rider's card. A card this schema has seen tap before (an earlier run of the demo on the same
    data) carries on from its last tap here, as a real chip would: its counter the next one and its e-purse
    what that tap left. Re-created afresh each run, it would tap with counters and a balance the city has
    already stored: every tap of a re-run flagged (``card_counter_gap``, ``shadow_divergence``). A card
    never seen here starts from ``balance`` and ``offline_atc``."""
    if card_no in carried:
        counter, balance = carried[card_no]
        offline_atc = counter + 1
    return VirtualCard(
        profile,
        card_keys.get(issuer) or card_keys.setdefault(issuer, _card_keys(issuer)),
        balance=balance,
        offline_atc=offline_atc,
    )


def _validator(tenant, terminal_id: str, n: int, route: str, division: str) -> Validator:
    """A terminal_kit validator with its durable queue under the data directory."""
    queue = Path(settings.DATA_DIR) / "terminals" / f"{terminal_id}.sqlite"
    queue.parent.mkdir(parents=True, exist_ok=True)
    store = TapStore(queue)
    psam = _psam(terminal_id, bytes.fromhex(f"{division}{n:06d}"), store)
    return Validator(
        transport=InProcessReader(),
        sam=Psam(InProcessReader(psam)),
        store=store,
        fare=_fare(tenant),
        tenant=tenant.code,
        service="bus",
        route=route,
    )


def code_issuers_synced(tenant, visitors: list) -> list[CodeIssuer]:
    """The citizen-code issuers a synced validator of ``tenant`` holds: its city's signing keys (the keys
    document) and its visitors' home cities' (the offline entitlement list brings them), each with the card
    division it issues."""
    return [
        CodeIssuer(t.code, frozenset({t.division_code}), tenant_public_keys(tenant=t))
        for t in [tenant.clearing_tenant, *visitors]
    ]


def code_rides_upload(
    tenant, terminal_id: str, n: int, route: str, rides: list[tuple[str, dt.datetime]], issuers, now
) -> tuple[list[TapResult], Any]:
    """Citizen-code rides (电子市民码乘车) at a registered bus validator of ``tenant``: the terminal kit's code
    scanner (``Validator.ride_code``: verified offline with ``issuers``, its nonce spent in the queue,
    priced, queued) takes each code at its time, then the queue goes up as one signed batch, acknowledged.
    Returns each ride's result and the upload's (None when nothing was queued)."""
    validator = _validator(tenant, terminal_id, n, route, tenant.clearing_tenant.division_code)
    validator.codes = EcodeVerifier(issuers=issuers, store=validator.store)
    results = []
    for token, at in rides:
        validator.clock = lambda at=at: at
        results.append(validator.ride_code(token))
    upload = validator_upload(validator, tenant=tenant, terminal_id=terminal_id, now=now)
    return results, (upload.result if upload else None)


@dataclass(frozen=True)
class Upload:
    """One signed batch a demo terminal uploaded: its id, the first answer and (``resend``) the resend's."""

    batch_id: str
    result: IngestResult
    again: IngestResult | None


def validator_upload(
    validator: Validator,
    *,
    tenant: Tenant,
    terminal_id: str,
    rule_version: int | None = None,
    now: dt.datetime | None = None,
    resend: bool = False,
) -> Upload | None:
    """The terminal's waiting taps as one signed batch (its demo key), ingested by ``tenant`` (with
    ``resend``, a second time: answered as duplicates) and acknowledged in the terminal's queue, as a
    terminal's upload does. ``rule_version``: the validator's rules unless told; None: nothing waiting."""
    document = validator.store.batch_open(
        terminal_id=terminal_id,
        tenant=tenant.code,
        key=_demo_key(terminal_id),
        key_id=f"{terminal_id}:k1",
        rule_version=validator.rule_version if rule_version is None else rule_version,
        hotlist_version=0,
        now=now or timezone.now(),
    )
    if document is None:
        return None
    body = json.dumps(document, ensure_ascii=False).encode()
    result = batch_ingest(tenant=tenant, body=body)
    again = batch_ingest(tenant=tenant, body=body) if resend else None
    batch_id = document["payload"]["batch_id"]
    validator.store.batch_acknowledged(
        batch_id=batch_id, ack=json.loads(result.body), tenant_keys=tenant_public_keys(tenant=tenant)
    )
    return Upload(batch_id, result, again)


def demo_step(ctx) -> None:
    table = Table(title=gettext("Terminal uploads (one signed batch per terminal)"))
    for col in (
        gettext("tenant"),
        gettext("terminal"),
        gettext("taps"),
        gettext("accepted"),
        gettext("duplicate"),
        gettext("rejected"),
        gettext("stored: own"),
        gettext("roaming"),
        gettext("held"),
        gettext("resend"),
        gettext("fares (yuan)"),
        gettext("fare flags"),
    ):
        table.add_column(col)
    now = timezone.now().astimezone(BEIJING).replace(microsecond=0)
    card_keys: dict[str, IssuerKeys] = {}
    uploaded = []
    for code, tenant in ctx.tenants.items():
        city = tenant.clearing_tenant
        network = "gba" if city.division_code.startswith("44") else "yrd"
        issuers = [*_VISITORS[network], "110000"]  # 110000: Beijing, not on the platform
        rng = random.Random(code)
        chips: dict[str, VirtualCard] = {}  # a card tapped twice in this run goes on from its first tap
        with tenant_context(tenant):
            for n in range(1, 3):
                terminal_id = f"{code[:3].upper()}-BUS-{n:03d}"
                sim = SimTerminal(terminal_id, code, route=str(n * 11), private_key=_demo_key(terminal_id))
                if not Terminal.objects.filter(terminal_id=terminal_id).exists():
                    terminal_register(
                        terminal_id=terminal_id,
                        operator=f"{tenant.name_zh}公交",
                        department="transport",
                        service="bus",
                        route=sim.route,
                        public_key=sim.public_key,
                        actor="demo",
                    )
                last_seq = Terminal.objects.get(terminal_id=terminal_id).last_seq or 0
                # The cards carry their trip states (transfers, caps, quotas) in their transit records.
                validator = _validator(tenant, terminal_id, n, sim.route, city.division_code)
                taps = []
                drawn = []  # the same riders every run (the generator is seeded by the tenant's code)
                for i in range(8):
                    issuer = city.division_code if i < 5 else rng.choice(issuers)
                    card_no = card_number_build(division=issuer, scheme="01", serial=rng.randrange(1, 500))
                    drawn.append((i, issuer, card_no, rng.randrange(0, 3000)))
                carried = cards_last_taps(card_nos=[card_no for _, _, card_no, _ in drawn])
                for i, issuer, card_no, balance in drawn:
                    profile = CardProfile(
                        card_no=card_no,
                        categories=_CARD_CATEGORIES.get(i, frozenset()),
                        passes=frozenset({"monthly"}) if i == 3 else frozenset(),
                    )
                    if card_no not in chips:
                        chips[card_no] = _chip(
                            card_no,
                            issuer,
                            card_keys,
                            carried,
                            balance=balance,
                            offline_atc=last_seq + i,
                            profile=profile,
                        )
                    card = chips[card_no]
                    validator.transport.insert(card)
                    validator.clock = lambda i=i: now - dt.timedelta(minutes=30 - i)
                    result = validator.tap()
                    taps.append(result)
                upload = validator_upload(
                    validator, tenant=tenant, terminal_id=terminal_id, now=now, resend=True
                )
                if upload is None:
                    continue
                uploaded.append(
                    (tenant, code, terminal_id, taps, upload.result, upload.again, upload.batch_id)
                )
            if code in _METRO_RIDERS:
                uploaded += _metro_rides(tenant, code, city, now, card_keys)
    # The verification stage (what beat runs every few seconds): TACs, card counters, hotlist, e-purse
    # shadows and the fare re-check over the batches just uploaded.
    verified = batches_verify_all()
    for tenant, code, terminal_id, taps, result, again, batch_id in uploaded:
        with tenant_context(tenant):
            rows = Transaction.objects.filter(terminal_id=terminal_id)
            table.add_row(
                code,
                terminal_id,
                gettext("%(taps)s (%(paid)s paid)")
                % {"taps": len(taps), "paid": sum(t.outcome == "approved" for t in taps)},
                str(result.accepted),
                str(result.duplicates),
                str(result.rejected),
                str(rows.filter(routing="own").count()),
                str(rows.filter(routing="roaming").count()),
                str(rows.filter(routing="held").count()),
                gettext("identical") if again.body == result.body else gettext("DIFFERENT"),
                " ".join(yuan(t.fare_fen) for t in taps if t.outcome == "approved"),
                str(ReviewFlag.objects.filter(code="fare_mismatch", batch__batch_id=batch_id).count()),
            )
    ctx.console.print(table)
    ctx.console.print(
        gettext("Verification stage: %(done)s")
        % {
            "done": ", ".join(
                gettext("%(tenant)s %(batches)s batches, %(taps)s taps, %(flags)s flags")
                % {"tenant": code, "batches": v["batches"], "taps": v["taps"], "flags": v["flags"]}
                for code, v in verified.items()
            )
            or gettext("nothing to verify")
        }
    )
    for code, tenant in ctx.tenants.items():
        if code not in _METRO_RIDERS:
            continue
        with tenant_context(tenant):
            for j in Journey.objects.filter(status="complete").order_by("-exited_at", "card_no")[:2]:
                ctx.console.print(
                    gettext(
                        "%(tenant)s metro journey (%(routing)s, card of %(issuer)s): %(origin)s -> "
                        "%(destination)s line %(line)s, %(fare)s, %(status)s"
                    )
                    % {
                        "tenant": code,
                        "routing": j.get_routing_display(),
                        "issuer": j.issuer,
                        "origin": j.origin,
                        "destination": j.destination,
                        "line": j.line,
                        "fare": yuan(j.fare_fen),
                        "status": j.get_status_display(),
                    }
                )
            _halves_release(ctx, tenant, now)
    ctx.console.print(
        gettext("Terminals upload to %(request)s (%(doc)s); see them at %(path)s on each tenant site.")
        % {
            "request": f"POST {ctx.url('<tenant>', '/terminal/v1/batches')}",
            "path": "/admin/terminals/",
            "doc": "docs/ingestion.md",
        }
    )


def _halves_release(ctx, tenant, now: dt.datetime) -> None:
    """The release the beat task runs every 15 minutes, run now (``now``: the demo's clock): the entries of
    this run's half journeys were made longer ago than the time-out, so they are released here — the
    visitor's entry tap to its issuer as a clearing record of its own (a zero-amount one when the entry
    took nothing: the issuer still sees its card counter), the local card's settled in the city's books."""
    released = half_journeys_release(actor="demo", now=now)
    minutes = half_release_minutes(tenant=tenant, at=now)
    ctx.console.print(
        gettext("%(city)s: %(n)d metro half journeys released (no other tap within %(minutes)d minutes)")
        % {"city": tenant.name_zh, "n": released, "minutes": minutes}
    )
    for j in Journey.objects.filter(released_at=now).order_by("-routing", "card_no"):
        values = {
            "card": j.card_no,
            "origin": j.origin,
            "line": j.line,
            "entered": j.entered_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
            "released": j.released_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
            "amount": yuan(j.entry_fen if j.status == "open" else j.exit_fen),
            "record": f"{tenant.code}-{j.released_tx_id}",
        }
        if j.routing == "roaming":
            line = gettext(
                "  visiting card %(card)s entered %(origin)s (line %(line)s) at %(entered)s and never exited: "
                "released at %(released)s, its entry (%(amount)s) sent to the card's issuer alone as "
                "clearing record %(record)s"
            )
        else:
            line = gettext(
                "  local card %(card)s entered %(origin)s (line %(line)s) at %(entered)s and never exited: "
                "released at %(released)s, its entry (%(amount)s) settled in the city's own books "
                "(nothing to clear)"
            )
        ctx.console.print(line % values)
