"""The terminal-signed online check (``POST /terminal/v1/entitlement-check``) through the terminal kit: a
Hangzhou park gate signs its question with its key, the tenant answers signed, for Hangzhou's own
cardholders and a Jiaxing visitor alike; a retried check counts once; a terminal of another department,
an unknown key or a stale clock are refused, and a gate whose back office does not answer decides offline."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django_tenants.utils import tenant_context

from citycard.platform.keys import tenant_public_keys
from citycard.tenants.entitlements.acceptance import citizen_code_issue, code_issuer
from citycard.tenants.entitlements.models import EntitlementUse, VisitorUse
from citycard.tenants.entitlements.selectors import entitlement_list_document
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.ecode import EcodeVerifier
from citycard.terminal_kit.entitlements import (
    CheckUnavailable,
    EntitlementList,
    Gate,
    OnlineChecker,
    OnlineDecision,
    UseQueue,
)
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.signing import TerminalCredentials
from tests.tenants.entitlements.conftest import park_terminal
from tests.terminal_kit import kit

pytestmark = pytest.mark.django_db


def _terminal(terminal_id: str, department: str) -> TerminalCredentials:
    key = park_terminal(terminal_id, department)
    return TerminalCredentials(tenant="hangzhou", key_id=f"{terminal_id}:k1", key=key)


def _post_via(client):
    def post(url, body, headers):
        path = url.split("hangzhou.localhost", 1)[1]
        response = client.post(
            path, body, content_type=headers["Content-Type"], HTTP_HOST="hangzhou.localhost"
        )
        return response.status_code, response.content

    return post


@pytest.fixture
def park(tenant, recognised, client):
    """Hangzhou's park gate terminal (of hz-parks), a Hangzhou elderly cardholder, the Jiaxing visitor."""
    from citycard.tenants.cards.services import card_issue_now, cardholder_register
    from tests.tenants.conftest import new_id

    hangzhou = tenant("hangzhou")
    with tenant_context(hangzhou):
        local = cardholder_register(
            name="陈老伯",
            id_number=new_id("330106", dt.date(1950, 5, 6)),
            local_hukou=True,
            categories=[{"code": "elderly", "valid_from": dt.date(2010, 5, 6)}],
            actor="t",
        )
        local_card = card_issue_now(scheme_code="01", cardholder_id=local.pk, actor="t")
        credentials = _terminal("wl-gate-online", "hz-parks")
        keys = tenant_public_keys(tenant=hangzhou)
    checker = OnlineChecker(
        base_url="http://hangzhou.localhost",
        tenant_keys=keys,
        credentials=credentials,
        post=_post_via(client),
    )
    return hangzhou, checker, local_card, recognised[1]


def test_a_signed_check_is_answered_signed_for_a_local_card_and_a_visitor_once_per_use_key(park):
    hangzhou, checker, local_card, visitor_card = park
    now = dt.datetime.now(dt.UTC)
    local = checker.check(service_point="hz-west-lake", at=now, card_no=local_card.card_no, use_key="u-1")
    assert isinstance(local, OnlineDecision)
    assert (local.allowed, local.masked_name, local.type_code, local.remaining) == (
        True,
        "陈**",
        "elderly-free-entry",
        0,
    )
    again = checker.check(service_point="hz-west-lake", at=now, card_no=local_card.card_no, use_key="u-1")
    assert again.allowed  # the retry: the first answer, counted once
    refused = checker.check(service_point="hz-west-lake", at=now, card_no=local_card.card_no)
    assert (refused.allowed, refused.reason) == (False, "quota_used_up")
    visitor = checker.check(service_point="hz-west-lake", at=now, card_no=visitor_card.card_no, use_key="u-2")
    assert (visitor.allowed, visitor.home_tenant, visitor.masked_name) == (True, "jiaxing", "沈**")
    with tenant_context(hangzhou):
        assert EntitlementUse.objects.filter(card_no=local_card.card_no).count() == 1
        assert VisitorUse.objects.filter(card_no=visitor_card.card_no, channel="card").count() == 1
        assert EntitlementUse.objects.get().use_key == "terminal:wl-gate-online:u-1"


def test_the_gate_asks_online_for_card_and_code_and_decides_offline_when_unanswered(park, tmp_path):
    hangzhou, checker, local_card, visitor_card = park
    now = dt.datetime.now(dt.UTC)
    virtual = VirtualCard(
        CardProfile(card_no=visitor_card.card_no, holder_name="沈阿婆"), kit.keys(), balance=300
    )
    validator = kit.validator(
        InProcessReader(virtual), tmp_path, fare=0, service="park", route="hz-west-lake", at=now
    )
    with tenant_context(hangzhou):
        held = EntitlementList().apply(entitlement_list_document(), keys=tenant_public_keys(tenant=hangzhou))
        codes = EcodeVerifier(
            issuers=[replace(code_issuer(hangzhou), keys=tenant_public_keys(tenant=hangzhou))],
            store=validator.store,
            clock=lambda: now.timestamp(),
        )
        code = citizen_code_issue(card_no=local_card.card_no, at=now)
    gate = Gate(
        "hz-west-lake", held, UseQueue(tmp_path / "uses.sqlite"), validator, codes, lambda: now, checker
    )
    by_card = gate.present_card()  # read and authenticated by the kit, then asked online
    assert isinstance(by_card, OnlineDecision) and (by_card.allowed, by_card.home_tenant) == (True, "jiaxing")
    by_code = gate.present_code(code)  # the back office verifies the code and spends its nonce
    assert isinstance(by_code, OnlineDecision) and (by_code.allowed, by_code.masked_name) == (True, "陈**")
    assert gate.present_code(code).reason == "code_replayed"
    assert (
        gate.uses.batch(tenant="hangzhou", terminal_id="x", key=Ed25519PrivateKey.generate(), key_id="x")
        is None
    )

    def down(url, body, headers):
        raise OSError("connection refused")

    gate.online = replace(checker, post=down)
    offline = gate.present_card()  # no answer: the local list (Hangzhou's own cardholders only here)
    assert not isinstance(offline, OnlineDecision) and offline.reason == "not_entitled"


def test_refused_checks_other_department_unknown_key_stale_clock(park, client):
    hangzhou, checker, local_card, _visitor_card = park
    now = dt.datetime.now(dt.UTC)
    with tenant_context(hangzhou):
        bus = _terminal("bus-9", "transport")
    other = replace(checker, credentials=bus)
    with pytest.raises(CheckUnavailable, match="403"):
        other.check(service_point="hz-west-lake", at=now, card_no=local_card.card_no)
    forged = replace(
        checker,
        credentials=TerminalCredentials(
            tenant="hangzhou", key_id="wl-gate-online:k1", key=Ed25519PrivateKey.generate()
        ),
    )
    with pytest.raises(CheckUnavailable, match="401"):
        forged.check(service_point="hz-west-lake", at=now, card_no=local_card.card_no)
    with pytest.raises(CheckUnavailable, match="clock_skew"):
        checker.check(
            service_point="hz-west-lake", at=now - dt.timedelta(hours=1), card_no=local_card.card_no
        )
    response = client.post(
        "/terminal/v1/entitlement-check",
        json.dumps({"payload": {}}),
        content_type="application/json",
        HTTP_HOST="hangzhou.localhost",
    )
    assert response.status_code == 401
    with tenant_context(hangzhou):
        assert not EntitlementUse.objects.exists()


def test_a_use_approved_online_counts_in_the_gates_offline_quota(park, tmp_path):
    """Quota 2 a day: one entry approved online, then the back office stops answering — the gate's own
    queue holds the online use (not to be uploaded again), so offline it admits one more, not two."""
    from citycard.tenants.cards.services import card_issue_now, cardholder_register
    from citycard.tenants.entitlements import services as s
    from tests.tenants.conftest import new_id

    hangzhou, checker, _local_card, _visitor_card = park
    now = dt.datetime.now(dt.UTC)
    with tenant_context(hangzhou):
        holder = cardholder_register(
            name="周建国", id_number=new_id("330106", dt.date(1986, 4, 12)), local_hukou=True, actor="t"
        )
        card = card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="t")
        s.entitlement_type_create(
            role="city_admin",
            code="park-visit",
            name="西湖入园（每日两次）",
            department="hz-parks",
            service_points=["hz-west-lake"],
            quota_period="day",
            quota=2,
            actor="t",
        )
        s.entitlement_type_approve(code="park-visit", actor="t", role="city_admin")
        s.entitlement_grant(type="park-visit", cardholder_id=holder.pk, actor="t", role="city_admin")
        held = EntitlementList().apply(entitlement_list_document(), keys=tenant_public_keys(tenant=hangzhou))
    virtual = VirtualCard(CardProfile(card_no=card.card_no, holder_name="周建国"), kit.keys(), balance=300)
    validator = kit.validator(
        InProcessReader(virtual), tmp_path, fare=0, service="park", route="hz-west-lake", at=now
    )
    queue = UseQueue(tmp_path / "uses.sqlite")
    gate = Gate("hz-west-lake", held, queue, validator, None, lambda: now, checker)

    online = gate.present_card()
    assert isinstance(online, OnlineDecision) and (online.allowed, online.remaining) == (True, 1)
    assert queue.used(card.card_no, "park-visit", now.astimezone(BEIJING).date()) == 1
    key = Ed25519PrivateKey.generate()
    assert queue.batch(tenant="hangzhou", terminal_id="x", key=key, key_id="x") is None  # not sent twice

    def down(url, body, headers):
        raise OSError("connection refused")

    gate.online = replace(checker, post=down)
    second = gate.present_card()
    assert not isinstance(second, OnlineDecision)
    assert (second.allowed, second.remaining) == (True, 0)
    third = gate.present_card()
    assert (third.allowed, third.reason) == (False, "quota_used_up")  # not a third entry on the day
    with tenant_context(hangzhou):
        assert EntitlementUse.objects.filter(card_no=card.card_no).count() == 1  # the online one
    batch = queue.batch(tenant="hangzhou", terminal_id="x", key=key, key_id="x")
    assert len(batch["payload"]["uses"]) == 1  # only the offline use waits for upload
