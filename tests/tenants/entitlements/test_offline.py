"""Offline acceptance: the tenant's signed entitlement list (full, delta, never older) decides at a gate
that reads and authenticates the card through the terminal kit or verifies the citizen code with the
tenant's keys; the gate's uses upload signed, once, and count against the quota online."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection

from citycard.platform.keys import tenant_public_keys
from citycard.tenants.entitlements import services as s
from citycard.tenants.entitlements.acceptance import (
    acceptance_decide,
    citizen_code_issue,
    code_issuer,
    entitlement_uses_upload,
)
from citycard.tenants.entitlements.models import Entitlement
from citycard.tenants.entitlements.selectors import entitlement_list_document
from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.ecode import EcodeVerifier
from citycard.terminal_kit.entitlements import EntitlementList, EntitlementListError, Gate, UseQueue
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.store import TapStore
from tests.tenants.entitlements.conftest import AT, park_pass, park_terminal
from tests.terminal_kit import kit

pytestmark = pytest.mark.django_db


def _setup(person, quota=2):
    holder, card = person()
    park_pass(quota_period="day", quota=quota, grant_to=holder.pk)
    return holder, card


def gate_for(card_no, tmp_path, entitlements, *, clock=AT):
    virtual = VirtualCard(CardProfile(card_no=card_no, holder_name="王小明"), kit.keys(), balance=1000)
    validator = kit.validator(
        InProcessReader(virtual), tmp_path, fare=0, service="park", route="west-lake-gate", at=clock
    )
    tenant = connection.tenant
    codes = EcodeVerifier(
        issuers=[replace(code_issuer(tenant), keys=tenant_public_keys(tenant=tenant))],
        store=validator.store,
        clock=lambda: clock.timestamp(),
    )
    return Gate(
        "west-lake-gate", entitlements, UseQueue(tmp_path / "uses.sqlite"), validator, codes, lambda: clock
    ), virtual


def test_gate_decides_offline_from_the_signed_list_with_card_and_code_then_uploads_once(
    person, tmp_path, client
):
    holder, card = _setup(person)
    keys = tenant_public_keys(tenant=connection.tenant)
    held = EntitlementList().apply(entitlement_list_document(), keys=keys)
    assert held.entitlements(card.card_no) and len(held) == 1
    with pytest.raises(EntitlementListError):
        held.apply(entitlement_list_document(), keys=keys)  # the same version: never older, never again

    gate, virtual = gate_for(card.card_no, tmp_path, held)
    first = gate.present_card()
    assert (first.allowed, first.type_code, first.remaining) == (True, "park-pass", 1), first
    assert virtual.balance == 1000  # authenticated by a zero-amount purchase: MAC2 and TAC checked
    code = citizen_code_issue(card_no=card.card_no, at=AT)
    second = gate.present_code(code)
    assert (second.allowed, second.remaining) == (True, 0)
    assert gate.present_code(code).reason == "code_replayed"
    assert gate.present_card().reason == "quota_used_up"

    # The list's delta carries the revocation; the gate refuses afterwards.
    version = held.version
    s.entitlement_revoke(
        role="city_admin",
        entitlement_id=Entitlement.objects.get(cardholder_id=holder.pk).pk,
        reason="退卡",
        actor="t",
        at=AT + dt.timedelta(hours=1),
    )
    newer = held.apply(entitlement_list_document(since=version), keys=keys)
    assert newer.version == version + 1 and newer.entitlements(card.card_no) == []

    # The gate's uses upload, signed by the terminal, counted once (a resend adds nothing).
    key = park_terminal("wl-gate-1")
    batch = gate.uses.batch(tenant="hangzhou", terminal_id="wl-gate-1", key=key, key_id="wl-gate-1:k1")
    taken = entitlement_uses_upload(document=batch)
    assert (taken["recorded"], taken["duplicates"], taken["rejected"]) == (2, 0, [])
    # Sent again over HTTP: nothing new; the tenant-signed answer verified by the gate clears its queue.
    response = client.post(
        "/terminal/v1/entitlement-uses",
        json.dumps(batch),
        content_type="application/json",
        HTTP_HOST="hangzhou.localhost",
    )
    assert response.status_code == 200, response.content
    answer = gate.uses.acknowledgement_take(response.json(), tenant_keys=keys)
    assert (answer["recorded"], answer["duplicates"]) == (0, 2)
    assert gate.uses.batch(tenant="hangzhou", terminal_id="wl-gate-1", key=key, key_id="wl-gate-1:k1") is None


def test_offline_uses_count_against_the_quota_online(person, tmp_path):
    _holder, card = _setup(person, quota=1)
    keys = tenant_public_keys(tenant=connection.tenant)
    held = EntitlementList().apply(entitlement_list_document(), keys=keys)
    gate, _ = gate_for(card.card_no, tmp_path, held)
    assert gate.present_card().allowed
    key = park_terminal("wl-gate-2")
    entitlement_uses_upload(
        document=gate.uses.batch(tenant="hangzhou", terminal_id="wl-gate-2", key=key, key_id="wl-gate-2:k1")
    )
    online = acceptance_decide(
        service_point="west-lake-gate", card_no=card.card_no, at=AT + dt.timedelta(hours=1), reader="g"
    )
    assert (online.allowed, online.reason) == (False, "quota_used_up")


def test_a_batch_signed_by_an_unknown_key_is_refused(person, tmp_path):
    from citycard.platform.errors import DomainError

    _holder, card = _setup(person)
    held = EntitlementList().apply(
        entitlement_list_document(), keys=tenant_public_keys(tenant=connection.tenant)
    )
    gate, _ = gate_for(card.card_no, tmp_path, held)
    gate.present_card()
    forged = gate.uses.batch(
        tenant="hangzhou", terminal_id="x", key=Ed25519PrivateKey.generate(), key_id="x:k1"
    )
    with pytest.raises(DomainError) as refused:
        entitlement_uses_upload(document=forged)
    assert refused.value.code == "bad_signature"


def test_terminal_syncs_the_list_over_http_full_then_delta_then_304_and_keeps_it(person, client, tmp_path):
    from citycard.terminal_kit.sync import Downloader
    from tests.terminal_auth import terminal_with_key

    holder, card = _setup(person)
    credentials = terminal_with_key(terminal_id="wl-gate-9", tenant_code="hangzhou")
    keys = tenant_public_keys(tenant=connection.tenant)
    calls = []

    def get(url, headers):
        path = url.split("hangzhou.localhost", 1)[1]
        calls.append(path)
        extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
        response = client.get(path, HTTP_HOST="hangzhou.localhost", **extra)
        return response.status_code, response.content

    downloader = Downloader(
        base_url="http://hangzhou.localhost", tenant_keys=keys, credentials=credentials, get=get
    )
    held = downloader.entitlements(EntitlementList())
    assert held.entitlements(card.card_no) and "since=0" in calls[-1]
    assert downloader.entitlements(held) is held  # up to date: 304
    s.entitlement_revoke(
        role="city_admin",
        entitlement_id=Entitlement.objects.get(cardholder_id=holder.pk).pk,
        reason="退卡",
        actor="t",
        at=AT,
    )
    newer = downloader.entitlements(held)
    assert newer.version == held.version + 1 and not newer.entitlements(card.card_no)

    # Kept in the queue database: a restarted terminal holds the same list and asks for the delta only.
    from citycard.terminal_kit.entitlements import list_held, list_keep

    store = TapStore(tmp_path / "taps.sqlite")
    list_keep(store, newer)
    restarted = list_held(store)
    assert (restarted.version, list(restarted.rows())) == (newer.version, list(newer.rows()))
    assert downloader.entitlements(restarted) is restarted and "since=" in calls[-1]
    assert client.get("/terminal/v1/entitlements", HTTP_HOST="hangzhou.localhost").status_code == 401


def test_a_malformed_batch_is_refused_whole(person, tmp_path):
    from citycard.platform.errors import DomainError
    from citycard.terminal_kit.signing import sign_document

    _setup(person)
    key = park_terminal("wl-gate-5")
    bad = {
        "kind": "entitlement-uses",
        "tenant": "hangzhou",
        "terminal_id": "wl-gate-5",
        "uses": [{"use_key": "x"}],
    }
    with pytest.raises(DomainError) as refused:
        entitlement_uses_upload(document=sign_document(bad, key=key, key_id="wl-gate-5:k1"))
    assert refused.value.code == "malformed"
