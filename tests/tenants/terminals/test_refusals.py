"""Every refused upload answers a clear 4xx JSON error and writes nothing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import override_settings
from django_tenants.utils import tenant_context

from citycard.tenants.terminals.services import terminal_key_rotate, terminal_resume, terminal_suspend
from citycard.tenants.terminals.simulate import SimTerminal

from .conftest import cards, taps_for
from .test_upload import post, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def two(tenant, register):
    hangzhou = tenant("hangzhou")
    a, b = SimTerminal("HZ-A", "hangzhou"), SimTerminal("HZ-B", "hangzhou")
    with tenant_context(hangzhou):
        register(a)
        register(b)
    return hangzhou, a, b


def refused(client, hangzhou, body, status, code, **kwargs):
    before = snapshot(hangzhou)
    response = post(client, body, **kwargs)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert snapshot(hangzhou) == before
    return error["message"]


def test_each_refusal_writes_nothing(client, two, now):
    hangzhou, a, b = two
    payload = a.payload(taps_for(a, cards("330100", 2), now), created_at=now)
    good = a.sign(payload)
    document = json.loads(good)

    refused(client, hangzhou, b"{not json", 400, "malformed")
    refused(client, hangzhou, b"[1, 2]", 400, "malformed")
    refused(client, hangzhou, json.dumps({"payload": payload}).encode(), 401, "unsigned")
    tampered = json.loads(good)
    tampered["payload"]["transactions"][0]["amount_fen"] = 1
    tampered["payload"]["transactions"][0]["balance_after_fen"] = (
        tampered["payload"]["transactions"][0]["balance_before_fen"] - 1
    )
    refused(client, hangzhou, json.dumps(tampered).encode(), 401, "bad_signature")
    stranger = Ed25519PrivateKey.generate()
    refused(client, hangzhou, a.sign(payload, key=stranger, key_id="HZ-X:k1"), 403, "unknown_terminal")
    # B's key signing a batch that claims to be A's.
    refused(client, hangzhou, b.sign(payload), 403, "foreign_signature")
    # A batch meant for Jiaxing, correctly signed, uploaded to Hangzhou.
    refused(client, hangzhou, a.sign({**payload, "tenant": "jiaxing"}), 403, "wrong_tenant")
    floats = good.replace(b'"amount_fen":200', b'"amount_fen":200.0', 1)
    refused(client, hangzhou, floats, 400, "malformed")
    refused(client, hangzhou, good, 415, "unsupported_media_type", content_type="text/plain")
    with override_settings(TERMINAL_BATCH_MAX_BYTES=len(good) - 1):
        assert "limit" in refused(client, hangzhou, good, 413, "too_large")
    with override_settings(TERMINAL_BATCH_MAX_TAPS=1):
        refused(client, hangzhou, good, 413, "too_large")
    # Jiaxing does not know Hangzhou's terminals.
    assert post(client, good, host="jiaxing").json()["error"]["code"] == "unknown_terminal"
    assert document["signature"]["key_id"] == "HZ-A:k1"
    assert post(client, good).status_code == 200


def test_suspended_terminal_is_refused_until_resumed(client, two, now):
    hangzhou, a, _ = two
    body = a.sign(a.payload(taps_for(a, cards("330100", 1), now), created_at=now))
    with tenant_context(hangzhou):
        terminal_suspend(terminal_id="HZ-A", reason="reported stolen", actor="test")
    assert "reported stolen" in refused(client, hangzhou, body, 403, "terminal_suspended")
    with tenant_context(hangzhou):
        terminal_resume(terminal_id="HZ-A", actor="test")
    assert post(client, body).status_code == 200


def test_key_rotation_keeps_the_old_key_for_the_overlap(client, two, now):
    hangzhou, a, _ = two
    queued = a.sign(a.payload(taps_for(a, cards("330100", 1), now), created_at=now))  # signed before rotation
    old_key = a.rotate()
    with tenant_context(hangzhou):
        terminal_key_rotate(
            terminal_id="HZ-A", public_key=a.public_key, overlap=dt.timedelta(hours=1), actor="t"
        )
    assert post(client, queued).status_code == 200  # old key, inside the window
    fresh = a.sign(a.payload(taps_for(a, cards("330100", 1, start=9), now), created_at=now))
    assert post(client, fresh).status_code == 200  # new key
    late = a.sign(
        a.payload(taps_for(a, cards("330100", 1, start=20), now), created_at=now),
        key=old_key,
        key_id="HZ-A:k1",
    )
    with tenant_context(hangzhou):
        terminal_key_rotate(
            terminal_id="HZ-A",
            public_key=Ed25519PrivateKey.generate().public_key().public_bytes_raw(),
            overlap=dt.timedelta(0),
            actor="t",
        )
    # k1's window was an hour from the first rotation; k2 is now retired with no overlap.
    assert post(client, late).status_code == 200
    refused(
        client,
        hangzhou,
        fresh.replace(b'"batch_id":"HZ-A-000002"', b'"batch_id":"HZ-A-000009"'),
        401,
        "key_expired",
    )
