"""The metro's rows one at a time — stations, fare areas, lines, fare tables (by distance bands or station
to station) and gate rules: through the services (checked, audited, all or nothing, refused for a county),
the `citycard fares stations|areas|lines|fare-table|gate-rules` commands and the city admin's pages; and a
station-to-station table prices a journey in the evaluator."""

from __future__ import annotations

import copy
import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import tenant_context

from citycard.platform import services as platform_services
from citycard.platform.errors import DomainError
from citycard.platform.models import Role
from citycard.tenants.fares import seeds, services
from citycard.tenants.fares.models import Area, FareTable, GateRule, Line, Stop
from citycard.terminal_kit.fares import Card, FareEngine, FareError, Trip

from .conftest import SH

pytestmark = pytest.mark.django_db
HZ = "hangzhou.localhost"
AT = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SH)
BANDS = "里程(公里),票价(元)\n0-4,2\n4-8,3\n8-12,4\n"
MATRIX = ",s1,s2,s3\ns1,,2,3.5\ns2,2,,2\ns3,3.5,2,\n"


def run(*args) -> str:
    out = StringIO()
    call_command("fares", *args, stdout=out)
    return out.getvalue()


def _audit(action):
    from citycard.platform.audit.models import AuditEntry

    return list(AuditEntry.objects.filter(action=action).values_list("object_id", flat=True))


@pytest.fixture
def hz(tenant, published):
    published("hangzhou", seeds.HANGZHOU)
    return tenant("hangzhou")


def stations(hz, *codes):
    with tenant_context(hz):
        for code in codes:
            services.stop_create(tenant=hz, actor="test", fields={"code": code, "name": code.upper()})


def test_services_check_each_row_name_every_refusal_and_write_nothing_refused(hz, tenant):
    stations(hz, "s1", "s2", "s3")
    with tenant_context(hz):
        with pytest.raises(DomainError, match="no station s9") as info:
            services.area_create(tenant=hz, actor="t", fields={"code": "a", "stops": ["s1", "s9"]})
        assert info.value.field == "stops" and not Area.objects.exists()
        with pytest.raises(DomainError, match="distances must increase"):
            services.line_create(tenant=hz, actor="t", fields={"code": "9", "stops": [["s1", 0], ["s2", 0]]})
        line = services.line_create(
            tenant=hz, actor="t", fields={"code": "9", "stops": [["s1", 0], ["s2", 1200], ["s3", 2500]]}
        )
        services.area_create(tenant=hz, actor="t", fields={"code": "a", "stops": ["s1", "s2"]})
        with pytest.raises(DomainError, match="still used by area a, line 9") as info:
            services.stop_delete(tenant=hz, actor="t", code="s1")
        assert info.value.code == "in_use" and Stop.objects.filter(code="s1").exists()
        with pytest.raises(DomainError, match="rows"):
            services.fare_table_create(
                tenant=hz, actor="t", fields={"code": "t", "measure": "km", "rows": [[8, 300], [4, 200]]}
            )
        assert not FareTable.objects.exists()
        assert _audit("fares.stop.create") == ["s1", "s2", "s3"]
        assert _audit("fares.line.create") == [line.code] and _audit("fares.area.create") == ["a"]
    with tenant_context(tenant("tonglu")), pytest.raises(DomainError) as info:
        services.stop_create(tenant=tenant("tonglu"), actor="t", fields={"code": "x"})
    assert info.value.code == "county_inherits"


def test_fare_tables_from_csv_by_distance_bands_and_station_to_station(hz):
    stations(hz, "s1", "s2", "s3")
    with tenant_context(hz):
        bands = services.fare_table_import_csv(
            tenant=hz, actor="t", code="km", text=BANDS, beyond_every=8, beyond_add_fen=100
        )
        assert (bands.measure, bands.rows, bands.beyond_every) == ("km", [[4, 200], [8, 300], [12, 400]], 8)
        od = services.fare_table_import_csv(tenant=hz, actor="t", code="od", text=MATRIX)
        assert od.measure == "od" and [r for r in od.rows if r[0] == "s1"] == [
            ["s1", "s2", 200],
            ["s1", "s3", 350],
        ]
        # imported again: the same table replaced (a change), not a second one
        services.fare_table_import_csv(tenant=hz, actor="t", code="km", text="站数,票价(元)\n5,2\n10,3\n")
        assert FareTable.objects.get(code="km").measure == "stations" and FareTable.objects.count() == 2
        assert _audit("fares.fare_table.change") == ["km"]
        for bad, why in (
            ("里程,票价\n4,2.005\n", "whole number of fen"),
            (",s1,s9\ns1,,2\n", "not in the rules: s9"),
            ("里程,票价\nfar,2\n", "not a whole number"),
        ):
            with pytest.raises(DomainError, match=why):
                services.fare_table_import_csv(tenant=hz, actor="t", code="bad", text=bad)
        assert not FareTable.objects.filter(code="bad").exists()


def test_gate_rules_set_creates_then_changes_only_the_given_fields(hz):
    with tenant_context(hz):
        services.gate_rule_set(
            tenant=hz, actor="t", service="metro", changes={"incomplete_fen": 900, "no_entry_fen": 900}
        )
        services.gate_rule_set(
            tenant=hz,
            actor="t",
            service="metro",
            changes={"same_station_minutes": 30, "same_station_fen": 200},
        )
        (rule,) = GateRule.objects.all()
        assert (rule.incomplete_fen, rule.no_entry_fen, rule.same_station_minutes, rule.same_station_fen) == (
            900,
            900,
            30,
            200,
        )
        assert _audit("fares.gate_rule.create") == ["metro"] and _audit("fares.gate_rule.change") == ["metro"]


def test_the_commands_add_list_import_and_set(hz, tmp_path, english):
    for code, name in (("s1", "湘湖"), ("s2", "滨康路"), ("s3", "西兴")):
        assert f"added station {code} {name}" in run(
            "stations", "add", code, "--name", name, "--tenant", "hangzhou"
        )
    assert "s2  滨康路" in run("stations", "list", "--tenant", "hangzhou")
    out = run(
        "lines", "set", "9", "--stops", "s1:0,s2:1800,s3:3900", "--name", "9号线", "--tenant", "hangzhou"
    )
    assert "line 9: 3 stations, 3.9 km" in out
    assert "s3 3.9 km" in run("lines", "list", "--tenant", "hangzhou")
    assert "area z: 2 stations" in run("areas", "set", "z", "--stations", "s1,s2", "--tenant", "hangzhou")
    assert "area z: 3 stations" in run("areas", "set", "z", "--stations", "s1,s2,s3", "--tenant", "hangzhou")
    assert "z  : s1, s2, s3" in run("areas", "list", "--tenant", "hangzhou")
    (tmp_path / "km.csv").write_text(BANDS, encoding="utf-8")
    (tmp_path / "od.csv").write_text(MATRIX, encoding="utf-8")
    out = run(
        "fare-table",
        "import",
        "km",
        str(tmp_path / "km.csv"),
        "--beyond-every",
        "8",
        "--beyond-add-yuan",
        "1",
        "--tenant",
        "hangzhou",
    )
    assert (
        "fare table km (km): 3 rows" in out and "up to 8 km: ¥3.00" in out and "¥1.00 more every 8 km" in out
    )
    out = run("fare-table", "import", "od", str(tmp_path / "od.csv"), "--tenant", "hangzhou")
    assert "fare table od (od): 6 rows" in out and "s1 -> s3: ¥3.50" in out
    assert "km (km)" in run("fare-table", "list", "--tenant", "hangzhou")
    out = run(
        "gate-rules",
        "set",
        "--incomplete-yuan",
        "9",
        "--no-entry-yuan",
        "9",
        "--same-station-minutes",
        "30",
        "--same-station-yuan",
        "2",
        "--tenant",
        "hangzhou",
    )
    assert "metro: entry ¥0.00; no exit within 240 min: ¥9.00; exit without an entry: ¥9.00" in out
    assert "within 30 min: ¥2.00" in run("gate-rules", "show", "--tenant", "hangzhou")
    with pytest.raises(CommandError, match="whole number of fen"):
        run("gate-rules", "set", "--entry-yuan", "0.001", "--tenant", "hangzhou")


def test_the_admin_pages_list_add_and_refuse_through_the_services(client, hz):
    user = platform_services.user_create(
        username="hzmetro", role=Role.CITY_ADMIN, tenant_code="hangzhou", password="a-long-test-password"
    )
    client.force_login(user)
    for model in ("stop", "area", "line", "faretable", "gaterule"):
        assert client.get(f"/admin/fares/{model}/", HTTP_HOST=HZ).status_code == 200, model
        assert client.get(f"/admin/fares/{model}/add/", HTTP_HOST=HZ).status_code == 200, model
    page = client.post(
        "/admin/fares/stop/add/", {"code": "s1", "name": "湘湖", "lat": "", "lon": ""}, HTTP_HOST=HZ
    )
    assert page.status_code == 302, page.content.decode()[:2000]
    # a station the area names does not exist: the service's refusal as a message, nothing written
    page = client.post(
        "/admin/fares/area/add/", {"code": "z", "name": "", "stops": "s1,s9"}, HTTP_HOST=HZ, follow=True
    )
    assert "no station s9" in page.content.decode()
    page = client.post(
        "/admin/fares/gaterule/add/",
        {
            "service": "metro",
            "entry_fen": "0",
            "time_limit_minutes": "240",
            "incomplete_fen": "900",
            "no_entry_fen": "900",
            "same_station_minutes": "30",
            "same_station_fen": "200",
        },
        HTTP_HOST=HZ,
    )
    assert page.status_code == 302, page.content.decode()[:2000]
    with tenant_context(hz):
        rule = GateRule.objects.get(service="metro")
    form = {
        "service": "metro",
        "entry_fen": "0",
        "time_limit_minutes": "240",
        "incomplete_fen": "900",
        "no_entry_fen": "900",
        "same_station_minutes": "30",
        "same_station_fen": "300",
    }
    page = client.post(f"/admin/fares/gaterule/{rule.pk}/change/", form, HTTP_HOST=HZ)
    assert page.status_code == 302, page.content.decode()[:2000]
    page = client.post(
        "/admin/fares/line/add/",
        {"code": "9", "name": "9号线", "service": "metro", "stops": '[["s1", 0]]'},
        HTTP_HOST=HZ,
    )
    assert page.status_code == 302, page.content.decode()[:2000]
    with tenant_context(hz):
        assert list(Stop.objects.values_list("code", flat=True)) == ["s1"] and not Area.objects.exists()
        assert GateRule.objects.get(service="metro").same_station_fen == 300
        assert Line.objects.get(code="9").stops == [["s1", 0]]
        assert _audit("fares.gate_rule.change") == ["metro"]
        assert _audit("fares.stop.create") == ["s1"] and _audit("fares.gate_rule.create") == ["metro"]
    assert client.get("/admin/fares/stop/", HTTP_HOST=HZ).content.decode().count("湘湖") >= 1


def test_a_station_to_station_table_prices_a_journey_by_its_pair_either_way():
    doc = copy.deepcopy(seeds.HANGZHOU)
    doc.update(format=1, tenant="hangzhou", kind="fare_rules", version=1, home_divisions=["330100"])
    for entry in doc["visitor_policy"]["networks"]:
        entry["members"] = ["310000", "330100"]
    doc["stops"] = [{"id": s, "name": s} for s in ("s1", "s2", "s3")]
    doc["lines"] = [{"id": "9", "service": "metro", "stops": [["s1", 0], ["s2", 1200], ["s3", 2500]]}]
    doc["areas"] = {"m": {"name": "m", "stops": ["s1", "s2", "s3"]}}
    doc["fare_tables"] = [{"id": "od", "measure": "od", "rows": [["s1", "s2", 200], ["s1", "s3", 350]]}]
    doc["fare_products"].append(
        {
            "id": "m-od",
            "service": "metro",
            "from_area": "m",
            "to_area": "m",
            "fare_table": "od",
            "priority": 10,
        }
    )
    engine = FareEngine.from_payload(doc)
    visitor = Card(issuer="440300")
    out = engine.quote(visitor, Trip("metro", "9", AT, origin="s3", destination="s1"))
    assert out.fare_fen == 350 and "table od: s3 -> s1 -> 350 fen" in " ".join(out.trace)
    with pytest.raises(FareError, match="no fare for s2 -> s3"):
        engine.quote(visitor, Trip("metro", "9", AT, origin="s2", destination="s3"))
