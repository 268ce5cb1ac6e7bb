"""kill -9 the terminal mid-flight: every tap the rider was told about is in the queue, nothing twice."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

from citycard.terminal_kit.store import TapStore

CHILD = r"""
import sys
from pathlib import Path
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.store import TapStore
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.terminal_kit import kit

path = Path(sys.argv[1])
v = kit.validator(InProcessReader(kit.card(balance=10**8)), path.parent)
key = Ed25519PrivateKey.generate()
n = 0
while True:
    result = v.tap()
    if result.outcome == "approved":
        print("told", result.record["terminal_seq"], flush=True)
    n += 1
    if n % 7 == 0:
        v.store.batch_open(terminal_id="T1", tenant="hangzhou", key=key, key_id="T1:k1", rule_version=1,
                           hotlist_version=1, max_taps=5)
"""


def test_killing_the_terminal_at_any_moment_loses_nothing(tmp_path):
    for round_ in range(3):
        db = tmp_path / f"r{round_}" / "taps.sqlite"
        db.parent.mkdir()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, cwd=str(_root())
        )
        told: list[int] = []
        deadline = time.monotonic() + 0.6 + 0.3 * round_
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if line.startswith("told"):
                told.append(int(line.split()[1]))
        child.send_signal(signal.SIGKILL)
        child.wait()
        told.extend(
            int(line.split()[1]) for line in child.stdout.read().splitlines() if line.startswith("told")
        )
        assert told, "the child never tapped"
        check = sqlite3.connect(db)
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check.close()
        store = TapStore(db)
        complete = {t.terminal_seq: t for t in store.taps("complete")}
        assert set(told) <= set(complete), "a tap the rider was told about is missing"
        seqs = [t.terminal_seq for t in store.taps()]
        assert len(seqs) == len(set(seqs))
        store.close()
        # A batch and its taps are written together: no tap points at a missing batch, no batch holds
        # anything but complete taps.
        check = sqlite3.connect(db)
        orphans = check.execute(
            "SELECT count(*) FROM taps WHERE batch_id IS NOT NULL AND batch_id NOT IN (SELECT batch_id FROM batches)"
        ).fetchone()[0]
        wrong = check.execute(
            "SELECT count(*) FROM taps WHERE batch_id IS NOT NULL AND state <> 'complete'"
        ).fetchone()[0]
        check.close()
        assert (orphans, wrong) == (0, 0)


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
