"""A county's terminal end to end: it loads its city's rules with the keys `fares export --keys-out` wrote
and uploads with them (its county's acknowledgement key is among them); a new terminal fetches the same
keys from the county's site (/.well-known/citycard-keys.json, signed by the platform), its hotlist and
rules verify with them, and its upload's acknowledgement verifies with the keys it holds."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.test import Client
from django_tenants.utils import tenant_context

from citycard.platform import keys
from citycard.platform.models import Tenant
from citycard.tenants.fares import seeds, services
from citycard.tenants.terminals.services import terminal_register
from citycard.terminal_kit.fares import load_signed
from citycard.terminal_kit.keyring import (
    SIGNS_ACKNOWLEDGEMENTS,
    SIGNS_FARE_RULES,
    SIGNS_HOTLISTS,
    keyring_held,
)
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.signing import TerminalCredentials, public_key_bytes
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.sync import Downloader
from citycard.terminal_kit.tap import Validator
from citycard.terminal_kit.upload import Uploader
from tests.terminal_kit import kit

pytestmark = pytest.mark.django_db
HOST = "tonglu.localhost"


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k != "Host"}
    response = Client().get(url, HTTP_HOST=HOST, **meta)
    return response.status_code, response.content


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    response = Client().generic("POST", url, body, content_type="application/json", HTTP_HOST=HOST)
    return response.status_code, response.content


def _terminal(terminal_id: str) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    with tenant_context(Tenant.objects.get(code="tonglu")):
        terminal_register(
            terminal_id=terminal_id,
            operator="桐庐公交",
            department="transport",
            service="bus",
            route="151",
            public_key=public_key_bytes(key),
            actor="test",
        )
    return key


def _tap_and_upload(store: TapStore, *, engine, tenant_keys: dict[str, bytes], terminal_id: str, key) -> dict:
    hangzhou = Tenant.objects.get(code="hangzhou")
    reader = InProcessReader()
    validator = Validator(
        transport=reader,
        sam=kit.sam(),
        store=store,
        fare=engine,
        tenant="tonglu",
        service="bus",
        route="151",
        clock=lambda: kit.NOW,
    )
    reader.insert(kit.card(7, division="330100", tac_master=keys.tenant_card_tac_master(tenant=hangzhou)))
    assert validator.tap().outcome == "approved"
    uploader = Uploader(url="/terminal/v1/batches", host=HOST, post=_post, tenant_keys=tenant_keys)
    sent = uploader.drain(
        store,
        terminal_id=terminal_id,
        tenant="tonglu",
        key=key,
        key_id=f"{terminal_id}:k1",
        rule_version=engine.version,
        hotlist_version=0,
    )
    assert sent == 1 and store.taps() == []
    (ack,) = uploader.acknowledged
    return ack


def test_a_county_terminal_exports_syncs_and_uploads_with_its_countys_acknowledgement_key(tmp_path):
    hangzhou, tonglu = Tenant.objects.get(code="hangzhou"), Tenant.objects.get(code="tonglu")
    with tenant_context(hangzhou):
        services.fares_document_load(tenant=hangzhou, document=seeds.HANGZHOU, actor="test")
        services.fares_publish(
            tenant=hangzhou, actor="test", effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        )
    rules_file, keys_file = tmp_path / "rules.json", tmp_path / "keys.json"
    call_command(
        "fares", "export", "--tenant", "tonglu", "--out", str(rules_file), "--keys-out", str(keys_file)
    )
    rules = json.loads(rules_file.read_text())

    # The exported keys: the city's rules verify, and so does the county's acknowledgement.
    exported = {k: base64.b64decode(v) for k, v in json.loads(keys_file.read_text()).items()}
    assert set(exported) == {
        *keys.tenant_public_keys(tenant=tonglu),
        *keys.tenant_public_keys(tenant=hangzhou),
    }
    key = _terminal("TL-E2E-1")
    first = TapStore(tmp_path / "first.sqlite")
    ack = _tap_and_upload(
        first, engine=load_signed(rules, keys=exported), tenant_keys=exported, terminal_id="TL-E2E-1", key=key
    )
    assert ack["accepted"] == 1, ack
    first.close()

    # A new terminal with nothing but its own key: sync fetches the keys, then the hotlist.
    key = _terminal("TL-E2E-2")
    store = TapStore(tmp_path / "second.sqlite")
    down = Downloader(
        base_url="",
        tenant_keys={},
        credentials=TerminalCredentials(tenant="tonglu", key_id="TL-E2E-2:k1", key=key),
        get=_get,
    )
    taken = down.keys(store)
    assert taken.first_use and taken.ring.tenant == "tonglu"
    now = dt.datetime.now(dt.UTC)
    held = keyring_held(store)
    acks = held.keys(SIGNS_ACKNOWLEDGEMENTS, at=now)
    assert acks == keys.tenant_public_keys(tenant=tonglu)
    assert held.keys(SIGNS_FARE_RULES, at=now) == keys.tenant_public_keys(tenant=hangzhou)
    down.tenant_keys = held.keys(SIGNS_HOTLISTS, at=now)
    assert down.hotlist(store).tenant == "tonglu"
    engine = load_signed(rules, keys=held.keys(SIGNS_FARE_RULES, at=now))
    ack = _tap_and_upload(store, engine=engine, tenant_keys=acks, terminal_id="TL-E2E-2", key=key)
    assert ack["accepted"] == 1, ack
    store.close()
