"""The city dashboard (docs/console.md, "City dashboard"): each tenant's site shows its own cards, taps,
flags, hotlists and subsidy runs and the clearing results delivered to it (signed manifests, exceptions),
in a fixed number of queries; a county officer reads their county's; nobody reads another site's."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from citycard.interop.models import NetPosition
from citycard.platform.models import Role
from citycard.platform.services import user_create
from tests.graphql.conftest import NEXT, SETTLE_AT, clear, day_records
from tests.interop.conftest import DAY, at, collect, send, yrd_transit  # noqa: F401 (fixtures)
from tests.tenants.dashboard.taps import taps_store as _taps

pytestmark = pytest.mark.django_db
HZ = {"HTTP_HOST": "hangzhou.localhost"}
URL = f"/dashboard/?date={NEXT.isoformat()}"


def _chart(html: str, data_id: str) -> dict:
    found = re.search(rf'<script id="{data_id}" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


@pytest.fixture
def hangzhou_day(yrd_transit, send, collect, tenant):  # noqa: F811
    """DAY cleared (Hangzhou issues to Jiaxing and acquires from Jiaxing), and Hangzhou's terminals' taps."""
    cycle = clear(send, collect, DAY, day_records(DAY, 1), now=SETTLE_AT)
    _taps(
        tenant("hangzhou"),
        [
            (at(DAY, 8), "330100", "own", 200),
            (at(DAY, 9), "330100", "own", 200),
            (at(DAY, 10), "330400", "roaming", 300),
            (at(NEXT, 8), "330100", "own", 200),
        ],
    )
    return cycle


def _site_client(role: str, username: str, tenant_code: str) -> Client:
    client = Client()
    client.force_login(
        user_create(username=username, role=role, tenant_code=tenant_code, password="a-long-password-1")
    )
    return client


def test_the_city_administrator_sees_cards_taps_and_positions_in_a_fixed_number_of_queries(
    hangzhou_day, django_assert_num_queries
):
    admin = _site_client(Role.CITY_ADMIN, "hz-admin", "hangzhou")
    with django_assert_num_queries(15):
        response = admin.get(URL, **HZ)
    assert response.status_code == 200
    html = response.content.decode()
    assert "城市看板" in html and "citycard/vendor/echarts/echarts.min.js" in html
    # Cards: the issuer's cards the clearing fixture made known (scheme 03, active).
    assert re.search(r'data-scheme="03"', html)
    assert (
        '<th class="num">正常</th>' in html and '<th class="num">active</th>' not in html
    )  # the state's label
    taps = _chart(html, "taps-data")
    day = taps["x"].index(DAY.isoformat())
    by_name = {s["name"]: s["data"] for s in taps["series"]}
    # The series by their Chinese names: own cards, roaming in, roaming out (cleared).
    own = by_name["本地卡"]
    roaming = by_name["异地卡来本地"]
    out = by_name["异地消费（已清算）"]
    assert own[day] == 2 and own[day + 1] == 1 and roaming[day] == 1
    hz_net = NetPosition.objects.get(cycle=hangzhou_day, participant="hangzhou")
    issued = sum(b.records for b in hangzhou_day.bilateral.filter(issuer="hangzhou"))
    assert out[day] == issued > 0
    positions = _chart(html, "positions-data")
    assert [s["data"][day] for s in positions["series"]] == [hz_net.net_fen]
    assert f'data-cycle="yrd-transit-{DAY.isoformat()}" data-net="{hz_net.net_fen}"' in html
    # The same number of queries with more taps and another cycle.
    _taps(_tenant("hangzhou"), [(at(NEXT, 9), "330400", "roaming", 300)] * 3)
    with django_assert_num_queries(15):
        assert admin.get(URL, **HZ).status_code == 200


def _tenant(code: str):
    from citycard.platform.models import Tenant

    return Tenant.objects.get(code=code)


def test_exceptions_delivered_to_the_city_show_on_its_dashboard_and_not_on_the_issuers(hangzhou_day):
    jiaxing = _site_client(Role.CITY_ADMIN, "jx-admin", "jiaxing")
    html = jiaxing.get(URL, HTTP_HOST="jiaxing.localhost").content.decode()
    section = html[html.index('id="exceptions"') : html.index('id="subsidies"')]
    assert "tac_invalid" in section and "hangzhou" in section  # Jiaxing acquired it; Hangzhou rejected it
    admin = _site_client(Role.CITY_ADMIN, "hz-admin", "hangzhou")
    hz = admin.get(URL, **HZ).content.decode()
    assert "tac_invalid" not in hz[hz.index('id="exceptions"') : hz.index('id="rejections"')]


def test_the_issuer_lists_the_exceptions_concerning_its_cards_from_its_own_answers(hangzhou_day):
    """Hangzhou rejected Jiaxing's record of one of its cards (bad TAC): its dashboard lists it per cycle,
    acquirer and reason, from the answer it kept in its own schema; Jiaxing's lists no rejection of its own."""
    from django_tenants.utils import tenant_context

    from citycard.interop.models import ClearingRecord
    from citycard.tenants.exchange.models import IssuerRejection

    rejected = ClearingRecord.objects.get(cycle=hangzhou_day, status="rejected")
    admin = _site_client(Role.CITY_ADMIN, "hz-admin", "hangzhou")
    html = admin.get(URL, **HZ).content.decode()
    section = html[html.index('id="rejections"') : html.index('id="subsidies"')]
    assert (
        f'data-cycle="{hangzhou_day.label}" data-acquirer="jiaxing" data-reason="tac_invalid"'
        f' data-records="1" data-amount-fen="{rejected.amount_fen}"'
    ) in section
    assert f"<code>{rejected.card_no}</code>" in section  # card numbers are not personal data
    with tenant_context(_tenant("hangzhou")):  # what the issuer answered, kept in its own schema
        assert list(IssuerRejection.objects.values_list("record_id", "reason")) == [
            (rejected.record_id, "tac_invalid")
        ]
    # Record by record on the site's admin, read-only, the amount in yuan.
    listing = admin.get("/admin/exchange/issuerrejection/", **HZ)
    assert listing.status_code == 200 and rejected.record_id in listing.content.decode()
    assert f"¥{rejected.amount_fen // 100}.{rejected.amount_fen % 100:02d}" in listing.content.decode()
    jiaxing = _site_client(Role.CITY_ADMIN, "jx-admin", "jiaxing")
    jx = jiaxing.get(URL, HTTP_HOST="jiaxing.localhost").content.decode()
    assert 'class="rejection"' not in jx[jx.index('id="rejections"') : jx.index('id="subsidies"')]
    # A county officer reads the list of their own county's site only: Tonglu rejected nothing.
    officer = _site_client(Role.COUNTY_OFFICER, "tl-officer", "tonglu")
    tl = officer.get(URL, HTTP_HOST="tonglu.localhost", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'class="rejection"' not in tl and "read-only" in tl
    assert "Exceptions concerning this site's cards" in tl


def test_a_county_officer_reads_their_countys_dashboard_read_only_and_no_other_site(hangzhou_day):
    officer = _site_client(Role.COUNTY_OFFICER, "tl-officer", "tonglu")
    response = officer.get(URL, HTTP_HOST="tonglu.localhost")
    assert response.status_code == 200 and "只读" in response.content.decode()  # read-only
    # The city's dashboard is the city's: the county officer is sent to sign in there.
    refused = officer.get(URL, **HZ)
    assert refused.status_code in (302, 403)


def test_the_taps_per_day_the_database_keeps_equal_the_stored_taps_after_inserts_copies_and_deletes(
    tenant,
):
    """The day table (TapDay, kept by triggers on the transactions table) against a count of the taps
    themselves: after a bulk insert, a COPY through the partitioned table (as ingestion stores taps) and a
    delete, per Beijing day and routing — a tap at 23:30 Beijing time counts on its Beijing day."""
    import io

    from django.db import connection
    from django.db.models import Count, Sum
    from django.db.models.functions import TruncDate
    from django_tenants.utils import tenant_context

    from citycard.tenants.dashboard.selectors import taps_by_day
    from citycard.tenants.terminals.models import Transaction
    from citycard.terminal_kit.beijing import BEIJING

    hangzhou = tenant("hangzhou")
    late = at(DAY, 23, 30)  # 15:30 UTC: DAY in Beijing
    _taps(hangzhou, [(at(DAY, 8), "330100", "own", 200), (late, "330400", "roaming", 300)])

    def counted() -> list[dict]:
        return list(
            Transaction.objects.annotate(day=TruncDate("tapped_at", tzinfo=BEIJING))
            .values("day", "routing")
            .annotate(taps=Count("id"), amount_fen=Sum("amount_fen"))
            .order_by("day", "routing")
        )

    with tenant_context(hangzhou):
        kept = taps_by_day(since=DAY, until=NEXT)
        assert kept == counted() and [(r["day"], r["taps"]) for r in kept] == [(DAY, 1), (DAY, 1)]
        with connection.cursor() as cur:  # one more row through COPY, as ingestion stores a batch
            columns = [
                f.column for f in Transaction._meta.concrete_fields if f.column not in ("id", "card_trip")
            ]
            row = Transaction.objects.filter(routing="own").values_list(*columns).get()
            values = dict(zip(columns, row, strict=True))
            values.update(terminal_seq=99, card_counter=99, tapped_at=at(NEXT, 9).isoformat(), idx=5)
            line = "\t".join(
                "{" + ",".join(v) + "}" if isinstance(v, list) else str(v) for v in values.values()
            )
            cur.cursor.copy_expert(
                f"COPY terminals_transaction ({', '.join(columns)}) FROM STDIN", io.StringIO(line + "\n")
            )
        assert taps_by_day(since=DAY, until=NEXT) == counted() and len(counted()) == 3
        Transaction.objects.filter(routing="roaming").delete()
        kept = taps_by_day(since=DAY, until=NEXT)
        assert kept == counted() and [r["routing"] for r in kept] == ["own", "own"]


def test_the_dashboard_lists_the_metro_half_journeys_released_in_beijing_time(tenant):
    """Two half journeys of Hangzhou's own cards (an entry without exit, an exit without entry), released by
    the release service: the dashboard lists each with its release time in Beijing time, the tap that
    carried it and what that tap took, in yuan; a journey not released is not listed, nor on another site."""
    import datetime as dt

    from django_tenants.utils import tenant_context

    from citycard.tenants.terminals.models import Journey
    from citycard.tenants.terminals.services import half_journeys_release

    hangzhou = tenant("hangzhou")
    entered = at(DAY, 8)
    with tenant_context(hangzhou):
        Journey.objects.create(
            key="3301000000000000013:330100000011:1", card_no="3301000000000000013", issuer="330100",
            line="1", origin="hz-1-01", entered_at=entered, entry_tx_id=101, entry_fen=200, routing="own",
            status="open",
        )  # fmt: skip
        Journey.objects.create(
            key="3301000000000000021:330100000011:2", card_no="3301000000000000021", issuer="330100",
            line="1", origin="hz-1-01", destination="hz-1-06", entered_at=entered,
            exited_at=entered + dt.timedelta(minutes=20), exit_tx_id=102, exit_fen=360, routing="own",
            status="exit_only",
        )  # fmt: skip
        Journey.objects.create(
            key="3301000000000000039:330100000011:3", card_no="3301000000000000039", issuer="330100",
            line="1", origin="hz-1-01", entered_at=at(NEXT, 11), entry_tx_id=103, routing="own", status="open",
        )  # fmt: skip
        assert half_journeys_release(actor="test", now=at(NEXT, 12)) == 2
    admin = _site_client(Role.CITY_ADMIN, "hz-admin", "hangzhou")
    html = admin.get(URL, **HZ).content.decode()
    section = html[html.index('id="half-journeys"') :]
    assert "超时释放的地铁半程行程" in section
    assert section.count('class="half"') == 2 and "3301000000000000039" not in section
    assert 'data-card="3301000000000000013" data-routing="own" data-tx="101" data-amount-fen="200"' in section
    assert 'data-card="3301000000000000021" data-routing="own" data-tx="102" data-amount-fen="360"' in section
    assert f"{NEXT.isoformat()} 12:00 +08:00" in section and f"{DAY.isoformat()} 08:00 +08:00" in section
    assert "¥2.00" in section and "¥3.60" in section and "本地卡" in section
    jiaxing = _site_client(Role.CITY_ADMIN, "jx-admin", "jiaxing")
    jx = jiaxing.get(URL, HTTP_HOST="jiaxing.localhost").content.decode()
    assert 'class="half"' not in jx and "本期没有超时释放的半程行程。" in jx
