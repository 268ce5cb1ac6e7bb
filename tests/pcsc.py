"""The real smart-card stack for PC/SC tests: pcscd with the vsmartcard vpcd driver, and pyscard. A plugin of
the whole suite (tests/conftest.py), so one session-wide pcscd fixture serves every directory.

The session starts pcscd itself (or uses one already running) and holds an exclusive lock on
/tmp/citycard-pcscd.lock while it does, so concurrent test sessions on one machine take turns with the
single vpcd reader. Without pcscd, the vpcd driver or pyscard, PC/SC tests are skipped with a message
saying what to install.
"""

from __future__ import annotations

import fcntl
import gc
import shutil
import subprocess
import time
from pathlib import Path

import pytest

VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
READER = "Virtual PCD 00 00"
PSAM_READER = "Virtual PCD 00 01"


def _missing() -> list[str]:
    missing = []
    if not shutil.which("pcscd") and not Path("/usr/sbin/pcscd").exists():
        missing.append("pcscd (apt-get install pcscd)")
    if not VPCD_CONF.exists():
        missing.append("the vpcd driver (apt-get install vsmartcard-vpcd)")
    try:
        import smartcard.System  # noqa: F401
    except ImportError:
        missing.append("pyscard (pip install 'citycard-interop[terminal]'; needs libpcsclite-dev and swig)")
    return missing


def _readers() -> list[str]:
    from smartcard.System import readers

    try:
        return [str(r) for r in readers()]
    except Exception:  # pcscd not (yet) answering
        return []


@pytest.fixture(scope="session")
def pcscd():
    """A running pcscd with the vpcd reader; yields the reader name."""
    missing = _missing()
    if missing:
        pytest.skip("PC/SC tests need " + ", ".join(missing))
    lock = open("/tmp/citycard-pcscd.lock", "w")  # noqa: SIM115 - held for the whole session
    fcntl.flock(lock, fcntl.LOCK_EX)
    started = None
    if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode != 0:
        pcscd_bin = shutil.which("pcscd") or "/usr/sbin/pcscd"
        started = subprocess.Popen(
            [pcscd_bin, "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    deadline = time.monotonic() + 15
    while READER not in _readers():
        if time.monotonic() > deadline:
            if started:
                started.terminate()
            pytest.fail(f"pcscd did not offer the reader {READER!r} (readers: {_readers()})")
        time.sleep(0.1)
    yield READER
    gc.collect()  # connections nobody closed let go while pcscd still answers
    if started is not None:
        started.terminate()
        try:
            started.wait(timeout=10)
        except subprocess.TimeoutExpired:
            started.kill()
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


@pytest.fixture
def inserted(pcscd):
    """Insert virtual cards into a vpcd reader (the card's by default); every one is removed afterwards."""
    from citycard.terminal_kit.card.vpcd import VPCD_PORT, VpcdCard
    from citycard.terminal_kit.reader import PcscReader, wait_for_card

    holders: list[tuple[VpcdCard, str]] = []

    def insert(card, *, port: int = VPCD_PORT, reader: str = READER):
        _after_a_poll(reader)
        holder = VpcdCard(card, port=port)
        holder.insert()
        holders.append((holder, reader))
        if not wait_for_card(PcscReader(reader), timeout=2):
            reinsert(holder, reader)  # the reader's last card left less than a poll ago
        return holder

    yield insert
    for holder, reader_name in holders:
        holder.remove()
        _removed[reader_name] = time.monotonic()
    for reader_name in {name for _, name in holders}:
        reader = PcscReader(reader_name)
        deadline = time.monotonic() + 10
        while reader.card_present() and time.monotonic() < deadline:
            time.sleep(0.05)


_removed: dict[str, float] = {}  # reader -> when a test last took its card out
POLL_S = 0.45  # vpcd's presence poll in pcscd is 400 ms


def _after_a_poll(reader_name: str) -> None:
    """Wait until pcscd has polled the reader since its last card left: a card put in before that is
    taken for the old one still there (and reset under whoever had it open)."""
    left = _removed.get(reader_name, 0) + POLL_S - time.monotonic()
    if left > 0:
        time.sleep(left)


def reinsert(holder, reader_name: str = READER) -> None:
    """Present a card again after it left the field mid-command. pcscd's vpcd driver sees the card gone
    only on its next presence poll (every 400 ms); a card back before that is not seen, so wait that long
    first, as the rider's hand does, and try again if it was missed."""
    from citycard.terminal_kit.reader import PcscReader, wait_for_card

    holder.remove()
    for _ in range(6):
        time.sleep(POLL_S)
        holder.insert()
        if wait_for_card(PcscReader(reader_name), timeout=2):
            return
        holder.remove()
    raise AssertionError("the re-inserted card never appeared in the reader")
