"""Batch issuance (批量制卡) from a CSV per employer or community, as Jiaxing issued 300k cards by employer.

Columns (header row required; order free; * = required)::

    name*, id_number*, scheme (default 01), phone, address, employer, community,
    local_hukou, local_social_insurance, residence_permit   (1/0, yes/no, true/false, 是/否)
    categories   e.g. ``elderly`` or ``student:2026-09-01:2027-06-30;disabled`` (code[:from[:to]], ';'-separated)

The file is UTF-8 (with or without the BOM Excel writes) or GB18030/GBK (what Excel saves in China);
without an ``encoding`` UTF-8 is tried strictly first, then GB18030, and the report says which was read.
Every bad row is reported with its line and reason; the good rows are applied. Re-running the same file
creates nothing twice: a person already registered (same ID number, via the blind index) is reused, and
a person who already holds a live card of the scheme gets no second one.

The write path is COPY-based: rows are checked and encrypted in Python, copied into temporary tables,
and moved with one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per table and chunk; one audit entry per
chunk lists the cards it created.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError, county_refuse
from citycard.tenants.cards.models import CardScheme, CardState, CategoryCode
from citycard.tenants.cards.pii import (
    Sealer,
    address_mask,
    birth_decade,
    current_tenant,
    id_mask,
    id_number_parse,
    phone_mask,
    phone_normalise,
)
from citycard.tenants.cards.services import scheme_eligible
from citycard.terminal_kit.cardno import card_number_build

CHUNK = 5000
TARGET_STATES = (CardState.APPLIED, CardState.ISSUED, CardState.ACTIVE)
_TRUE = {"1", "y", "yes", "true", "t", "是"}
_FALSE = {"", "0", "n", "no", "false", "f", "否"}
REQUIRED = ("name", "id_number")
KNOWN = {
    "name",
    "id_number",
    "scheme",
    "phone",
    "address",
    "employer",
    "community",
    "local_hukou",
    "local_social_insurance",
    "residence_permit",
    "categories",
}


ENCODINGS = ("utf-8", "gb18030")  # tried in this order; GB18030 reads GBK and GB2312 too


class NewCard(NamedTuple):
    """A card the import created: the CSV line it came from, its holder and its number."""

    line: int
    name: str
    id_masked: str
    scheme: str
    card_no: str


@dataclass
class ImportReport:
    rows: int = 0
    holders_created: int = 0
    holders_existing: int = 0
    cards_created: int = 0
    cards_existing: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    encoding: str = ""
    new_cards: list[NewCard] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "holders_created": self.holders_created,
            "holders_existing": self.holders_existing,
            "cards_created": self.cards_created,
            "cards_existing": self.cards_existing,
            "errors": len(self.errors),
        }


@dataclass
class _Row:
    line: int
    name: str
    id_number: str
    birth_date: dt.date
    sex: str
    scheme: CardScheme
    phone: str
    address: str
    employer: str
    community: str
    hukou: bool
    insured: bool
    permit: bool
    categories: list[tuple[str, dt.date, dt.date | None]]
    blind: str = ""


class _Bad(Exception):
    pass


def _flag(value: str, column: str) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad(f"{column} must be 1/0, yes/no or true/false, not {value!r}")


def _categories(text: str, default_from: dt.date) -> list[tuple[str, dt.date, dt.date | None]]:
    out = []
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        code, *dates = part.split(":")
        if code not in CategoryCode.values:
            raise _Bad(f"unknown category {code!r} (use {', '.join(CategoryCode.values)})")
        try:
            start = dt.date.fromisoformat(dates[0]) if dates and dates[0] else default_from
            end = dt.date.fromisoformat(dates[1]) if len(dates) > 1 and dates[1] else None
        except ValueError:
            raise _Bad(f"category {part!r}: dates must be YYYY-MM-DD") from None
        if end is not None and end < start:
            raise _Bad(f"category {code} ends before it starts")
        out.append((code, start, end))
    return out


def _check(line: int, raw: dict[str, str], schemes: dict[str, CardScheme], today: dt.date) -> _Row:
    for column in REQUIRED:
        if not (raw.get(column) or "").strip():
            raise _Bad(f"{column} is empty")
    name = raw["name"].strip()
    if len(name) > 60:
        raise _Bad("name is longer than 60 characters")
    try:
        parsed = id_number_parse(raw["id_number"])
        phone = phone_normalise(raw["phone"]) if (raw.get("phone") or "").strip() else ""
    except DomainError as exc:
        raise _Bad(f"{exc.field}: {exc.message}") from None
    code = (raw.get("scheme") or "01").strip().zfill(2)
    scheme = schemes.get(code)
    if scheme is None:
        raise _Bad(f"no card scheme {code!r} here")
    if not scheme.enabled:
        raise _Bad(f"card scheme {code} is disabled")
    row = _Row(
        line=line,
        name=name,
        id_number=parsed.number,
        birth_date=parsed.birth_date,
        sex=parsed.sex,
        scheme=scheme,
        phone=phone,
        address=(raw.get("address") or "").strip()[:200],
        employer=(raw.get("employer") or "").strip()[:100],
        community=(raw.get("community") or "").strip()[:100],
        hukou=_flag(raw.get("local_hukou", ""), "local_hukou"),
        insured=_flag(raw.get("local_social_insurance", ""), "local_social_insurance"),
        permit=_flag(raw.get("residence_permit", ""), "residence_permit"),
        categories=_categories(raw.get("categories", ""), today),
    )
    holder_like = type(
        "H",
        (),
        {"local_hukou": row.hukou, "local_social_insurance": row.insured, "residence_permit": row.permit},
    )()
    if not scheme_eligible(scheme=scheme, holder=holder_like):
        raise _Bad(f"not eligible for {scheme.name_zh} (needs one of: {', '.join(scheme.eligibility)})")
    return row


def _copy(cur, table: str, columns: str, rows: Iterable[Iterable[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([r"\N" if v is None else v for v in row])
    buffer.seek(0)
    cur.cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)


def csv_text(path: Path, encoding: str | None = None) -> tuple[str, str]:
    """The text of ``path`` and the encoding it was read with: ``encoding`` if given, else UTF-8 (a BOM
    dropped) when the bytes are valid UTF-8, else GB18030 when they are valid GB18030. Refused otherwise."""
    data = path.read_bytes()
    candidates = (encoding,) if encoding else ENCODINGS
    for name in candidates:
        try:
            text = data.decode(name)
        except LookupError:
            raise DomainError(
                gettext("unknown encoding %(name)r (use utf-8 or gb18030)") % {"name": name}, field="encoding"
            ) from None
        except UnicodeDecodeError as exc:
            if encoding:
                raise DomainError(
                    gettext(
                        "%(path)s is not %(name)s: byte %(start)s cannot be read (try --encoding gb18030 or utf-8)"
                    )
                    % {"path": path.name, "name": name, "start": exc.start},
                    code="encoding",
                    field="encoding",
                ) from None
            continue
        return text.removeprefix("\ufeff"), name
    raise DomainError(
        gettext("%(path)s is neither UTF-8 nor GB18030/GBK: save it as CSV UTF-8 or name its --encoding")
        % {"path": path.name},
        code="encoding",
        field="encoding",
    )


def rows_read(path: Path, encoding: str | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; the header is line 1. See ``csv_text`` for the encodings."""
    text, _ = csv_text(path, encoding)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DomainError(
            gettext("%(path)s: the header lacks %(missing)s")
            % {"path": path.name, "missing": ", ".join(missing)},
            field="file",
        )
    unknown = sorted(set(header) - KNOWN)
    if unknown:
        raise DomainError(
            gettext("%(path)s: unknown columns %(unknown)s")
            % {"path": path.name, "unknown": ", ".join(unknown)},
            field="file",
        )
    reader.fieldnames = header
    for raw in reader:
        yield reader.line_num, raw


def cards_write(path: Path, cards: Iterable[NewCard]) -> None:
    """The cards an import created, one a line under a header, as UTF-8 with a BOM (Excel opens it)."""
    with Path(path).open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(NewCard._fields)
        writer.writerows(cards)


def cards_import(
    *,
    path: Path,
    actor: str,
    state: str = CardState.APPLIED,
    batch: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    today: dt.date | None = None,
    encoding: str | None = None,
) -> ImportReport:
    """Import applications from ``path`` (see the module docstring); cards are created in ``state``
    (applied, or issued/active for cards made and handed out by the batch). Chunks commit one by one.
    ``encoding``: the file's, when not detected (see ``csv_text``)."""
    tenant = current_tenant()
    county_refuse(
        tenant,
        inherits=gettext("card schemes and cards"),
        cannot=gettext("issue cards"),
        code="county_read_only",
    )
    if state not in TARGET_STATES:
        raise DomainError(
            gettext("state must be one of %(TARGET_STATES)s") % {"TARGET_STATES": ", ".join(TARGET_STATES)},
            field="state",
        )
    path = Path(path)
    if not path.is_file():
        raise DomainError(gettext("%(path)s is not a file") % {"path": path}, field="file")
    batch = batch or path.stem
    today = today or timezone.localdate()
    schemes = {s.code: s for s in CardScheme.objects.all()}
    report = ImportReport()
    sealer = Sealer(tenant)
    seen: dict[str, int] = {}
    rows: list[_Row] = []
    report.encoding = csv_text(path, encoding)[1]
    for line, raw in rows_read(path, report.encoding):
        report.rows += 1
        if None in raw:
            report.errors.append((line, "more fields than the header has"))
            continue
        try:
            row = _check(line, raw, schemes, today)
        except _Bad as exc:
            report.errors.append((line, str(exc)))
            continue
        row.blind = sealer.blind("id", row.id_number)
        first = seen.get(row.blind)
        if first is not None:
            report.errors.append((line, f"ID number {id_mask(row.id_number)} repeats line {first}"))
            continue
        seen[row.blind] = line
        rows.append(row)
    total = len(rows)
    for start in range(0, total, CHUNK):
        _apply_chunk(rows[start : start + CHUNK], sealer, state, batch, actor, report)
        if progress is not None:
            progress(min(start + CHUNK, total), total)
    if progress is not None and total == 0:
        progress(0, 0)
    return report


@transaction.atomic
def _apply_chunk(
    rows: list[_Row], sealer: Sealer, state: str, batch: str, actor: str, report: ImportReport
) -> None:
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id_blind, id FROM cards_cardholder WHERE id_blind = ANY(%s)", [[r.blind for r in rows]]
        )
        holder_ids: dict[str, int] = dict(cur.fetchall())
        new = [r for r in rows if r.blind not in holder_ids]
        report.holders_existing += len(rows) - len(new)
        if new:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS cards_import_holder (LIKE cards_cardholder INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            )
            cur.execute("ALTER TABLE cards_import_holder ALTER COLUMN id DROP NOT NULL")
            cur.execute("TRUNCATE cards_import_holder")
            _copy(
                cur,
                "cards_import_holder",
                "name, id_cipher, id_blind, id_masked, phone_cipher, phone_blind, phone_masked, key_id,"
                " birth_decade, sex, address_cipher, address_masked, photo_ref, local_hukou, local_social_insurance,"
                " residence_permit, employer, community, created_at, created_by",
                (
                    (
                        r.name,
                        "\\x" + sealer.seal("id", r.id_number).hex(),
                        r.blind,
                        id_mask(r.id_number),
                        "\\x" + sealer.seal("phone", r.phone).hex() if r.phone else None,
                        sealer.blind("phone", r.phone) if r.phone else "",
                        phone_mask(r.phone) if r.phone else "",
                        sealer.key_id,
                        birth_decade(r.birth_date),
                        r.sex,
                        "\\x" + sealer.seal("address", r.address).hex() if r.address else None,
                        address_mask(r.address),
                        "",
                        r.hukou,
                        r.insured,
                        r.permit,
                        r.employer or "",
                        r.community or "",
                        now.isoformat(),
                        actor,
                    )
                    for r in new
                ),
            )
            cur.execute(
                "INSERT INTO cards_cardholder (name, id_cipher, id_blind, id_masked, phone_cipher, phone_blind,"
                " phone_masked, key_id, birth_decade, sex, address_cipher, address_masked, photo_ref, local_hukou,"
                " local_social_insurance, residence_permit, employer, community, created_at, created_by)"
                " SELECT name, id_cipher, id_blind, id_masked, phone_cipher, phone_blind, phone_masked, key_id,"
                " birth_decade, sex, address_cipher, address_masked, photo_ref, local_hukou, local_social_insurance,"
                " residence_permit, employer, community, created_at, created_by FROM cards_import_holder"
                " ON CONFLICT (id_blind) DO NOTHING RETURNING id_blind, id"
            )
            created = dict(cur.fetchall())
            report.holders_created += len(created)
            holder_ids.update(created)
            if len(created) < len(new):  # registered concurrently: fetch their ids
                cur.execute(
                    "SELECT id_blind, id FROM cards_cardholder WHERE id_blind = ANY(%s)",
                    [[r.blind for r in new if r.blind not in created]],
                )
                holder_ids.update(dict(cur.fetchall()))
            categories = [
                (holder_ids[r.blind], code, start, end, "")
                for r in new
                if r.blind in created
                for code, start, end in r.categories
            ]
            if categories:
                _copy(
                    cur,
                    "cards_cardholdercategory",
                    "cardholder_id, code, valid_from, valid_to, evidence",
                    categories,
                )

        # Who already holds a live card of the row's scheme: no second one.
        cur.execute(
            "SELECT cardholder_id, scheme_id FROM cards_card WHERE cardholder_id = ANY(%s) AND closed_at IS NULL",
            [list({holder_ids[r.blind] for r in rows})],
        )
        holding = set(cur.fetchall())
        wanted = [r for r in rows if (holder_ids[r.blind], r.scheme.pk) not in holding]
        report.cards_existing += len(rows) - len(wanted)
        if not wanted:
            return
        by_scheme: dict[int, list[_Row]] = {}
        for r in wanted:
            by_scheme.setdefault(r.scheme.pk, []).append(r)
        division = connection.tenant.division_code
        stamp = now.isoformat()
        issued = state in (CardState.ISSUED, CardState.ACTIVE)
        card_rows = []
        row_of: dict[str, _Row] = {}  # card number -> the row it was made for
        for scheme_rows in by_scheme.values():
            scheme = scheme_rows[0].scheme
            cur.execute(
                "UPDATE cards_cardscheme SET next_serial = next_serial + %s WHERE id = %s RETURNING next_serial - %s",
                [len(scheme_rows), scheme.pk, len(scheme_rows)],
            )
            first = cur.fetchone()[0]
            expires = _add_years(now.date(), scheme.validity_years) if issued else None
            for offset, r in enumerate(scheme_rows):
                card_no = card_number_build(division=division, scheme=scheme.code, serial=first + offset)
                row_of[card_no] = r
                card_rows.append(
                    (
                        card_no,
                        scheme.pk,
                        holder_ids[r.blind],
                        scheme.is_main,
                        state,
                        stamp,
                        stamp if issued else None,
                        stamp if issued else None,
                        stamp if state == CardState.ACTIVE else None,
                        expires,
                        scheme.card_fee_fen,
                        f"import:{batch}:{r.line}"[:80],
                    )
                )
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS cards_import_card (LIKE cards_card INCLUDING DEFAULTS)"
            " ON COMMIT DELETE ROWS"
        )
        cur.execute("ALTER TABLE cards_import_card ALTER COLUMN id DROP NOT NULL")
        cur.execute("TRUNCATE cards_import_card")
        columns = (
            "card_no, scheme_id, cardholder_id, is_main, state, applied_at, produced_at, issued_at, activated_at,"
            " expires_on, fee_fen, source"
        )
        _copy(cur, "cards_import_card", columns, card_rows)
        cur.execute(
            f"INSERT INTO cards_card ({columns}) SELECT {columns} FROM cards_import_card"
            " ON CONFLICT DO NOTHING RETURNING card_no"
        )
        made = [r[0] for r in cur.fetchall()]
    for card_no in made:
        r = row_of[card_no]
        report.new_cards.append(NewCard(r.line, r.name, id_mask(r.id_number), r.scheme.code, card_no))
    report.cards_created += len(made)
    report.cards_existing += len(card_rows) - len(made)
    audit_record(
        action="card.import",
        actor=actor,
        object_type="card_batch",
        object_id=batch,
        data={"state": state, "holders": len(new), "cards": made},
    )


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
