"""What the commands print for a person: times in Beijing time with +08:00, amounts under a header in yuan."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import citycard
from citycard.platform.management.base import beijing

COMMANDS = sorted(Path(citycard.__file__).resolve().parent.glob("**/management/commands/*.py"))


def test_a_moment_is_printed_in_beijing_time_with_its_offset():
    at = dt.datetime(2026, 11, 21, 15, 0, 5, tzinfo=dt.UTC)
    assert beijing(at) == "2026-11-21 23:00 +08:00"
    assert beijing(at, seconds=True) == "2026-11-21 23:00:05 +08:00"
    assert beijing(None, empty="never") == "never"


def test_no_command_formats_a_moment_itself():
    """Dates and times printed to a person go through ``beijing`` (JSON output keeps ISO with its offset)."""
    offenders = [
        f"{path.name}:{n}"
        for path in COMMANDS
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"%Y-%m-%d %H:%M|%z|dt\.UTC\)|timezone\.utc\)", line)
    ]
    assert offenders == []


def test_amount_columns_say_yuan():
    """A table column of money is headed '(yuan)' or names fen; bare 'amount', 'fee', 'total' are not."""
    money = "amount|fee|total|fund|patient|unit price|receivable|payable|net|replacement"
    bare = re.compile(rf'"({money})"(?=\s*[,)]|\s*$)')
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in COMMANDS
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line)
    ]
    assert offenders == []
