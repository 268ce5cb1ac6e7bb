"""How long a tap takes: through pcscd + vpcd with the virtual card, and in-process.

    .venv/bin/python benchmarks/tap.py [--taps 300]

Prints p50/p99 of the whole tap and of the terminal's own work (everything but card I/O: reading the
public files' results, hotlist, fare from Hangzhou's signed rule document (verified once when loaded),
SAM MACs, the two durable SQLite commits). Goal: terminal work
≤ 5 ms p99. The card stays in the field between taps; each tap re-selects the application.
Then the metro gates: entry (the composite purchase writing the entry) and exit (reading it, pricing
entry -> exit by the distance table, the composite purchase clearing it), alternately, each measured.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from citycard.terminal_kit.card.vpcd import VpcdCard
from citycard.terminal_kit.fares import load_signed
from citycard.terminal_kit.hotlist import Hotlist
from citycard.terminal_kit.reader import InProcessReader, PcscReader, wait_for_card
from citycard.terminal_kit.signing import public_key_bytes, sign_document
from tests.terminal_kit import kit
from tests.terminal_kit.fare_docs import hangzhou, hangzhou_metro

READER = "Virtual PCD 00 00"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def _key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def run(transport, taps: int, tmp: Path, label: str) -> None:
    v = kit.validator(transport, tmp, fare=200)
    key = _key()
    v.fare = load_signed(
        sign_document(hangzhou(), key=key, key_id="hangzhou:bench"),
        keys={"hangzhou:bench": public_key_bytes(key)},
    )
    v.hotlist = Hotlist(version=1, cards=frozenset(f"33040001{i:010d}0" for i in range(10_000)))
    whole, work = [], []
    for _ in range(taps):
        started = time.perf_counter()
        result = v.tap()
        whole.append(time.perf_counter() - started)
        work.append(result.terminal_work_s)
        assert result.outcome == "approved", result.message
    print(
        f"{label:<22} taps {taps:>5}   whole tap p50 {pct(whole, 0.5):7.2f} ms  p99 {pct(whole, 0.99):7.2f} ms"
        f"   terminal work p50 {pct(work, 0.5):6.2f} ms  p99 {pct(work, 0.99):6.2f} ms"
    )


def run_gates(transport, journeys: int, tmp: Path, label: str) -> None:
    v = kit.validator(transport, tmp, fare=200)
    key = _key()
    v.fare = load_signed(
        sign_document(hangzhou_metro(), key=key, key_id="hangzhou:bench"),
        keys={"hangzhou:bench": public_key_bytes(key)},
    )
    v.service, v.route = "metro", "1"
    v.hotlist = Hotlist(version=1, cards=frozenset(f"33040001{i:010d}0" for i in range(10_000)))
    work: dict[str, list[float]] = {"entry": [], "exit": []}
    for i in range(journeys):
        for gate, station in (("entry", "hz-1-01"), ("exit", f"hz-1-{2 + i % 11:02d}")):
            v.gate, v.station = gate, station
            result = v.tap()
            assert result.outcome == "approved", result.message
            work[gate].append(result.terminal_work_s)
    print(
        f"{label:<22} gates {journeys:>4}   entry terminal work p50 {pct(work['entry'], 0.5):6.2f} ms  "
        f"p99 {pct(work['entry'], 0.99):6.2f} ms   exit p50 {pct(work['exit'], 0.5):6.2f} ms  "
        f"p99 {pct(work['exit'], 0.99):6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--taps", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "a").mkdir()
        run(InProcessReader(kit.card(balance=10**9)), args.taps, Path(tmp) / "a", "in-process")
        Path(tmp, "g").mkdir()
        run_gates(InProcessReader(kit.card(balance=10**9)), args.taps // 2, Path(tmp) / "g", "in-process")
        started = None
        if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode != 0:
            binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
            started = subprocess.Popen(
                [binary, "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(1.5)
        holder = VpcdCard(kit.card(balance=10**9))
        try:
            holder.insert()
            reader = PcscReader(READER)
            assert wait_for_card(reader, timeout=10), "the virtual card did not appear in the vpcd reader"
            out = Path(tmp) / "b"
            out.mkdir()
            run(reader, args.taps, out, "pcscd + vpcd + pyscard")
            (Path(tmp) / "h").mkdir()
            run_gates(reader, args.taps // 2, Path(tmp) / "h", "pcscd + vpcd + pyscard")
        finally:
            holder.remove()
            if started:
                started.terminate()


if __name__ == "__main__":
    main()
