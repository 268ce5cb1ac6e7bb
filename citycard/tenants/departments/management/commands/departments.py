"""`citycard departments --tenant CODE list | create | service-point-add | data-grant` — onboarding a
department (部门入驻), opening its service points (服务网点) and granting it cardholder fields (数据授权), as the
admin's Departments pages do. Thin over citycard.tenants.departments.services."""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import NotFound
from citycard.platform.management.base import PlatformCommand
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.departments import services
from citycard.tenants.departments.models import DepartmentKind, PiiField, ServiceKind
from citycard.tenants.departments.selectors import departments_with_points
from citycard.terminal_kit.beijing import BEIJING


def _list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


class Command(PlatformCommand):
    help = "Departments (部门), their service points (服务网点) and data grants (数据授权)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code")
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="the departments, their service points and data grants")
        new = sub.add_parser("create", help="onboard a department (部门入驻)")
        new.add_argument("code", help="a lower-case code, e.g. hz-parks")
        new.add_argument("--kind", required=True, choices=DepartmentKind.values)
        new.add_argument("--name", required=True)
        new.add_argument("--contact", default="")
        point = sub.add_parser("service-point-add", help="open a service point (服务网点) of a department")
        point.add_argument("department", help="the department's code")
        point.add_argument("code", help="the service point's code, e.g. west-lake-gate")
        point.add_argument("--name", required=True)
        point.add_argument("--address", required=True)
        point.add_argument("--hours", required=True, help="e.g. 周一至周五 8:30-17:00")
        point.add_argument(
            "--services",
            required=True,
            help=f"comma-separated, some of: {', '.join(ServiceKind.values)} (entry: entitlement acceptance)",
        )
        grant = sub.add_parser("data-grant", help="let a department read cardholder fields (数据授权)")
        grant.add_argument("department", help="the department's code")
        grant.add_argument(
            "--fields", required=True, help=f"comma-separated, some of: {', '.join(PiiField.values)}"
        )
        grant.add_argument("--purpose", required=True, help="why it reads them (谁使用、谁负责)")
        grant.add_argument(
            "--from", dest="valid_from", type=dt.date.fromisoformat, help="first day (default: today)"
        )
        grant.add_argument(
            "--to", dest="valid_to", type=dt.date.fromisoformat, help="last day (default: open)"
        )

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        console = Console(file=self.stdout, width=160)
        with tenant_context(tenant):
            getattr(self, "_" + opts["action"].replace("-", "_"))(console, opts)

    def _list(self, console, opts):
        table = Table(
            gettext("department"),
            gettext("kind"),
            gettext("name"),
            gettext("service points"),
            gettext("data grants"),
        )
        for d in departments_with_points():
            points = ", ".join(
                f"{p.code} ({'/'.join(p.services)})" + ("" if p.active else " closed")
                for p in d.service_points.all()
            )
            grants = "; ".join(
                f"{','.join(g.fields)} from {g.valid_from}" + (f" to {g.valid_to}" if g.valid_to else "")
                for g in d.grants.all()
                if g.revoked_at is None
            )
            table.add_row(d.code, d.kind, d.name, points, grants)
        console.print(table)

    def _create(self, console, opts):
        department = services.department_create(
            code=opts["code"], kind=opts["kind"], name=opts["name"], contact=opts["contact"], actor=self.actor
        )
        console.print(
            gettext("department %(department)s (%(kind)s) onboarded")
            % {"department": department.code, "kind": department.kind}
        )

    def _service_point_add(self, console, opts):
        point = services.service_point_create(
            department=opts["department"],
            code=opts["code"],
            name=opts["name"],
            address=opts["address"],
            hours=opts["hours"],
            services=_list(opts["services"]),
            actor=self.actor,
        )
        console.print(
            gettext("service point %(point)s of %(department)s: %(services)s")
            % {"point": point.code, "department": opts["department"], "services": ", ".join(point.services)}
        )

    def _data_grant(self, console, opts):
        grant = services.data_grant_create(
            department=opts["department"],
            fields=_list(opts["fields"]),
            purpose=opts["purpose"],
            valid_from=opts["valid_from"] or dt.datetime.now(BEIJING).date(),
            valid_to=opts["valid_to"],
            actor=self.actor,
        )
        console.print(
            gettext("data grant %(grant)s: %(department)s reads %(fields)s from %(start)s to %(end)s")
            % {
                "grant": grant.pk,
                "department": opts["department"],
                "fields": ", ".join(grant.fields),
                "start": grant.valid_from,
                "end": grant.valid_to or gettext("open"),
            }
        )
