"""What citycard-terminal says to a person is Chinese first (docs/terminal-protocol.md, "Language"): each
sub-command's messages, summaries, refusals and help under the default language carry known Chinese phrases,
and no English sentence of its catalogue (citycard/terminal_kit/locale) shows up untranslated in them.
Amounts read in yuan, times in Beijing time. What the back office says (a refusal's message, a tap's reason)
is its own text and is not checked here."""

from __future__ import annotations

import base64
import json
import re
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citycard.terminal_kit.__main__ import main
from citycard.terminal_kit.signing import b64encode, public_key_bytes, sign_document
from citycard.terminal_kit.store import TapStore
from tests.terminal_kit.backoffice import (
    BATCH_ARGS,
    TENANT_KEYS,
    TERMINAL_KEY,
    Backoffice,
    queue_with_taps,
    refusal,
    unavailable,
)
from tests.terminal_kit.test_cli import CountySite

CATALOGUE = (
    Path(__file__).resolve().parents[2]
    / "citycard/terminal_kit/locale/zh_Hans/LC_MESSAGES/citycard_terminal.po"
)


@cache
def english_fragments() -> list[str]:
    """The English words of every catalogue entry a person could read as a sentence: the literal runs
    between placeholders of three words or more."""
    import polib

    fragments = set()
    for entry in polib.pofile(str(CATALOGUE)):
        for msgid in filter(None, [entry.msgid, entry.msgid_plural]):
            for part in re.split(r"%\(\w+\)[-.\d]*[sdrf]|%[sdr]", msgid):
                part = part.strip(" :;,.—()`\n")
                if len(re.findall(r"[A-Za-z]{2,}", part)) >= 3 and not part.startswith(("citycard", "-")):
                    fragments.add(part)
    return sorted(fragments, key=len, reverse=True)


def assert_chinese(text: str, *phrases: str) -> None:
    for phrase in phrases:
        assert phrase in text, (phrase, text)
    untranslated = [f for f in english_fragments() if f in text]
    assert untranslated == [], (untranslated, text)


@pytest.fixture(autouse=True)
def _chinese(monkeypatch):
    """The default: no CITYCARD_LANGUAGE, no --lang."""
    monkeypatch.delenv("CITYCARD_LANGUAGE", raising=False)


def run(capsys, *argv: str, status: int = 0) -> tuple[str, str]:
    assert main(list(argv)) == status
    return capsys.readouterr()


def test_simulate_speaks_chinese(capsys, tmp_path):
    out, err = run(
        capsys, "--fare", "150", "simulate", "--taps", "20", "--cards", "4", "--queue", str(tmp_path)
    )
    assert_chinese(
        out, "4 张卡刷卡 20 次", "进程内读卡器", "通过 (approved)", "笔完整的刷卡记录待上传", "上传："
    )
    _, err = run(capsys, "simulate", "--date", "2026-13-01", status=2)
    assert_chinese(err, "citycard-terminal simulate: --date '2026-13-01' 不是日期")
    _, err = run(capsys, "simulate", "--issuer-keys", str(tmp_path / "k.json"), status=2)
    assert_chinese(err, "--issuer-keys 须与 --card-list")
    cards = tmp_path / "cards.csv"
    cards.write_text("name\nx\n")
    _, err = run(
        capsys, "simulate", "--card-list", str(cards), "--issuer-keys", str(tmp_path / "no.json"), status=2
    )
    assert_chinese(err, "发卡方密钥", "文件不存在")


def _terminal_key(tmp_path: Path) -> Path:
    path = tmp_path / "terminal.key"
    raw = TERMINAL_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    path.write_text(base64.b64encode(raw).decode())
    return path


def test_upload_and_queue_speak_chinese(capsys, tmp_path):
    queue = str(tmp_path / "taps.sqlite")
    store = TapStore(queue)
    queue_with_taps(store, 7, bad=frozenset({4}))
    a = store.batch_open(max_taps=2, **BATCH_ARGS)["payload"]["batch_id"]
    store.close()
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in TENANT_KEYS.items()}))
    terminal = ["--queue", queue, "--terminal-id", "HZ-BUS-0001", "--key", str(_terminal_key(tmp_path))]

    def upload(office, *more, status):
        return run(capsys, "upload", "--url", office.url, *terminal, *more, status=status)

    with Backoffice() as office:
        _, err = upload(office, status=2)
    assert_chinese(err, "本终端没有可用于验证回执的密钥", "队列保持不变")

    out, _ = run(capsys, "queue", "--queue", queue)
    assert_chinese(
        out, "待上传 1 个批次（2 笔刷卡），尚未成批 5 笔刷卡", f"  {a}  创建于 ", " +08:00  2 笔刷卡"
    )
    assert_chinese(out, "已搁置：0 个批次（0 笔刷卡）")

    with Backoffice(script=[refusal(409), None, refusal(413), None]) as office:
        out, _ = upload(office, "--tenant-keys", str(keys_file), "--max-taps", "2", status=1)
    b = office.received[1][0]
    assert_chinese(out, f"{b}：接受 1 重复 0 拒绝 1", "（卡 3304000100000000019，计数器 4）被拒 (rejected)")
    assert_chinese(
        out, f"{a}：已搁置（2 笔刷卡），被拒绝 409 batch_conflict", "重新排队或放弃", "已确认 2 个批次"
    )

    out, _ = run(capsys, "queue", "--queue", queue)
    assert_chinese(out, "已搁置：2 个批次（4 笔刷卡）", "  409 batch_conflict  于 ", "重新发送：", "放弃：")
    out, _ = run(capsys, "queue", "--queue", queue, "requeue", a, "--rebatch")
    assert_chinese(out, f"{a}：已重新排队（2 笔刷卡）；下次上传时其刷卡记录进入新批次")
    _, err = run(capsys, "queue", "--queue", queue, "requeue", "NOPE", status=1)
    assert_chinese(err, "队列：没有已搁置的批次 'NOPE'", "列出已搁置的批次")
    out, _ = run(capsys, "queue", "--queue", queue)
    assert_chinese(
        out, "已处理：1", f"  {a}  已重新分批 (rebatched) 于 ", "（原为 409 batch_conflict，2 笔刷卡）"
    )

    with Backoffice(script=[unavailable("30")]) as office:
        _, err = upload(office, "--tenant-keys", str(keys_file), "--give-up-after", "10", status=2)
    assert_chinese(err, "上传：放弃发送批次", "（仍留在队列中）：最后一次尝试得到 503 unavailable")


def test_sync_speaks_chinese(capsys, tmp_path):
    site = CountySite()
    try:
        key = tmp_path / "terminal.key"
        key.write_text(base64.b64encode(bytes(32)).decode())
        args = ["--tenant", "tonglu", "sync", "--url", site.url, "--queue", str(tmp_path / "taps.sqlite")]
        args += ["--terminal-id", "TL-BUS-0001", "--key", str(key)]
        out, _ = run(capsys, *args)
        assert_chinese(
            out, "首次使用即信任平台密钥 public:s1", "tonglu 的密钥，签发于 2026-11-24 08:40:00 +08:00：3 个"
        )
        assert_chinese(out, "黑名单版本 4：拦截 1 张卡")
        pin = tmp_path / "pin.json"
        pin.write_text(json.dumps({"public:s1": b64encode(public_key_bytes(Ed25519PrivateKey.generate()))}))
        args[args.index("--queue") + 1] = str(tmp_path / "other.sqlite")  # no key trusted yet
        _, err = run(capsys, *args, "--platform-key", str(pin), status=1)
        assert_chinese(err, "同步：密钥文件被拒绝：'public:s1' 的签名与 payload 不符；保留现有密钥（0 个）")
        assert_chinese(err, "同步：黑名单文件被拒绝：由未知密钥 'tonglu:s1' 签名；保留黑名单版本 0")
    finally:
        site.server.shutdown()


def test_psam_load_and_validate_refusals_speak_chinese(capsys, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text("[{}]")
    (tmp_path / "t.key").write_text("00" * 16)
    args = ["psam-load", "--keys", str(keys), "--transport-key", str(tmp_path / "t.key"), "--actor", "王工"]
    _, err = run(capsys, *args, "--audit", str(tmp_path / "audit.jsonl"), status=1)
    assert_chinese(err, "PSAM 密钥装载：密钥文件：")
    queue = str(tmp_path / "taps.sqlite")
    _, err = run(capsys, "validate", "--psam-reader", "No Such Reader 99", "--queue", queue, status=2)
    assert_chinese(err, "读卡器 'No Such Reader 99' 中的 PSAM 卡：")
    assert "找不到读卡器" in err or "PC/SC 服务不可用" in err or "未安装 pyscard" in err


@pytest.mark.parametrize(
    "command", [[], ["simulate"], ["validate"], ["psam-load"], ["upload"], ["queue"], ["sync"]]
)
def test_the_help_speaks_chinese(capsys, command):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert_chinese(out, "用法：citycard-terminal", "选项", "显示本帮助并退出", "租户代码")


def test_argument_refusals_speak_chinese(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["upload", "--url", "http://x"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert_chinese(err, "citycard-terminal upload：错误：缺少以下必需参数：--terminal-id, --key")
    with pytest.raises(SystemExit):
        main(["simulate", "--taps", "many"])
    assert_chinese(capsys.readouterr().err, "参数 --taps：无效的 int 值：'many'")
    assert main(["--lang", "fr", "queue"]) == 2
    assert "--lang must be one of zh-hans, en" in capsys.readouterr().err


def test_the_check_finds_english(capsys, tmp_path, monkeypatch):
    """The check itself: the same sub-commands in English (--lang, or CITYCARD_LANGUAGE) are caught."""
    out, _ = run(capsys, "--lang", "en", "simulate", "--taps", "3", "--cards", "2", "--queue", str(tmp_path))
    assert "complete taps waiting for upload" in [f for f in english_fragments() if f in out]
    monkeypatch.setenv("CITYCARD_LANGUAGE", "en")
    out, _ = run(capsys, "queue", "--queue", str(tmp_path / "taps.sqlite"))
    assert "pending or torn (waiting for their card" in [f for f in english_fragments() if f in out]
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "show this help message and exit" in [f for f in english_fragments() if f in out]


def test_a_malformed_rule_document_is_refused_in_chinese(capsys, tmp_path):
    """A rule document's problems (票价产品, 时段 …) are named in Chinese, each one, as the back office does."""
    key = Ed25519PrivateKey.generate()
    rules, keys = tmp_path / "rules.json", tmp_path / "keys.json"
    document = {
        "kind": "fare_rules",
        "format": 1,
        "version": 1,
        "fare_products": [{"id": "bus", "amount_fen": -200}],
        "timeframes": {"peak": [{"days": [1], "start": "09:00", "end": "07:00"}]},
    }
    rules.write_text(json.dumps(sign_document(document, key=key, key_id="t:s1")))
    keys.write_text(json.dumps({"t:s1": b64encode(public_key_bytes(key.public_key()))}))
    argv = ["--rules", str(rules), "--rules-keys", str(keys), "simulate", "--queue", str(tmp_path / "q")]
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert_chinese(
        str(refused.value),
        "票价规则文件被拒绝",
        "票价产品 bus：amount_fen -200 为负数或过小",
        "时段 peak：时间窗 0 需要 start < end",
    )
    with pytest.raises(SystemExit, match="fare product bus: amount_fen -200 is negative or too small"):
        main(["--lang", "en", *argv])
