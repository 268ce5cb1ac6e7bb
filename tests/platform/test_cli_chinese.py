"""What the commands say to a person is Chinese first (docs/cli.md, "Language"): each converted command's
human output under zh-hans carries known Chinese phrases, and no English sentence of the catalogue shows up
untranslated in it (machine output — --json, CSV — is not checked here: it stays as it is)."""

from __future__ import annotations

import io
import re
from functools import cache
from pathlib import Path

import polib
import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import translation
from django.utils.translation import gettext_noop

pytestmark = pytest.mark.django_db

CATALOGUE = Path(__file__).resolve().parents[2] / "citycard/locale/zh_Hans/LC_MESSAGES/django.po"


@cache
def english_fragments() -> list[str]:
    """The English words of every translated catalogue entry that a person could read as a sentence:
    the literal runs between placeholders of three words or more."""
    fragments = set()
    for entry in polib.pofile(str(CATALOGUE)):
        if not entry.msgstr or entry.msgstr == entry.msgid:
            continue
        for part in re.split(r"%\(\w+\)[-.\d]*[sdrf]|\[/?\w+\]", entry.msgid):
            part = part.strip(" :;,.—()")
            if " " not in part:
                continue  # a path or a name (docs/terminal-protocol.md), not a sentence
            if len(re.findall(r"[A-Za-z]{2,}", part)) >= 3 and not part.startswith(("citycard", "-")):
                fragments.add(part)
    return sorted(fragments, key=len, reverse=True)


def run(*args: str) -> str:
    out = io.StringIO()
    with translation.override("zh-hans"):
        call_command(*args, stdout=out)
    return out.getvalue()


def assert_chinese(text: str, *phrases: str) -> None:
    for phrase in phrases:
        assert phrase in text, (phrase, text)
    untranslated = [f for f in english_fragments() if f in text]
    assert untranslated == [], text


def test_medical_speaks_chinese():
    text = run(
        "medical", "--tenant", "dongguan", "policy", "set", "--year", "2026", "--deductible", "800",
        "--cap", "200000", "--ratio", "drug=80",
    )  # fmt: skip
    assert_chinese(text, "政策", "起付线 ¥800.00")
    assert_chinese(run("medical", "--tenant", "dongguan", "policy", "list"), "待遇政策", "起付线（元）")
    text = run(
        "medical", "--tenant", "dongguan", "catalogue", "set", "D901", "--name", "阿莫西林胶囊", "--category",
        "drug", "--price", "12.5", "--class", "A",
    )  # fmt: skip
    assert_chinese(text, "甲类")
    assert_chinese(run("medical", "--tenant", "dongguan", "catalogue", "list"), "在目录内", "是", "共 ")
    assert_chinese(run("medical", "--tenant", "dongguan", "claims"), "就诊时间", "统筹支付（元）")


def test_medical_refusals_in_chinese():
    from django.core.management import CommandError

    with translation.override("zh-hans"), pytest.raises(CommandError, match="最多两位小数"):
        call_command(
            "medical", "--tenant", "dongguan", "policy", "set", "--year", "2026", "--deductible", "1.005",
            "--cap", "1",
        )  # fmt: skip
    with translation.override("zh-hans"), pytest.raises(CommandError, match="此处没有报销单"):
        call_command("medical", "--tenant", "dongguan", "claim", "nope")


def test_gtfs_import_notes_speak_chinese():
    usd = Path(__file__).resolve().parents[1] / "tenants" / "fares" / "gtfs_feeds" / "usd"
    text = run("fares", "import-gtfs", "--tenant", "jiaxing", str(usd), "--rate", "usd=7.10")
    assert_chinese(text, "注意", "0.50 USD 按 7.10 换算为 355 分 CNY")


def test_fares_speaks_chinese():
    text = run("fares", "--tenant", "hangzhou", "stations", "add", "hz-9-01", "--name", "测试站")
    assert_chinese(text, "已添加车站 hz-9-01")
    text = run(
        "fares", "--tenant", "hangzhou", "areas", "set", "hz-t9", "--stations", "hz-9-01", "--name", "测"
    )
    assert_chinese(text, "区域 hz-t9：1 个车站")
    assert_chinese(run("fares", "--tenant", "hangzhou", "gate-rules", "show"), "")


def test_terminal_speaks_chinese(tmp_path):
    key = str(tmp_path / "t.key")
    text = run(
        "terminal", "--tenant", "hangzhou", "register", "HZ-ZH-0001", "--operator", "杭州公交", "--department",
        "transit", "--service", "bus", "--route", "1", "--generate-key", key,
    )  # fmt: skip
    assert_chinese(text, "已登记 HZ-ZH-0001")
    assert_chinese(
        run("terminal", "--tenant", "hangzhou", "suspend", "HZ-ZH-0001", "--reason", "丢失"), "已暂停"
    )
    assert_chinese(run("terminal", "--tenant", "hangzhou", "list"), "线路/地点", "密钥", "(suspended)")
    assert_chinese(run("terminal", "--tenant", "hangzhou", "resume", "HZ-ZH-0001"), "已恢复")


def test_merchants_channels_entitlements_onboarding_speak_chinese():
    assert_chinese(run("merchants", "--tenant", "hangzhou", "list"), "商户", "待结算")
    assert_chinese(run("channels", "--tenant", "hangzhou", "list"), "网关", "配置时间")
    assert_chinese(run("entitlements", "--tenant", "hangzhou", "types"), "价格", "受理时间")
    assert_chinese(run("onboarding", "--tenant", "jiaxing"), "步骤", "各步骤的办理位置")


def test_platform_commands_speak_chinese():
    assert_chinese(run("db", "status"), "数据目录")
    # Where the data directory came from, when no variable named it (docs/cli.md, "Which database").
    with override_settings(DATA_DIR_SOURCE=gettext_noop("make demo's, found in the current directory")):
        assert_chinese(run("db", "status"), "（make demo 的目录，在当前目录中找到）")
    with override_settings(DATA_DIR_SOURCE=gettext_noop("the default")):
        assert_chinese(run("db", "status"), "（默认目录）")
    assert_chinese(run("graphql", "schema", "--check"), "schema 文件与代码一致")


def test_the_check_finds_english(english):
    """The check itself: the same output in English is caught."""
    out = io.StringIO()
    call_command("graphql", "schema", "--check", stdout=out)
    assert [f for f in english_fragments() if f in out.getvalue()] == ["schema files match the code"]
