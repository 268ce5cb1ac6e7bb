"""The GB/T 2260 reference list of administrative divisions shipped with the product.

It names every province (省级), prefecture-level city (地级) and county-level division (县级: counties,
districts, county-level cities) of the country, with the province each belongs to, so
``citycard tenant create --division 330400`` can fill in the rest. See data/README for its source.

Kinds follow what a tenant can be: a ``city`` (a prefecture-level city; a municipality or SAR, whose
province-level code is the city; a county-level city governed by its province directly, e.g. 429004 仙桃市),
a ``county`` (whose ``parent_code`` is its city) or a ``province``, which is never a tenant.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from django.utils.translation import gettext

from citycard.platform.errors import DomainError

DIVISION_RE = re.compile(r"^[1-8]\d{5}$")
CITY, COUNTY, PROVINCE = "city", "county", "province"


@dataclass(frozen=True)
class Division:
    code: str
    name_zh: str
    name_en: str
    province: str
    kind: str  # CITY, COUNTY or PROVINCE
    parent_code: str | None

    @property
    def province_code(self) -> str:
        return self.code[:2]


@cache
def reference_divisions() -> dict[str, Division]:
    text = resources.files("citycard.platform").joinpath("data/divisions.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return {
        row["division_code"]: Division(
            code=row["division_code"],
            name_zh=row["name_zh"],
            name_en=row["name_en"],
            province=row["province"],
            kind=row["kind"],
            parent_code=row["parent_code"] or None,
        )
        for row in rows
    }


def division_lookup(code: str) -> Division:
    """The reference entry for ``code``; DomainError naming the problem if malformed or unknown."""
    code = (code or "").strip()
    if not DIVISION_RE.match(code):
        raise DomainError(
            gettext("division code %(code)r is malformed: expected 6 digits (GB/T 2260), e.g. 330400")
            % {"code": code},
            code="division_malformed",
            field="division",
        )
    try:
        return reference_divisions()[code]
    except KeyError:
        raise DomainError(
            gettext("division code %(code)s is not in the GB/T 2260 reference list of this platform")
            % {"code": code},
            code="division_unknown",
            field="division",
        ) from None
