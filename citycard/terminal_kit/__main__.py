"""``citycard-terminal``: run a validator on a PC/SC reader, simulate a day of taps, upload the queue.

    citycard-terminal simulate --taps 200 [--pcsc]        virtual cards through a validator, then a summary
    citycard-terminal validate --reader "Virtual PCD 00 00" --fare 200 --queue taps.sqlite
    citycard-terminal upload --url https://hangzhou.example/terminal/v1/batches --queue taps.sqlite \
        --terminal-id HZ-BUS-0001 --key terminal.key --tenant-keys hangzhou-keys.json
    citycard-terminal sync --url https://hangzhou.example --queue taps.sqlite --terminal-id HZ-BUS-0001 \
        --key terminal.key --tenant-keys hangzhou-keys.json
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.devkeys import SIM_KEYS
from citycard.terminal_kit.fares import RuleDocumentError, load_signed
from citycard.terminal_kit.reader import InProcessReader, PcscReader, ReaderError, wait_for_card
from citycard.terminal_kit.sam import SoftwareSam
from citycard.terminal_kit.signing import SignatureError, TerminalCredentials
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.sync import Downloader, DownloadError, hotlist_held
from citycard.terminal_kit.tap import FixedFare, Validator
from citycard.terminal_kit.upload import Uploader


def _sam(terminal_no: str) -> SoftwareSam:
    return SoftwareSam(
        terminal_id=bytes.fromhex(terminal_no),
        purchase_master=SIM_KEYS.purchase_master,
        maintenance_master=SIM_KEYS.maintenance_master,
    )


def _fare(args: argparse.Namespace):
    """The tenant's signed rule document (verified with its public keys), or one fixed fare."""
    if not args.rules:
        return FixedFare(args.fare)
    if not args.rules_keys:
        raise SystemExit("--rules needs --rules-keys (the tenant's public keys, JSON {key_id: base64})")
    keys = {k: base64.b64decode(v) for k, v in json.loads(Path(args.rules_keys).read_text()).items()}
    try:
        return load_signed(json.loads(Path(args.rules).read_text()), keys=keys)
    except (SignatureError, RuleDocumentError) as exc:
        raise SystemExit(f"rule document refused: {exc}") from exc


def simulate(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    divisions = args.issuers.split(",")
    cards = [
        VirtualCard(
            CardProfile(card_no=card_number_build(division=rng.choice(divisions), scheme="01", serial=i)),
            SIM_KEYS,
            balance=rng.randint(0, 3000),
        )
        for i in range(1, args.cards + 1)
    ]
    queue = Path(args.queue or tempfile.mkdtemp(prefix="citycard-terminal-")) / "taps.sqlite"
    holder = None
    if args.pcsc:
        from citycard.terminal_kit.card.vpcd import VpcdCard

        transport = PcscReader(args.reader)
    else:
        transport = InProcessReader()
    v = Validator(
        transport=transport,
        sam=_sam(args.terminal_no),
        store=TapStore(queue),
        fare=_fare(args),
        tenant=args.tenant,
        service="bus",
        route=args.route,
    )
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    for _ in range(args.taps):
        card = rng.choice(cards)
        if args.pcsc:
            holder = VpcdCard(card)
            holder.insert()
            wait_for_card(transport, timeout=5)
        else:
            transport.insert(card)
        result = v.tap()
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        if holder is not None:
            holder.remove()
            while transport.card_present():
                time.sleep(0.01)
    elapsed = time.perf_counter() - started
    print(f"{args.taps} taps in {elapsed:.2f}s on {'pcscd+vpcd' if args.pcsc else 'the in-process reader'}")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome:<10} {count}")
    print(f"queue: {queue} ({len(v.store.taps('complete'))} complete taps waiting for upload)")
    return 0


def _tenant_keys(path: str) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in json.loads(Path(path).read_text()).items()}


def _private_key(path: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(Path(path).read_text().strip()))


def sync(args: argparse.Namespace) -> int:
    store = TapStore(args.queue)
    credentials = TerminalCredentials(
        tenant=args.tenant, key_id=f"{args.terminal_id}:k{args.key_version}", key=_private_key(args.key)
    )
    try:
        held = Downloader(
            base_url=args.url,
            tenant_keys=_tenant_keys(args.tenant_keys),
            credentials=credentials,
            host=args.host,
        ).hotlist(store)
    except DownloadError as exc:
        print(f"sync: {exc}; keeping hotlist version {hotlist_held(store).version}", file=sys.stderr)
        return 1
    print(f"hotlist version {held.version}: {len(held.cards)} cards blocked")
    return 0


def validate(args: argparse.Namespace) -> int:
    reader = PcscReader(args.reader)
    store = TapStore(args.queue)
    v = Validator(
        transport=reader,
        sam=_sam(args.terminal_no),
        store=store,
        hotlist=hotlist_held(store),
        fare=_fare(args),
        tenant=args.tenant,
        service="bus",
        route=args.route,
    )
    print(
        f"validator on {args.reader} (hotlist version {v.hotlist.version}): present a card (Ctrl-C to stop)"
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


def upload(args: argparse.Namespace) -> int:
    key = _private_key(args.key)
    uploader = Uploader(url=args.url, tenant_keys=_tenant_keys(args.tenant_keys), host=args.host)
    store = TapStore(args.queue)
    sent = uploader.drain(
        store,
        terminal_id=args.terminal_id,
        tenant=args.tenant,
        key=key,
        key_id=f"{args.terminal_id}:k{args.key_version}",
        rule_version=args.rule_version,
        hotlist_version=hotlist_held(store).version,
    )
    for ack in uploader.acknowledged:
        print(
            f"{ack['batch_id']}: accepted {ack.get('accepted')} duplicates {ack.get('duplicates')} "
            f"rejected {ack.get('rejected')}"
        )
    print(f"{sent} batches acknowledged")
    return 0


def main(argv: list[str] | None = None) -> int:
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
    parser.add_argument("--rules-keys", help="JSON file {key_id: base64 public key} verifying --rules")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="drive virtual cards through a validator")
    sim.add_argument("--taps", type=int, default=100)
    sim.add_argument("--cards", type=int, default=20)
    sim.add_argument("--issuers", default="330100,330400,310000")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--queue", help="directory for the queue (default: a new temporary one)")
    sim.add_argument("--pcsc", action="store_true", help="through pcscd and the vpcd reader")
    sim.add_argument("--reader", default="Virtual PCD 00 00")
    val = sub.add_parser("validate", help="run a validator on a PC/SC reader")
    val.add_argument("--reader", default="Virtual PCD 00 00")
    val.add_argument("--queue", default="taps.sqlite")
    up = sub.add_parser("upload", help="upload the queue's batches")
    up.add_argument("--url", required=True)
    up.add_argument("--host", help="Host header, when --url names an address")
    up.add_argument("--queue", default="taps.sqlite")
    up.add_argument("--terminal-id", required=True)
    up.add_argument(
        "--key", required=True, help="file with the terminal's Ed25519 private key, base64 of 32 bytes"
    )
    up.add_argument("--key-version", type=int, default=1)
    up.add_argument("--tenant-keys", required=True, help="JSON file {key_id: base64 public key}")
    up.add_argument("--rule-version", type=int, default=0)
    sy = sub.add_parser("sync", help="download the tenant's hotlist into the queue database")
    sy.add_argument("--url", required=True, help="the tenant's site, e.g. https://hangzhou.example")
    sy.add_argument("--host", help="Host header, when --url names an address")
    sy.add_argument("--queue", default="taps.sqlite")
    sy.add_argument("--terminal-id", required=True)
    sy.add_argument(
        "--key", required=True, help="file with the terminal's Ed25519 private key, base64 of 32 bytes"
    )
    sy.add_argument("--key-version", type=int, default=1)
    sy.add_argument("--tenant-keys", required=True, help="JSON file {key_id: base64 public key}")
    args = parser.parse_args(argv)
    return {"simulate": simulate, "validate": validate, "upload": upload, "sync": sync}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
