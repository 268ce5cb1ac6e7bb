"""A terminal_kit validator taps virtual cards, queues, signs and uploads to the real ingestion endpoint."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client
from django_tenants.utils import tenant_context

from citycard.platform import keys
from citycard.platform.models import Tenant
from citycard.tenants.terminals.models import ReviewFlag, Transaction
from citycard.tenants.terminals.services import terminal_register
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.signing import public_key_bytes
from citycard.terminal_kit.upload import Uploader
from tests.terminal_kit import kit

pytestmark = pytest.mark.django_db


def test_taps_travel_from_the_card_to_the_back_office_and_are_acknowledged(tmp_path):
    hangzhou = Tenant.objects.get(code="hangzhou")
    terminal_key = Ed25519PrivateKey.generate()
    with tenant_context(hangzhou):
        terminal_register(
            terminal_id="HZ-E2E-1",
            operator="杭州公交",
            department="transport",
            service="bus",
            route="151",
            public_key=public_key_bytes(terminal_key),
            actor="test",
        )
    reader = InProcessReader()
    v = kit.validator(reader, tmp_path, fare=200)
    own = kit.card(1, division="330100", tac_master=keys.tenant_card_tac_master(tenant=hangzhou))
    visitor = kit.card(2, division="330400")
    for card in (own, visitor, own):
        reader.insert(card)
        assert v.tap().outcome == "approved"

    client = Client()

    def post(url, body, headers):
        response = client.generic(
            "POST", url, body, content_type="application/json", HTTP_HOST=headers["Host"]
        )
        return response.status_code, response.content

    uploader = Uploader(
        url="/terminal/v1/batches",
        host="hangzhou.localhost",
        post=post,
        tenant_keys=keys.tenant_public_keys(tenant=hangzhou),
    )
    args = dict(
        terminal_id="HZ-E2E-1",
        tenant="hangzhou",
        key=terminal_key,
        key_id="HZ-E2E-1:k1",
        rule_version=0,
        hotlist_version=0,
    )
    assert uploader.drain(v.store, **args) == 1
    (ack,) = uploader.acknowledged
    assert ack["accepted"] == 3 and ack["rejected"] == 0, ack
    assert v.store.taps() == []
    with tenant_context(hangzhou):
        stored = Transaction.objects.filter(terminal_id="HZ-E2E-1").order_by("terminal_seq")
        assert [(t.card_no[:6], t.amount_fen, t.routing) for t in stored] == [
            ("330100", 200, "own"),
            ("330400", 200, "roaming"),
            ("330100", 200, "own"),
        ]
        # The issuer (Hangzhou) recomputed its own card's TACs with its key: both hold.
        assert not ReviewFlag.objects.filter(code="tac_invalid").exists()


def test_an_unregistered_terminal_is_refused_and_its_batch_set_aside_with_its_taps(tmp_path):
    hangzhou = Tenant.objects.get(code="hangzhou")
    reader = InProcessReader(kit.card(3, division="330100"))
    v = kit.validator(reader, tmp_path)
    assert v.tap().outcome == "approved"
    client = Client()
    uploader = Uploader(
        url="/terminal/v1/batches",
        host="hangzhou.localhost",
        post=lambda url, body, headers: (
            (
                r := client.generic(
                    "POST", url, body, content_type="application/json", HTTP_HOST=headers["Host"]
                )
            ).status_code,
            r.content,
        ),
        tenant_keys=keys.tenant_public_keys(tenant=hangzhou),
    )
    sent = uploader.drain(
        v.store,
        terminal_id="NOPE",
        tenant="hangzhou",
        key=Ed25519PrivateKey.generate(),
        key_id="NOPE:k1",
        rule_version=0,
        hotlist_version=0,
    )
    assert sent == 0
    (aside,) = uploader.set_aside
    assert 400 <= aside.status < 500 and aside.code and aside.message and aside.taps == 1
    assert v.store.batches_set_aside(open_only=True) == [aside]
    assert len(v.store.taps("complete")) == 1
