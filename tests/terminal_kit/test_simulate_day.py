"""`citycard-terminal simulate --card-list --issuer-keys --date`: an issuer's cards through a validator on a
business date; a card list, keys file or date that cannot be used is one line on stderr and exit 2."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from citycard.terminal_kit.__main__ import main
from citycard.terminal_kit.cardno import card_number_build
from citycard.terminal_kit.day import issuer_keys_document
from citycard.terminal_kit.devkeys import SIM_KEYS
from citycard.terminal_kit.i18n import language_activate
from citycard.terminal_kit.store import TapStore

DAY = "2026-11-21"
GOOD = card_number_build(division="330400", scheme="03", serial=1)
BAD_LUHN = GOOD[:-1] + str((int(GOOD[-1]) + 1) % 10)


def card_list(path, numbers, header="line,name,id_masked,scheme,card_no"):
    rows = [f"{n},乘客{n},3304**********1234,01,{number}" for n, number in enumerate(numbers, start=2)]
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8-sig")  # as cards import writes it
    return path


def keys_file(path, *, divisions=("330400",), keys=SIM_KEYS):
    document = issuer_keys_document(
        issuer="jiaxing", divisions=divisions, keys=keys, exported_at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    )
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(autouse=True)
def _english(monkeypatch):
    """These tests read what citycard-terminal says in English (its source text); the Chinese it speaks by
    default is read by tests/terminal_kit/test_cli_chinese.py."""
    monkeypatch.setenv("CITYCARD_LANGUAGE", "en")
    language_activate("en")  # for the helpers called without main()


@pytest.fixture
def jiaxing_cards(tmp_path):
    numbers = [card_number_build(division="330400", scheme="03", serial=n) for n in range(1, 7)]
    return card_list(tmp_path / "cards.csv", numbers), keys_file(tmp_path / "keys.json")


def run(*argv: str) -> int:
    return main(["--tenant", "hangzhou", "simulate", *argv])


def test_an_issuers_cards_ride_at_the_hours_of_the_business_date(jiaxing_cards, tmp_path, capsys):
    cards, keys = jiaxing_cards
    queue = tmp_path / "bus"
    assert (
        run(
            "--card-list",
            str(cards),
            "--issuer-keys",
            str(keys),
            "--date",
            DAY,
            "--taps",
            "30",
            "--queue",
            str(queue),
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"30 taps of 6 cards on {DAY} (Beijing time)" in out and "approved" in out
    assert "upload them: citycard-terminal --tenant hangzhou upload" in out
    taps = TapStore(queue / "taps.sqlite").taps("complete")
    assert len(taps) == 30
    times = [dt.datetime.fromisoformat(t.record["tapped_at"]) for t in taps]
    assert {t.date().isoformat() for t in times} == {DAY}
    assert all(6 <= t.hour <= 22 and t.utcoffset() == dt.timedelta(hours=8) for t in times)
    assert times == sorted(times)
    assert {t.record["card_no"][:6] for t in taps} == {"330400"}
    # The PSAM took the issuer's keys in the audited ceremony; the cards' counters are kept for next time.
    audit = [json.loads(line) for line in (queue / "psam-audit.jsonl").read_text().splitlines()]
    assert {(e["usage"], e["issuer"]) for e in audit} == {("purchase", "330400"), ("maintenance", "330400")}
    wallet = json.loads((queue / "cards.json").read_text())
    assert sum(card["counter"] for card in wallet.values()) == 30


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c, k, t: ["--card-list", str(t / "none.csv"), "--issuer-keys", str(k)],
            "card list .*none.csv: no such file",
        ),
        (
            lambda c, k, t: [
                "--card-list",
                str(card_list(t / "h.csv", ["3304000300000011"], header="n,number")),
                "--issuer-keys",
                str(k),
            ],
            "no card number column .*card_no",
        ),
        (
            lambda c, k, t: [
                "--card-list",
                str(card_list(t / "l.csv", [BAD_LUHN])),
                "--issuer-keys",
                str(k),
            ],
            f"line 2: card number {BAD_LUHN} fails its Luhn check digit",
        ),
        (lambda c, k, t: ["--card-list", str(c)], "--card-list needs --issuer-keys"),
        (
            lambda c, k, t: [
                "--card-list",
                str(c),
                "--issuer-keys",
                str(keys_file(t / "hz.json", divisions=("330100",))),
            ],
            "card 3304.* is not issued by jiaxing .*330100.*: give that issuer's keys file; 5 more",
        ),
        (lambda c, k, t: ["--card-list", str(c), "--issuer-keys", str(c)], "is not JSON"),
        (
            lambda c, k, t: [
                "--card-list",
                str(c),
                "--issuer-keys",
                str(_write(t / "x.json", {"kind": "hotlist"})),
            ],
            "is not an issuer's test-card keys file",
        ),
        (
            lambda c, k, t: ["--card-list", str(c), "--issuer-keys", str(_tampered(k, t))],
            "tac_master does not match its check value",
        ),
        (
            lambda c, k, t: ["--card-list", str(c), "--issuer-keys", str(k), "--date", "21.11.2026"],
            "--date '21.11.2026' is not a date: give YYYY-MM-DD",
        ),
    ],
)
def test_a_card_list_keys_or_date_that_cannot_be_used_is_one_line_and_exit_2(
    jiaxing_cards, tmp_path, capsys, change, message
):
    import re

    cards, keys = jiaxing_cards
    assert run(*change(cards, keys, tmp_path), "--queue", str(tmp_path / "bus")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("citycard-terminal simulate: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "bus" / "taps.sqlite").exists()


def _write(path, document):
    path.write_text(json.dumps(document))
    return path


def _tampered(keys, tmp_path):
    document = json.loads(keys.read_text())
    document["tac_master"]["key"] = "00" * 16
    return _write(tmp_path / "tampered.json", document)


@pytest.mark.pcsc
def test_an_issuers_cards_through_pcscd(pcscd, jiaxing_cards, tmp_path, capsys):
    cards, keys = jiaxing_cards
    argv = ["--card-list", str(cards), "--issuer-keys", str(keys), "--date", DAY, "--taps", "4"]
    assert run(*argv, "--pcsc", "--queue", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "4 taps of 6 cards" in out and "pcscd+vpcd" in out and "approved" in out
    assert len(TapStore(tmp_path / "taps.sqlite").taps("complete")) == 4
