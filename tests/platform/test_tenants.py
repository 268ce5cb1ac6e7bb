"""Tenant and county creation, and every refusal leaving nothing behind."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from citycard.platform import services
from citycard.platform.audit.models import AuditEntry
from citycard.platform.errors import DomainError
from citycard.platform.models import Domain, Tenant, TenantKind
from citycard.tenants.terminals.partitions import partitions_ensure, partitions_existing

pytestmark = pytest.mark.django_db


def _schemas() -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT schema_name FROM information_schema.schemata")
        return {row[0] for row in cur.fetchall()}


def _footprint() -> tuple:
    connection.set_schema_to_public()
    return (
        Tenant.objects.count(),
        Domain.objects.count(),
        AuditEntry.objects.count(),
        frozenset(_schemas()),
    )


def test_city_is_created_by_cloning_with_names_from_the_reference_list():
    tenant = services.tenant_create(code="wuxi", division_code="320200")
    assert (tenant.name_zh, tenant.name_en, tenant.province, tenant.kind) == (
        "无锡市",
        "Wuxi",
        "江苏",
        "city",
    )
    assert tenant.domains.get().domain == "wuxi.localhost"
    assert "wuxi" in _schemas()
    with schema_context("wuxi"):
        # The clone carries the template's tables and migration records, and the tenant's own chain.
        assert AuditEntry.objects.get().action == "tenant.create"
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM wuxi.django_migrations")
            assert cur.fetchone()[0] > 0


def test_county_gets_its_city_as_parent(tenant):
    county = services.tenant_create(code="chunan", division_code="330127")
    assert county.kind == TenantKind.COUNTY
    assert county.parent == tenant("hangzhou")
    assert county.clearing_tenant == tenant("hangzhou")


def test_names_can_be_given_explicitly():
    tenant = services.tenant_create(
        code="ningbo", division_code="330200", name_zh="宁波", name_en="Ningbo City"
    )
    assert (tenant.name_zh, tenant.name_en) == ("宁波", "Ningbo City")


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"code": "bad", "division_code": "33040"}, "division_malformed", "malformed"),
        ({"code": "bad", "division_code": "abcdef"}, "division_malformed", "malformed"),
        ({"code": "bad", "division_code": "330399"}, "division_unknown", "not in the GB/T 2260"),
        ({"code": "zhejiang", "division_code": "330000"}, "division_province", "is a province"),
        ({"code": "Bad Code", "division_code": "320500"}, "code_invalid", "invalid"),
        ({"code": "public", "division_code": "320500"}, "code_reserved", "reserved"),
        ({"code": "hangzhou", "division_code": "320500"}, "conflict", "already exists"),
        ({"code": "hz2", "division_code": "330100"}, "conflict", "already belongs to tenant 'hangzhou'"),
        # county whose city is not a tenant yet
        ({"code": "wuyi", "division_code": "330723"}, "parent_missing", "needs its city (330700)"),
        # county with an explicit parent that is the wrong city
        (
            {"code": "jiashan", "division_code": "330421", "parent_code": "hangzhou"},
            "parent_wrong_city",
            "330400",
        ),
        # county with a parent in another province
        (
            {"code": "jiashan", "division_code": "330421", "parent_code": "shanghai"},
            "parent_other_province",
            "上海",
        ),
        # county with a parent that is itself a county
        (
            {"code": "jiashan", "division_code": "330421", "parent_code": "haiyan"},
            "parent_not_city",
            "county",
        ),
        (
            {"code": "jiashan", "division_code": "330421", "parent_code": "nowhere"},
            "parent_missing",
            "not a tenant",
        ),
        # a city given a parent
        (
            {"code": "suzhou", "division_code": "320500", "parent_code": "shanghai"},
            "parent_not_allowed",
            "city",
        ),
    ],
)
@pytest.mark.usefixtures("english")
def test_bad_input_is_refused_and_leaves_nothing_behind(kwargs, code, message):
    before = _footprint()
    with pytest.raises(DomainError) as err:
        services.tenant_create(**kwargs)
    assert err.value.code == code
    assert message in str(err.value)
    assert _footprint() == before


def test_failure_after_the_schema_was_cloned_rolls_everything_back(monkeypatch):
    before = _footprint()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Domain.objects, "create", broken)
    with pytest.raises(RuntimeError):
        services.tenant_create(code="suzhou", division_code="320500")
    assert _footprint() == before
    assert "suzhou" not in _schemas()


def test_cli_create_bad_input_exits_non_zero_with_one_line(capsys):
    before = _footprint()
    with pytest.raises(CommandError) as err:
        call_command("tenant", "create", "--code", "jiashan", "--division", "330421", "--parent", "hangzhou")
    assert "\n" not in str(err.value)
    assert "330400" in str(err.value)
    assert _footprint() == before


def test_cli_create_and_list(capsys):
    call_command("tenant", "create", "--code", "suzhou", "--division", "320500")
    # What the command says is Chinese first (CITYCARD_LANGUAGE; docs/cli.md, "Language").
    assert "已创建租户 suzhou（市，苏州市 Suzhou，320500），地址 suzhou.localhost" in capsys.readouterr().out
    call_command("tenant", "list", "--json")
    rows = {row["code"]: row for row in json.loads(capsys.readouterr().out)}
    assert "suzhou" in rows and rows["suzhou"]["networks"] == []
    # A county roams through its city's membership.
    assert rows["tonglu"]["networks"] == rows["hangzhou"]["networks"] == ["yrd"]


def test_suspend_and_activate(client, tenant, staff_client):
    services.tenant_suspend(code="jiaxing", reason="contract under review")
    response = client.get("/", HTTP_HOST="jiaxing.localhost")
    assert response.status_code == 403
    assert "contract under review" in response.content.decode()
    with pytest.raises(DomainError, match="已停用"):  # the language of the last request, zh-hans
        services.tenant_suspend(code="jiaxing", reason="again")
    services.tenant_activate(code="jiaxing")
    assert staff_client("jiaxing").get("/", HTTP_HOST="jiaxing.localhost").status_code == 200
    with pytest.raises(DomainError, match="停用租户必须说明原因"):
        services.tenant_suspend(code="jiaxing", reason=" ")


@pytest.mark.usefixtures("english")
def test_suspend_via_cli(capsys):
    call_command("tenant", "suspend", "shenzhen", "--reason", "maintenance")
    assert Tenant.objects.get(code="shenzhen").status == "suspended"
    with pytest.raises(CommandError, match="no tenant with code 'nowhere'"):
        call_command("tenant", "suspend", "nowhere", "--reason", "x")


_MONTH = re.compile(r"_y[0-9]{4}m[0-9]{2}")
_CATALOG = """
SELECT 'table ' || c.relname || ' ' || c.relkind::text FROM pg_class c WHERE c.relnamespace = %(ns)s::regnamespace
  AND c.relkind IN ('r', 'p', 'v')
UNION ALL SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
  || ' ' || a.attnotnull::text || ' ' || a.attidentity::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  || ' ' || a.attstorage::text
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE c.relnamespace = %(ns)s::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT 'constraint ' || c.relname || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid WHERE c.relnamespace = %(ns)s::regnamespace
UNION ALL SELECT 'index ' || ic.relname || ' ' || regexp_replace(pg_get_indexdef(i.indexrelid), ' ON \\S+\\.', ' ON ')
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE ic.relnamespace = %(ns)s::regnamespace
UNION ALL SELECT 'trigger ' || c.relname || ' ' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  WHERE c.relnamespace = %(ns)s::regnamespace AND NOT t.tgisinternal
UNION ALL SELECT 'function ' || p.proname FROM pg_proc p WHERE p.pronamespace = %(ns)s::regnamespace
"""


@pytest.mark.django_db
def test_a_cloned_schema_has_exactly_the_templates_definition_and_rows():
    from django.db import connection

    def catalog(schema):
        with connection.cursor() as cur:
            cur.execute("SET LOCAL search_path TO public")
            cur.execute(_CATALOG, {"ns": schema})
            return sorted(row[0].replace(f"{schema}.", "") for row in cur.fetchall())

    def partitions(objects):
        return {_MONTH.sub("_yMONTH", line) for line in objects if _MONTH.search(line)}

    template = catalog("_template")
    assert len(template) > 20
    # The template's month partitions are not cloned: the tenant makes its own, on demand or ahead, each
    # one like the template's.
    with schema_context("_template"):
        months = partitions_existing()
    with schema_context("jiaxing"):
        partitions_ensure(months)
    tenant = catalog("jiaxing")
    assert [line for line in tenant if not _MONTH.search(line)] == [
        line for line in template if not _MONTH.search(line)
    ]
    assert partitions(tenant) == partitions(template) != set()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM _template.django_migrations")
        template_rows = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM jiaxing.django_migrations")
        assert cur.fetchone()[0] == template_rows > 0
        # Identity sequences continue after the copied rows instead of colliding with them.
        cur.execute(
            "INSERT INTO jiaxing.django_migrations (app, name, applied) VALUES ('x', 'y', now()) RETURNING id"
        )
        new_id = cur.fetchone()[0]
        cur.execute("SELECT max(id) FROM _template.django_migrations")
        assert new_id > cur.fetchone()[0]


def test_a_new_tenant_is_created_without_a_partition():
    """Each partition made costs PostgreSQL a scan of all of pg_constraint (every tenant's constraints), so
    creation makes none, whatever months the template holds: the first taps make theirs."""
    with schema_context("_template"):
        assert len(partitions_existing()) >= 4
    with CaptureQueriesContext(connection) as queries:
        services.tenant_create(code="wuxi", division_code="320200")
    assert not [q["sql"] for q in queries.captured_queries if "PARTITION OF" in q["sql"]]
    with schema_context("wuxi"):
        assert partitions_existing() == set()
