"""Each site publishes the keys its terminals verify with at /.well-known/citycard-keys.json, signed by the
platform; `citycard keys list` prints the public keys with their state and dates."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from citycard.platform import keys
from citycard.platform.key_publication import keys_document
from citycard.platform.models import Tenant, TenantKind
from citycard.terminal_kit.signing import b64encode, verify_document

pytestmark = pytest.mark.django_db
WELL_KNOWN = "/.well-known/citycard-keys.json"


def platform() -> Tenant:
    return Tenant.objects.get(kind=TenantKind.PLATFORM)


def signs(document: dict) -> dict[str, list[str]]:
    return {e["key_id"]: e["signs"] for e in document["payload"]["keys"]}


def current_id(code: str) -> str:
    return keys.tenant_verifying_keys(tenant=Tenant.objects.get(code=code))[-1].key_id


def test_a_countys_document_lists_its_own_ack_and_hotlist_keys_its_citys_rule_keys_and_the_platforms():
    document = keys_document(tenant=Tenant.objects.get(code="tonglu"))
    assert document["payload"]["kind"] == "citycard-keys" and document["payload"]["tenant"] == "tonglu"
    assert signs(document) == {
        current_id("tonglu"): ["acknowledgements", "hotlists"],
        current_id("hangzhou"): ["fare_rules"],
        current_id("public"): ["keys"],
    }
    # A terminal pinning the platform's key verifies it.
    verify_document(document, keys=keys.tenant_public_keys(tenant=platform()))
    (own,) = (e for e in document["payload"]["keys"] if e["tenant"] == "tonglu")
    key = keys.tenant_verifying_keys(tenant=Tenant.objects.get(code="tonglu"))[-1]
    assert own["public_key"] == b64encode(bytes(key.public_key)) and own["state"] == "current"


def test_a_citys_key_signs_all_three_and_the_platforms_document_lists_the_platforms_keys_only():
    city = keys_document(tenant=Tenant.objects.get(code="hangzhou"))
    assert signs(city)[current_id("hangzhou")] == ["acknowledgements", "hotlists", "fare_rules"]
    assert signs(keys_document(tenant=platform())) == {current_id("public"): ["keys"]}


def test_a_key_retired_within_the_overlap_window_is_listed_and_beyond_it_is_not():
    jiaxing = Tenant.objects.get(code="jiaxing")
    old = current_id("jiaxing")
    new = keys.tenant_key_rotate(tenant=jiaxing, purpose="signing", overlap=dt.timedelta(hours=1)).key_id
    within = keys_document(tenant=jiaxing)["payload"]["keys"]
    (retired,) = (e for e in within if e["key_id"] == old)
    assert retired["state"] == "retired" and retired["retired_at"] and retired["verify_until"]
    assert {e["key_id"] for e in within if e["tenant"] == "jiaxing"} == {old, new}
    beyond = keys_document(tenant=jiaxing, at=timezone.now() + dt.timedelta(hours=2))["payload"]["keys"]
    assert {e["key_id"] for e in beyond if e["tenant"] == "jiaxing"} == {new}


def test_the_platform_signs_with_its_oldest_key_still_verifying_so_terminals_learn_its_successor():
    old = current_id("public")
    new = keys.tenant_key_rotate(tenant=platform(), purpose="signing", overlap=dt.timedelta(days=7)).key_id
    during = keys_document(tenant=Tenant.objects.get(code="haiyan"))
    assert during["signature"]["key_id"] == old and {old, new} <= set(signs(during))
    after = keys_document(tenant=Tenant.objects.get(code="haiyan"), at=timezone.now() + dt.timedelta(days=8))
    assert after["signature"]["key_id"] == new and old not in signs(after)


@pytest.mark.parametrize(("host", "tenant"), [("tonglu.localhost", "tonglu"), ("localhost", "public")])
def test_served_to_anyone_on_each_site(host, tenant):
    response = Client().get(WELL_KNOWN, HTTP_HOST=host)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    document = response.json()
    assert document["payload"]["tenant"] == tenant
    verify_document(document, keys=keys.tenant_public_keys(tenant=platform()))


def test_keys_list_prints_the_public_keys_with_state_and_dates():
    haiyan = Tenant.objects.get(code="haiyan")
    old = current_id("haiyan")
    keys.tenant_key_rotate(tenant=haiyan, purpose="signing", overlap=dt.timedelta(days=3))
    out = StringIO()
    call_command("keys", "list", "--tenant", "haiyan", stdout=out)
    header, *lines = out.getvalue().splitlines()
    assert header.split("\t") == [
        "key_id", "purpose", "state", "created", "retired", "verifies_until", "master", "public_key"
    ]  # fmt: skip
    rows = {line.split("\t")[0]: line.split("\t") for line in lines}
    row = rows[old]
    assert row[1:3] == ["signing", "overlapping"] and row[4].endswith("+08:00") and row[5].endswith("+08:00")
    public = {k.key_id: b64encode(bytes(k.public_key)) for k in keys.tenant_verifying_keys(tenant=haiyan)}
    assert row[7] == public[old]
    (current,) = (r for r in rows.values() if r[1] == "signing" and r[2] == "current")
    assert current[4:6] == ["-", "-"] and current[7] == public[current[0]]
    (data,) = (r for r in rows.values() if r[1] == "data")
    assert data[7] == "-"  # a data key has no public half
