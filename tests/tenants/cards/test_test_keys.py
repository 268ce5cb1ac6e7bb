"""`citycard cards test-keys`: an issuer's test-card keys, read back by the terminal kit; refused for a county
and in production; audited without the keys."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

from citycard.platform.audit.models import AuditEntry
from citycard.platform.keys import tenant_card_tac_master
from citycard.terminal_kit.day import issuer_keys_read

pytestmark = pytest.mark.django_db


def test_the_keys_file_reads_back_with_the_citys_tac_master_and_its_counties(tenant, tmp_path):
    out = tmp_path / "hz.json"
    call_command("cards", "--tenant", "hangzhou", "test-keys", "--out", str(out), stdout=io.StringIO())
    keys = issuer_keys_read(out)
    hangzhou = tenant("hangzhou")
    assert keys.issuer == "hangzhou" and keys.divisions == (
        "330100",
        "330122",
    )  # Tonglu's cards are Hangzhou's
    assert keys.keys.tac_master == tenant_card_tac_master(tenant=hangzhou)
    with tenant_context(hangzhou):
        entry = AuditEntry.objects.get(action="card.test_keys_export")
    assert "kcv" in entry.payload and keys.keys.tac_master.hex() not in entry.payload  # never a key


@pytest.mark.usefixtures("english")
def test_a_county_has_no_card_keys_to_export(tmp_path):
    with pytest.raises(CommandError, match="haiyan is a county"):
        call_command("cards", "--tenant", "haiyan", "test-keys", "--out", str(tmp_path / "k.json"))
    assert not (tmp_path / "k.json").exists()


@pytest.mark.usefixtures("english")
def test_refused_in_production(settings, tmp_path):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="not exported in production"):
        call_command("cards", "--tenant", "jiaxing", "test-keys", "--out", str(tmp_path / "k.json"))
    assert not (tmp_path / "k.json").exists()
