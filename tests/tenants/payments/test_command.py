"""`citycard channels`: sandbox keys, configure from key files (sealed), list, a drill against the WeChat
sandbox, reconcile the statement file it wrote and a checked-in one, list and resolve the differences."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from citycard.tenants.accounts.selectors import account_of_card
from citycard.tenants.payments.models import ReconException

pytestmark = pytest.mark.django_db
EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"


def run(*args) -> str:
    out = io.StringIO()
    call_command("channels", "--tenant", "jiaxing", *args, stdout=out)
    return out.getvalue()


def test_configure_drill_reconcile_and_resolve(city, card_no, tmp_path, english):
    keys = tmp_path / "keys"
    run("sandbox-keys", "--out", str(keys))
    assert (keys / "merchant_key.pem").stat().st_mode & 0o077 == 0
    out = run(
        "configure", "wechat", "--provider", "wechat", "--name", "微信支付", "--merchant-id", "1900000109",
        "--app-id", "wxd678efh567hg6787", "--gateway", "https://api.mch.weixin.qq.com",
        "--notify-url", "https://jiaxing.example/payments/notify/wechat",
        "--private-key", str(keys / "merchant_key.pem"),
        "--provider-public-key", str(keys / "provider_pub.pem"), "--secret-file", str(keys / "secret.key"),
    )  # fmt: skip
    assert "keys sealed" in out
    assert "1900000109" in run("list")

    statement = tmp_path / "bill.csv"
    out = run("drill", "--provider", "wechat", "--card", card_no, "--amount", "50.00", "--key", "drill-1",
              "--statement-out", str(statement))  # fmt: skip
    assert "2 notifications, credited once" in out and "balance ¥50.00" in out
    assert account_of_card(card_no=card_no).balance_fen == 5000
    assert "1 lines" in run("reconcile", "sandbox-wechat", str(statement)) and "0 differences" in run(
        "reconcile", "sandbox-wechat", str(statement)
    )

    out = run(
        "reconcile", "wechat", str(EXAMPLES / "wechat-tradebill-2026-11-21.csv"), "--date", "2026-11-21"
    )
    assert "2 lines, paid ¥250.00" in out and "2 differences" in out
    listing = run("exceptions", "--open")
    assert "CC7F3A0B19D2E4C5A6B7C8D9E0F1A2B3" in listing and "long" in listing
    # Both lines are 长款 (no order of the city): held in suspense, matched by a clerk, not accepted.
    first = ReconException.objects.order_by("id").first()
    with pytest.raises(CommandError, match="in suspense"):
        run("resolve", str(first.pk), "--action", "accept", "--note", "x")
    held = run("suspense")
    assert "CC7F3A0B19D2E4C5A6B7C8D9E0F1A2B3" in held and "¥200.00" in held
    item = first.suspense_item
    out = run("suspense-match", str(item.pk), "--card", card_no, "--note", "付款人来电认领")
    assert "matched to card" in out and account_of_card(card_no=card_no).balance_fen == 25000
    assert "CC7F3A0B19D2E4C5A6B7C8D9E0F1A2B3" not in run("suspense")
    # The fees of the day (¥1.50) were posted; WeChat pays out ¥248.00 where the statement nets ¥248.50.
    out = run(
        "payout", "wechat", "--date", "2026-11-21", "--amount", "248.00", "--reference", "CMB20261122001"
    )
    assert "the statement nets ¥248.50" in out and "differs from the statement" in out
    assert "CMB20261122001" in run("payouts")
    assert "payout" in run("exceptions", "--open")
    assert "0 overdue orders asked for" in run("sweep")
