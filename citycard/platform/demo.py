"""The demo: the platform, the Yangtze Delta and Greater Bay tenants, and whatever each package adds.

Each Django app may contribute a step by naming a function in its AppConfig (``demo_step`` = dotted
path, ``demo_order`` = when it runs); the platform runs them in order without importing them, so the
demo grows with the product while the platform keeps depending on nothing above it. Every step must
be safe to run again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string
from django.utils.translation import gettext
from rich.console import Console
from rich.table import Table

from citycard.platform import scale, services
from citycard.platform.models import NetworkMembership, Role, Tenant, User
from citycard.platform.selectors import network_members

DEMO_PASSWORD = "citycard-demo"

# (code, division code) in creation order: cities before their counties.
DEMO_TENANTS = [
    ("shanghai", "310000"),
    ("hangzhou", "330100"),
    ("jiaxing", "330400"),
    ("tonglu", "330122"),
    ("haiyan", "330424"),
    ("dongguan", "441900"),
    ("shenzhen", "440300"),
]
# Members since well before any day the demo clears (its roaming day is two days ago).
DEMO_JOINED_ON = dt.date(2024, 1, 1)
DEMO_MEMBERSHIPS = [
    ("yrd", "shanghai"),
    ("yrd", "hangzhou"),
    ("yrd", "jiaxing"),
    ("gba", "dongguan"),
    ("gba", "shenzhen"),
]


@dataclass
class DemoContext:
    console: Console
    port: int = 8000
    tenants: dict[str, Tenant] = field(default_factory=dict)
    users: list[tuple[str, str, str]] = field(default_factory=list)  # (username, role, where)
    facts: dict[str, Any] = field(default_factory=dict)  # shared between steps

    def url(self, tenant_code: str | None = None, path: str = "/") -> str:
        host = (
            settings.BASE_DOMAIN
            if tenant_code in (None, "public")
            else f"{tenant_code}.{settings.BASE_DOMAIN}"
        )
        return f"http://{host}:{self.port}{path}"


def _ensure_user(ctx: DemoContext, username: str, role: str, tenant_code: str | None) -> None:
    if not User.objects.filter(username=username).exists():
        services.user_create(
            username=username, role=role, tenant_code=tenant_code, password=DEMO_PASSWORD, actor="demo"
        )
    where = ctx.url(tenant_code, "/admin/")
    ctx.users.append((username, role, where))


def platform_step(ctx: DemoContext) -> None:
    """Tenants, networks and one user per role."""
    services.platform_bootstrap()
    for code, division in DEMO_TENANTS:
        tenant = Tenant.objects.filter(code=code).first()
        if tenant is None:
            tenant = services.tenant_create(code=code, division_code=division, actor="demo")
        ctx.tenants[code] = tenant
    for network_code, tenant_code in DEMO_MEMBERSHIPS:
        if not NetworkMembership.objects.filter(
            network__code=network_code, tenant__code=tenant_code
        ).exists():
            services.network_join(
                network_code=network_code, tenant_code=tenant_code, joined_on=DEMO_JOINED_ON, actor="demo"
            )
    _ensure_user(ctx, "operator", Role.PLATFORM_OPERATOR, None)
    _ensure_user(ctx, "clearing", Role.CLEARING_STAFF, None)
    for code, tenant in ctx.tenants.items():
        if tenant.kind == "city":
            _ensure_user(ctx, f"{code}-admin", Role.CITY_ADMIN, code)
        else:
            _ensure_user(ctx, f"{code}-officer", Role.COUNTY_OFFICER, code)


def _report_platform(ctx: DemoContext) -> None:
    table = Table(title=gettext("Tenants"))
    for col in (
        gettext("code"),
        gettext("name"),
        gettext("division"),
        gettext("kind"),
        gettext("city"),
        gettext("roams in"),
        gettext("admin site"),
    ):
        table.add_column(col)
    for code, tenant in ctx.tenants.items():
        roams = sorted(
            {
                m.network.code
                for m in NetworkMembership.objects.filter(tenant=tenant.clearing_tenant).select_related(
                    "network"
                )
            }
        )
        table.add_row(
            code,
            f"{tenant.name_zh} {tenant.name_en}",
            tenant.division_code,
            tenant.get_kind_display(),
            tenant.parent.code if tenant.parent else "",
            ",".join(roams),
            ctx.url(code, "/admin/"),
        )
    ctx.console.print(table)
    for network_code in ("yrd", "gba"):
        members = ", ".join(
            gettext("%(tenant)s (via %(city)s)") % {"tenant": m.tenant.code, "city": m.via.code}
            if m.via
            else m.tenant.code
            for m in network_members(network_code=network_code)
        )
        ctx.console.print(f"[bold]{network_code}[/bold]: {members}")
    users = Table(title=gettext("Users (password for all: %(password)s)") % {"password": DEMO_PASSWORD})
    for col in (gettext("user"), gettext("role"), gettext("signs in at")):
        users.add_column(col)
    for username, role, where in ctx.users:
        users.add_row(username, str(Role(role).label), where)
    ctx.console.print(users)


def _console_line(ctx: DemoContext) -> None:
    ctx.console.print(
        gettext("Clearing console: %(url)s   (sign in as %(user)s)")
        % {"url": ctx.url(None, "/console/"), "user": "clearing"},
        soft_wrap=True,
    )


def demo_steps() -> list[tuple[int, str, Any]]:
    steps = [(0, "platform", platform_step)]
    for config in apps.get_app_configs():
        path = getattr(config, "demo_step", None)
        if path:
            steps.append((getattr(config, "demo_order", 100), config.label, import_string(path)))
    return sorted(steps, key=lambda s: s[0])


def demo_run(*, console: Console, port: int = 8000) -> DemoContext:
    ctx = DemoContext(console=console, port=port)
    for _order, label, step in demo_steps():
        # the step's package as a person reads it, its label beside it (卡片与持卡人 cards)
        console.rule(f"[bold]{apps.get_app_config(label).verbose_name}[/bold] ({label})")
        step(ctx)
        connection.set_schema_to_public()
    console.rule("[bold]" + gettext("CityCard Interop demo"))
    _report_platform(ctx)
    for report in ctx.facts.get("reports", []):
        report(ctx)
    console.print(
        gettext("Platform: %(url)s   (tenant sites: %(sites)s)")
        % {"url": ctx.url(None), "sites": f"http://<code>.{settings.BASE_DOMAIN}:{port}/"}
    )
    _console_line(ctx)
    console.print(gettext("City dashboards (each site's own users; county officers read only):"))
    for code, tenant in ctx.tenants.items():
        who = f"{code}-admin" if tenant.kind == "city" else f"{code}-officer"
        console.print(f"  {ctx.url(code, '/dashboard/')}   ({who})", soft_wrap=True)
    return ctx


def demo_national_run(
    *,
    console: Console,
    port: int = 8000,
    limit: int | None = None,
    counties: bool = False,
    largest: int = 0,
    cities: int = 300,
    records: int = 100_000,
    cards: int = 50,
) -> DemoContext:
    """``citycard demo --national``: the country's tenants (``scale.country_build``: every city, the counties
    too with ``counties``, at most ``limit``; cardholders in the ``largest`` most populous cities), then each
    package's ``national_step`` (the interop package's: a national network of ``cities`` cities clearing a
    day of ``records`` roaming records). Every step finds what an earlier run made and skips it."""
    ctx = DemoContext(console=console, port=port)
    console.rule("[bold]" + gettext("national: %(step)s") % {"step": gettext("Tenants")})
    services.platform_bootstrap()
    total = len(scale.country_divisions(counties=counties))
    wanted = total if limit is None else min(limit, total)
    step = max(wanted // 10, 1)

    def progress(division, tenant, seconds):
        progress.done += 1
        if progress.done % step == 0 or progress.done == wanted:
            console.print(
                "  "
                + gettext("%(done)s/%(wanted)s divisions (%(code)s %(name)s)")
                % {"done": progress.done, "wanted": wanted, "code": division.code, "name": division.name_zh}
            )

    progress.done = 0
    report = scale.country_build(
        limit=limit, counties=counties, largest=largest, actor="demo", progress=progress
    )
    console.print(
        gettext("%(created)s tenants created, %(skipped)s there already")
        % {"created": len(report.created), "skipped": report.skipped}
    )
    _ensure_user(ctx, "operator", Role.PLATFORM_OPERATOR, None)
    _ensure_user(ctx, "clearing", Role.CLEARING_STAFF, None)
    for config in apps.get_app_configs():
        path = getattr(config, "national_step", None)
        if path:
            console.rule("[bold]" + gettext("national: %(step)s") % {"step": config.verbose_name})
            import_string(path)(ctx, cities=cities, records=records, cards=cards)
            connection.set_schema_to_public()
    console.print(
        gettext("Platform: %(url)s   (users: %(users)s; password %(password)s)")
        % {"url": ctx.url(None), "users": "operator, clearing", "password": DEMO_PASSWORD}
    )
    _console_line(ctx)
    return ctx
