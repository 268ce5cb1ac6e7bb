"""Entitlements across cities (权益互认): a Jiaxing elderly visitor enters a Hangzhou park with the card and
with the citizen code, answered from Jiaxing's signed entitlements through envelopes, only for the types
the Yangtze Delta network recognises; the read lands in the visitor's access log at home."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from django.utils.translation import override
from django_tenants.utils import tenant_context

from citycard.interop.entitlements import (
    acceptance_decide_anywhere,
    visitor_lists_sync,
)
from citycard.platform.errors import DomainError
from citycard.platform.keys import tenant_public_keys
from citycard.tenants.entitlements import roaming
from citycard.tenants.entitlements import services as s
from citycard.tenants.entitlements.acceptance import citizen_code_issue, code_issuer, entitlement_uses_upload
from citycard.tenants.entitlements.models import Entitlement, VisitorUse
from citycard.tenants.entitlements.selectors import entitlement_list_document
from citycard.terminal_kit.card.virtual import CardProfile, VirtualCard
from citycard.terminal_kit.ecode import EcodeVerifier
from citycard.terminal_kit.entitlements import EntitlementList, Gate, UseQueue, list_held, list_keep
from citycard.terminal_kit.reader import InProcessReader
from citycard.terminal_kit.store import TapStore
from tests.interop.conftest import park_gate, synced_list, type_approved, venue, yrd_recognises
from tests.tenants.conftest import new_id
from tests.tenants.entitlements.conftest import park_terminal
from tests.terminal_kit import kit

pytestmark = pytest.mark.django_db
AT = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(microsecond=0)


def test_jiaxing_elderly_visitor_enters_a_hangzhou_park_with_card_and_code(tenant, visitor):
    from citycard.tenants.cards.selectors import cardholder_access_log
    from citycard.tenants.entitlements.acceptance import citizen_code_issue

    holder, card = visitor
    with tenant_context(tenant("hangzhou")):
        before = acceptance_decide_anywhere(
            service_point="hz-west-lake", card_no=card.card_no, at=AT, reader="gate"
        )
    assert (before.allowed, before.reason) == (False, "not_entitled")  # not recognised in yrd yet
    yrd_recognises()
    with tenant_context(tenant("hangzhou")):
        yes = acceptance_decide_anywhere(
            service_point="hz-west-lake", card_no=card.card_no, at=AT, reader="gate"
        )
        assert (yes.allowed, yes.home_tenant, yes.masked_name, yes.remaining) == (True, "jiaxing", "沈**", 0)
        again = acceptance_decide_anywhere(
            service_point="hz-west-lake", card_no=card.card_no, at=AT, reader="gate"
        )
        assert again.reason == "quota_used_up"
    with tenant_context(tenant("jiaxing")):
        code = citizen_code_issue(card_no=card.card_no, at=AT + dt.timedelta(days=1))
        log = cardholder_access_log(cardholder_id=holder.pk)
    assert [(e.channel, e.under) for e in log if e.channel == "interop"] == [("interop", "hangzhou")] * 2
    with tenant_context(tenant("hangzhou")):
        tomorrow = AT + dt.timedelta(days=1, seconds=3)
        by_code = acceptance_decide_anywhere(
            service_point="hz-west-lake", code=code, at=tomorrow, reader="gate"
        )
        assert (by_code.allowed, by_code.home_tenant) == (True, "jiaxing")
        replayed = acceptance_decide_anywhere(
            service_point="hz-west-lake", code=code, at=tomorrow, reader="gate"
        )
        assert replayed.reason == "code_replayed"


def test_a_hotlisted_visitor_card_is_refused_by_its_home_answer(tenant, recognised):
    from citycard.tenants.cards.services import card_report_lost

    _holder, card = recognised
    with tenant_context(tenant("jiaxing")):
        card_report_lost(card_no=card.card_no, actor="t", at=AT - dt.timedelta(hours=1))
    with tenant_context(tenant("hangzhou")):
        no = acceptance_decide_anywhere(
            service_point="hz-west-lake", card_no=card.card_no, at=AT, reader="gate"
        )
    assert (no.allowed, no.reason, no.masked_name) == (False, "card_hotlisted", "")


def test_a_county_library_accepts_its_citys_library_card_answered_by_the_city(tenant):
    from citycard.tenants.cards.services import card_issue_now, cardholder_register, schemes_seed

    with tenant_context(tenant("hangzhou")):
        schemes_seed(actor="t")
        venue("hz-library", None, name="杭州图书馆")
        type_approved(
            code="library-borrow",
            name="图书借阅",
            department="hz-library",
            residence=["local_hukou"],
            auto_grant=True,
            actor="t",
        )
        holder = cardholder_register(
            name="方卫东", id_number=new_id("330122", dt.date(1979, 8, 8)), local_hukou=True, actor="t"
        )
        card = card_issue_now(scheme_code="01", cardholder_id=holder.pk, actor="t")
    with tenant_context(tenant("tonglu")):
        venue(
            "tl-library",
            "tl-library-desk",
            name="桐庐县图书馆",
            actor="county-officer",
            point_name="桐庐县图书馆",
            hours="9-17",
            purpose="借阅核验",
        )
        type_approved(
            role="county_officer",
            approver="county-officer",
            code="library-borrow",
            name="图书借阅（通借通还）",
            department="tl-library",
            service_points=["tl-library-desk"],
            actor="county-officer",
        )
        yes = acceptance_decide_anywhere(
            service_point="tl-library-desk", card_no=card.card_no, at=AT, reader="desk"
        )
    assert (yes.allowed, yes.home_tenant, yes.masked_name) == (True, "hangzhou", "方**")


# --- Visitors offline --------------------------------------------------------------------------------
# Visitors offline (异地权益离线核验): Jiaxing grants its elderly cardholder free park entry; Hangzhou takes
# the visitors' entitlements the Yangtze Delta network recognises from Jiaxing's signed visitor list (an
# envelope, full then delta, never older) into its own signed offline list; Hangzhou's park gate, offline,
# admits the visitor's card (read and authenticated by the terminal kit) and citizen code (verified with
# Jiaxing's keys), and its uses upload as the visitor's uses. A revocation at home reaches the gate.


def from_jiaxing(done):
    return {d["home"]: d for d in done}["jiaxing"]


def test_hangzhou_gate_admits_a_jiaxing_elderly_visitor_offline_by_card_and_code(tenant, visitor, tmp_path):
    holder, card = visitor
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    assert visitor_lists_sync(acquirer=hangzhou, at=AT) == []  # nothing recognised yet
    yrd_recognises()
    first = from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))
    assert (first["home"], first["added"], first["removed"]) == ("jiaxing", 1, 0)
    assert from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))["added"] == 0  # up to date

    held = synced_list(hangzhou)
    assert [t for t, _f, _u in held.entitlements(card.card_no)] == ["elderly-free-entry"]
    virtual = VirtualCard(CardProfile(card_no=card.card_no, holder_name="沈阿婆"), kit.keys(), balance=300)
    gate = park_gate(tmp_path, InProcessReader(virtual), jiaxing, hangzhou, held, AT)
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
    with tenant_context(hangzhou):
        key = park_terminal("wl-gate-7")
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
        s.entitlement_revoke(role="city_admin", entitlement_id=grant.pk, reason="迁出", actor="t", at=AT)
    delta = from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))
    assert (delta["added"], delta["removed"]) == (0, 1)
    newer = synced_list(hangzhou, held)
    assert newer.version > held.version and newer.entitlements(card.card_no) == []

    # Recognition withdrawn: Jiaxing's visitors leave Hangzhou's list altogether.
    with tenant_context(jiaxing):
        s.entitlement_grant(
            role="city_admin", type="elderly-free-entry", cardholder_id=holder.pk, actor="t", at=AT
        )
    assert from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))["added"] == 1
    yrd_recognises(())
    dropped = from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))
    assert dropped["removed"] == 1
    assert synced_list(hangzhou, newer).entitlements(card.card_no) == []


def test_an_older_or_foreign_visitor_list_is_refused(tenant, recognised):
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    types = ["elderly-free-entry"]
    with tenant_context(jiaxing):
        old = roaming.visitor_list_seal(acquirer="hangzhou", types=types, since=None, now=AT)
        holder = Entitlement.objects.get().cardholder_id
        s.entitlement_revoke(
            role="city_admin", entitlement_id=Entitlement.objects.get().pk, reason="x", actor="t", at=AT
        )
        s.entitlement_grant(
            role="city_admin", type="elderly-free-entry", cardholder_id=holder, actor="t", at=AT
        )
        new = roaming.visitor_list_seal(acquirer="hangzhou", types=types, since=None, now=AT)
        to_tongxiang = roaming.visitor_list_seal(acquirer="jiaxing", types=types, since=None, now=AT)
    with tenant_context(hangzhou):
        roaming.visitor_list_take(document=new, home="jiaxing", types=types, now=AT)
        with override("zh-hans"), pytest.raises(DomainError, match="不比已持有的版本"):
            roaming.visitor_list_take(document=old, home="jiaxing", types=types, now=AT)
        with pytest.raises(DomainError) as refused:
            roaming.visitor_list_take(document=to_tongxiang, home="jiaxing", types=types, now=AT)
        assert refused.value.code == "bad_list"
        with override("zh-hans"), pytest.raises(DomainError, match="不是来自"):
            roaming.visitor_list_take(document=new, home="shanghai", types=types, now=AT)


def test_a_gate_verifies_a_visitors_code_offline_with_the_home_keys_its_synced_list_brought(
    tenant, visitor, tmp_path
):
    """No key by hand: the gate's scanner knows only Hangzhou; Jiaxing's code-verification keys come in
    Jiaxing's signed visitor list, into Hangzhou's signed offline list, to the gate. A key rotation at home
    reaches the gate at the next sync, both keys held by id while the old one's overlap lasts."""
    from citycard.platform.keys import tenant_key_rotate

    _holder, card = visitor
    jiaxing, hangzhou = tenant("jiaxing"), tenant("hangzhou")
    store = TapStore(tmp_path / "taps.sqlite")
    with tenant_context(hangzhou):
        own = replace(code_issuer(hangzhou), keys=tenant_public_keys(tenant=hangzhou))
    scanner = EcodeVerifier(issuers=[own], store=store, clock=lambda: AT.timestamp())
    with tenant_context(jiaxing):
        first_code = citizen_code_issue(card_no=card.card_no, at=AT)
        old_key = first_code.rsplit(".", 1)[1]

    before = EntitlementList()  # the gate before visitors' lists: no home keys
    with tenant_context(hangzhou):
        assert entitlement_list_document()["payload"]["code_issuers"] == {}
    gate = Gate("hz-west-lake", before, UseQueue(tmp_path / "uses.sqlite"), None, scanner, lambda: AT)
    assert gate.present_code(first_code).reason == "code_invalid"  # an unknown key: refused

    yrd_recognises()
    assert from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))["keys"] == [old_key]
    gate.entitlements = held = synced_list(hangzhou)
    issuer = {i.tenant: i for i in held.code_issuers(at=AT)}["jiaxing"]  # and the other yrd cities'
    assert (issuer.tenant, set(issuer.keys), issuer.divisions) == ("jiaxing", {old_key}, {"330400"})
    by_code = gate.present_code(first_code)
    assert (by_code.allowed, by_code.card_no, by_code.type_code) == (True, card.card_no, "elderly-free-entry")
    assert gate.present_code(first_code).reason == "code_replayed"

    # Jiaxing rotates its signing key: its next list names both keys; Hangzhou's list gets a new version
    # although no row changed, and the gate verifies codes under the new key and, within the overlap,
    # the old one.
    with tenant_context(jiaxing):
        new_key = tenant_key_rotate(
            tenant=jiaxing, purpose="signing", overlap=dt.timedelta(hours=1), actor="t"
        ).key_id
        new_code = citizen_code_issue(card_no=card.card_no, at=AT + dt.timedelta(days=1))
    unsynced = dataclasses_replace_clock(gate, AT + dt.timedelta(days=1))
    assert unsynced.present_code(new_code).reason == "code_invalid"  # not synced yet: unknown
    synced = from_jiaxing(visitor_lists_sync(acquirer=hangzhou, at=AT))
    assert (synced["added"], synced["removed"], synced["keys"]) == (0, 0, sorted([old_key, new_key]))
    newer = synced_list(hangzhou, held)
    assert newer.version == held.version + 1
    assert jiaxing_keys(newer.code_issuers(at=AT)) == {old_key, new_key}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)  # past the old key's overlap
    assert jiaxing_keys(newer.code_issuers(at=later)) == {new_key}
    unsynced.entitlements = newer
    assert unsynced.present_code(new_code).allowed

    # The list kept in the terminal's queue database keeps the keys across a restart.
    list_keep(store, newer)
    assert jiaxing_keys(list_held(store).code_issuers(at=AT)) == {old_key, new_key}


def jiaxing_keys(issuers) -> set[str]:
    return set({i.tenant: i for i in issuers}["jiaxing"].keys)


def dataclasses_replace_clock(gate: Gate, at: dt.datetime) -> Gate:
    """The same gate (its list, queue and scanner's nonces) a day later."""
    later = replace(gate.codes, clock=lambda: at.timestamp())
    return Gate(gate.service_point, gate.entitlements, gate.uses, None, later, lambda: at)


def test_a_county_hosts_visitors_offline_and_the_homes_are_the_cities_that_hold_cardholders(
    tenant, recognised, tmp_path
):
    """Tonglu (a county of Hangzhou) takes Jiaxing's visitors through the network its city belongs to, and
    its gate admits a Jiaxing code offline with Jiaxing's keys from the list. A county registers no
    cardholders and issues no cards (``county_read_only``): its residents hold its city's cards, listed by
    the city, so the homes asked are the cities — a county is never one."""
    from citycard.platform.errors import DomainError as Refused
    from citycard.tenants.cards.services import cardholder_register

    _holder, card = recognised
    tonglu = tenant("tonglu")
    with tenant_context(tonglu):
        with pytest.raises(Refused) as county:
            cardholder_register(name="方卫东", id_number=new_id("330122", dt.date(1950, 1, 1)), actor="t")
        assert county.value.code == "county_read_only"
        venue(
            "tl-parks",
            "tl-yaolin",
            name="桐庐县文旅局",
            actor="county-officer",
            point_name="瑶琳仙境",
            address="瑶琳镇",
            hours="8-17",
            purpose="入园核验",
        )
        type_approved(
            role="county_officer",
            approver="county-officer",
            code="elderly-free-entry",
            name="老年人免费游园",
            department="tl-parks",
            service_points=["tl-yaolin"],
            quota_period="day",
            quota=1,
            actor="county-officer",
        )
        own = replace(code_issuer(tonglu), keys=tenant_public_keys(tenant=tonglu))
    done = {d["home"]: d for d in visitor_lists_sync(acquirer=tonglu, at=AT)}
    assert done["jiaxing"]["added"] == 1 and "hangzhou" in done  # a network member, and its own city
    from citycard.platform.models import Tenant

    assert {t.kind for t in Tenant.objects.filter(code__in=done)} == {"city"}
    held = synced_list(tonglu)
    store = TapStore(tmp_path / "taps.sqlite")
    scanner = EcodeVerifier(issuers=[own], store=store, clock=lambda: AT.timestamp())
    gate = Gate("tl-yaolin", held, UseQueue(tmp_path / "uses.sqlite"), None, scanner, lambda: AT)
    with tenant_context(tenant("jiaxing")):
        code = citizen_code_issue(card_no=card.card_no, at=AT)
    by_code = gate.present_code(code)
    assert (by_code.allowed, by_code.card_no) == (True, card.card_no)
