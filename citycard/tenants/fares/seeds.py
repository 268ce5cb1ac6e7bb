"""The seed rules of the demo tenants, as rule-document fragments (pure data, no Django).

From the seeds' source documents: Hangzhou buses charge 90% with the citizen card (“91折”, read as
10% off as the issue states) and 50% on lines 1–499 except 315 with a monthly pass (公交月票);
Jiaxing lines 1 and 3 are half price with the card. Elderly (敬老) and disabled (爱心卡) concessions,
the 90-minute transfer discount, the daily cap and the visitor policies are the demo's own choices.
``fares_document_load`` (services) turns one of these into the tenant's rule rows; tests use them as
rule documents directly (with ``home_divisions`` and network members filled in).
"""

from __future__ import annotations

from typing import Any

ALL_MEDIA = ["01", "02", "03", "04"]

# Off-peak for elderly free rides: weekdays outside 07:00-09:00 and 17:00-19:00, weekends all day.
_OFF_PEAK = [
    {"days": [1, 2, 3, 4, 5], "start": "00:00", "end": "07:00"},
    {"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"},
    {"days": [1, 2, 3, 4, 5], "start": "19:00", "end": "24:00"},
    {"days": [6, 7], "start": "00:00", "end": "24:00"},
]
_PEAK = [
    {"days": [1, 2, 3, 4, 5], "start": "07:00", "end": "09:00"},
    {"days": [1, 2, 3, 4, 5], "start": "17:00", "end": "19:00"},
]

HANGZHOU: dict[str, Any] = {
    "route_sets": {
        "hz-bus-1-499-ex315": {"service": "bus", "ranges": [[1, 499]], "except": ["315"]},
        "hz-metro": {
            "service": "metro",
            "routes": ["1", "2", "3", "4", "5", "6", "7", "9", "10", "16", "19"],
        },
    },
    "timeframes": {"hz-off-peak": _OFF_PEAK, "hz-peak": _PEAK},
    "quotas": [{"id": "hz-elderly-free", "name": "敬老 free rides", "period": "month", "rides": 30}],
    "fare_products": [
        {"id": "hz-bus", "name": "公交 standard fare", "service": "bus", "amount_fen": 200},
        {
            "id": "hz-metro",
            "name": "地铁 flat fare",
            "service": "metro",
            "route_set": "hz-metro",
            "amount_fen": 400,
        },
    ],
    "leg_rules": [
        {
            "id": "hz-card-91",
            "name": "市民卡乘公交 91折",
            "service": "bus",
            "media": ALL_MEDIA,
            "kind": "percent",
            "value": 9000,
            "priority": 10,
        },
        {
            "id": "hz-monthly-pass",
            "name": "公交月票 1-499路(315路除外) 50%",
            "service": "bus",
            "route_set": "hz-bus-1-499-ex315",
            "passes": ["monthly"],
            "riders": "local",
            "kind": "percent",
            "value": 5000,
            "priority": 20,
        },
        {
            "id": "hz-elderly-peak",
            "name": "敬老 half price",
            "service": "bus",
            "categories": ["elderly"],
            "kind": "percent",
            "value": 5000,
            "priority": 30,
        },
        {
            "id": "hz-elderly-free",
            "name": "敬老 free off-peak (30 rides a month)",
            "service": "bus",
            "categories": ["elderly"],
            "timeframe": "hz-off-peak",
            "quota": "hz-elderly-free",
            "kind": "free",
            "priority": 40,
        },
        {
            "id": "hz-disabled-free",
            "name": "爱心卡 free",
            "service": "bus",
            "categories": ["disabled"],
            "kind": "free",
            "priority": 50,
        },
        {
            "id": "hz-metro-card",
            "name": "地铁 91折 with the card",
            "service": "metro",
            "media": ALL_MEDIA,
            "kind": "percent",
            "value": 9000,
            "priority": 10,
        },
        {
            "id": "hz-metro-elderly",
            "name": "地铁 敬老 half price",
            "service": "metro",
            "categories": ["elderly", "disabled"],
            "kind": "percent",
            "value": 5000,
            "priority": 30,
        },
    ],
    "transfer_rules": [
        {
            "id": "hz-bus-transfer",
            "name": "90 分钟内换乘优惠 1 元",
            "from_service": "bus",
            "to_service": "bus",
            "within_minutes": 90,
            "max_transfers": 1,
            "transfer_type": 1,
            "amount_fen": -100,
        },
        {
            "id": "hz-bus-metro",
            "name": "公交换乘地铁 1 元优惠",
            "from_service": "bus",
            "to_service": "metro",
            "within_minutes": 90,
            "max_transfers": 1,
            "transfer_type": 1,
            "amount_fen": -100,
        },
    ],
    "caps": [{"id": "hz-day-cap", "name": "每日封顶 15 元", "period": "day", "amount_fen": 1500}],
    "visitor_policy": {
        "default": "no_concession",
        "networks": [{"network": "yrd", "policy": "home_category"}],
        "tenants": [],
    },
}

JIAXING: dict[str, Any] = {
    "route_sets": {"jx-1-3": {"service": "bus", "routes": ["1", "3"]}},
    "timeframes": {},
    "quotas": [],
    "fare_products": [{"id": "jx-bus", "name": "公交 standard fare", "service": "bus", "amount_fen": 200}],
    "leg_rules": [
        {
            "id": "jx-lines-1-3-half",
            "name": "市区1路、3路 半价",
            "service": "bus",
            "route_set": "jx-1-3",
            "media": ALL_MEDIA,
            "kind": "percent",
            "value": 5000,
            "priority": 10,
        },
        {
            "id": "jx-elderly-free",
            "name": "敬老 free",
            "service": "bus",
            "categories": ["elderly"],
            "kind": "free",
            "priority": 30,
        },
        {
            "id": "jx-disabled-free",
            "name": "爱心卡 free",
            "service": "bus",
            "categories": ["disabled"],
            "kind": "free",
            "priority": 40,
        },
    ],
    "transfer_rules": [],
    "caps": [],
    "visitor_policy": {
        "default": "no_concession",
        "networks": [{"network": "yrd", "policy": "host_rules"}],
        "tenants": [],
    },
}

# A plain rule set for the other demo cities: the card pays 95%, elderly and disabled ride free.
GENERIC: dict[str, Any] = {
    "route_sets": {},
    "timeframes": {},
    "quotas": [],
    "fare_products": [{"id": "bus", "name": "公交 standard fare", "service": "bus", "amount_fen": 200}],
    "leg_rules": [
        {
            "id": "card-95",
            "name": "card 95%",
            "service": "bus",
            "media": ALL_MEDIA,
            "kind": "percent",
            "value": 9500,
            "priority": 10,
        },
        {
            "id": "elderly-free",
            "name": "敬老 free",
            "service": "bus",
            "categories": ["elderly"],
            "kind": "free",
            "priority": 30,
        },
        {
            "id": "disabled-free",
            "name": "爱心卡 free",
            "service": "bus",
            "categories": ["disabled"],
            "kind": "free",
            "priority": 40,
        },
    ],
    "transfer_rules": [],
    "caps": [],
    "visitor_policy": {"default": "host_rules", "networks": [], "tenants": []},
}

SEEDS = {"hangzhou": HANGZHOU, "jiaxing": JIAXING}


# --- metro: stations, lines, a distance fare table, gate rules ------------------------------------------
#
# Hangzhou metro's published scale (杭州地铁票价): 2 yuan up to 4 km, then 1 yuan more every 4 km to 12 km,
# every 6 km to 24 km, every 8 km beyond. Shenzhen (深圳地铁): 2 yuan up to 4 km, then 1 yuan every 4 km to
# 16 km, every 6 km to 34 km (the demo's reading of "16-30 km"), every 8 km beyond. The stations and
# their distances are the demo's own (a line of a dozen stations each), not the real lines.
HANGZHOU_TABLE = {
    "id": "hz-metro-km",
    "name": "杭州地铁里程票价",
    "measure": "km",
    "rows": [[4, 200], [8, 300], [12, 400], [18, 500], [24, 600]],
    "beyond": {"every": 8, "add_fen": 100},
}
SHENZHEN_TABLE = {
    "id": "sz-metro-km",
    "name": "深圳地铁里程票价",
    "measure": "km",
    "rows": [[4, 200], [8, 300], [12, 400], [16, 500], [22, 600], [28, 700], [34, 800]],
    "beyond": {"every": 8, "add_fen": 100},
}
# Entry debits nothing; a journey must end within 4 hours, else the line's maximum fare at the next
# entry; an exit with no entry pays the maximum; out where you came in within 30 minutes: 2 yuan.
GATE_RULES = {
    "service": "metro",
    "entry_fen": 0,
    "time_limit_minutes": 240,
    "incomplete_fen": 900,
    "no_entry_fen": 900,
    "same_station_minutes": 30,
    "same_station_fen": 200,
}


def metro_line(
    prefix: str,
    line: str,
    names: list[str],
    spacing_m: list[int],
    *,
    origin: tuple[float, float] = (0.0, 0.0),
) -> dict[str, Any]:
    """Stops and one line: station ids ``<prefix>-<line>-<nn>``, distances accumulated from the spacings;
    the demo places the stations due north of ``origin`` (lat, lon) at those distances (positions are
    decimal strings, as in GTFS: a signed document carries no floats)."""
    stops, order, metres = [], [], 0
    for i, name in enumerate(names):
        sid = f"{prefix}-{line}-{i + 1:02d}"
        stops.append(
            {"id": sid, "name": name, "lat": f"{origin[0] + metres / 111_320:.6f}", "lon": f"{origin[1]:.6f}"}
        )
        order.append([sid, metres])
        if i < len(spacing_m):
            metres += spacing_m[i]
    return {"stops": stops, "lines": [{"id": line, "service": "metro", "stops": order}]}


def metro_fragment(
    prefix: str,
    line: str,
    names: list[str],
    spacing_m: list[int],
    table: dict[str, Any],
    *,
    product: str,
    origin: tuple[float, float],
) -> dict[str, Any]:
    """A rule-document fragment: one metro line priced entry -> exit by the distance table."""
    fragment = metro_line(prefix, line, names, spacing_m, origin=origin)
    fragment.update(
        areas={f"{prefix}-metro": {"name": "metro", "stops": [s["id"] for s in fragment["stops"]]}},
        fare_tables=[table],
        fare_products=[
            {
                "id": product,
                "name": f"{table['name']} ({line})",
                "service": "metro",
                "from_area": f"{prefix}-metro",
                "to_area": f"{prefix}-metro",
                "fare_table": table["id"],
                "priority": 10,
            }
        ],
        gate_rules=[dict(GATE_RULES)],
    )
    return fragment


HANGZHOU_METRO = metro_fragment(
    "hz",
    "1",
    [
        "湘湖",
        "滨康路",
        "西兴",
        "滨和路",
        "江陵路",
        "近江",
        "婺江路",
        "城站",
        "定安路",
        "龙翔桥",
        "凤起路",
        "武林广场",
    ],
    [2100, 1600, 1500, 1400, 2800, 1300, 1200, 1500, 900, 1000, 900],
    HANGZHOU_TABLE,
    product="hz-metro-km",
    origin=(30.13, 120.25),
)
SHENZHEN_METRO = metro_fragment(
    "sz",
    "1",
    [
        "罗湖",
        "国贸",
        "老街",
        "大剧院",
        "科学馆",
        "华强路",
        "岗厦",
        "会展中心",
        "购物公园",
        "香蜜湖",
        "车公庙",
        "竹子林",
    ],
    [1000, 900, 1100, 1000, 900, 1200, 1100, 900, 1500, 1400, 1600],
    SHENZHEN_TABLE,
    product="sz-metro-km",
    origin=(22.53, 114.11),
)


def metro_network(lines: int = 6, stations: int = 50, *, prefix: str = "net") -> dict[str, Any]:
    """A generated network (benchmarks, tests): ``lines`` lines of ``stations`` stations 800–1,900 m apart;
    line k shares its station 20 with line k+1's station 5 (an interchange), and line k's station 40 is
    joined to line k+1's station 30 as two platforms of one interchange (a join)."""
    doc: dict[str, Any] = {"stops": [], "lines": [], "joins": []}
    for k in range(lines):
        order, metres = [], 0
        for i in range(stations):
            sid = f"{prefix}-{k}-{i:02d}"
            if k > 0 and i == 5:
                sid = f"{prefix}-{k - 1}-20"  # the interchange: one station on both lines
            else:
                doc["stops"].append({"id": sid, "name": sid})
            order.append([sid, metres])
            metres += 800 + (k * 37 + i * 211) % 1100
        doc["lines"].append({"id": f"L{k}", "service": "metro", "stops": order})
        if k > 0:
            doc["joins"].append({"from_stop": f"{prefix}-{k - 1}-40", "to_stop": f"{prefix}-{k}-30"})
    return doc


# The demo cities with a metro line: the fragment is added to their rules (docs/fares.md, Metro).
METROS = {"hangzhou": HANGZHOU_METRO, "shenzhen": SHENZHEN_METRO}
