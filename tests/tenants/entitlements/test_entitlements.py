"""Entitlements (权益): a department defines a type, the administrator approves it, cardholders get it
(automatically, by buying, in batch), service points accept the card or the citizen code online with a
reason for every no, and every read lands in the cardholder's access log under the department's grant."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from citycard.platform.audit.models import AuditEntry
from citycard.platform.audit.selectors import audit_verify
from citycard.platform.errors import DomainError
from citycard.tenants.cards.selectors import cardholder_access_log
from citycard.tenants.departments.models import DataRead
from citycard.tenants.entitlements import services as s
from citycard.tenants.entitlements.acceptance import acceptance_decide, citizen_code_issue
from citycard.tenants.entitlements.models import EntitlementUse
from citycard.tenants.entitlements.selectors import entitlement_list_payload, entitlements_of
from tests.tenants.entitlements.conftest import AT, park_pass

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def _park_pass(**kw):
    return park_pass(**{"quota_period": "day", "quota": 1, "actor": "parks-officer", **kw})


def test_park_pass_needs_approval_then_one_entry_a_day(person):
    holder, card = person()
    _park_pass()
    with pytest.raises(DomainError) as refused:
        s.entitlement_grant(role="city_admin", type="park-pass", cardholder_id=holder.pk, actor="t", at=AT)
    assert refused.value.code == "not_approved"
    s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin", at=AT)
    s.entitlement_grant(role="city_admin", type="park-pass", cardholder_id=holder.pk, actor="t", at=AT)
    first = acceptance_decide(service_point="west-lake-gate", card_no=card.card_no, at=AT, reader="gate-1")
    assert (first.allowed, first.reason, first.masked_name, first.remaining) == (True, "ok", "王**", 0)
    again = acceptance_decide(
        service_point="west-lake-gate", card_no=card.card_no, at=AT + dt.timedelta(hours=2), reader="gate-1"
    )
    assert (again.allowed, again.reason) == (False, "quota_used_up")
    tomorrow = acceptance_decide(
        service_point="west-lake-gate", card_no=card.card_no, at=AT + DAY, reader="gate-1"
    )
    assert tomorrow.allowed
    assert EntitlementUse.objects.filter(card_no=card.card_no).count() == 2


def test_reasons_not_entitled_expired_hotlisted_unknown_and_foreign(person):
    from citycard.tenants.cards.services import card_report_lost

    holder, card = person()
    _other, other_card = person(name="李四")
    _park_pass(valid_to=(AT + 10 * DAY).date(), quota_period="none", quota=None)
    s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin", at=AT)
    s.entitlement_grant(role="city_admin", type="park-pass", cardholder_id=holder.pk, actor="t", at=AT)

    def decide(no, at=AT):
        return acceptance_decide(service_point="west-lake-gate", card_no=no, at=at, reader="g")

    assert decide(other_card.card_no).reason == "not_entitled"
    assert decide(card.card_no, AT + 11 * DAY).reason == "expired"
    assert decide("3301000199999999990").reason in {"unknown_card", "card_hotlisted"}
    assert decide("3304000100000000018").reason == "foreign_card"
    card_report_lost(card_no=card.card_no, actor="t", at=AT + DAY)
    assert decide(card.card_no, AT + 2 * DAY).reason == "card_hotlisted"


def test_department_without_grant_gets_nothing_and_reads_are_logged_under_the_grant(person):
    holder, card = person()
    s.entitlement_type_create(
        role="city_admin",
        code="library-borrow",
        name="图书借阅",
        department="hz-library",
        service_points=["hz-library-desk"],
        actor="t",
        at=AT,
    )
    s.entitlement_type_approve(code="library-borrow", actor="city-admin", role="city_admin", at=AT)
    s.entitlement_grant(role="city_admin", type="library-borrow", cardholder_id=holder.pk, actor="t", at=AT)
    with pytest.raises(DomainError) as refused:
        acceptance_decide(service_point="hz-library-desk", card_no=card.card_no, at=AT, reader="desk")
    assert refused.value.code == "no_grant"
    assert not DataRead.objects.filter(cardholder_id=holder.pk).exists()
    _park_pass()
    s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin", at=AT)
    s.entitlement_grant(role="city_admin", type="park-pass", cardholder_id=holder.pk, actor="t", at=AT)
    acceptance_decide(service_point="west-lake-gate", card_no=card.card_no, at=AT, reader="gate-7")
    log = cardholder_access_log(cardholder_id=holder.pk)
    reads = [e for e in log if e.channel == "grant"]
    assert len(reads) == 1 and reads[0].under.startswith("hz-parks grant #") and reads[0].fields == ("name",)
    assert reads[0].reader == "gate-7"


def test_new_elderly_cardholder_gets_free_venue_entry_automatically(person):
    s.entitlement_type_create(
        role="city_admin",
        code="elderly-free-entry",
        name="老年人免费入园",
        department="hz-parks",
        categories=["elderly"],
        service_points=["west-lake-gate"],
        auto_grant=True,
        actor="t",
        at=AT,
    )
    young, _ = person()
    s.entitlement_type_approve(code="elderly-free-entry", actor="city-admin", role="city_admin", at=AT)
    elder, card = person(
        birth=dt.date(1950, 5, 1),
        name="陈阿婆",
        categories=[{"code": "elderly", "valid_from": dt.date(2010, 6, 1)}],
    )
    assert [e.type.code for e in entitlements_of(cardholder_id=elder.pk)] == ["elderly-free-entry"]
    assert [e.source for e in entitlements_of(cardholder_id=elder.pk)] == ["auto"]
    assert not entitlements_of(cardholder_id=young.pk).exists()
    assert acceptance_decide(service_point="west-lake-gate", card_no=card.card_no, at=AT, reader="g").allowed


def test_buying_the_annual_pass_pays_the_department_once(person):
    from citycard.tenants.accounts.models import LedgerAccount
    from citycard.tenants.accounts.services import account_open, account_topup

    holder, card = person()
    _park_pass(price_fen=20000, period_days=365, quota_period="none", quota=None)
    s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin", at=AT)
    account_open(card_no=card.card_no, actor="t")
    account_topup(card_no=card.card_no, amount_fen=15000, idempotency_key="top-1", actor="t")
    with pytest.raises(DomainError) as poor:
        s.entitlement_buy(type="park-pass", card_no=card.card_no, idempotency_key="buy-1", actor="app", at=AT)
    assert poor.value.code == "insufficient_funds"
    assert not entitlements_of(cardholder_id=holder.pk).exists()
    account_topup(card_no=card.card_no, amount_fen=10000, idempotency_key="top-2", actor="t")
    bought = s.entitlement_buy(
        type="park-pass", card_no=card.card_no, idempotency_key="buy-2", actor="app", at=AT
    )
    again = s.entitlement_buy(
        type="park-pass", card_no=card.card_no, idempotency_key="buy-2", actor="app", at=AT
    )
    assert again.pk == bought.pk and bought.valid_to == AT.date() + dt.timedelta(days=364)
    assert LedgerAccount.objects.get(cardholder_id=holder.pk).balance_fen == 5000
    assert LedgerAccount.objects.get(code="merchant:entitlement:hz-parks").balance_fen == 20000


def test_school_loads_its_students_in_batch_and_revocation_leaves_the_list(person):
    students = [
        person(name=f"学生{i}", categories=[{"code": "student", "valid_from": dt.date(2026, 9, 1)}])
        for i in range(3)
    ]
    adult, _ = person()
    _park_pass(code="canteen-meal", name="食堂餐补", categories=["student"], quota_period="day", quota=3)
    s.entitlement_type_approve(code="canteen-meal", actor="city-admin", role="city_admin", at=AT)
    ids = [h.pk for h, _ in students]
    out = s.entitlement_grant_batch(
        role="city_admin", type="canteen-meal", cardholder_ids=[*ids, adult.pk, 10**9], actor="school", at=AT
    )
    assert out == {"granted": ids, "already_held": [], "not_eligible": [adult.pk], "unknown": [10**9]}
    assert (
        s.entitlement_grant_batch(
            role="city_admin", type="canteen-meal", cardholder_ids=ids[:1], actor="school", at=AT
        )["already_held"]
        == ids[:1]
    )
    full = entitlement_list_payload()
    assert {row[0] for row in full["entries"]} == {c.card_no for _, c in students}
    grant = entitlements_of(cardholder_id=ids[0]).get()
    s.entitlement_revoke(
        role="city_admin", entitlement_id=grant.pk, reason="毕业", actor="school", at=AT + DAY
    )
    delta = entitlement_list_payload(since=full["version"])
    assert delta["version"] == full["version"] + 1
    assert (
        delta["delta"]["removed"] == [[students[0][1].card_no, "canteen-meal"]]
        and delta["delta"]["added"] == []
    )


def test_citizen_code_accepted_once_then_replayed_or_expired(person):
    holder, card = person()
    _park_pass(quota_period="none", quota=None)
    s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin", at=AT)
    s.entitlement_grant(role="city_admin", type="park-pass", cardholder_id=holder.pk, actor="t", at=AT)
    code = citizen_code_issue(card_no=card.card_no, at=AT)
    ok = acceptance_decide(
        service_point="west-lake-gate", code=code, at=AT + dt.timedelta(seconds=5), reader="g"
    )
    assert (ok.allowed, ok.card_no, ok.masked_name) == (True, card.card_no, "王**")
    replay = acceptance_decide(
        service_point="west-lake-gate", code=code, at=AT + dt.timedelta(seconds=6), reader="g"
    )
    assert (replay.allowed, replay.reason) == (False, "code_replayed")
    late = citizen_code_issue(card_no=card.card_no, at=AT)
    old = acceptance_decide(
        service_point="west-lake-gate", code=late, at=AT + dt.timedelta(minutes=5), reader="g"
    )
    assert old.reason == "code_expired"
    forged = code[:-3] + ("abc" if not code.endswith("abc") else "xyz")
    assert (
        acceptance_decide(service_point="west-lake-gate", code=forged, at=AT, reader="g").reason
        == "code_invalid"
    )


def test_approving_an_automatic_type_grants_every_eligible_cardholder_in_sql_as_each_check_would(person):
    """The set-based grant (INSERT … SELECT, the age read only at a decade's edge) gives exactly the
    cardholders the one-by-one eligibility check accepts, from when their category began, and the
    offline list follows in one version."""
    from citycard.tenants.cards.models import Cardholder
    from citycard.tenants.entitlements.models import Entitlement
    from citycard.tenants.entitlements.selectors import entitlement_list_version

    day = AT.date()
    births = [
        day.replace(year=day.year - 60),  # 60 today: in
        day.replace(year=day.year - 60) + DAY,  # 60 tomorrow: out
        dt.date(1950, 5, 1),
        dt.date(1961, 12, 31),
        dt.date(1990, 1, 1),
        day.replace(year=day.year - 71),  # 71 today: above the band
        day.replace(year=day.year - 71) + DAY,  # 70 until tomorrow: in
    ]
    people = []
    for i, born in enumerate(births):
        cats = [{"code": "elderly", "valid_from": dt.date(2020, 1, 1 + i)}] if i != 2 else []
        people.append(person(birth=born, name=f"测试{i}", categories=cats)[0])
    s.entitlement_type_create(
        role="city_admin",
        code="senior-swim",
        name="老年游泳",
        department="hz-parks",
        categories=["elderly"],
        age_min=60,
        age_max=70,
        service_points=["west-lake-gate"],
        auto_grant=True,
        actor="t",
        at=AT,
    )
    kind = s._type("senior-swim")
    expected = {h.pk for h in Cardholder.objects.all() if s.eligibility_refusal(kind, h, on=day) is None}
    before = entitlement_list_version()
    with CaptureQueriesContext(connection) as ran:
        s.entitlement_type_approve(code="senior-swim", actor="city-admin", role="city_admin", at=AT)
    grants = Entitlement.objects.filter(type__code="senior-swim")
    assert {g.cardholder_id for g in grants} == expected == {people[0].pk, people[3].pk, people[6].pk}
    # One audit entry per cardholder granted, as a grant by hand reads, in their own histories; the
    # grants' entries written by one INSERT … SELECT (the approval's own entry by audit_record), the
    # chain whole.
    audited = AuditEntry.objects.filter(action="entitlement.grant", actor="city-admin")
    assert sorted((e.object_type, int(e.object_id)) for e in audited) == sorted(
        ("cardholder", h) for h in expected
    )
    third = json.loads(audited.get(object_id=str(people[3].pk)).payload)
    assert third == {"source": "auto", "type": "senior-swim", "valid_from": "2020-01-04", "valid_to": None}
    inserts = [q["sql"] for q in ran.captured_queries if q["sql"].startswith("INSERT INTO audit_auditentry")]
    assert len(inserts) == 1 and "unnest" in inserts[0]
    assert audit_verify().ok
    assert {g.source for g in grants} == {"auto"}
    assert grants.get(cardholder_id=people[3].pk).valid_from == dt.date(2020, 1, 4)  # the category's start
    assert entitlement_list_version() == before + 1
    rows = entitlement_list_payload()["entries"]
    assert sorted(r[1] for r in rows) == ["senior-swim"] * 3
    assert s.entitlement_list_refresh(at=AT) == before + 1  # nothing changed: the same version


def test_an_online_decision_costs_five_queries_whatever_the_history(person):
    """Service point with its grant in force; card with its hotlist flag; the read logged; the grants locked
    with this period's use counts; the use written — pinned, and the same after many uses."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _holder, card = person()
    _park_pass(quota=1000)
    s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin", at=AT)
    s.entitlement_grant(role="city_admin", type="park-pass", cardholder_id=_holder.pk, actor="t", at=AT)

    def queries(i):
        with CaptureQueriesContext(connection) as q:
            d = acceptance_decide(
                service_point="west-lake-gate",
                card_no=card.card_no,
                at=AT + i * dt.timedelta(minutes=1),
                reader="g",
            )
        assert d.allowed and d.remaining == 1000 - i - 1
        return len([x for x in q.captured_queries if "SAVEPOINT" not in x["sql"]])

    assert queries(0) == 5
    for i in range(1, 30):
        queries(i)
    assert queries(30) == 5


def test_the_whole_list_rebuild_in_sql_follows_cards_and_leaves_visitors_rows_alone(person):
    from citycard.tenants.cards.models import Card
    from citycard.tenants.entitlements.models import EntitlementListEntry

    holder, card = person()
    _park_pass()
    s.entitlement_type_approve(code="park-pass", actor="city-admin", role="city_admin", at=AT)
    s.entitlement_grant(role="city_admin", type="park-pass", cardholder_id=holder.pk, actor="t", at=AT)
    visitor = EntitlementListEntry.objects.create(
        card_no="3304000100000000019",
        type_code="park-pass",
        valid_from=AT.date(),
        version_added=1,
        home_tenant="jiaxing",
        message_id="entl:jiaxing:1:x",
    )
    version = s.entitlement_list_refresh(at=AT)
    Card.objects.filter(pk=card.pk).update(state="frozen")  # behind the signals' back: the rebuild notices
    assert s.entitlement_list_refresh(at=AT) == version + 1
    assert [r[0] for r in entitlement_list_payload()["entries"]] == [visitor.card_no]
    Card.objects.filter(pk=card.pk).update(state="active")
    assert s.entitlement_list_refresh(at=AT) == version + 2
    assert sorted(r[0] for r in entitlement_list_payload()["entries"]) == sorted(
        [card.card_no, visitor.card_no]
    )
    assert entitlement_list_payload(since=version + 1)["delta"]["added"][0][0] == card.card_no
