"""Run the third-party GTFS validator (PyPI ``gtfs-validator``, the canonical GTFS rule set with the
fares v2 rules) on a feed and return its ERROR notices, less the ones every fares-only feed has."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# A fares export has no schedule: these files are the timetable's, not the fares'.
SCHEDULE_FILES = {"agency.txt", "routes.txt", "stops.txt", "trips.txt", "stop_times.txt"}


def validator_errors(feed: Path, out: Path) -> list[dict]:
    binary = Path(sys.executable).with_name("gtfs-validator")
    if not binary.exists():
        raise AssertionError("gtfs-validator is missing: pip install -e '.[dev]' -c constraints.txt")
    subprocess.run(
        [str(binary), "-i", str(feed), "-o", str(out), "-r", ""],
        capture_output=True,
        timeout=120,
        check=False,
    )
    report = json.loads((out / "report.json").read_text())
    errors = []
    for notice in report["notices"]:
        if notice["severity"] != "ERROR" or notice["code"] == "missing_calendar_and_calendar_date_files":
            continue
        samples = notice.get("sampleNotices", [])
        if notice["code"] == "missing_required_file" and all(
            s["filename"] in SCHEDULE_FILES for s in samples
        ):
            continue
        errors.append({"code": notice["code"], "samples": samples})
    return errors
