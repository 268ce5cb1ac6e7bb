"""Visitors offline (异地权益离线核验): Jiaxing grants its elderly cardholder free park entry; Hangzhou takes
the visitors' entitlements the Yangtze Delta network recognises from Jiaxing's signed visitor list (an
envelope, full then delta, never older) into its own signed offline list; Hangzhou's park gate, offline,
admits the visitor's card (read and authenticated by the terminal kit) and citizen code (verified with
Jiaxing's keys), and its uses upload as the visitor's uses. A revocation at home reaches the gate."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django_tenants.utils import tenant_context

from citycard.interop.entitlements import entitlement_recognition_set, visitor_lists_sync
from citycard.platform.errors import DomainError
from citycard.platform.keys import tenant_public_keys
from citycard.tenants.entitlements import roaming
from citycard.tenants.entitlements import services as s
from citycard.tenants.entitlements.acceptance import citizen_code_issue, code_issuer, entitlement_uses_upload
from citycard.tenants.entitlements.models import Entitlement, VisitorUse
from citycard.tenants.entitlements.selectors import entitlement_list_document
from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.ecode import EcodeVerifier
from citycard.terminal_kit.entitlements import EntitlementList, Gate, UseQueue
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.signing import b64encode, public_key_bytes
from citycard.terminal_kit.store import TapStore
from citycard.terminal_kit.tap import FixedFare, Validator
from tests.interop.test_entitlements_roaming import AT, visitor  # noqa: F401 (the fixture)
from tests.terminal_kit import kit

pytestmark = pytest.mark.django_db


def park_gate(tmp_path, transport, jiaxing, hangzhou, held):
    """Hangzhou's park gate, offline: its validator, and a code scanner trusting both cities' keys."""
    validator = Validator(
        transport=transport,
        sam=kit.sam(),
        store=TapStore(tmp_path / "taps.sqlite"),
        fare=FixedFare(0),
        tenant="hangzhou",
        service="park",
        route="hz-west-lake",
        clock=lambda: AT,
    )
    issuers = []
    for city in (hangzhou, jiaxing):
        with tenant_context(city):
            issuers.append(replace(code_issuer(city), keys=tenant_public_keys(tenant=city)))
    codes = EcodeVerifier(issuers=issuers, store=validator.store, clock=lambda: AT.timestamp())
    return Gate("hz-west-lake", held, UseQueue(tmp_path / "uses.sqlite"), validator, codes, lambda: AT)


def from_jiaxing(done):
    return {d["home"]: d for d in done}["jiaxing"]


def synced_list(hangzhou, held=None):
    with tenant_context(hangzhou):
        return (held or EntitlementList()).apply(
            entitlement_list_document(since=held.version if held else None),
            keys=tenant_public_keys(tenant=hangzhou),
        )


def test_hangzhou_gate_admits_a_jiaxing_elderly_visitor_offline_by_card_and_code(tenant, visitor, tmp_path):
    holder, card = visitor
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    assert visitor_lists_sync(acquirer=hangzhou, at=AT) == []  # nothing recognised yet
    entitlement_recognition_set(
        network_code="yrd", type_codes=["elderly-free-entry"], valid_from=dt.date(2026, 1, 1), actor="yrd"
    )
    first = from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))
    assert (first["home"], first["added"], first["removed"]) == ("jiaxing", 1, 0)
    assert from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))["added"] == 0  # up to date

    held = synced_list(hangzhou)
    assert [t for t, _f, _u in held.entitlements(card.card_no)] == ["elderly-free-entry"]
    virtual = VirtualCard(CardProfile(card_no=card.card_no, holder_name="沈阿婆"), kit.keys(), balance=300)
    gate = park_gate(tmp_path, InProcessReader(virtual), jiaxing, hangzhou, held)
    by_card = gate.present_card()
    assert (by_card.allowed, by_card.type_code, by_card.remaining) == (True, "elderly-free-entry", 0)
    assert virtual.balance == 300
    assert gate.present_card().reason == "quota_used_up"  # one entry a day, counted by the gate

    with tenant_context(jiaxing):
        code = citizen_code_issue(card_no=card.card_no, at=AT)
    day_after = dt.timedelta(days=1)
    gate.clock = lambda: AT + day_after
    gate.codes.clock = lambda: AT.timestamp() + 5
    by_code = gate.present_code(code)
    assert (by_code.allowed, by_code.card_no) == (True, card.card_no), by_code
    assert gate.present_code(code).reason == "code_replayed"

    # The gate's uses upload to Hangzhou, signed by the terminal: recorded as the visitor's uses, once.
    from citycard.tenants.terminals.services import terminal_register

    key = Ed25519PrivateKey.generate()
    with tenant_context(hangzhou):
        terminal_register(
            terminal_id="wl-gate-7",
            operator="西湖景区",
            department="hz-parks",
            service="park",
            public_key=b64encode(public_key_bytes(key)),
            location="北山街",
            actor="t",
        )
        batch = gate.uses.batch(tenant="hangzhou", terminal_id="wl-gate-7", key=key, key_id="wl-gate-7:k1")
        taken = entitlement_uses_upload(document=batch)
        assert (taken["recorded"], taken["rejected"]) == (2, [])
        assert entitlement_uses_upload(document=batch)["duplicates"] == 2
        uses = list(VisitorUse.objects.order_by("at"))
        assert [(u.home_tenant, u.channel) for u in uses] == [("jiaxing", "card"), ("jiaxing", "code")]
        assert all(u.answer_id.startswith("entl:jiaxing:") for u in uses)

    # Revoked at home: the next sync is a delta removing the row; the gate's list follows it.
    with tenant_context(jiaxing):
        grant = Entitlement.objects.get(cardholder_id=holder.pk)
        s.entitlement_revoke(entitlement_id=grant.pk, reason="迁出", actor="t", at=AT)
    delta = from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))
    assert (delta["added"], delta["removed"]) == (0, 1)
    newer = synced_list(hangzhou, held)
    assert newer.version > held.version and newer.entitlements(card.card_no) == []

    # Recognition withdrawn: Jiaxing's visitors leave Hangzhou's list altogether.
    with tenant_context(jiaxing):
        s.entitlement_grant(type="elderly-free-entry", cardholder_id=holder.pk, actor="t", at=AT)
    assert from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))["added"] == 1
    entitlement_recognition_set(
        network_code="yrd", type_codes=[], valid_from=dt.date(2026, 1, 1), actor="yrd"
    )
    dropped = from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))
    assert dropped["removed"] == 1
    assert synced_list(hangzhou, newer).entitlements(card.card_no) == []


def test_an_older_or_foreign_visitor_list_is_refused(tenant, visitor):
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    entitlement_recognition_set(
        network_code="yrd", type_codes=["elderly-free-entry"], valid_from=dt.date(2026, 1, 1), actor="yrd"
    )
    types = ["elderly-free-entry"]
    with tenant_context(jiaxing):
        old = roaming.visitor_list_seal(acquirer="hangzhou", types=types, since=None, now=AT)
        holder = Entitlement.objects.get().cardholder_id
        s.entitlement_revoke(entitlement_id=Entitlement.objects.get().pk, reason="x", actor="t", at=AT)
        s.entitlement_grant(type="elderly-free-entry", cardholder_id=holder, actor="t", at=AT)
        new = roaming.visitor_list_seal(acquirer="hangzhou", types=types, since=None, now=AT)
        to_tongxiang = roaming.visitor_list_seal(acquirer="jiaxing", types=types, since=None, now=AT)
    with tenant_context(hangzhou):
        roaming.visitor_list_take(document=new, home="jiaxing", types=types, now=AT)
        with pytest.raises(DomainError, match="not newer"):
            roaming.visitor_list_take(document=old, home="jiaxing", types=types, now=AT)
        with pytest.raises(DomainError) as refused:
            roaming.visitor_list_take(document=to_tongxiang, home="jiaxing", types=types, now=AT)
        assert refused.value.code == "bad_list"
        with pytest.raises(DomainError, match="not from"):
            roaming.visitor_list_take(document=new, home="shanghai", types=types, now=AT)


@pytest.mark.pcsc
def test_the_visitors_card_over_pcscd_is_admitted_offline(tenant, visitor, tmp_path, pcscd, inserted):
    from citycard.terminal_kit.reader import PcscReader

    _holder, card = visitor
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    entitlement_recognition_set(
        network_code="yrd", type_codes=["elderly-free-entry"], valid_from=dt.date(2026, 1, 1), actor="yrd"
    )
    visitor_lists_sync(acquirer=hangzhou, at=AT)
    virtual = VirtualCard(CardProfile(card_no=card.card_no, holder_name="沈阿婆"), kit.keys(), balance=300)
    inserted(virtual)
    gate = park_gate(tmp_path, PcscReader(pcscd), jiaxing, hangzhou, synced_list(hangzhou))
    decision = gate.present_card()
    assert (decision.allowed, decision.card_no, decision.type_code) == (
        True,
        card.card_no,
        "elderly-free-entry",
    )
    assert virtual.balance == 300
