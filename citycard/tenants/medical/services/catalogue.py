"""The treatment place's catalogue (医保目录): items one by one, or a CSV file of them.

An item's class says what the fund may cover: 甲类 (A) in full, 乙类 (B) after the patient's self-pay share
(``self_pay_bps``), 丙类 (C) nothing. An item that is withdrawn (``active`` false) or was never listed is
outside the catalogue: the patient pays it (claims.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from citycard.platform.audit.services import audit_record
from citycard.platform.errors import DomainError
from citycard.tenants.medical.models import CatalogueItem, Coverage, ItemCategory
from citycard.tenants.medical.selectors import CSV_COLUMNS

# The classes as people write them in a file: A/B/C or 甲/乙/丙.
CLASS_ALIASES = {
    "A": "A",
    "B": "B",
    "C": "C",
    "甲": "A",
    "乙": "B",
    "丙": "C",
    "甲类": "A",
    "乙类": "B",
    "丙类": "C",
}
CSV_REQUIRED = ("code", "name", "category", "unit_price_fen", "class")
ITEM_FIELDS = ("name", "category", "unit_price_fen", "coverage", "self_pay_bps", "active")


def catalogue_item_check(
    *, code: str, name: str, category: str, unit_price_fen: int, coverage: str, self_pay_bps: int
) -> None:
    """Refuse an item that cannot be in a catalogue (one DomainError naming the field); writes nothing."""
    if not code or len(code) > 30 or not code.isprintable() or code != code.strip():
        raise DomainError(
            gettext("code %(code)r must be 1-30 printable characters") % {"code": code}, field="code"
        )
    if not (name or "").strip() or len(name) > 100:
        raise DomainError(gettext("an item needs a name of 1-100 characters"), field="name")
    if category not in ItemCategory.values:
        raise DomainError(
            gettext("category %(category)r is not one of %(values)s")
            % {"category": category, "values": ", ".join(ItemCategory.values)},
            field="category",
        )
    if coverage not in Coverage.values:
        raise DomainError(
            gettext("class %(coverage)r is not A (甲), B (乙) or C (丙)") % {"coverage": coverage},
            field="coverage",
        )
    if type(unit_price_fen) is not int or unit_price_fen < 0:
        raise DomainError(
            gettext("the unit price is a whole number of fen, 0 or more"), field="unit_price_fen"
        )
    if type(self_pay_bps) is not int or not 0 <= self_pay_bps <= 10000:
        raise DomainError(gettext("the self-pay share is 0..10000 basis points"), field="self_pay_bps")
    if self_pay_bps and coverage != Coverage.B:
        raise DomainError(gettext("only a 乙类 (B) item has a self-pay share"), field="self_pay_bps")


def _item_values(item: CatalogueItem) -> dict[str, Any]:
    return {f: getattr(item, f) for f in ITEM_FIELDS}


@transaction.atomic
def catalogue_item_save(
    *,
    code: str,
    name: str,
    category: str,
    unit_price_fen: int,
    coverage: str,
    self_pay_bps: int = 0,
    active: bool = True,
    actor: str,
) -> CatalogueItem:
    """Add an item to the catalogue or change it (by code); the audit entry keeps what changed."""
    catalogue_item_check(
        code=code,
        name=name,
        category=category,
        unit_price_fen=unit_price_fen,
        coverage=coverage,
        self_pay_bps=self_pay_bps,
    )
    values = {
        "name": name.strip(),
        "category": category,
        "unit_price_fen": unit_price_fen,
        "coverage": coverage,
        "self_pay_bps": self_pay_bps,
        "active": active,
    }
    item = CatalogueItem.objects.select_for_update().filter(code=code).first()
    before = _item_values(item) if item is not None else None
    if item is None:
        item = CatalogueItem.objects.create(code=code, **values)
    elif before != values:
        for name_, value in values.items():
            setattr(item, name_, value)
        item.save(update_fields=list(values))
    else:
        return item
    audit_record(
        action="medical.catalogue_item_save",
        actor=actor,
        object_type="catalogue_item",
        object_id=code,
        data={"before": before, "after": values},
    )
    return item


@dataclass
class CatalogueImportReport:
    """What an import did: rows read, items added, changed and unchanged, and the bad rows by line."""

    rows: int = 0
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "errors": len(self.errors),
        }


def _row_values(raw: Mapping[str, str | None]) -> dict[str, Any]:
    def text(name: str) -> str:
        return (raw.get(name) or "").strip()

    def whole(name: str, default: int | None = None) -> int:
        value = text(name)
        if not value and default is not None:
            return default
        if not value.isdigit():
            raise DomainError(
                gettext("%(name)s %(value)r is not a whole number") % {"name": name, "value": value},
                field=name,
            )
        return int(value)

    coverage = CLASS_ALIASES.get(text("class").upper() if text("class").isascii() else text("class"))
    if coverage is None:
        raise DomainError(
            gettext("class %(value)r is not A/B/C (甲/乙/丙)") % {"value": text("class")}, field="class"
        )
    active = text("active").lower()
    if active not in ("", "1", "0", "true", "false", "yes", "no"):
        raise DomainError(
            gettext("active %(value)r is not true or false") % {"value": text("active")}, field="active"
        )
    return {
        "code": text("code"),
        "name": text("name"),
        "category": text("category"),
        "unit_price_fen": whole("unit_price_fen"),
        "coverage": coverage,
        "self_pay_bps": whole("self_pay_bps", 0),
        "active": active in ("", "1", "true", "yes"),
    }


@transaction.atomic
def catalogue_import(*, text: str, source: str, actor: str) -> CatalogueImportReport:
    """Add or change catalogue items from CSV ``text`` (UTF-8; header ``code,name,category,
    unit_price_fen,class[,self_pay_bps][,active]``; class A/B/C or 甲/乙/丙; money in fen, the self-pay
    share in basis points). Bad rows are reported by line and skipped; the good ones are applied in one
    transaction, with one audit entry for the file naming every item it added or changed. Importing the
    same file again changes nothing."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [(h or "").strip() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise DomainError(
            gettext("%(source)s: the header lacks %(missing)s")
            % {"source": source, "missing": ", ".join(missing)},
            field="file",
        )
    unknown = sorted(set(header) - set(CSV_COLUMNS))
    if unknown:
        raise DomainError(
            gettext("%(source)s: unknown columns %(unknown)s")
            % {"source": source, "unknown": ", ".join(unknown)},
            field="file",
        )
    reader.fieldnames = header
    report = CatalogueImportReport()
    good: dict[str, tuple[int, dict[str, Any]]] = {}
    for raw in reader:
        line = reader.line_num
        report.rows += 1
        if None in raw:
            report.errors.append((line, "more fields than the header has"))
            continue
        try:
            values = _row_values(raw)
            catalogue_item_check(**{k: v for k, v in values.items() if k != "active"})
        except DomainError as exc:
            report.errors.append((line, exc.message))
            continue
        if values["code"] in good:
            report.errors.append((line, f"code {values['code']} repeats line {good[values['code']][0]}"))
            continue
        good[values["code"]] = (line, values)
    existing = {i.code: i for i in CatalogueItem.objects.select_for_update().filter(code__in=list(good))}
    created, changed = [], []
    for code, (_, values) in good.items():
        item = existing.get(code)
        after = {k: values[k] for k in ITEM_FIELDS}
        if item is None:
            created.append(CatalogueItem(code=code, **after))
        elif _item_values(item) != after:
            for name_, value in after.items():
                setattr(item, name_, value)
            changed.append(item)
    CatalogueItem.objects.bulk_create(created)
    CatalogueItem.objects.bulk_update(changed, list(ITEM_FIELDS))
    report.created, report.changed = len(created), len(changed)
    report.unchanged = len(good) - len(created) - len(changed)
    if created or changed:
        audit_record(
            action="medical.catalogue_import",
            actor=actor,
            object_type="catalogue",
            object_id=source[:80],
            data={
                "created": sorted(i.code for i in created),
                "changed": sorted(i.code for i in changed),
                "bad_rows": len(report.errors),
            },
        )
    return report
