"""The GB/T 2260 reference list covers the whole country, and keeps what it named before."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from citycard.platform.divisions import CITY, COUNTY, PROVINCE, division_lookup, reference_divisions
from citycard.platform.errors import DomainError

SHIPPED_BEFORE = Path(__file__).resolve().parents[3] / "shared" / "data" / "divisions.csv"  # the list before


def test_counts_per_level_are_the_countrys():
    kinds = Counter(d.kind for d in reference_divisions().values())
    provinces = {d.province for d in reference_divisions().values()}
    # 31 mainland province-level divisions, Hong Kong, Macao and Taiwan.
    assert len(provinces) == 34
    # 22 provinces, 5 autonomous regions and Taiwan; the 4 municipalities and 2 SARs are cities.
    assert kinds[PROVINCE] == 28
    prefecture_level = [
        d
        for d in reference_divisions().values()
        if d.kind == CITY and d.code.endswith("00") and d.code[2:] != "0000"
    ]
    assert 330 <= len(prefecture_level) <= 340
    assert 2_750 <= kinds[COUNTY] <= 2_900
    assert set(kinds) == {PROVINCE, CITY, COUNTY}


@pytest.mark.parametrize(
    ("code", "name_zh", "kind", "parent", "province"),
    [
        ("330000", "浙江省", PROVINCE, None, "浙江"),
        ("330100", "杭州市", CITY, None, "浙江"),
        ("330402", "南湖区", COUNTY, "330400", "浙江"),
        ("330122", "桐庐县", COUNTY, "330100", "浙江"),
        ("110000", "北京市", CITY, None, "北京"),
        ("110105", "朝阳区", COUNTY, "110000", "北京"),
        ("500235", "云阳县", COUNTY, "500000", "重庆"),
        ("429004", "仙桃市", CITY, None, "湖北"),
        ("441900", "东莞市", CITY, None, "广东"),
        ("540100", "拉萨市", CITY, None, "西藏"),
        ("650100", "乌鲁木齐市", CITY, None, "新疆"),
        ("810000", "香港特别行政区", CITY, None, "香港"),
    ],
)
def test_known_codes(code, name_zh, kind, parent, province):
    division = division_lookup(code)
    assert (division.name_zh, division.kind, division.parent_code, division.province) == (
        name_zh,
        kind,
        parent,
        province,
    )
    assert division.name_en


def test_every_county_has_a_city_of_its_province_as_parent():
    divisions = reference_divisions()
    for division in divisions.values():
        if division.kind == COUNTY:
            parent = divisions[division.parent_code]
            assert parent.kind == CITY, division
            assert parent.province == division.province, division
        else:
            assert division.parent_code is None, division


def test_statistical_only_zones_are_not_divisions():
    # The NBS lists development zones (xxxx71-79) that GB/T 2260 does not have.
    with pytest.raises(DomainError) as refused:
        division_lookup("330171")
    assert refused.value.code == "division_unknown"


@pytest.mark.skipif(not SHIPPED_BEFORE.exists(), reason="the earlier list is only on the development machine")
def test_the_rows_shipped_before_are_unchanged():
    with SHIPPED_BEFORE.open(encoding="utf-8") as fh:
        before = list(csv.DictReader(fh))
    divisions = reference_divisions()
    for row in before:
        division = divisions[row["division_code"]]
        assert (
            division.name_zh,
            division.name_en,
            division.province,
            division.kind,
            division.parent_code,
        ) == (
            row["name_zh"],
            row["name_en"],
            row["province"],
            row["kind"],
            row["parent_code"] or None,
        )
