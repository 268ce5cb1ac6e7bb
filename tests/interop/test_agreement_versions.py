"""Roaming agreements as dated versions: a record is priced and cleared by the version in force on its
business date, whenever it is collected; versions are added only through agreement_version_add (CLI, admin,
GraphQL), never before a cycle already cut off; a new visitor policy republishes the members' fare rules,
and a quote's trace names the agreement version."""

from __future__ import annotations

import copy
import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_tenants.utils import tenant_context
from hypothesis import given
from hypothesis import strategies as st

from citycard.interop.models import AgreementVersion, ClearingCycle, ClearingRecord
from citycard.interop.selectors import agreement_get
from citycard.interop.services.agreements import agreement_set, agreement_version_add
from citycard.interop.services.cycles import cycle_close, cycle_get_or_create, cycle_run
from citycard.interop.terms import FEE_SQL, agreement_business_date, agreement_business_dates, fee_fen
from citycard.platform import services as platform_services
from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError
from citycard.platform.models import Role
from citycard.tenants.fares import seeds
from citycard.tenants.fares import selectors as fare_selectors
from citycard.tenants.fares import services as fare_services

from .conftest import DAY, at, record

pytestmark = pytest.mark.django_db
NEXT = DAY + dt.timedelta(days=1)
SH = dt.timezone(dt.timedelta(hours=8))


def _fees(record_id_prefix: str = "jiaxing-") -> list[tuple[int, int, int]]:
    return list(
        ClearingRecord.objects.filter(record_id__startswith=record_id_prefix)
        .order_by("accepted_at")
        .values_list("amount_fen", "issuer_fee_fen", "network_fee_fen")
    )


def _add(**terms):
    return agreement_version_add(network_code="yrd", service="transit", actor="test", **terms)


def test_an_agreement_starts_with_version_1_effective_from_its_valid_from(yrd_transit):
    (v1,) = yrd_transit.versions.all()
    assert (v1.number, v1.effective_from, v1.issuer_fee_bps, v1.network_fee_bps) == (
        1,
        dt.date(2020, 1, 1),
        50,
        10,
    )
    assert (v1.label, v1.cut_off, v1.hotlist_grace_minutes, v1.visitor_policy) == (
        "yrd-transit v1",
        dt.time(4, 0),
        60,
        "local_discounts",
    )
    assert AuditEntry.objects.filter(
        action="interop.agreement_version_add", object_id="yrd-transit v1"
    ).exists()


def test_fees_changed_from_tomorrow_leave_todays_records_priced_by_todays_version(yrd_transit, send, collect):
    """The change is made first, today's records are collected after it: today's version prices them."""
    _add(effective_from=NEXT, issuer_fee_bps=100, network_fee_bps=20, note="new interchange from the 22nd")
    send(
        "jiaxing",
        [
            record(
                acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", amount=1000, when=at(DAY, 9)
            ),
            # 03:30 on the 22nd is still business date 21 (cut-off 04:00): the old terms
            record(
                acquirer="jiaxing",
                issuer="hangzhou",
                issuer_division="330100",
                serial=2,
                amount=1000,
                when=at(NEXT, 3, 30),
            ),
            record(
                acquirer="jiaxing",
                issuer="hangzhou",
                issuer_division="330100",
                serial=3,
                amount=1000,
                when=at(NEXT, 9),
            ),
        ],
        now=at(NEXT, 10),
    )
    collect("jiaxing", now=at(NEXT, 11))
    assert _fees() == [(1000, 5, 1), (1000, 5, 1), (1000, 10, 2)]
    cycle = cycle_run(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY), now=at(NEXT, 12)
    )
    (cell,) = cycle.bilateral.all()
    assert (cell.records, cell.issuer_fee_fen, cell.network_fee_fen) == (2, 10, 2)


def test_a_version_for_an_open_cycle_prices_its_collected_records_again(yrd_transit, send, collect):
    send(
        "jiaxing",
        [
            record(
                acquirer="jiaxing", issuer="hangzhou", issuer_division="330100", amount=1000, when=at(DAY, 9)
            ),
            record(
                acquirer="jiaxing",
                issuer="hangzhou",
                issuer_division="330100",
                serial=2,
                amount=1000,
                when=at(NEXT, 9),
            ),
            record(
                acquirer="jiaxing",
                issuer="hangzhou",
                issuer_division="330100",
                serial=3,
                amount=999,
                when=at(NEXT, 10),
            ),
        ],
    )
    collect("jiaxing")
    assert _fees() == [(1000, 5, 1), (1000, 5, 1), (999, 5, 1)]
    version = _add(effective_from=NEXT, network_fee_bps=35)
    assert version.records_repriced == 2 and (version.issuer_fee_bps, version.network_fee_bps) == (50, 35)
    # 3.5 fen → 4 and 3.4965 → 3, half up per record, as fee_fen; the 21st's record keeps its fees
    assert _fees() == [(1000, 5, 1), (1000, 5, 4), (999, 5, 3)]


@pytest.mark.usefixtures("english")
def test_a_version_is_refused_on_or_before_a_cycle_already_cut_off(yrd_transit, send, collect):
    cycle_close(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY), now=at(NEXT, 5)
    )
    for day in (DAY - dt.timedelta(days=3), DAY):
        with pytest.raises(DomainError, match=f"from {NEXT} at the earliest, not {day}") as info:
            _add(effective_from=day, issuer_fee_bps=70)
        assert (info.value.code, info.value.field) == ("effective_date", "effective_from")
    assert _add(effective_from=NEXT, issuer_fee_bps=70).number == 2
    assert AgreementVersion.objects.count() == 2


@pytest.mark.usefixtures("english")
def test_unchanged_terms_and_bad_terms_are_refused_naming_what_is_wrong(yrd_transit):
    with pytest.raises(DomainError, match="yrd-transit v1 in force on 2026-11-22 already has these terms"):
        _add(effective_from=NEXT, issuer_fee_bps=50)
    with pytest.raises(DomainError, match=r"network_fee_bps must be 0\.\.10000 basis points, not 10001"):
        _add(effective_from=NEXT, network_fee_bps=10001)
    with pytest.raises(DomainError, match="visitor_policy must be one of"):
        _add(effective_from=NEXT, visitor_policy="free")
    with pytest.raises(DomainError, match="network gba has no transit agreement"):
        agreement_version_add(
            network_code="gba", service="transit", effective_from=NEXT, actor="t", cut_off=None
        )


@pytest.mark.usefixtures("english")
def test_a_monthly_agreement_changes_on_a_months_first_day():
    agreement_set(network_code="gba", service="medical", valid_from=dt.date(2020, 1, 1), actor="test")
    with pytest.raises(DomainError, match="clears monthly: a version takes effect on a month's first day"):
        agreement_version_add(
            network_code="gba",
            service="medical",
            effective_from=dt.date(2026, 12, 15),
            issuer_fee_bps=5,
            actor="t",
        )
    version = agreement_version_add(
        network_code="gba", service="medical", effective_from=dt.date(2027, 1, 1), issuer_fee_bps=5, actor="t"
    )
    assert version.label == "gba-medical v2"
    agreement_set(network_code="yrd", service="medical", valid_from=dt.date(2026, 3, 15), actor="test")
    (v1,) = agreement_get(network_code="yrd", service="medical").versions.all()
    assert v1.effective_from == dt.date(2026, 3, 1)  # its month


def test_a_new_cut_off_moves_the_business_day_and_the_open_cycles_windows(yrd_transit):
    today = cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY)
    assert today.cut_off_at == at(NEXT, 4)
    _add(effective_from=NEXT, cut_off=dt.time(2, 0))
    today.refresh_from_db()
    assert (today.opens_at, today.cut_off_at) == (at(DAY, 4), at(NEXT, 2))
    agreement = agreement_get(network_code="yrd", service="transit")
    assert agreement_business_date(agreement=agreement, at=at(NEXT, 1, 59)) == DAY
    assert (
        agreement_business_date(agreement=agreement, at=at(NEXT, 3)) == NEXT
    )  # was the 21st under the 04:00 cut-off
    assert cycle_get_or_create(network_code="yrd", service="transit", business_date=NEXT).opens_at == at(
        NEXT, 2
    )


def test_the_business_dates_of_a_message_are_those_of_agreement_business_date_across_cut_offs(yrd_transit):
    """Collection computes a message's business dates with one rule per agreement (each local day's opening
    read once): the same dates as one call per moment, on either side of a cut-off that a version moves,
    in another offset, and for a monthly agreement."""
    _add(effective_from=NEXT, cut_off=dt.time(2, 0))
    agreement_set(network_code="gba", service="medical", valid_from=dt.date(2020, 1, 1), actor="test")
    utc = dt.UTC
    moments = [
        at(day, hour, minute)
        for day in (DAY, NEXT, NEXT + dt.timedelta(days=1))
        for hour, minute in ((0, 0), (1, 59), (2, 0), (3, 59), (4, 0), (12, 30), (23, 59))
    ]
    moments += [m.astimezone(utc) for m in moments] + [
        at(dt.date(2026, 12, 1), 1),
        at(dt.date(2026, 12, 1), 5),
    ]
    for network, service in (("yrd", "transit"), ("gba", "medical")):
        agreement = agreement_get(network_code=network, service=service)
        business_date = agreement_business_dates(agreement=agreement)
        for moment in moments * 2:  # the second pass from what the first one read
            assert business_date(moment) == agreement_business_date(agreement=agreement, at=moment), moment
    business_date = agreement_business_dates(agreement=agreement_get(network_code="yrd", service="transit"))
    assert business_date(at(NEXT, 1, 59)) == DAY and business_date(at(NEXT, 2)) == NEXT


def test_a_late_record_keeps_the_hotlist_grace_of_its_own_business_date(yrd_transit):
    from citycard.interop.services.validation import _record_graces

    _add(effective_from=NEXT, hotlist_grace_minutes=5)
    later = ClearingCycle.objects.get(
        pk=cycle_get_or_create(network_code="yrd", service="transit", business_date=NEXT).pk
    )
    grace_of = _record_graces(later)
    assert grace_of(None) == 5 and grace_of(at(NEXT, 9).isoformat()) == 5
    assert grace_of(at(DAY, 9).isoformat()) == 60  # a record of the 21st that joined the 22nd's cycle


@given(amount=st.integers(-(10**12), 10**12), bps=st.integers(0, 10000))
def test_the_sql_fee_rounds_as_fee_fen(amount, bps):
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT " + FEE_SQL.format(amount="%(a)s::bigint", bps="%(b)s::bigint"), {"a": amount, "b": bps}
        )
        assert cur.fetchone()[0] == fee_fen(amount, bps)


# --- the visitor policy reaches the fare rules ---------------------------------------------------------------


def test_a_new_visitor_policy_republishes_the_members_published_rules_and_the_trace_names_it(
    tenant, yrd_transit
):
    jiaxing = tenant("jiaxing")
    seed = copy.deepcopy(seeds.JIAXING)
    with tenant_context(jiaxing):
        fare_services.fares_document_load(tenant=jiaxing, document=seed, actor="test")
        first = fare_services.fares_publish(
            tenant=jiaxing, actor="test", effective_from=dt.datetime(2026, 1, 1, tzinfo=SH)
        )
        # an unpublished edit of the draft rows stays a draft
        fare_services.visitor_policy_change(
            tenant=jiaxing, actor="test", scope="default", key="", changes={"policy": "no_concession"}
        )
    fare_selectors._engines.clear()
    before = fare_selectors.fares_quote(
        tenant=jiaxing, route="1", at=at(DAY, 8), categories=["elderly"], issuer="330100"
    )
    assert "policy host_rules (network yrd, agreement yrd-transit v1)" in before.quote.trace[0]
    _add(effective_from=NEXT, issuer_fee_bps=60)  # fees only: nothing republished
    assert jiaxing.publications.filter(kind="fare_rules").count() == 1
    version = _add(effective_from=NEXT + dt.timedelta(days=1), visitor_policy="home_categories")
    assert version.fares_republished["jiaxing"] == first.version + 1
    republished = jiaxing.publications.get(kind="fare_rules", version=first.version + 1)
    payload = republished.document["payload"]
    (yrd,) = payload["visitor_policy"]["networks"]
    assert (yrd["policy"], yrd["agreement"]) == ("home_category", "yrd-transit v3")
    assert payload["effective_from"] == "2026-11-23T04:00:00+08:00"
    assert payload["visitor_policy"]["default"] == first.document["payload"]["visitor_policy"]["default"]
    assert republished.published_by == "test"
    fare_selectors._engines.clear()
    after = fare_selectors.fares_quote(
        tenant=jiaxing, route="1", at=at(DAY, 8), categories=["elderly"], issuer="330100"
    )
    assert "policy home_category (network yrd, agreement yrd-transit v3)" in after.quote.trace[0]


# --- the CLI and the admin ---------------------------------------------------------------------------------


def _cli(*args):
    out = io.StringIO()
    call_command("agreement", *args, stdout=out)
    return out.getvalue()


@pytest.mark.usefixtures("english")
def test_cli_sets_a_version_and_shows_them_all(yrd_transit):
    out = _cli(
        "set",
        "--network",
        "yrd",
        "--service",
        "transit",
        "--effective",
        "2099-01-01",
        "--issuer-fee-bps",
        "80",
        "--cut-off",
        "03:30",
        "--note",
        "board decision 12",
    )
    assert "yrd-transit v2 takes effect on business date 2099-01-01" in out
    shown = _cli("show", "--network", "yrd")
    assert (
        "v1" in shown
        and "v2" in shown
        and "2099-01-01" in shown
        and "03:30" in shown
        and "board decision" in shown
    )
    assert AuditEntry.objects.filter(action="interop.agreement_version_add", actor="cli").count() == 1
    with pytest.raises(CommandError, match="--effective '2099-13-01' is not a date"):
        _cli("set", "--network", "yrd", "--effective", "2099-13-01", "--issuer-fee-bps", "1")
    with pytest.raises(CommandError, match="--effective YYYY-MM-DD is required"):
        _cli("set", "--network", "yrd", "--issuer-fee-bps", "1")


def test_admin_lists_versions_read_only_and_adds_one_through_the_service(client, yrd_transit):
    staff = platform_services.user_create(
        username="clr-v", role=Role.CLEARING_STAFF, password="a-long-password-1"
    )
    client.force_login(staff)
    page = client.get("/admin/interop/agreementversion/", HTTP_HOST="localhost")
    assert page.status_code == 200 and b"yrd/transit" in page.content
    v1 = AgreementVersion.objects.get()
    assert (
        client.get(f"/admin/interop/agreementversion/{v1.pk}/change/", HTTP_HOST="localhost").status_code
        == 200
    )
    add_page = client.get("/admin/interop/agreementversion/add/", HTTP_HOST="localhost")
    assert add_page.status_code == 200 and b"effective_from" in add_page.content
    form = {
        "agreement": yrd_transit.pk,
        "effective_from": "2099-02-01",
        "visitor_policy": "local_fare",
        "issuer_fee_bps": 50,
        "network_fee_bps": 15,
        "cut_off": "04:00",
        "hotlist_grace_minutes": 60,
        "note": "operator fee up",
    }
    done = client.post("/admin/interop/agreementversion/add/", form, HTTP_HOST="localhost")
    assert done.status_code == 302, done.content.decode()[:2000]
    v2 = AgreementVersion.objects.get(number=2)
    assert (v2.network_fee_bps, v2.visitor_policy, v2.created_by) == (15, "local_fare", "user:clr-v")
    assert AuditEntry.objects.filter(
        action="interop.agreement_version_add", object_id="yrd-transit v2"
    ).exists()
    # refused by the service: one line, nothing written
    cycle_close(
        cycle=cycle_get_or_create(network_code="yrd", service="transit", business_date=DAY), now=at(NEXT, 5)
    )
    refused = client.post(
        "/admin/interop/agreementversion/add/",
        {**form, "effective_from": DAY.isoformat()},
        HTTP_HOST="localhost",
        follow=True,
    )
    assert "最早从" in refused.content.decode() and AgreementVersion.objects.count() == 2
    # the agreement row itself is no longer editable
    change = client.post(
        f"/admin/interop/roamingagreement/{yrd_transit.pk}/change/", {}, HTTP_HOST="localhost"
    )
    assert change.status_code == 403


def test_an_agreement_set_after_the_members_published_their_fares_republishes_them(tenant):
    """The demo's order: fare rules published first, the agreement set after."""
    hangzhou = tenant("hangzhou")
    with tenant_context(hangzhou):
        fare_services.fares_document_load(
            tenant=hangzhou, document=copy.deepcopy(seeds.HANGZHOU), actor="test"
        )
        first = fare_services.fares_publish(tenant=hangzhou, actor="test")
    agreement_set(
        network_code="yrd",
        service="transit",
        valid_from=dt.date(2020, 1, 1),
        visitor_policy="local_fare",
        actor="t",
    )
    latest = hangzhou.publications.filter(kind="fare_rules").latest("version")
    assert latest.version == first.version + 1
    (yrd,) = latest.document["payload"]["visitor_policy"]["networks"]
    assert (yrd["policy"], yrd["agreement"]) == ("no_concession", "yrd-transit v1")


@pytest.mark.usefixtures("english")
def test_cli_creates_a_networks_agreement_once(db):
    out = _cli(
        "create", "--network", "gba", "--service", "transit", "--effective", "2026-01-01",
        "--issuer-fee-bps", "30", "--visitor-policy", "home_categories",
    )  # fmt: skip
    assert "gba-transit" in out and "daily cycles, operator gba-operator, settlement T+1" in out
    (v1,) = agreement_get(network_code="gba", service="transit").versions.all()
    assert (v1.effective_from, v1.issuer_fee_bps, v1.network_fee_bps, v1.visitor_policy) == (
        dt.date(2026, 1, 1),
        30,
        0,
        "home_categories",
    )
    with pytest.raises(CommandError, match="gba already has a transit agreement: change its terms with"):
        _cli("create", "--network", "gba", "--effective", "2026-02-01")


def test_a_city_publishing_before_a_scheduled_policy_change_keeps_it(tenant, yrd_transit):
    jiaxing = tenant("jiaxing")
    with tenant_context(jiaxing):
        fare_services.fares_document_load(tenant=jiaxing, document=copy.deepcopy(seeds.JIAXING), actor="test")
        fare_services.fares_publish(
            tenant=jiaxing, actor="test", effective_from=dt.datetime(2026, 1, 1, tzinfo=SH)
        )
    _add(effective_from=dt.date(2099, 1, 1), visitor_policy="home_categories", note="from 2099")
    with tenant_context(jiaxing):
        fare_services.visitor_policy_change(
            tenant=jiaxing, actor="test", scope="default", key="", changes={"policy": "home_category"}
        )
        now = fare_services.fares_publish(tenant=jiaxing, actor="test")
        assert (
            fare_services.fares_publish(tenant=jiaxing, actor="test").pk == now.pk
        )  # unchanged: no new version
    versions = list(jiaxing.publications.filter(kind="fare_rules").order_by("version"))
    assert [p.version for p in versions] == [1, 2, 3, 4]
    scheduled, current, later = versions[1], versions[2], versions[3]
    assert current.pk == now.pk
    assert scheduled.document["payload"]["effective_from"] == "2099-01-01T04:00:00+08:00"
    for publication, policy, label in ((current, "host_rules", "v1"), (later, "home_category", "v2")):
        payload = publication.document["payload"]
        (yrd,) = payload["visitor_policy"]["networks"]
        assert (yrd["policy"], yrd["agreement"]) == (policy, f"yrd-transit {label}")
        assert payload["visitor_policy"]["default"] == "home_category"  # the new edit, in both
    assert later.document["payload"]["effective_from"] == "2099-01-01T04:00:00+08:00"
    fare_selectors._engines.clear()

    def policy_at(moment):
        quote = fare_selectors.fares_quote(
            tenant=jiaxing, route="1", at=moment, categories=["elderly"], issuer="330100"
        )
        return quote.version, quote.quote.trace[0]

    version, trace = policy_at(dt.datetime(2027, 6, 1, 8, tzinfo=SH))
    assert version == 3 and "policy host_rules (network yrd, agreement yrd-transit v1)" in trace
    version, trace = policy_at(dt.datetime(2099, 1, 2, 8, tzinfo=SH))
    assert version == 4 and "policy home_category (network yrd, agreement yrd-transit v2)" in trace
