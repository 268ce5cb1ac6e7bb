import base64
import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from citycard.platform import keys
from citycard.platform.errors import DomainError
from citycard.platform.models import Tenant, TenantKey
from citycard.terminal_kit.signing import SignatureError

pytestmark = pytest.mark.django_db


def test_every_tenant_has_a_signing_and_a_data_key_wrapped_not_plain():
    jiaxing = Tenant.objects.get(code="jiaxing")
    current = TenantKey.objects.filter(tenant=jiaxing, retired_at__isnull=True)
    assert sorted(current.values_list("purpose", flat=True)) == ["card_tac", "data", "signing"]
    _, raw = keys.tenant_data_key(tenant=jiaxing)
    assert len(raw) == 32 and raw not in bytes(current.get(purpose="data").wrapped_secret)
    tac = keys.tenant_card_tac_master(tenant=jiaxing)
    assert len(tac) == 16 and tac not in bytes(current.get(purpose="card_tac").wrapped_secret)


@pytest.mark.usefixtures("english")
def test_a_county_uses_its_citys_card_key_and_the_card_key_is_never_rotated():
    haiyan, jiaxing = Tenant.objects.get(code="haiyan"), Tenant.objects.get(code="jiaxing")
    assert not TenantKey.objects.filter(tenant=haiyan, purpose="card_tac").exists()
    assert keys.tenant_card_tac_master(tenant=haiyan) == keys.tenant_card_tac_master(tenant=jiaxing)
    assert keys.tenant_card_tac_master(tenant=jiaxing) != keys.tenant_card_tac_master(
        tenant=Tenant.objects.get(code="hangzhou")
    )
    with pytest.raises(DomainError) as err:
        keys.tenant_key_rotate(tenant=jiaxing, purpose="card_tac")
    assert "cannot be rotated" in str(err.value)
    with pytest.raises(DomainError) as err:
        keys.tenant_card_tac_master(tenant=Tenant.objects.get(kind="platform"))
    assert err.value.code == "not_an_issuer"


def test_signed_by_one_tenant_verifies_only_as_that_tenant():
    jiaxing, hangzhou = Tenant.objects.get(code="jiaxing"), Tenant.objects.get(code="hangzhou")
    doc = keys.tenant_sign(tenant=jiaxing, payload={"hotlist": ["3304..."]})
    signer, payload = keys.tenant_verify(document=doc)
    assert signer == jiaxing and payload == {"hotlist": ["3304..."]}
    with pytest.raises(SignatureError) as err:
        keys.tenant_verify(document=doc, tenant=hangzhou)
    assert err.value.code == "foreign_signer"


def test_rotated_signing_key_verifies_until_the_overlap_ends():
    shanghai = Tenant.objects.get(code="shanghai")
    old_doc = keys.tenant_sign(tenant=shanghai, payload={"n": 1})
    new = keys.tenant_key_rotate(tenant=shanghai, purpose="signing", overlap=dt.timedelta(hours=1))
    assert keys.tenant_sign(tenant=shanghai, payload={"n": 2})["signature"]["key_id"] == new.key_id
    keys.tenant_verify(document=old_doc)
    with pytest.raises(SignatureError) as err:
        keys.tenant_verify(document=old_doc, at=timezone.now() + dt.timedelta(hours=2))
    assert err.value.code == "unknown_key"


def test_master_key_rotation_rewraps_and_old_data_keys_still_open(monkeypatch):
    dongguan = Tenant.objects.get(code="dongguan")
    _, before = keys.tenant_data_key(tenant=dongguan)
    old = keys.master_keys()
    new_value = "m2:" + base64.b64encode(b"\x07" * 32).decode()
    old_value = f"{old.current_id}:" + base64.b64encode(old.get(old.current_id)).decode()
    monkeypatch.setenv("CITYCARD_MASTER_KEY", new_value)
    monkeypatch.setenv("CITYCARD_MASTER_KEY_PREVIOUS", old_value)
    keys.master_keys.cache_clear()
    try:
        assert keys.tenant_data_key(tenant=dongguan)[1] == before  # readable during the rotation
        call_command("keys", "rotate", "--master")
        assert not TenantKey.objects.exclude(master_key_id="m2").exists()
        monkeypatch.delenv("CITYCARD_MASTER_KEY_PREVIOUS")
        keys.master_keys.cache_clear()
        assert keys.tenant_data_key(tenant=dongguan)[1] == before  # and after, without the old key
    finally:
        keys.master_keys.cache_clear()
