"""A day of taps (一天的刷卡): virtual cards presented to a validator at the times riders take buses.

Used by ``citycard-terminal simulate --cards … --date … --issuer-keys …`` (a person with an issuer's card
list and test-card keys) and by the platform's ``citycard roaming simulate`` (every host city of a network).
The cards are the project's virtual cards (``terminal_kit.card.virtual``), personalised with the issuer's
keys, so their TACs verify at the acquirer and at the issuer. Their balances and counters are kept in a
wallet file between runs: a card never presents a counter twice, or the issuer's validation would refuse
the second record as a replay.

Inputs a person gives are read here with one-line errors (``DayInputError``): the card list (the CSV
``citycard cards import`` writes with ``--cards-out``: a ``card_no`` column), the issuer's keys file
(``citycard cards test-keys``) and the business date.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.crypto import Algorithm, key_check_value
from citycard.terminal_kit.card.virtual import CardProfile, IssuerKeys, VirtualCard
from citycard.terminal_kit.cardno import CardNumberError, card_number_parse
from citycard.terminal_kit.i18n import N_, said

KEYS_KIND = "citycard.issuer-test-card-keys"
# Riders by hour of the day (Beijing time): the morning and evening peaks of a city bus.
HOURLY_WEIGHTS = {
    6: 3,
    7: 9,
    8: 10,
    9: 6,
    10: 4,
    11: 4,
    12: 5,
    13: 4,
    14: 4,
    15: 4,
    16: 6,
    17: 9,
    18: 10,
    19: 5,
    20: 3,
    21: 2,
    22: 1,
}
START_BALANCE_FEN = 10_000  # a new card in the wallet holds ¥100.00
CARD_COLUMNS = ("card_no", "card", "卡号")
_KEY_NAMES = ("purchase_master", "tac_master", "load_master", "maintenance_master")


class DayInputError(Exception):
    """A card list, keys file or date that cannot be used: the message is the one line to print."""


def business_date_parse(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DayInputError(
            said(N_("--date %(value)r is not a date: give YYYY-MM-DD, e.g. 2026-11-21"), value=value)
        ) from None


def card_list_read(path: Path) -> list[str]:
    """The card numbers of a CSV with a header naming a ``card_no`` (or ``card``, ``卡号``) column, UTF-8
    with or without BOM: what ``citycard cards import --cards-out`` writes. Every number is checked."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DayInputError(said(N_("card list %(path)s: no such file"), path=path)) from None
    except UnicodeDecodeError as exc:
        raise DayInputError(
            said(
                N_("card list %(path)s is not UTF-8 (byte %(start)s): save it as UTF-8"),
                path=path,
                start=exc.start,
            )
        ) from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    column = next((c for c in CARD_COLUMNS if c in header), None)
    if column is None:
        raise DayInputError(
            said(
                N_(
                    "card list %(path)s: no card number column (the header needs one of %(columns)s; it has %(header)s)"
                ),
                path=path,
                columns=", ".join(CARD_COLUMNS),
                header=", ".join(header) or "nothing",
            )
        )
    reader.fieldnames = header
    numbers: list[str] = []
    for line, row in enumerate(reader, start=2):
        number = (row.get(column) or "").strip()
        try:
            card_number_parse(number)
        except CardNumberError as exc:
            raise DayInputError(
                said(N_("card list %(path)s line %(line)s: %(exc)s"), path=path, line=line, exc=exc)
            ) from None
        numbers.append(number)
    if not numbers:
        raise DayInputError(said(N_("card list %(path)s holds no cards"), path=path))
    return list(dict.fromkeys(numbers))


@dataclass(frozen=True)
class IssuerCardKeys:
    """An issuer's keys for its test cards, as ``citycard cards test-keys`` exports them."""

    issuer: str  # tenant code
    divisions: tuple[str, ...]  # the issuer's division code and its counties' (the cards' prefixes)
    keys: IssuerKeys


def issuer_keys_document(
    *, issuer: str, divisions: Iterable[str], keys: IssuerKeys, exported_at: dt.datetime
) -> dict:
    """The JSON an issuer hands out with its test cards: the masters in hex, each with its key check value
    so a damaged or edited file is refused when read."""
    document: dict = {
        "kind": KEYS_KIND,
        "issuer": issuer,
        "divisions": sorted(divisions),
        "algorithm": keys.algorithm.name,
        "key_index": keys.key_index,
        "exported_at": exported_at.isoformat(timespec="seconds"),
    }
    for name in _KEY_NAMES:
        key = getattr(keys, name)
        document[name] = {"key": key.hex(), "kcv": key_check_value(key, keys.algorithm).hex()}
    return document


def issuer_keys_read(path: Path) -> IssuerCardKeys:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DayInputError(said(N_("issuer keys %(path)s: no such file"), path=path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DayInputError(
            said(N_("issuer keys %(path)s is not JSON: %(exc)s"), path=path, exc=exc)
        ) from None
    if not isinstance(document, dict) or document.get("kind") != KEYS_KIND:
        raise DayInputError(
            said(
                N_(
                    "issuer keys %(path)s is not an issuer's test-card keys file (export one with"
                    " `citycard cards --tenant CODE test-keys --out FILE`)"
                ),
                path=path,
            )
        )
    try:
        algorithm = Algorithm[document["algorithm"]]
        masters = {}
        for name in _KEY_NAMES:
            key = bytes.fromhex(document[name]["key"])
            if len(key) != 16 or key_check_value(key, algorithm).hex() != document[name]["kcv"].lower():
                raise DayInputError(
                    said(
                        N_("issuer keys %(path)s: %(name)s does not match its check value (kcv)"),
                        path=path,
                        name=name,
                    )
                )
            masters[name] = key
        divisions = tuple(str(d) for d in document["divisions"])
        keys = IssuerKeys(**masters, algorithm=algorithm, key_index=int(document["key_index"]))
        return IssuerCardKeys(issuer=str(document["issuer"]), divisions=divisions, keys=keys)
    except (KeyError, TypeError, ValueError) as exc:
        raise DayInputError(
            said(N_("issuer keys %(path)s: missing or bad field %(exc)s"), path=path, exc=exc)
        ) from None


def cards_of_issuer(card_nos: list[str], keys: IssuerCardKeys) -> None:
    """Refuse a card list that is not the keys' issuer's: its cards would fail at the PSAM and the issuer."""
    strangers = [n for n in card_nos if n[:6] not in keys.divisions]
    if strangers:
        raise DayInputError(
            f"card {strangers[0]} is not issued by {keys.issuer} (its keys are for"
            f" {', '.join(keys.divisions)}): give that issuer's keys file"
            + (f"; {len(strangers) - 1} more cards like it" if len(strangers) > 1 else "")
        )


class Wallet:
    """Each simulated card's balance and counter, kept in a JSON file between runs."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.cards: dict[str, dict[str, int]] = {}
        if path is not None and path.exists():
            self.cards = json.loads(path.read_text())

    def card(
        self, card_no: str, keys: IssuerKeys, *, categories: frozenset[str] = frozenset()
    ) -> VirtualCard:
        state = self.cards.setdefault(card_no, {"balance_fen": START_BALANCE_FEN, "counter": 0})
        return VirtualCard(
            CardProfile(card_no=card_no, categories=categories),
            keys,
            balance=state["balance_fen"],
            offline_atc=state["counter"],
        )

    def keep(self, card: VirtualCard) -> None:
        self.cards[card.profile.card_no] = {"balance_fen": card.balance, "counter": card.offline_atc}

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.cards, indent=0, sort_keys=True))
            temporary.replace(self.path)


def tap_times(day: dt.date, taps: int, rng: random.Random) -> list[dt.datetime]:
    """``taps`` moments of ``day`` (Beijing time), sorted, spread over the hours as riders are."""
    hours = rng.choices(list(HOURLY_WEIGHTS), weights=list(HOURLY_WEIGHTS.values()), k=taps)
    return sorted(
        dt.datetime.combine(day, dt.time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=BEIJING)
        for hour in hours
    )


def day_ride(
    *,
    present: Callable[[VirtualCard, dt.datetime], str],
    cards: list[VirtualCard],
    day: dt.date,
    taps: int,
    rng: random.Random,
) -> dict[str, int]:
    """Present ``taps`` rides of ``cards`` on ``day`` through ``present(card, at) -> outcome`` (the
    validator); the outcomes counted. A card short of the fare is declined (余额不足), as on a bus."""
    outcomes: dict[str, int] = {}
    for at in tap_times(day, taps, rng):
        card = rng.choice(cards)
        outcome = present(card, at)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
