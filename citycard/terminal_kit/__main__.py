"""``citycard-terminal``: run a validator on a PC/SC reader, simulate a day of taps, upload the queue.

What it says to a person is Chinese unless ``--lang en`` or ``CITYCARD_LANGUAGE=en`` (``i18n``); amounts in
yuan, times in Beijing time.

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
    citycard-terminal ride-code --code CC1.… --queue taps.sqlite [--divisions 330100] [--code-issuers F]
                                                     a ride paid by a citizen code (电子市民码乘车)
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

from citycard.terminal_kit.beijing import BEIJING, beijing_text
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
from citycard.terminal_kit.ecode import CodeIssuer, EcodeVerifier
from citycard.terminal_kit.entitlements import code_issuers_held, list_held, list_keep
from citycard.terminal_kit.fares import RuleDocumentError, load_signed
from citycard.terminal_kit.i18n import (
    LANGUAGES,
    N_,
    ArgumentParser,
    _,
    language_activate,
    language_from,
    ngettext,
    reason,
    translated,
)
from citycard.terminal_kit.keyring import (
    SIGNS_ACKNOWLEDGEMENTS,
    SIGNS_FARE_RULES,
    SIGNS_HOTLISTS,
    keyring_held,
)
from citycard.terminal_kit.money import yuan
from citycard.terminal_kit.provision import ProvisioningError, keys_from_json, psam_load_keys
from citycard.terminal_kit.reader import InProcessReader, PcscReader, ReaderError, wait_for_card
from citycard.terminal_kit.sam import Psam, SamError
from citycard.terminal_kit.signing import SignatureError, TerminalCredentials
from citycard.terminal_kit.store import BatchNotSetAside, TapStore
from citycard.terminal_kit.sync import Downloader, DownloadError, hotlist_held
from citycard.terminal_kit.tap import FixedFare, Validator, code_ride
from citycard.terminal_kit.upload import AcknowledgementRefused, NotAnswered, Uploader, UploadGaveUp

# The help's examples: (command, what it does).
EXAMPLES = (
    (
        "citycard-terminal simulate --taps 200 [--pcsc]",
        N_("virtual cards through a validator, then a summary"),
    ),
    (
        "citycard-terminal --tenant hangzhou simulate --card-list jiaxing.cards.csv --issuer-keys"
        " jiaxing-keys.json --date 2026-11-21 --taps 200 --queue bus-1",
        N_("an issuer's cards riding a business date"),
    ),
    (
        'citycard-terminal validate --reader "Virtual PCD 00 00" --psam-reader "Virtual PCD 00 01" --queue'
        " taps.sqlite",
        "",
    ),
    (
        'citycard-terminal psam-load --psam-reader "Virtual PCD 00 01" --keys keys.json --transport-key t.key'
        ' --actor "name (office)" --audit psam-audit.jsonl',
        "",
    ),
    (
        "citycard-terminal sync --url https://hangzhou.example --queue taps.sqlite --terminal-id HZ-BUS-0001"
        " --key terminal.key [--platform-key platform-key.json]",
        "",
    ),
    (
        "citycard-terminal upload --url https://hangzhou.example/terminal/v1/batches --queue taps.sqlite"
        " --terminal-id HZ-BUS-0001 --key terminal.key [--give-up-after S]",
        "",
    ),
    (
        "citycard-terminal queue --queue taps.sqlite",
        N_("batches waiting, taps not yet in one, set aside"),
    ),
    ("citycard-terminal queue --queue taps.sqlite requeue BATCH_ID [--rebatch]", ""),
    ('citycard-terminal queue --queue taps.sqlite drop BATCH_ID --reason "why"', ""),
    (
        "citycard-terminal ride-code --code CC1.… --queue taps.sqlite [--divisions 330100] [--code-issuers F]",
        N_("a ride paid by a citizen code (电子市民码乘车)"),
    ),
)

# A tap's outcome as a person reads it (the code stays beside it: it is what the queue and logs hold).
OUTCOMES = {
    "approved": N_("approved"),
    "declined": N_("declined"),
    "retap": N_("tap again"),
    "blocked": N_("blocked"),
    "no_card": N_("no card"),
    "error": N_("error"),
}
# A tap's result in an acknowledgement, when the back office did not take it.
TAP_RESULTS = {"rejected": N_("rejected"), "conflict": N_("conflict")}
# A set-aside batch's state (store.SetAsideBatch.state).
BATCH_STATES = {
    "set_aside": N_("set aside"),
    "requeued": N_("requeued"),
    "rebatched": N_("rebatched"),
    "dropped": N_("dropped"),
}


def labelled(labels: dict[str, str], code: str) -> str:
    """A code as a person reads it: its label in the command's language with the code beside it
    (``通过 (approved)``); the bare code when it has no label or the label is the code (English)."""
    label = _(labels[code]) if code in labels else code
    return code if label == code else f"{label} ({code})"


def _when(stored: str | None) -> str:
    """A time the queue keeps (ISO 8601 with its offset) in Beijing time, as people read it."""
    if not stored:
        return ""
    try:
        at = dt.datetime.fromisoformat(stored)
    except ValueError:
        return stored
    return beijing_text(at if at.tzinfo else at.replace(tzinfo=dt.UTC), seconds=True)


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
            _(
                "--rules needs --rules-keys (the tenant's public keys, JSON {key_id: base64}) or keys from"
                " `sync`"
            )
        )
    try:
        return load_signed(json.loads(Path(args.rules).read_text()), keys=keys)
    except (SignatureError, RuleDocumentError) as exc:
        raise SystemExit(_("rule document refused: %(why)s") % {"why": reason(exc)}) from exc


def _sim_cards(
    args: argparse.Namespace, rng: random.Random, wallet: Wallet
) -> tuple[list[VirtualCard], list[str], IssuerKeys]:
    """The cards to present, the issuers the PSAM must serve and the keys it is loaded with: an issuer's card
    list under its test-card keys, or made-up cards under the development keys."""
    if args.card_list:
        if not args.issuer_keys:
            raise DayInputError(
                _("--card-list needs --issuer-keys (the file `citycard cards test-keys` exports)")
            )
        issuer = issuer_keys_read(Path(args.issuer_keys))
        numbers = card_list_read(Path(args.card_list))
        cards_of_issuer(numbers, issuer)
        return [wallet.card(n, issuer.keys) for n in numbers], list(issuer.divisions), issuer.keys
    if args.issuer_keys:
        raise DayInputError(_("--issuer-keys goes with --card-list (that issuer's cards)"))
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
            raise SystemExit(
                _("the virtual PSAM did not appear in %(reader)r") % {"reader": args.psam_reader}
            )
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
        for _tap in range(args.taps):
            outcome = present(rng.choice(cards), None)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    elapsed = time.perf_counter() - started
    wallet.save()
    sam.close()
    if psam_holder is not None:
        psam_holder.remove()
    values = {
        "taps": args.taps,
        "cards": len(cards),
        "day": day.isoformat() if day else "",
        "seconds": f"{elapsed:.2f}",
        "reader": "pcscd+vpcd" if args.pcsc else _("the in-process reader"),
    }
    if day:
        line = _("%(taps)s taps of %(cards)s cards on %(day)s (Beijing time) in %(seconds)ss on %(reader)s")
    else:
        line = _("%(taps)s taps of %(cards)s cards in %(seconds)ss on %(reader)s")
    print(line % values)
    for outcome, count in sorted(outcomes.items()):
        print(f"  {labelled(OUTCOMES, outcome)}  {count}")
    waiting = len(v.store.taps("complete"))
    print(
        _("queue: %(queue)s (%(taps)s complete taps waiting for upload)") % {"queue": queue, "taps": waiting}
    )
    print(
        _("upload them: %(command)s")
        % {
            "command": f"citycard-terminal --tenant {args.tenant} upload --url https://{args.tenant}.example"
            f"/terminal/v1/batches --queue {queue} --terminal-id TERMINAL-ID --key TERMINAL.key"
        }
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
        print(
            _("sync: %(why)s; keeping the keys held (%(count)s)")
            % {"why": reason(exc), "count": len(held.entries) if held else 0},
            file=sys.stderr,
        )
        failed = True
    else:
        ring = taken.ring
        if taken.first_use:
            print(
                _("trusting platform key %(key)s on first use (pin it with --platform-key)")
                % {"key": taken.signed_by}
            )
        print(
            _("keys of %(tenant)s issued %(at)s: %(count)s")
            % {
                "tenant": ring.tenant,
                "at": beijing_text(ring.issued_at, seconds=True),
                "count": len(ring.entries),
            }
        )
    down = replace(down, tenant_keys=_held_keys(store, SIGNS_HOTLISTS, args.tenant_keys))
    try:
        held_list = down.hotlist(store)
    except DownloadError as exc:
        print(
            _("sync: %(why)s; keeping hotlist version %(version)s")
            % {"why": reason(exc), "version": hotlist_held(store).version},
            file=sys.stderr,
        )
        return 1
    print(
        _("hotlist version %(version)s: %(count)s cards blocked")
        % {"version": held_list.version, "count": len(held_list.cards)}
    )
    if args.entitlements:
        held = list_held(store)
        try:
            entitlements = down.entitlements(held)
        except DownloadError as exc:
            print(
                _("sync: %(why)s; keeping entitlement list version %(version)s")
                % {"why": reason(exc), "version": held.version},
                file=sys.stderr,
            )
            return 1
        list_keep(store, entitlements)
        print(
            _("entitlement list version %(version)s: %(count)s entries; citizen-code keys of %(homes)s")
            % {
                "version": entitlements.version,
                "count": len(entitlements),
                "homes": ", ".join(sorted(entitlements.code_issuer_keys)) or "-",
            }
        )
    return 1 if failed else 0


def _code_issuers_file(path: str) -> list[CodeIssuer]:
    """Citizen-code issuers from a JSON file {tenant: {"divisions": [...], "keys": {key id: base64}}}."""
    try:
        raw = json.loads(Path(path).read_text())
        return [
            CodeIssuer(
                tenant,
                frozenset(entry["divisions"]),
                {key_id: base64.b64decode(public) for key_id, public in entry["keys"].items()},
            )
            for tenant, entry in sorted(raw.items())
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DayInputError(
            _("--code-issuers %(path)s is not a file of code issuers: %(why)s") % {"path": path, "why": exc}
        ) from exc


def ride_code(args: argparse.Namespace) -> int:
    """A ride paid by the citizen code the rider shows (电子市民码乘车, fare medium 04): verified offline with
    the issuers' keys the terminal synced (and a --code-issuers file), priced like a tap, queued for
    ``upload``. Exit status 0 approved, 1 refused, 2 no keys to verify with."""
    store = TapStore(args.queue)
    now = dt.datetime.now(BEIJING)
    given = _code_issuers_file(args.code_issuers) if args.code_issuers else []
    divisions = [d.strip() for d in (args.divisions or args.terminal_no[:6]).split(",") if d.strip()]
    synced = code_issuers_held(store, tenant=args.tenant, divisions=divisions, at=now)
    issuers = given + [i for i in synced if i.tenant not in {g.tenant for g in given}]
    if not issuers:
        print(
            _(
                "ride-code: this terminal holds no citizen-code keys: run `citycard-terminal sync"
                " --entitlements` first (or give --code-issuers)"
            ),
            file=sys.stderr,
        )
        return 2
    result = code_ride(
        token=args.code,
        codes=EcodeVerifier(issuers=issuers, store=store),
        store=store,
        fare=_fare(args, store),
        tenant=args.tenant,
        service="bus",
        route=args.route,
        terminal_no=args.terminal_no,
        hotlist=hotlist_held(store),
        at=now,
    )
    print(
        _("%(outcome)s %(card)s fare %(fare)s (citizen code): %(message)s")
        % {
            "outcome": labelled(OUTCOMES, result.outcome),
            "card": result.card_no or "-",
            "fare": yuan(result.fare_fen) if result.fare_fen is not None else "-",
            "message": translated(result.message),
        }
    )
    if result.outcome != "approved":
        return 1
    print(
        _("queue: %(queue)s (%(taps)s complete taps waiting for upload)")
        % {"queue": args.queue, "taps": len(store.taps("complete"))}
    )
    return 0


def validate(args: argparse.Namespace) -> int:
    reader = PcscReader(args.reader)
    store = TapStore(args.queue)
    fare = _fare(args, store)
    sam = Psam(PcscReader(args.psam_reader))
    try:
        sam.open()
    except (SamError, ReaderError) as exc:
        print(
            _("PSAM in %(reader)r: %(why)s") % {"reader": args.psam_reader, "why": reason(exc)},
            file=sys.stderr,
        )
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
        _(
            "validator on %(reader)s, PSAM %(psam)s in %(psam_reader)s (hotlist version %(version)s): present"
            " a card (Ctrl-C to stop)"
        )
        % {
            "reader": args.reader,
            "psam": sam.terminal_id.hex(),
            "psam_reader": args.psam_reader,
            "version": v.hotlist.version,
        }
    )
    try:
        while True:
            try:
                if not wait_for_card(reader, timeout=1.0):
                    continue
            except ReaderError as exc:
                print(_("reader: %(why)s") % {"why": reason(exc)}, file=sys.stderr)
                return 2
            result = v.tap()
            card = result.card_no or "-"
            print(
                _("%(outcome)s %(card)s fare %(fare)s balance %(balance)s: %(message)s")
                % {
                    "outcome": labelled(OUTCOMES, result.outcome),
                    "card": card,
                    "fare": yuan(result.fare_fen) or "-",
                    "balance": yuan(result.balance_fen) or "-",
                    "message": translated(result.message),
                }
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
        print(_("psam-load: %(why)s") % {"why": reason(exc)}, file=sys.stderr)
        return 1
    for entry in entries:
        print(
            _(
                "loaded %(usage)s key v%(version)s %(algorithm)s of %(issuer)s into PSAM %(psam)s (terminal"
                " %(terminal)s), kcv %(kcv)s"
            )
            % {
                "usage": entry["usage"],
                "version": entry["version"],
                "algorithm": entry["algorithm"],
                "issuer": entry["issuer"],
                "psam": entry["psam_serial"],
                "terminal": entry["terminal_no"],
                "kcv": entry["kcv"],
            }
        )
    print(_("%(count)s keys loaded; audit log %(audit)s") % {"count": len(entries), "audit": args.audit})
    return 0


def _taps(count: int) -> str:
    return ngettext("%(count)s tap", "%(count)s taps", count) % {"count": count}


def _batches(count: int) -> str:
    return ngettext("%(count)s batch", "%(count)s batches", count) % {"count": count}


def _print_waiting(batch_id: str, failure: NotAnswered, wait_s: float) -> None:
    print(
        _("%(batch)s: %(what)s; trying again in %(seconds)s s")
        % {"batch": batch_id, "what": translated(failure.what), "seconds": f"{wait_s:.1f}"},
        file=sys.stderr,
        flush=True,
    )


def upload(args: argparse.Namespace) -> int:
    """Exit status 0: every batch acknowledged; 1: some set aside (``queue`` shows them); 2: stopped with
    batches still queued (the deadline, Ctrl-C, an acknowledgement that does not verify or is signed by a
    key not held, no acknowledgement keys held at all: the last two are mended by ``sync``)."""
    key = _private_key(args.key)
    store = TapStore(args.queue)
    tenant_keys = _held_keys(store, SIGNS_ACKNOWLEDGEMENTS, args.tenant_keys)
    if not tenant_keys:
        print(
            _(
                "upload: this terminal holds no keys to verify acknowledgements with: run `citycard-terminal"
                " sync` first; the queue is kept"
            ),
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
        stopped = reason(exc)
    except KeyboardInterrupt:
        stopped = _("stopped by Ctrl-C; the batch being sent stays queued")
    for ack in uploader.acknowledged:
        counts = {k: ack.get(k) for k in ("accepted", "duplicates", "rejected", "conflicts")}
        line = _("%(batch)s: accepted %(accepted)s duplicates %(duplicates)s rejected %(rejected)s")
        if ack.get("conflicts"):
            line += _(" conflicts %(conflicts)s")
        print(line % {"batch": ack["batch_id"], **counts})
        for result in ack.get("results", []):
            if result.get("outcome") in ("rejected", "conflict"):
                print(
                    "  "
                    + _("tap %(seq)s (card %(card)s, counter %(counter)s) %(outcome)s: %(reason)s")
                    % {
                        "seq": result.get("terminal_seq"),
                        "card": result.get("card_no"),
                        "counter": result.get("card_counter"),
                        "outcome": labelled(TAP_RESULTS, result["outcome"]),
                        "reason": result.get("reason") or _("no reason given"),
                    }
                )
    for aside in uploader.set_aside:
        print(
            _(
                "%(batch)s: set aside (%(taps)s), refused with %(status)s %(code)s: %(message)s; `%(command)s` to"
                " requeue or drop it"
            )
            % {
                "batch": aside.batch_id,
                "taps": _taps(aside.taps),
                "status": aside.status,
                "code": aside.code,
                "message": aside.message,
                "command": f"citycard-terminal queue --queue {args.queue}",
            }
        )
    print(
        _("%(batches)s acknowledged, %(aside)s set aside")
        % {"batches": _batches(len(uploader.acknowledged)), "aside": len(uploader.set_aside)}
    )
    if stopped:
        print(_("upload: %(why)s") % {"why": stopped}, file=sys.stderr)
        return 2
    return 1 if uploader.set_aside else 0


def queue(args: argparse.Namespace) -> int:
    store = TapStore(args.queue)
    now = dt.datetime.now(dt.UTC)
    try:
        if args.action == "requeue":
            aside = store.batch_requeue(batch_id=args.batch_id, at=now, rebatch=args.rebatch)
            if args.rebatch:
                line = _("%(batch)s: requeued (%(taps)s); its taps go in a new batch at the next upload")
            else:
                line = _("%(batch)s: requeued (%(taps)s); it is sent again as it was at the next upload")
            print(line % {"batch": aside.batch_id, "taps": _taps(aside.taps)})
            return 0
        if args.action == "drop":
            aside = store.batch_drop(batch_id=args.batch_id, reason=args.reason, at=now)
            print(
                _("%(batch)s: dropped, %(taps)s will not be uploaded (%(reason)s)")
                % {"batch": aside.batch_id, "taps": _taps(aside.taps), "reason": args.reason}
            )
            return 0
    except (BatchNotSetAside, ValueError) as exc:
        print(
            _("queue: %(why)s; `%(command)s` lists the set-aside batches")
            % {"why": reason(exc), "command": f"citycard-terminal queue --queue {args.queue}"},
            file=sys.stderr,
        )
        return 1
    state = store.queue_state()
    in_batches = sum(b.taps for b in state.batches)
    print(
        _(
            "%(queue)s: %(batches)s waiting (%(taps)s), %(unbatched)s not yet in a batch, %(unsettled)s pending"
            " or torn (waiting for their card)"
        )
        % {
            "queue": args.queue,
            "batches": _batches(len(state.batches)),
            "taps": _taps(in_batches),
            "unbatched": _taps(state.unbatched),
            "unsettled": _taps(state.unsettled),
        }
    )
    for batch in state.batches:
        print(
            "  "
            + _("%(batch)s  created %(at)s  %(taps)s")
            % {"batch": batch.batch_id, "at": _when(batch.created_at), "taps": _taps(batch.taps)}
        )
    open_ = [a for a in state.set_aside if a.state == "set_aside"]
    decided = [a for a in state.set_aside if a.state != "set_aside"]
    print(
        _("set aside: %(batches)s (%(taps)s)")
        % {"batches": _batches(len(open_)), "taps": _taps(sum(a.taps for a in open_))}
    )
    for aside in open_:
        print(
            "  "
            + _("%(batch)s  %(taps)s  %(status)s %(code)s  at %(at)s: %(message)s")
            % {
                "batch": aside.batch_id,
                "taps": _taps(aside.taps),
                "status": aside.status,
                "code": aside.code,
                "at": _when(aside.set_aside_at),
                "message": aside.message,
            }
        )
    if open_:
        print(
            "  "
            + _(
                "to send one again: %(command)s requeue BATCH_ID [--rebatch: its taps in a new batch]; to give"
                " it up: … drop BATCH_ID --reason WHY"
            )
            % {"command": f"citycard-terminal queue --queue {args.queue}"}
        )
    if decided:
        print(_("decided: %(count)s") % {"count": len(decided)})
        for aside in decided:
            values = {
                "batch": aside.batch_id,
                "state": labelled(BATCH_STATES, aside.state),
                "at": _when(aside.decided_at),
                "status": aside.status,
                "code": aside.code,
                "taps": _taps(aside.taps),
            }
            if aside.reason:
                line = _("%(batch)s  %(state)s at %(at)s: %(reason)s (was %(status)s %(code)s, %(taps)s)")
                values["reason"] = aside.reason
            else:
                line = _("%(batch)s  %(state)s at %(at)s (was %(status)s %(code)s, %(taps)s)")
            print("  " + line % values)
    return 0


def parser_build() -> argparse.ArgumentParser:
    """The command's arguments, in the active language; --tenant and --lang are accepted before and after the
    sub-command, as by `citycard`."""
    parser = ArgumentParser(
        prog="citycard-terminal",
        description="\n".join(
            [_("Run a validator on a PC/SC reader, simulate a day of taps, upload the queue."), ""]
            + [f"  {command}" + (f"\n      {_(what)}" if what else "") for command, what in EXAMPLES]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tenant", default="hangzhou", help=_("tenant code"))
    parser.add_argument(
        "--lang",
        choices=LANGUAGES,
        default=argparse.SUPPRESS,
        help=_("the language of what the command says (default: CITYCARD_LANGUAGE, else zh-hans)"),
    )
    parser.add_argument("--route", default="151", help=_("the route the validator serves"))
    parser.add_argument("--terminal-no", default="330100000001", help=_("the 6-byte terminal number, hex"))
    parser.add_argument("--fare", type=int, default=200, help=_("fixed fare in fen (without --rules)"))
    parser.add_argument(
        "--rules", help=_("the tenant's signed rule document (JSON), e.g. from `citycard fares export`")
    )
    parser.add_argument(
        "--rules-keys",
        help=_(
            "JSON file {key_id: base64 public key} verifying --rules (validate: default the keys `sync`"
            " fetched)"
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, title=_("commands"))
    sim = sub.add_parser("simulate", help=_("drive virtual cards through a validator"))
    sim.add_argument("--taps", type=int, default=100, help=_("taps to make"))
    sim.add_argument(
        "--card-list",
        metavar="CSV",
        help=_(
            "an issuer's cards: a CSV with a card_no column, e.g. from `citycard cards import --cards-out`"
        ),
    )
    sim.add_argument(
        "--issuer-keys",
        metavar="FILE",
        help=_("the issuer's test-card keys (`citycard cards --tenant CODE test-keys --out FILE`)"),
    )
    sim.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        help=_("the business date ridden, taps spread over its hours (default: now)"),
    )
    sim.add_argument("--cards", type=int, default=20, help=_("made-up cards, without --card-list"))
    sim.add_argument(
        "--issuers", default="330100,330400,310000", help=_("the made-up cards' issuers (division codes)")
    )
    sim.add_argument("--seed", type=int, default=1, help=_("seed of the random choices"))
    sim.add_argument("--queue", help=_("directory for the queue (default: a new temporary one)"))
    sim.add_argument("--pcsc", action="store_true", help=_("through pcscd and the vpcd reader"))
    sim.add_argument("--reader", default="Virtual PCD 00 00", help=_("the cards' reader"))
    sim.add_argument("--psam-reader", default="Virtual PCD 00 01", help=_("the PSAM's reader"))
    val = sub.add_parser("validate", help=_("run a validator on a PC/SC reader, with its PSAM in another"))
    val.add_argument("--reader", default="Virtual PCD 00 00", help=_("the cards' reader"))
    val.add_argument("--psam-reader", default="Virtual PCD 00 01", help=_("the PSAM's reader"))
    val.add_argument("--queue", default="taps.sqlite", help=_("the queue database"))
    pl = sub.add_parser("psam-load", help=_("load issuers' keys into a PSAM (key ceremony, audited)"))
    pl.add_argument("--psam-reader", default="Virtual PCD 00 01", help=_("the PSAM's reader"))
    pl.add_argument(
        "--keys",
        required=True,
        help=_('JSON [{"usage", "issuer", "version", "algorithm": "SM4", "key": hex}]'),
    )
    pl.add_argument("--transport-key", required=True, help=_("file with the PSAM's transport key, hex"))
    pl.add_argument("--actor", required=True, help=_("who loads the keys (recorded in the audit log)"))
    pl.add_argument("--audit", required=True, help=_("the audit log (JSON lines, appended)"))
    up = sub.add_parser("upload", help=_("upload the queue's batches"))
    up.add_argument("--url", required=True, help=_("the tenant's batch address"))
    up.add_argument("--host", help=_("Host header, when --url names an address"))
    up.add_argument("--queue", default="taps.sqlite", help=_("the queue database"))
    up.add_argument("--terminal-id", required=True, help=_("the terminal's registered id"))
    up.add_argument(
        "--key", required=True, help=_("file with the terminal's Ed25519 private key, base64 of 32 bytes")
    )
    up.add_argument("--key-version", type=int, default=1, help=_("the version of that key"))
    up.add_argument(
        "--tenant-keys", help=_("JSON file {key_id: base64 public key}, besides the keys `sync` fetched")
    )
    up.add_argument("--rule-version", type=int, default=0, help=_("the fare rules' version the taps used"))
    up.add_argument(
        "--max-taps",
        type=int,
        default=500,
        help=_("taps in a new batch at most (after a 413, requeue it with --rebatch and send smaller ones)"),
    )
    up.add_argument(
        "--give-up-after",
        type=float,
        metavar="S",
        help=_(
            "stop waiting for the back office after S seconds (default: never; the queue is kept either way)"
        ),
    )
    qu = sub.add_parser("queue", help=_("the upload queue: waiting batches and taps, set-aside batches"))
    qu.add_argument("--queue", default="taps.sqlite", help=_("the queue database"))
    qa = qu.add_subparsers(dest="action", title=_("actions"))
    rq = qa.add_parser("requeue", help=_("send a set-aside batch again"))
    rq.add_argument("batch_id", help=_("the batch's id"))
    rq.add_argument(
        "--rebatch",
        action="store_true",
        help=_("put its taps back in the queue for a new batch, signed afresh"),
    )
    rq.add_argument("--queue", default=argparse.SUPPRESS, help=_("the queue database"))
    dr = qa.add_parser("drop", help=_("give up a set-aside batch: its taps leave the queue for good"))
    dr.add_argument("batch_id", help=_("the batch's id"))
    dr.add_argument("--reason", required=True, help=_("why (kept with the batch's record)"))
    dr.add_argument("--queue", default=argparse.SUPPRESS, help=_("the queue database"))
    sy = sub.add_parser("sync", help=_("download the tenant's hotlist into the queue database"))
    sy.add_argument("--url", required=True, help=_("the tenant's site, e.g. https://hangzhou.example"))
    sy.add_argument("--host", help=_("Host header, when --url names an address"))
    sy.add_argument("--queue", default="taps.sqlite", help=_("the queue database"))
    sy.add_argument("--terminal-id", required=True, help=_("the terminal's registered id"))
    sy.add_argument(
        "--key", required=True, help=_("file with the terminal's Ed25519 private key, base64 of 32 bytes")
    )
    sy.add_argument("--key-version", type=int, default=1, help=_("the version of that key"))
    sy.add_argument(
        "--platform-key",
        help=_("JSON file {key_id: base64} of the platform key to pin (default: trust on first use)"),
    )
    sy.add_argument(
        "--tenant-keys", help=_("JSON file {key_id: base64 public key}, besides the keys fetched")
    )
    sy.add_argument(
        "--entitlements",
        action="store_true",
        help=_("also the offline entitlement list, with the visitors' home cities' citizen-code keys"),
    )
    rc = sub.add_parser("ride-code", help=_("take a ride paid by a citizen code (电子市民码乘车)"))
    rc.add_argument("--code", required=True, help=_("the citizen code the rider shows (CC1.…)"))
    rc.add_argument("--queue", default="taps.sqlite", help=_("the queue database"))
    rc.add_argument(
        "--divisions",
        help=_(
            "the card divisions the tenant issues, comma-separated (default: the first 6 digits of"
            " --terminal-no)"
        ),
    )
    rc.add_argument(
        "--code-issuers",
        metavar="FILE",
        help=_(
            'JSON {tenant: {"divisions": [...], "keys": {key_id: base64}}}: code issuers besides those synced'
        ),
    )
    for each in [*dict.fromkeys(sub.choices.values()), *dict.fromkeys(qa.choices.values())]:
        each.add_argument(
            "--tenant", default=argparse.SUPPRESS, help=_("tenant code (as before the sub-command)")
        )
        each.add_argument(
            "--lang", choices=LANGUAGES, default=argparse.SUPPRESS, help=_("as before the sub-command")
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command in the language asked for (``--lang``, else ``CITYCARD_LANGUAGE``, else
    Chinese); exit status as each sub-command says, 2 for input it cannot use."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        language_activate(language_from(arguments))
    except ValueError as exc:
        print(f"citycard-terminal: {exc}", file=sys.stderr)
        return 2
    args = parser_build().parse_args(arguments)
    commands = {
        "simulate": simulate,
        "validate": validate,
        "psam-load": psam_load,
        "upload": upload,
        "queue": queue,
        "sync": sync,
        "ride-code": ride_code,
    }
    try:
        return commands[args.command](args)
    except DayInputError as exc:
        print(f"citycard-terminal {args.command}: {reason(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
