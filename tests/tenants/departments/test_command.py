"""`citycard departments`: onboard a department, open its service points, grant it fields, list them; a
refusal is one line and changes nothing."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

from citycard.tenants.departments.models import DataGrant, Department, ServicePoint

# What a command or a refusal says is checked in English, the source text (the `english` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def run(*args) -> str:
    out = io.StringIO()
    call_command("departments", *args, stdout=out)
    return out.getvalue()


def test_create_open_a_service_point_grant_fields_and_list(tenant):
    run("--tenant", "hangzhou", "create", "hz-parks", "--kind", "culture_tourism", "--name", "杭州市园文局")
    out = run(
        "service-point-add",
        "hz-parks",
        "west-lake-gate",
        "--name",
        "西湖景区北门",
        "--address",
        "北山街",
        "--hours",
        "6:00-22:00",
        "--services",
        "entry, enquiry",
        "--tenant",
        "hangzhou",
    )
    assert "west-lake-gate of hz-parks: entry, enquiry" in out
    out = run(
        "--tenant",
        "hangzhou",
        "data-grant",
        "hz-parks",
        "--fields",
        "name",
        "--purpose",
        "入园核验",
        "--from",
        "2026-01-01",
    )
    assert "reads name from 2026-01-01 to open" in out
    listed = run("--tenant", "hangzhou", "list")
    assert (
        "hz-parks" in listed
        and "west-lake-gate (entry/enquiry)" in listed
        and "name from 2026-01-01" in listed
    )
    with tenant_context(tenant("hangzhou")):
        point = ServicePoint.objects.get(code="west-lake-gate")
        assert (point.department.code, point.services, point.hours) == (
            "hz-parks",
            ["entry", "enquiry"],
            "6:00-22:00",
        )
        grant = DataGrant.objects.get(department__code="hz-parks")
        assert (grant.fields, grant.valid_from, grant.granted_by) == (["name"], dt.date(2026, 1, 1), "cli")
    with tenant_context(tenant("jiaxing")):  # another tenant's schema has none of it
        assert not Department.objects.filter(code="hz-parks").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "hz-x", "--kind", "army", "--name", "X"], "invalid choice"),
        (["create", "HZ X", "--kind", "other", "--name", "X"], "lower-case code"),
        (
            [
                "service-point-add",
                "nowhere",
                "p1",
                "--name",
                "n",
                "--address",
                "a",
                "--hours",
                "h",
                "--services",
                "entry",
            ],
            "no department 'nowhere'",
        ),
        (
            [
                "service-point-add",
                "hz-lib",
                "p1",
                "--name",
                "n",
                "--address",
                "a",
                "--hours",
                "h",
                "--services",
                "fly",
            ],
            "unknown: fly",
        ),
        (["data-grant", "hz-lib", "--fields", "salary", "--purpose", "p"], "fields must be some of"),
    ],
)
def test_a_refusal_names_the_problem_and_changes_nothing(tenant, args, message):
    run("--tenant", "hangzhou", "create", "hz-lib", "--kind", "culture_tourism", "--name", "杭州图书馆")
    with pytest.raises(CommandError, match=message):
        run("--tenant", "hangzhou", *args)
    with tenant_context(tenant("hangzhou")):
        assert list(Department.objects.values_list("code", flat=True)) == ["hz-lib"]
        assert not ServicePoint.objects.exists() and not DataGrant.objects.exists()


def test_a_department_code_is_taken_once(tenant):
    run("--tenant", "hangzhou", "create", "hz-lib", "--kind", "culture_tourism", "--name", "杭州图书馆")
    with pytest.raises(CommandError, match="already exists"):
        run("--tenant", "hangzhou", "create", "hz-lib", "--kind", "education", "--name", "again")
    with pytest.raises(CommandError, match="no tenant with code 'atlantis'"):
        run("--tenant", "atlantis", "list")
