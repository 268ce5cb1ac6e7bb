"""Batch issuance from CSV: bad rows reported with line and reason, good rows applied, re-runs create nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from citycard.platform.audit.models import AuditEntry
from citycard.tenants.cards.batch import cards_import
from citycard.tenants.cards.models import Card, Cardholder, CardholderCategory
from citycard.tenants.cards.pii import id_mask
from citycard.tenants.cards.selectors import cardholder_pii, cardholder_search

from .conftest import new_id

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]
TODAY = dt.date(2026, 11, 1)


def write(tmp_path, lines, name="jiaxing-employer-0001.csv"):
    path = tmp_path / name
    header = "name,id_number,phone,scheme,employer,local_hukou,residence_permit,categories"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def test_bad_rows_reported_good_rows_applied_and_rerun_creates_nothing(tmp_path, city):
    good = [new_id() for _ in range(4)]
    bad_checksum = good[0][:17] + ("0" if good[0][17] != "0" else "1")
    path = write(
        tmp_path,
        [
            f"张一,{good[0]},13800000001,01,嘉兴电力,1,0,elderly",
            f"张二,{good[1]},,01,嘉兴电力,yes,no,student:2026-09-01:2027-06-30;disabled",
            f"张三,{bad_checksum},,01,嘉兴电力,1,0,",
            f",{good[2]},,01,嘉兴电力,1,0,",
            f"张四,{good[2]},1380000,01,嘉兴电力,1,0,",
            f"张五,{good[2]},,01,嘉兴电力,1,0,vip",
            f"张六,{good[3]},,02,嘉兴电力,0,1,",
            f"张七,{good[1]},,01,嘉兴电力,1,0,",
            f"张八,{new_id()},,01,嘉兴电力,0,0,",
            f"张九,{new_id()},,07,嘉兴电力,1,0,",
            f"张十,{new_id()},,01,嘉兴电力,maybe,0,",
        ],
    )
    report = cards_import(path=path, actor="t", today=TODAY)
    reasons = dict(report.errors)
    assert sorted(reasons) == [4, 5, 6, 7, 9, 10, 11, 12]
    assert "check character" in reasons[4]
    assert reasons[5] == "name is empty"
    assert reasons[6].startswith("phone:")
    assert "unknown category 'vip'" in reasons[7]
    assert reasons[9] == f"ID number {id_mask(good[1])} repeats line 3"
    assert "not eligible" in reasons[10]
    assert "no card scheme '07'" in reasons[11]
    assert "local_hukou" in reasons[12]
    assert (report.holders_created, report.cards_created) == (3, 3)
    holder = cardholder_search(query=good[0]).get()
    assert cardholder_pii(cardholder=holder)["phone"] == "13800000001"
    assert set(CardholderCategory.objects.values_list("code", flat=True)) == {
        "elderly",
        "student",
        "disabled",
    }
    card = Card.objects.get(cardholder=holder)
    assert (card.state, card.is_main, card.source) == ("applied", True, "import:jiaxing-employer-0001:2")
    audits = AuditEntry.objects.filter(action="card.import").count()

    again = cards_import(path=path, actor="t", today=TODAY)
    assert (again.holders_created, again.cards_created) == (0, 0)
    assert (again.holders_existing, again.cards_existing) == (3, 3)
    assert Cardholder.objects.count() == 3 and Card.objects.count() == 3
    assert AuditEntry.objects.filter(action="card.import").count() == audits


def test_import_as_active_cards_in_chunks_via_cli(tmp_path, city, monkeypatch, capsys):
    from citycard.tenants.cards import batch

    monkeypatch.setattr(batch, "CHUNK", 7)
    path = write(tmp_path, [f"李{i},{new_id()},,01,,1,0," for i in range(20)], name="community.csv")
    call_command("cards", "--tenant", "jiaxing", "import", str(path), "--state", "active")
    out = capsys.readouterr().out
    assert "20 rows: 20 cardholders created" in out and "20 cards created" in out
    cards = list(Card.objects.all())
    assert {c.state for c in cards} == {"active"} and all(c.expires_on for c in cards)
    assert len({c.card_no for c in cards}) == 20
    call_command("cards", "--tenant", "jiaxing", "import", str(path), "--state", "active")
    assert "0 cards created, 20 already held" in capsys.readouterr().out


def test_header_problems_are_refused_before_anything(tmp_path, city):
    from citycard.platform.errors import DomainError

    path = tmp_path / "x.csv"
    path.write_text("name,phone\n张,13800000000\n", encoding="utf-8")
    with pytest.raises(DomainError, match="lacks id_number"):
        cards_import(path=path, actor="t")
    assert not Cardholder.objects.exists()


HEADER = "name,id_number,scheme,employer,local_hukou"


def test_excel_files_in_gbk_and_utf8_with_bom_are_read_and_say_which(tmp_path, city):
    gbk = tmp_path / "嘉兴电力-gbk.csv"
    gbk.write_bytes(f"{HEADER}\n张一,{new_id()},01,嘉兴电力,是\n".encode("gbk"))
    bom = tmp_path / "community-bom.csv"
    bom.write_bytes(f"{HEADER}\n王二,{new_id()},01,南湖社区,1\n".encode("utf-8-sig"))
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf")

    first = cards_import(path=gbk, actor="t", today=TODAY)
    second = cards_import(path=bom, actor="t", today=TODAY)

    assert (first.encoding, first.cards_created, first.errors) == ("gb18030", 1, [])
    assert (second.encoding, second.cards_created, second.errors) == ("utf-8", 1, [])
    assert sorted(Cardholder.objects.values_list("name", "employer")) == [
        ("张一", "嘉兴电力"),
        ("王二", "南湖社区"),
    ]


def test_a_file_named_utf8_that_is_gbk_is_refused_in_one_line(tmp_path, city):
    from citycard.platform.errors import DomainError

    path = tmp_path / "x.csv"
    path.write_bytes(f"{HEADER}\n张一,{new_id()},01,嘉兴电力,1\n".encode("gbk"))
    with pytest.raises(DomainError, match=r"x.csv is not utf-8: byte \d+ cannot be read"):
        cards_import(path=path, actor="t", encoding="utf-8")
    assert not Cardholder.objects.exists()


def test_cli_writes_the_new_card_numbers_and_exits_non_zero_when_a_row_is_refused(tmp_path, city, capsys):
    from django.core.management.base import CommandError

    path = tmp_path / "employer.csv"
    path.write_bytes(f"{HEADER}\n张一,{new_id()},01,嘉兴电力,1\n李二,123,01,嘉兴电力,1\n".encode("gbk"))
    with pytest.raises(CommandError, match="1 of 2 rows refused") as refused:
        call_command("cards", "--tenant", "jiaxing", "import", str(path))
    assert refused.value.returncode == 1
    out = capsys.readouterr().out
    written = tmp_path / "employer.cards.csv"
    assert "read as GB18030" in out and f"1 new card numbers written to {written}" in out
    card = Card.objects.get()
    assert written.read_text(encoding="utf-8-sig").splitlines() == [
        "line,name,id_masked,scheme,card_no",
        f"2,张一,{card.cardholder.id_masked},01,{card.card_no}",
    ]

    elsewhere = tmp_path / "out" / "cards.csv"
    elsewhere.parent.mkdir()
    good = tmp_path / "good.csv"
    good.write_text(f"{HEADER}\n王五,{new_id()},01,,1\n", encoding="utf-8")
    call_command("cards", "--tenant", "jiaxing", "import", str(good), "--cards-out", str(elsewhere))
    assert "read as UTF-8" in capsys.readouterr().out
    assert len(elsewhere.read_text(encoding="utf-8-sig").splitlines()) == 2
