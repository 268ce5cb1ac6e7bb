"""The entitlements part of the demo runs, runs again, and says yes where the demo's story says yes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

from citycard.interop.entitlements_demo import entitlements_demo

pytestmark = pytest.mark.django_db


def test_the_entitlements_demo_runs_twice_and_admits_the_jiaxing_visitor():
    for _ in range(2):
        console = Console(record=True, width=200)
        entitlements_demo(SimpleNamespace(console=console))
        text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 5}
    assert "YES" in rows["周建国 at the library (card)"]
    assert "YES" in rows["林小雨's canteen meal (card)"]
    assert "not_entitled" in rows["林小雨 at West Lake (card)"]
    assert (
        "YES" in rows["Jiaxing's 沈阿婆 at West Lake (card)"]
        and "jiaxing" in rows["Jiaxing's 沈阿婆 at West Lake (card)"]
    )
    assert "YES" in rows["Jiaxing's 沈阿婆 at West Lake (citizen code)"]
    assert "code_replayed" in rows["the same code shown again"]
    offline = rows["Jiaxing's 沈阿婆 at West Lake, gate offline (card, from the visitors' list)"]
    assert "YES" in offline and "elderly-free-entry" in offline
