"""城市看板 City dashboard: the tenant's site at a glance, for the city administrator and (read-only, as
everything here) its county officers on their county's own site. Thin over dashboard.selectors; a fixed
number of queries whatever the number of cards, taps and cycles (pinned in tests/tenants/test_dashboard.py)."""

from __future__ import annotations

import datetime as dt

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from citycard.platform import charts
from citycard.platform.models import Role
from citycard.tenants.cards.models import CardState
from citycard.tenants.dashboard import selectors
from citycard.terminal_kit.beijing import BEIJING

DAYS = (30, 90)
CYCLES_SHOWN = 20


def _days(request: HttpRequest) -> int:
    try:
        days = int(request.GET.get("days", DAYS[0]))
    except ValueError:
        return DAYS[0]
    return days if days in DAYS else DAYS[0]


def _until(request: HttpRequest) -> dt.date | None:
    """The last day shown (``?date=2026-11-22``), default today in Asia/Shanghai."""
    try:
        return dt.date.fromisoformat(request.GET.get("date", ""))
    except ValueError:
        return None


def dashboard(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant
    days_back = _days(request)
    until = _until(request) or timezone.now().astimezone(BEIJING).date()
    days = charts.days_between(until - dt.timedelta(days=days_back - 1), until)
    since = days[0]

    cards = selectors.cards_by_scheme_and_state()
    states = sorted({row["state"] for row in cards})
    schemes: dict[str, dict] = {}
    for row in cards:
        scheme = schemes.setdefault(
            row["scheme__code"], {"code": row["scheme__code"], "name": row["scheme__name_zh"], "by_state": {}}
        )
        scheme["by_state"][row["state"]] = row["cards"]
    card_rows = [
        (s["code"], s["name"], [s["by_state"].get(state, 0) for state in states], sum(s["by_state"].values()))
        for s in schemes.values()
    ]
    state_totals = [sum(s["by_state"].get(state, 0) for s in schemes.values()) for state in states]

    taps = charts.by_day(
        selectors.taps_by_day(since=since, until=until), days=days, day="day", group="routing", value="taps"
    )
    manifests = selectors.reconciliation_manifests(since=since - dt.timedelta(days=1))
    issued = charts.by_day(
        [
            {"day": m["business_date"], "who": "out", "n": m["totals"].get("issued_records", 0)}
            for m in manifests
        ],
        days=days,
        day="day",
        group="who",
        value="n",
    )
    routing_names = {
        "own": str(_("own cards")),
        "roaming": str(_("roaming in")),
        "held": str(_("held")),
    }
    taps_chart = charts.series_chart(
        days=days,
        axes=[{"name": str(_("taps")), "unit": "count"}],
        series=[
            *(
                {
                    "name": routing_names.get(routing, routing),
                    "type": "bar",
                    "stack": "taps",
                    "axis": 0,
                    "data": data,
                }
                for routing, data in taps.items()
            ),
            {
                "name": str(_("roaming out (cleared)")),
                "type": "line",
                "axis": 0,
                "data": issued.get("out", [None] * len(days)),
            },
        ],
    )
    nets = charts.by_day(
        [
            {
                "day": m["business_date"],
                "cycle": f"{m['network']} {m['service']}",
                "net": m["totals"].get("net_fen", 0),
            }
            for m in manifests
        ],
        days=days,
        day="day",
        group="cycle",
        value="net",
    )
    positions_chart = charts.series_chart(
        days=days,
        axes=[{"name": str(_("net")), "unit": "fen"}],
        series=[{"name": name, "type": "bar", "axis": 0, "data": data} for name, data in nets.items()],
    )
    flags = selectors.review_flags_waiting()
    tap_totals = {routing: sum(v or 0 for v in data) for routing, data in taps.items()}
    return render(
        request,
        "dashboard/city.html",
        {
            "tenant": tenant,
            "read_only": getattr(request.user, "role", "") != Role.CITY_ADMIN,
            "since": since,
            "until": until,
            "days_back": days_back,
            "choices": DAYS,
            "states": [CardState(s).label if s in CardState.values else s for s in states],
            "card_rows": card_rows,
            "state_totals": state_totals,
            "all_cards": sum(state_totals),
            "tap_totals": tap_totals,
            "taps_chart": taps_chart,
            "positions_chart": positions_chart,
            "manifests": manifests[:CYCLES_SHOWN],
            "exceptions": selectors.delivered_exceptions(since=since)[:50],
            "rejections": selectors.issuer_rejections(since=since),
            "flags": flags,
            "flags_waiting": sum(f["flags"] for f in flags),
            "hotlist": selectors.hotlist_versions(),
            "subsidy_runs": selectors.subsidy_runs(),
            "halves": selectors.half_journeys_released(since=since),
        },
    )
