"""An attacker who holds a database dump and the pages an officer sees, trying to rebuild cardholders' ID
numbers and phone numbers from what is readable there (masked forms, dates, decades), the ID's check
character included.

The attacker is given more than a real one would have: every readable piece of evidence is already linked
to the right cardholder (rows by ``cardholder_id`` and card numbers, pages by their links), the division
code (first six digits) counts as known, and so does sex (the parity of the 17th digit). A number counts
as rebuilt when fewer than ``MIN_CANDIDATES`` numbers fit everything readable: the attacker could try them
all at a counter or a call centre.

Pure Python, no Django: the e2e demo test feeds it the demo's ``pg_dump`` and crawled pages, and unit
tests feed it hand-made evidence that must be rebuilt (so the attacker is known to work).
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

MIN_CANDIDATES = 100
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# A concession that starts at an age starts on the birthday or the month after (敬老 at 60, 65, 70…).
_AGE_OFFSETS = (0, 60, 65, 70, 75, 80, 90, 100)
_OLDEST = 110

_ID_TOKEN = re.compile(r"(?<![0-9Xx*])[0-9Xx*]{18}(?![0-9Xx*])")
_PHONE_TOKEN = re.compile(r"(?<![0-9*])1[0-9*]{10}(?![0-9*])")
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_DATES = (
    re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})/(\d{1,2})/(\d{1,2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})年(\d{1,2})月(\d{1,2})日"),
    re.compile(r"(?<![0-9*])(\d{4})(\d{2})(\d{2})(?![0-9*])"),
)
_ENGLISH_DATE = re.compile(r"\b([A-Z][a-z]{2,8})\.? (\d{1,2}), (\d{4})\b")
_YEAR_MONTH = re.compile(r"(?<!\d)(\d{4})(?:-|/|年)(\d{1,2})(?:月)?(?![\d/-])")
_DECADE = re.compile(r"(?<!\d)(\d{2})后")


@dataclass
class Person:
    """What the evaluator knows (the attacker never sees it): the truth, and the evidence linked to it."""

    key: str
    id_number: str
    phone: str = ""
    evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    key: str
    what: str  # "id" or "phone"
    candidates: int
    why: str

    @property
    def rebuilt(self) -> bool:
        return self.candidates < MIN_CANDIDATES


def _dates(text: str) -> set[dt.date]:
    found = set()
    for pattern in _DATES:
        for y, m, d in pattern.findall(text):
            with contextlib.suppress(ValueError):
                found.add(dt.date(int(y), int(m), int(d)))
    for month, day, year in _ENGLISH_DATE.findall(text):
        if month.lower() in _MONTHS:
            with contextlib.suppress(ValueError):
                found.add(dt.date(int(year), _MONTHS[month.lower()], int(day)))
    return found


def _shift(day: dt.date, years: int) -> dt.date | None:
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return None


def _revealed(tokens: Iterable[str], truth: str) -> tuple[set[int], bool]:
    """Positions revealed by tokens consistent with ``truth`` (a token of someone else's tells nothing about
    this person, so it is ignored), and whether a token is the whole number."""
    known: set[int] = set()
    whole = False
    for token in tokens:
        token = token.upper()
        if len(token) != len(truth):
            continue
        shown = {i for i, c in enumerate(token) if c != "*"}
        if any(token[i] != truth[i] for i in shown):
            continue
        known |= shown
        whole = whole or len(shown) == len(truth)
    return known, whole


def birth_options(person: Person, today: dt.date) -> tuple[int, str]:
    """How many birth dates the evidence leaves for this person, and why."""
    number = person.id_number
    birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    text = "\n".join(person.evidence)
    dates = _dates(text)
    for offset in _AGE_OFFSETS:
        shifted = _shift(birth, offset)
        if shifted in dates:
            return 1, f"a date in the evidence is the birth date + {offset} years"
    months = {(d.year, d.month) for d in dates if d.day == 1}
    months |= {(int(y), int(m)) for y, m in _YEAR_MONTH.findall(text) if 1 <= int(m) <= 12}
    for offset in _AGE_OFFSETS:
        year, month = birth.year + offset, birth.month
        after = (year + (month == 12), month % 12 + 1)
        if (year, month) in months or after in months:
            return calendar.monthrange(birth.year, birth.month)[1], f"the birth month (+{offset} years) shows"
    decades = {int(d) for d in _DECADE.findall(text)}
    if birth.year % 100 // 10 * 10 in decades:
        return 3653, "the decade of birth shows"
    return (today - dt.date(today.year - _OLDEST, 1, 1)).days, "nothing about the birth date shows"


def id_verdict(person: Person, today: dt.date) -> Verdict:
    number = person.id_number.upper()
    tokens = _ID_TOKEN.findall("\n".join(person.evidence))
    known, whole = _revealed(tokens, number)
    if whole:
        return Verdict(person.key, "id", 1, "the whole number is readable")
    known |= set(range(6))  # the division: assumed known (a city has a handful of districts)
    births, why = birth_options(person, today)
    if known >= set(range(6, 14)):
        births = 1
    elif known & set(range(6, 14)):
        births = max(1, births // 10 ** len(known & set(range(6, 14))))  # a rough cut is enough here
    sequences = 10 ** (3 - len(known & {14, 15, 16})) // (2 if 16 not in known else 1)
    total = births * sequences
    if 17 in known:
        total = max(1, total // 11)  # the check character, shown, keeps one candidate in eleven
    return Verdict(person.key, "id", total, f"{why}; shown positions {sorted(known)}")


def phone_verdict(person: Person) -> Verdict:
    if not person.phone:
        return Verdict(person.key, "phone", 10**11, "no phone")
    tokens = _PHONE_TOKEN.findall("\n".join(person.evidence))
    known, whole = _revealed(tokens, person.phone)
    if whole:
        return Verdict(person.key, "phone", 1, "the whole number is readable")
    return Verdict(person.key, "phone", 10 ** (11 - len(known | {0})), f"shown positions {sorted(known)}")


def attack(people: Iterable[Person], *, today: dt.date) -> list[Verdict]:
    out = []
    for person in people:
        out += [id_verdict(person, today), phone_verdict(person)]
    return out


# --- linking readable text to people -------------------------------------------------------------------


_COPY = re.compile(r"^COPY (\S+) \(([^)]*)\) FROM stdin;$")


def dump_tables(dump: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The COPY blocks of a plain ``pg_dump``: ``{"schema.table": (columns, rows)}``."""
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    lines = iter(dump.splitlines())
    for line in lines:
        match = _COPY.match(line)
        if not match:
            continue
        columns = [c.strip().strip('"') for c in match.group(2).split(",")]
        rows = []
        for row in lines:
            if row == "\\.":
                break
            rows.append(row.split("\t"))
        tables[match.group(1)] = (columns, rows)
    return tables


_CARD_NO = re.compile(r"(?<!\d)\d{19}(?!\d)")


def link_dump(dump: str, people: dict[tuple[str, int], Person]) -> None:
    """Add every dump row that concerns a person to their evidence: their cardholder row, rows naming their
    cardholder id, rows holding one of their card numbers, audit entries about them."""
    tables = dump_tables(dump)
    cards: dict[str, Person] = {}
    for name, (columns, rows) in tables.items():
        schema, table = name.split(".", 1)
        if table == "cards_card":
            no, holder = columns.index("card_no"), columns.index("cardholder_id")
            for row in rows:
                person = people.get((schema, int(row[holder]))) if row[holder] != "\\N" else None
                if person is not None:
                    cards[row[no]] = person
    for name, (columns, rows) in tables.items():
        schema, table = name.split(".", 1)
        holder_col = (
            columns.index("id")
            if table == "cards_cardholder"
            else columns.index("cardholder_id")
            if "cardholder_id" in columns
            else None
        )
        for row in rows:
            text = "\t".join(row)
            linked: set[int] = set()
            if holder_col is not None and row[holder_col].isdigit():
                person = people.get((schema, int(row[holder_col])))
                if person is not None:
                    linked.add(id(person))
                    person.evidence.append(text)
            if table == "platform_audit_auditentry" or "object_id" in columns:
                kind = row[columns.index("object_type")] if "object_type" in columns else ""
                object_id = row[columns.index("object_id")] if "object_id" in columns else ""
                person = (
                    people.get((schema, int(object_id)))
                    if kind == "cardholder" and object_id.isdigit()
                    else None
                )
                if person is not None and id(person) not in linked:
                    linked.add(id(person))
                    person.evidence.append(text)
            for card_no in set(_CARD_NO.findall(text)):
                person = cards.get(card_no)
                if person is not None and id(person) not in linked:
                    linked.add(id(person))
                    person.evidence.append(text)


_ROW = re.compile(r"<tr[ >].*?</tr>", re.S)
_TAG = re.compile(r"<[^>]+>")
_HOLDER_LINK = re.compile(r"/cardholder/(\d+)/")


def link_pages(pages: Iterable[tuple[str, str, str]], people: dict[tuple[str, int], Person]) -> None:
    """Add what each page shows of a person to their evidence. ``pages``: (schema, url, html). A cardholder's
    own page is theirs whole; elsewhere each table row is linked through the cardholder links and card
    numbers it holds, and any other text through card numbers."""
    by_card: dict[tuple[str, str], Person] = {}
    for (schema, _), person in people.items():
        for text in person.evidence:
            for card_no in _CARD_NO.findall(text):
                by_card.setdefault((schema, card_no), person)
    for schema, url, html in pages:
        own = _HOLDER_LINK.search(url)
        if own and (schema, int(own.group(1))) in people:
            people[(schema, int(own.group(1)))].evidence.append(_TAG.sub(" ", html))
        units = _ROW.findall(html) or [html]
        for unit in units:
            text = _TAG.sub(" ", unit)
            found = [people.get((schema, int(pk))) for pk in _HOLDER_LINK.findall(unit)]
            found += [by_card.get((schema, no)) for no in _CARD_NO.findall(text)]
            for person in {id(p): p for p in found if p is not None}.values():
                person.evidence.append(text)


def summary(verdicts: list[Verdict]) -> dict[str, object]:
    fewest: dict[str, Verdict] = {}
    counts: dict[str, int] = defaultdict(int)
    for verdict in verdicts:
        counts[verdict.what] += 1
        if verdict.what not in fewest or verdict.candidates < fewest[verdict.what].candidates:
            fewest[verdict.what] = verdict
    return {
        "people": counts,
        "rebuilt": [v for v in verdicts if v.rebuilt],
        "fewest": {k: (v.candidates, v.why) for k, v in fewest.items()},
    }
