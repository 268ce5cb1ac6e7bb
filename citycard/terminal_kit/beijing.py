"""Beijing time (北京时间): the clock people read, cards record and business dates are cut by.

The one definition for the whole product: the terminal and, through this pure module, the back office.
China has kept a fixed UTC+08:00 without daylight saving since 1991, so a fixed offset gives the same
local time as the zone database (``Asia/Shanghai``) for every date this product handles, and is cheaper
on the hot paths (ingestion, fares).
"""

from __future__ import annotations

import datetime as dt

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def beijing_now() -> dt.datetime:
    """Now, in Beijing time."""
    return dt.datetime.now(BEIJING)


def beijing_text(at: dt.datetime, *, seconds: bool = False) -> str:
    """A moment as people read it (pages, command output): Beijing time with its offset,
    ``2026-11-21 23:00 +08:00`` (``seconds``: ``2026-11-21 23:00:05 +08:00``)."""
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S +08:00" if seconds else "%Y-%m-%d %H:%M +08:00")
