"""``citycard-terminal``: run a validator on a PC/SC reader, simulate a day of taps, upload the queue.

    citycard-terminal simulate --taps 200 [--pcsc]        virtual cards through a validator, then a summary
    citycard-terminal --tenant hangzhou simulate --card-list jiaxing.cards.csv --issuer-keys jiaxing-keys.json \
        --date 2026-11-21 --taps 200 --queue bus-1       an issuer's cards riding a business date
    citycard-terminal validate --reader "Virtual PCD 00 00" --psam-reader "Virtual PCD 00 01" --queue taps.sqlite
    citycard-terminal psam-load --psam-reader "Virtual PCD 00 01" --keys keys.json --transport-key t.key \
        --actor "name (office)" --audit psam-audit.jsonl
    citycard-terminal sync --url https://hangzhou.example --queue taps.sqlite --terminal-id HZ-BUS-0001 \
        --key terminal.key [--platform-key platform-key.json]
    citycard-terminal upload --url https://hangzhou.example/terminal/v1/batches --queue taps.sqlite \
        --terminal-id HZ-BUS-0001 --key terminal.key [--give-up-after S]
    citycard-terminal queue --queue taps.sqlite            batches waiting, taps not yet in one, set aside
    citycard-terminal queue --queue taps.sqlite requeue BATCH_ID [--rebatch]
    citycard-terminal queue --queue taps.sqlite drop BATCH_ID --reason "why"
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.psam import VirtualPsam
from citycard.terminal_kit.card.virtual import IssuerKeys, VirtualCard
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.day import (
    DayInputError,
    Wallet,
    business_date_parse,
    card_list_read,
    cards_of_issuer,
    day_ride,
    issuer_keys_read,
)
from citycard.terminal_kit.devkeys import SIM_KEYS, sim_psam_kept
from citycard.terminal_kit.fares import RuleDocumentError, load_signed
from citycard.terminal_kit.keyring import (
    SIGNS_ACKNOWLEDGEMENTS,
    SIGNS_FARE_RULES,
    SIGNS_HOTLISTS,
    keyring_held,
)
from citycard.terminal_kit.provision import ProvisioningError, keys_from_json, psam_load_keys
from citycard.terminal_kit.reader import InProcessReader, PcscReader, ReaderError, wait_for_card
from citycard.terminal_kit.sam import Psam, SamError
from citycard.terminal_kit.signing import SignatureError, TerminalCredentials
from citycard.terminal_kit.store import BatchNotSetAside, TapStore
from citycard.terminal_kit.sync import Downloader, DownloadError, hotlist_held
from citycard.terminal_kit.tap import FixedFare, Validator
from citycard.terminal_kit.upload import AcknowledgementRefused, NotAnswered, Uploader, UploadGaveUp


def _sim_psam(
    queue_dir: Path, terminal_no: str, divisions: list[str], keys: IssuerKeys = SIM_KEYS
) -> VirtualPsam:
    """The simulator's PSAM, its memory and audit log kept next to the queue (``devkeys.sim_psam_kept``)."""
    return sim_psam_kept(
        memory=queue_dir / "psam.json",
        terminal_no=bytes.fromhex(terminal_no),
        divisions=divisions,
        audit=queue_dir / "psam-audit.jsonl",
        keys=keys,
    )


def _fare(args: argparse.Namespace, store: TapStore | None = None):
    """The tenant's signed rule document (verified with its public keys: a --rules-keys file, else the
    rule keys the queue holds from `sync`), or one fixed fare."""
    if not args.rules:
        return FixedFare(args.fare)
    if store is not None:
        keys = _held_keys(store, SIGNS_FARE_RULES, args.rules_keys)
    else:
        keys = _tenant_keys(args.rules_keys) if args.rules_keys else {}
    if not keys:
        raise SystemExit(
            "--rules needs --rules-keys (the tenant's public keys, JSON {key_id: base64}) or keys from `sync`"
        )
    try:
        return load_signed(json.loads(Path(args.rules).read_text()), keys=keys)
    except (SignatureError, RuleDocumentError) as exc:
        raise SystemExit(f"rule document refused: {exc}") from exc


def _sim_cards(
    args: argparse.Namespace, rng: random.Random, wallet: Wallet
) -> tuple[list[VirtualCard], list[str], IssuerKeys]:
    """The cards to present, the issuers the PSAM must serve and the keys it is loaded with: an issuer's card
    list under its test-card keys, or made-up cards under the development keys."""
    if args.card_list:
        if not args.issuer_keys:
            raise DayInputError(
                "--card-list needs --issuer-keys (the file `citycard cards test-keys` exports)"
            )
        issuer = issuer_keys_read(Path(args.issuer_keys))
        numbers = card_list_read(Path(args.card_list))
        cards_of_issuer(numbers, issuer)
        return [wallet.card(n, issuer.keys) for n in numbers], list(issuer.divisions), issuer.keys
    if args.issuer_keys:
        raise DayInputError("--issuer-keys goes with --card-list (that issuer's cards)")
    divisions = args.issuers.split(",")
    numbers = [
        card_number_build(division=rng.choice(divisions), scheme="01", serial=i)
        for i in range(1, args.cards + 1)
    ]
    cards = []
    for n in numbers:
        card = wallet.card(n, SIM_KEYS)
        if n not in wallet.cards or wallet.cards[n]["counter"] == 0:
            card.balance = rng.randint(0, 3000)
        cards.append(card)
    return cards, divisions, SIM_KEYS


def simulate(args: argparse.Namespace) -> int:
    """Virtual cards through the validator: a card list of an issuer under its keys on a business date
    (``--card-list --issuer-keys --date``), or made-up cards now; the taps go to the queue for ``upload``."""
    rng = random.Random(args.seed)
    day = business_date_parse(args.date) if args.date else None
    queue = Path(args.queue or tempfile.mkdtemp(prefix="citycard-terminal-")) / "taps.sqlite"
    queue.parent.mkdir(parents=True, exist_ok=True)
    wallet = Wallet(queue.parent / "cards.json")
    cards, divisions, keys = _sim_cards(args, rng, wallet)
    psam = _sim_psam(queue.parent, args.terminal_no, divisions, keys)
    holder = psam_holder = None
    if args.pcsc:
        from citycard.terminal_kit.card.vpcd import PSAM_PORT, VpcdCard

        transport = PcscReader(args.reader)
        psam_holder = VpcdCard(psam, port=PSAM_PORT)
        psam_holder.insert()
        if not wait_for_card(PcscReader(args.psam_reader), timeout=10):
            raise SystemExit(f"the virtual PSAM did not appear in {args.psam_reader!r}")
        sam = Psam(PcscReader(args.psam_reader))
    else:
        transport = InProcessReader()
        sam = Psam(InProcessReader(psam))
    v = Validator(
        transport=transport,
        sam=sam,
        store=TapStore(queue),
        fare=_fare(args),
        tenant=args.tenant,
        service="bus",
        route=args.route,
    )

    def present(card: VirtualCard, at: dt.datetime | None) -> str:
        nonlocal holder
        v.clock = (lambda: at) if at is not None else None
        if args.pcsc:
            holder = VpcdCard(card)
            holder.insert()
            wait_for_card(transport, timeout=5)
        else:
            transport.insert(card)
        result = v.tap()
        if holder is not None:
            holder.remove()
            while transport.card_present():
                time.sleep(0.01)
        wallet.keep(card)
        return result.outcome

    started = time.perf_counter()
    if day is not None:
        outcomes = day_ride(present=present, cards=cards, day=day, taps=args.taps, rng=rng)
    else:
        outcomes = {}
        for _ in range(args.taps):
            outcome = present(rng.choice(cards), None)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    elapsed = time.perf_counter() - started
    wallet.save()
    sam.close()
    if psam_holder is not None:
        psam_holder.remove()
    when = f" on {day.isoformat()} (Beijing time)" if day else ""
    print(
        f"{args.taps} taps of {len(cards)} cards{when} in {elapsed:.2f}s on "
        f"{'pcscd+vpcd' if args.pcsc else 'the in-process reader'}"
    )
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome:<10} {count}")
    print(f"queue: {queue} ({len(v.store.taps('complete'))} complete taps waiting for upload)")
    print(
        f"upload them: citycard-terminal --tenant {args.tenant} upload --url https://{args.tenant}.example"
        f"/terminal/v1/batches --queue {queue} --terminal-id TERMINAL-ID --key TERMINAL.key"
    )
    return 0


def _tenant_keys(path: str) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in json.loads(Path(path).read_text()).items()}


def _held_keys(store: TapStore, signs: str, extra: str | None) -> dict[str, bytes]:
    """The keys held from the last sync that sign ``signs``, and those of a ``--tenant-keys`` file."""
    ring = keyring_held(store)
    held = {} if ring is None else ring.keys(signs, at=dt.datetime.now(dt.UTC))
    if extra:
        held.update(_tenant_keys(extra))
    return held


def _private_key(path: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(Path(path).read_text().strip()))


def sync(args: argparse.Namespace) -> int:
    """Fetch the tenant's keys (signed by the platform), then its hotlist (verified with those keys)."""
    store = TapStore(args.queue)
    credentials = TerminalCredentials(
        tenant=args.tenant, key_id=f"{args.terminal_id}:k{args.key_version}", key=_private_key(args.key)
    )
    down = Downloader(base_url=args.url, tenant_keys={}, credentials=credentials, host=args.host)
    failed = False
    try:
        taken = down.keys(store, pinned=_tenant_keys(args.platform_key) if args.platform_key else None)
    except DownloadError as exc:
        held = keyring_held(store)
        print(f"sync: {exc}; keeping the keys held ({len(held.entries) if held else 0})", file=sys.stderr)
        failed = True
    else:
        ring = taken.ring
        if taken.first_use:
            print(f"trusting platform key {taken.signed_by} on first use (pin it with --platform-key)")
        print(f"keys of {ring.tenant} issued {ring.issued_at:%Y-%m-%d %H:%M:%S}: {len(ring.entries)}")
    down = replace(down, tenant_keys=_held_keys(store, SIGNS_HOTLISTS, args.tenant_keys))
    try:
        held_list = down.hotlist(store)
    except DownloadError as exc:
        print(f"sync: {exc}; keeping hotlist version {hotlist_held(store).version}", file=sys.stderr)
        return 1
    print(f"hotlist version {held_list.version}: {len(held_list.cards)} cards blocked")
    return 1 if failed else 0


def validate(args: argparse.Namespace) -> int:
    reader = PcscReader(args.reader)
    store = TapStore(args.queue)
    fare = _fare(args, store)
    sam = Psam(PcscReader(args.psam_reader))
    try:
        sam.open()
    except (SamError, ReaderError) as exc:
        print(f"PSAM in {args.psam_reader!r}: {exc}", file=sys.stderr)
        return 2
    v = Validator(
        transport=reader,
        sam=sam,
        store=store,
        hotlist=hotlist_held(store),
        fare=fare,
        tenant=args.tenant,
        service="bus",
        route=args.route,
    )
    print(
        f"validator on {args.reader}, PSAM {sam.terminal_id.hex()} in {args.psam_reader} "
        f"(hotlist version {v.hotlist.version}): present a card (Ctrl-C to stop)"
    )
    try:
        while True:
            try:
                if not wait_for_card(reader, timeout=1.0):
                    continue
            except ReaderError as exc:
                print(f"reader: {exc}", file=sys.stderr)
                return 2
            result = v.tap()
            card = result.card_no or "-"
            print(
                f"{result.outcome:<9} {card:<20} fare={result.fare_fen} balance={result.balance_fen}",
                result.message,
            )
            while reader.card_present():
                time.sleep(0.05)
    except KeyboardInterrupt:
        return 0


def psam_load(args: argparse.Namespace) -> int:
    try:
        keys = keys_from_json(Path(args.keys).read_text())
        transport_key = bytes.fromhex(Path(args.transport_key).read_text().strip())
        entries = psam_load_keys(
            transport=PcscReader(args.psam_reader),
            transport_key=transport_key,
            keys=keys,
            actor=args.actor,
            audit=Path(args.audit),
            now=dt.datetime.now(BEIJING),
        )
    except (ProvisioningError, ReaderError, ValueError) as exc:
        print(f"psam-load: {exc}", file=sys.stderr)
        return 1
    for entry in entries:
        print(
            f"loaded {entry['usage']} key v{entry['version']} {entry['algorithm']} of {entry['issuer']} "
            f"into PSAM {entry['psam_serial']} (terminal {entry['terminal_no']}), kcv {entry['kcv']}"
        )
    print(f"{len(entries)} keys loaded; audit log {args.audit}")
    return 0


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}" + ("" if count == 1 else "es" if thing.endswith("h") else "s")


def _print_waiting(batch_id: str, failure: NotAnswered, wait_s: float) -> None:
    print(f"{batch_id}: {failure.what}; trying again in {wait_s:.1f} s", file=sys.stderr, flush=True)


def upload(args: argparse.Namespace) -> int:
    """Exit status 0: every batch acknowledged; 1: some set aside (``queue`` shows them); 2: stopped with
    batches still queued (the deadline, Ctrl-C, an acknowledgement that does not verify or is signed by a
    key not held, no acknowledgement keys held at all: the last two are mended by ``sync``)."""
    key = _private_key(args.key)
    store = TapStore(args.queue)
    tenant_keys = _held_keys(store, SIGNS_ACKNOWLEDGEMENTS, args.tenant_keys)
    if not tenant_keys:
        print(
            "upload: this terminal holds no keys to verify acknowledgements with: run `citycard-terminal sync`"
            " first; the queue is kept",
            file=sys.stderr,
        )
        return 2
    uploader = Uploader(url=args.url, tenant_keys=tenant_keys, host=args.host, on_wait=_print_waiting)
    stopped = None
    try:
        uploader.drain(
            store,
            give_up_after_s=args.give_up_after,
            terminal_id=args.terminal_id,
            tenant=args.tenant,
            key=key,
            key_id=f"{args.terminal_id}:k{args.key_version}",
            rule_version=args.rule_version,
            hotlist_version=hotlist_held(store).version,
            max_taps=args.max_taps,
        )
    except (UploadGaveUp, AcknowledgementRefused) as exc:  # AcknowledgementUnverified: run `sync`
        stopped = str(exc)
    except KeyboardInterrupt:
        stopped = "stopped by Ctrl-C; the batch being sent stays queued"
    for ack in uploader.acknowledged:
        print(
            f"{ack['batch_id']}: accepted {ack.get('accepted')} duplicates {ack.get('duplicates')} "
            f"rejected {ack.get('rejected')}"
            + (f" conflicts {ack['conflicts']}" if ack.get("conflicts") else "")
        )
        for result in ack.get("results", []):
            if result.get("outcome") in ("rejected", "conflict"):
                print(
                    f"  tap {result.get('terminal_seq')} (card {result.get('card_no')}, counter "
                    f"{result.get('card_counter')}) {result['outcome']}: {result.get('reason', 'no reason given')}"
                )
    for aside in uploader.set_aside:
        print(
            f"{aside.batch_id}: set aside ({_n(aside.taps, 'tap')}), refused with {aside.status} {aside.code}: "
            f"{aside.message}; `citycard-terminal queue --queue {args.queue}` to requeue or drop it"
        )
    print(f"{_n(len(uploader.acknowledged), 'batch')} acknowledged, {len(uploader.set_aside)} set aside")
    if stopped:
        print(f"upload: {stopped}", file=sys.stderr)
        return 2
    return 1 if uploader.set_aside else 0


def queue(args: argparse.Namespace) -> int:
    store = TapStore(args.queue)
    now = dt.datetime.now(dt.UTC)
    try:
        if args.action == "requeue":
            aside = store.batch_requeue(batch_id=args.batch_id, at=now, rebatch=args.rebatch)
            how = "its taps go in a new batch" if args.rebatch else "it is sent again as it was"
            print(f"{aside.batch_id}: requeued ({_n(aside.taps, 'tap')}); {how} at the next upload")
            return 0
        if args.action == "drop":
            aside = store.batch_drop(batch_id=args.batch_id, reason=args.reason, at=now)
            print(f"{aside.batch_id}: dropped, {_n(aside.taps, 'tap')} will not be uploaded ({args.reason})")
            return 0
    except (BatchNotSetAside, ValueError) as exc:
        print(
            f"queue: {exc}; `citycard-terminal queue --queue {args.queue}` lists the set-aside batches",
            file=sys.stderr,
        )
        return 1
    state = store.queue_state()
    in_batches = sum(b.taps for b in state.batches)
    print(
        f"{args.queue}: {_n(len(state.batches), 'batch')} waiting ({_n(in_batches, 'tap')}), "
        f"{_n(state.unbatched, 'tap')} not yet in a batch, "
        f"{_n(state.unsettled, 'tap')} pending or torn (waiting for their card)"
    )
    for batch in state.batches:
        print(f"  {batch.batch_id}  created {batch.created_at}  {_n(batch.taps, 'tap')}")
    open_ = [a for a in state.set_aside if a.state == "set_aside"]
    decided = [a for a in state.set_aside if a.state != "set_aside"]
    print(f"set aside: {_n(len(open_), 'batch')} ({_n(sum(a.taps for a in open_), 'tap')})")
    for aside in open_:
        print(
            f"  {aside.batch_id}  {_n(aside.taps, 'tap')}  {aside.status} {aside.code}  at {aside.set_aside_at}: "
            f"{aside.message}"
        )
    if open_:
        print(
            f"  to send one again: citycard-terminal queue --queue {args.queue} requeue BATCH_ID "
            "[--rebatch: its taps in a new batch]; to give it up: … drop BATCH_ID --reason WHY"
        )
    if decided:
        print(f"decided: {len(decided)}")
        for aside in decided:
            why = f": {aside.reason}" if aside.reason else ""
            print(
                f"  {aside.batch_id}  {aside.state} at {aside.decided_at}{why} "
                f"(was {aside.status} {aside.code}, {_n(aside.taps, 'tap')})"
            )
    return 0


def parser_build() -> argparse.ArgumentParser:
    """The command's arguments; --tenant is accepted before and after the sub-command, as by `citycard`."""
    parser = argparse.ArgumentParser(
        prog="citycard-terminal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenant", default="hangzhou")
    parser.add_argument("--route", default="151")
    parser.add_argument("--terminal-no", default="330100000001", help="the 6-byte terminal number, hex")
    parser.add_argument("--fare", type=int, default=200, help="fixed fare in fen (without --rules)")
    parser.add_argument(
        "--rules", help="the tenant's signed rule document (JSON), e.g. from `citycard fares export`"
    )
    parser.add_argument(
        "--rules-keys",
        help="JSON file {key_id: base64 public key} verifying --rules (validate: default the keys `sync` fetched)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="drive virtual cards through a validator")
    sim.add_argument("--taps", type=int, default=100)
    sim.add_argument(
        "--card-list",
        metavar="CSV",
        help="an issuer's cards: a CSV with a card_no column, e.g. from `citycard cards import --cards-out`",
    )
    sim.add_argument(
        "--issuer-keys",
        metavar="FILE",
        help="the issuer's test-card keys (`citycard cards --tenant CODE test-keys --out FILE`)",
    )
    sim.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        help="the business date ridden, taps spread over its hours (default: now)",
    )
    sim.add_argument("--cards", type=int, default=20, help="made-up cards, without --card-list")
    sim.add_argument("--issuers", default="330100,330400,310000")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--queue", help="directory for the queue (default: a new temporary one)")
    sim.add_argument("--pcsc", action="store_true", help="through pcscd and the vpcd reader")
    sim.add_argument("--reader", default="Virtual PCD 00 00")
    sim.add_argument("--psam-reader", default="Virtual PCD 00 01")
    val = sub.add_parser("validate", help="run a validator on a PC/SC reader, with its PSAM in another")
    val.add_argument("--reader", default="Virtual PCD 00 00")
    val.add_argument("--psam-reader", default="Virtual PCD 00 01")
    val.add_argument("--queue", default="taps.sqlite")
    pl = sub.add_parser("psam-load", help="load issuers' keys into a PSAM (key ceremony, audited)")
    pl.add_argument("--psam-reader", default="Virtual PCD 00 01")
    pl.add_argument(
        "--keys", required=True, help='JSON [{"usage", "issuer", "version", "algorithm": "SM4", "key": hex}]'
    )
    pl.add_argument("--transport-key", required=True, help="file with the PSAM's transport key, hex")
    pl.add_argument("--actor", required=True, help="who loads the keys (recorded in the audit log)")
    pl.add_argument("--audit", required=True, help="the audit log (JSON lines, appended)")
    up = sub.add_parser("upload", help="upload the queue's batches")
    up.add_argument("--url", required=True)
    up.add_argument("--host", help="Host header, when --url names an address")
    up.add_argument("--queue", default="taps.sqlite")
    up.add_argument("--terminal-id", required=True)
    up.add_argument(
        "--key", required=True, help="file with the terminal's Ed25519 private key, base64 of 32 bytes"
    )
    up.add_argument("--key-version", type=int, default=1)
    up.add_argument(
        "--tenant-keys", help="JSON file {key_id: base64 public key}, besides the keys `sync` fetched"
    )
    up.add_argument("--rule-version", type=int, default=0)
    up.add_argument(
        "--max-taps",
        type=int,
        default=500,
        help="taps in a new batch at most (after a 413, requeue it with --rebatch and send smaller ones)",
    )
    up.add_argument(
        "--give-up-after",
        type=float,
        metavar="S",
        help="stop waiting for the back office after S seconds (default: never; the queue is kept either way)",
    )
    qu = sub.add_parser("queue", help="the upload queue: waiting batches and taps, set-aside batches")
    qu.add_argument("--queue", default="taps.sqlite")
    qa = qu.add_subparsers(dest="action")
    rq = qa.add_parser("requeue", help="send a set-aside batch again")
    rq.add_argument("batch_id")
    rq.add_argument(
        "--rebatch", action="store_true", help="put its taps back in the queue for a new batch, signed afresh"
    )
    rq.add_argument("--queue", default=argparse.SUPPRESS)
    dr = qa.add_parser("drop", help="give up a set-aside batch: its taps leave the queue for good")
    dr.add_argument("batch_id")
    dr.add_argument("--reason", required=True, help="why (kept with the batch's record)")
    dr.add_argument("--queue", default=argparse.SUPPRESS)
    sy = sub.add_parser("sync", help="download the tenant's hotlist into the queue database")
    sy.add_argument("--url", required=True, help="the tenant's site, e.g. https://hangzhou.example")
    sy.add_argument("--host", help="Host header, when --url names an address")
    sy.add_argument("--queue", default="taps.sqlite")
    sy.add_argument("--terminal-id", required=True)
    sy.add_argument(
        "--key", required=True, help="file with the terminal's Ed25519 private key, base64 of 32 bytes"
    )
    sy.add_argument("--key-version", type=int, default=1)
    sy.add_argument(
        "--platform-key",
        help="JSON file {key_id: base64} of the platform key to pin (default: trust on first use)",
    )
    sy.add_argument("--tenant-keys", help="JSON file {key_id: base64 public key}, besides the keys fetched")
    for each in [*dict.fromkeys(sub.choices.values()), *dict.fromkeys(qa.choices.values())]:
        each.add_argument(
            "--tenant", default=argparse.SUPPRESS, help="tenant code (as before the sub-command)"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser_build().parse_args(argv)
    commands = {
        "simulate": simulate,
        "validate": validate,
        "psam-load": psam_load,
        "upload": upload,
        "queue": queue,
        "sync": sync,
    }
    try:
        return commands[args.command](args)
    except DayInputError as exc:
        print(f"citycard-terminal {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
