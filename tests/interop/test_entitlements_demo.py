"""The entitlements part of the demo runs, runs again, and says yes where the demo's story says yes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.utils import translation
from rich.console import Console

from citycard.interop.entitlements_demo import entitlements_demo
from tests.platform.test_cli_chinese import assert_chinese

pytestmark = pytest.mark.django_db


def test_the_entitlements_demo_runs_twice_and_admits_the_jiaxing_visitor():
    """In Chinese, as the demo prints by default (no English sentence of the catalogue in it)."""
    with translation.override("zh-hans"):
        for _ in range(2):
            console = Console(record=True, width=200)
            entitlements_demo(SimpleNamespace(console=console))
            text = console.export_text()
    assert_chinese(text, "杭州服务网点的权益核验", "核验结果")
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 5}
    assert "通过" in rows["周建国 在图书馆借阅（刷卡）"]
    assert "通过" in rows["林小雨 在食堂就餐（刷卡）"]
    assert (
        "不通过" in rows["林小雨 入西湖景区（刷卡）"] and "not_entitled" in rows["林小雨 入西湖景区（刷卡）"]
    )
    assert (
        "通过" in rows["嘉兴市民 沈阿婆 入西湖景区（刷卡）"]
        and "jiaxing" in rows["嘉兴市民 沈阿婆 入西湖景区（刷卡）"]
    )
    assert "通过" in rows["嘉兴市民 沈阿婆 入西湖景区（市民码）"]
    assert "code_replayed" in rows["同一市民码再次出示"]
    offline = rows["嘉兴市民 沈阿婆 入西湖景区，闸机离线（刷卡，依据异地权益名单）"]
    assert "通过" in offline and "elderly-free-entry" in offline
