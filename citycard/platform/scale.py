"""The whole country on one deployment (全国规模): a tenant for every city and county the GB/T 2260
reference list names, cardholders in the largest cities only.

``country_build`` walks the reference list in code order (a city before its counties, so a county's city is
always a tenant first) and creates each missing tenant with ``services.tenant_create``: a division that
already has a tenant, whatever its code, is skipped, so a run that stopped half way resumes where it was,
and a platform that already has the demo's tenants keeps them. Each package may add its own step for the
largest cities (an app config's ``scale_step``: the cards package registers a few hundred cardholders
there), run once per city and skipped by the step itself when already done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.apps import apps
from django.db import connection
from django.utils.module_loading import import_string
from django_tenants.utils import tenant_context

from citycard.platform import services
from citycard.platform.divisions import COUNTY, PROVINCE, Division, reference_divisions
from citycard.platform.models import Tenant

# The most populous cities (seventh census, 2020, resident population), largest first: the only ones that
# get cardholders, so 3,000 tenants stay cheap to build while the big cities have data to look at.
LARGEST_CITIES = (
    "500000",  # 重庆
    "310000",  # 上海
    "110000",  # 北京
    "510100",  # 成都
    "440100",  # 广州
    "440300",  # 深圳
    "120000",  # 天津
    "420100",  # 武汉
    "610100",  # 西安
    "330100",  # 杭州
    "320500",  # 苏州
    "410100",  # 郑州
    "430100",  # 长沙
    "130100",  # 石家庄
    "230100",  # 哈尔滨
    "370200",  # 青岛
    "530100",  # 昆明
    "440600",  # 佛山
    "210100",  # 沈阳
    "340100",  # 合肥
)


@dataclass
class CountryReport:
    created: list[str] = field(default_factory=list)  # tenant codes, in creation order
    skipped: int = 0  # divisions that already had a tenant
    seconds: list[float] = field(default_factory=list)  # tenant_create wall time, one per created tenant
    populated: list[str] = field(default_factory=list)  # the largest cities' codes, each step run


def country_divisions(*, counties: bool = True) -> list[Division]:
    """Every division that can be a tenant, a city before its counties (code order does that); without
    ``counties``, the cities only (prefecture level, municipalities and cities governed by their province)."""
    return [
        d
        for code, d in sorted(reference_divisions().items())
        if d.kind != PROVINCE and (counties or d.kind != COUNTY)
    ]


def country_tenant_code(division: Division) -> str:
    """The code (and schema name) of a division's tenant made by the scale command: d + its division code."""
    return f"d{division.code}"


def country_build(
    *,
    limit: int | None = None,
    counties: bool = True,
    largest: int = 10,
    holders: int = 300,
    actor: str = "scale",
    progress: Callable[[Division, Tenant | None, float | None], None] | None = None,
) -> CountryReport:
    """Create the missing city and county tenants (at most ``limit`` tenants of the reference list in all,
    counting those that exist; without ``counties`` the cities only), then run each package's scale step
    in the ``largest`` most populous cities that are tenants, with ``holders`` cardholders each.
    ``progress(division, tenant, seconds)`` after each division: ``tenant`` None when it was skipped."""
    report = CountryReport()
    connection.set_schema_to_public()
    held = dict(Tenant.objects.exclude(division_code="").values_list("division_code", "code"))
    wanted = country_divisions(counties=counties)
    if limit is not None:
        wanted = wanted[:limit]
    for division in wanted:
        if division.code in held:
            report.skipped += 1
            if progress:
                progress(division, None, None)
            continue
        start = time.perf_counter()
        tenant = services.tenant_create(
            code=country_tenant_code(division), division_code=division.code, actor=actor
        )
        seconds = time.perf_counter() - start
        held[division.code] = tenant.code
        report.created.append(tenant.code)
        report.seconds.append(seconds)
        if progress:
            progress(division, tenant, seconds)
    steps = [
        import_string(config.scale_step) for config in apps.get_app_configs() if hasattr(config, "scale_step")
    ]
    big = [held[code] for code in LARGEST_CITIES if code in held][: max(largest, 0)]
    for tenant in Tenant.objects.filter(code__in=big).order_by("division_code"):
        with tenant_context(tenant):
            for step in steps:
                step(tenant=tenant, holders=holders, actor=actor)
        report.populated.append(tenant.code)
    connection.set_schema_to_public()
    return report
