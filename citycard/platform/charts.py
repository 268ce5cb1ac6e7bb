"""Chart specs for the console's and the dashboards' ECharts (static/citycard/charts.js draws them).

A spec is plain JSON embedded in the page with Django's ``json_script``: amounts stay integer fen (the
script shows them as yuan in axes and tooltips), days are ISO dates (Beijing business dates).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every date from ``first`` to ``last``, inclusive."""
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def by_day(
    rows: Iterable[dict[str, Any]], *, days: list[dt.date], day: str, group: str, value: str
) -> dict[str, list[int | None]]:
    """``{group: [value on each of days, None where there is none]}`` from rows of (day, group, value);
    groups sorted. Values of the same day and group are added up."""
    index = {d: i for i, d in enumerate(days)}
    out: dict[str, list[int | None]] = {}
    for row in rows:
        at = index.get(row[day])
        if at is None:
            continue
        line = out.setdefault(str(row[group]), [None] * len(days))
        line[at] = (line[at] or 0) + int(row[value] or 0)
    return dict(sorted(out.items()))


def series_chart(
    *, days: list[dt.date], axes: list[dict[str, str]], series: list[dict[str, Any]]
) -> dict[str, Any]:
    """A chart over days: ``axes`` [{"name", "unit": count|fen|percent}], ``series`` [{"name", "type":
    bar|line, "axis": index, "data": [...]}]."""
    return {"kind": "series", "x": [d.isoformat() for d in days], "axes": axes, "series": series}


def heatmap_chart(
    *,
    columns: list[str],
    rows: list[str],
    cells: Iterable[tuple[str, str, int, int]],
    column_name: str = "",
    row_name: str = "",
    records_label: str = "",
) -> dict[str, Any]:
    """A heat map of amounts in fen: ``cells`` (row, column, fen, records)."""
    x, y = {c: i for i, c in enumerate(columns)}, {r: i for i, r in enumerate(rows)}
    return {
        "kind": "heatmap",
        "x": columns,
        "y": rows,
        "x_name": column_name,
        "y_name": row_name,
        "records_label": records_label,
        "unit": "fen",
        "data": [[x[c], y[r], int(fen), int(n)] for r, c, fen, n in cells],
    }


_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


def heatmap_chart_json(
    *,
    columns: list[str],
    rows: list[str],
    points_json: str,
    column_name: str = "",
    row_name: str = "",
    records_label: str = "",
) -> str:
    """``heatmap_chart`` as the JSON text of a ``<script type="application/json">`` element (escaped as
    Django's ``json_script`` does), its points given as JSON text (``[[column, row, fen, records], …]``,
    as PostgreSQL aggregated them): a 300 × 300 matrix's 90,000 points are spliced in, not parsed and
    dumped again. The points must hold no ``<`` (checked)."""
    # Nothing in them can end the script element (a "<"); they are PostgreSQL's JSON of integers.
    if "<" in points_json:
        raise ValueError("heat map points must be JSON arrays of integers")
    spec = heatmap_chart(
        columns=columns,
        rows=rows,
        cells=(),
        column_name=column_name,
        row_name=row_name,
        records_label=records_label,
    )
    spec["data"] = "@points@"
    head, tail = json.dumps(spec, ensure_ascii=False).translate(_SCRIPT_ESCAPES).rsplit('"@points@"', 1)
    return f"{head}{points_json}{tail}"


def percent(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent, two decimals; None when there is no whole."""
    return round(100 * part / whole, 2) if whole else None
