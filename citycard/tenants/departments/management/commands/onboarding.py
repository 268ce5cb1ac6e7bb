"""`citycard onboarding --tenant CODE [--json]` — the onboarding checklist (入驻清单): a county's, or a city's
own and each of its counties'. Each step: done or not, what there is, who did it and when, who does it,
the admin page (on whose site) and the command that does it."""

from __future__ import annotations

import json

from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import NotFound
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.departments.selectors import admin_hosts, onboarding_overview
from citycard.tenants.departments.services import onboarding_publish
from citycard.terminal_kit.beijing import BEIJING


class Command(PlatformCommand):
    help = "The onboarding checklist (入驻清单) of a county, or of a city and its counties."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code (a city shows its counties too)")
        parser.add_argument("--json", action="store_true", help="as JSON (times ISO 8601, Beijing time)")

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        with tenant_context(tenant):
            if tenant.kind == "county":  # publish what its city reads
                onboarding_publish(tenant=tenant, actor=self.actor)
            overview = onboarding_overview(tenant=tenant)
        domains = admin_hosts(tenant=tenant)

        def where(item) -> str:
            if not item.admin_path:
                return ""
            return f"{domains.get(item.admin_tenant, item.admin_tenant)}{item.admin_path}"

        if opts["json"]:
            rows = [
                {
                    "tenant": o.tenant.code,
                    "kind": o.tenant.kind,
                    "published_at": o.published_at.astimezone(BEIJING).isoformat()
                    if o.published_at
                    else None,
                    "done": len(o.items) - len(o.missing),
                    "total": len(o.items),
                    "steps": [
                        {
                            "key": i.key,
                            "label": str(i.label),
                            "done": i.done,
                            "detail": str(i.detail),
                            "done_by": i.done_by,
                            "done_at": i.done_at.astimezone(BEIJING).isoformat() if i.done_at else None,
                            "who": str(i.who),
                            "admin_page": where(i),
                            "command": i.command,
                        }
                        for i in o.items
                    ],
                }
                for o in overview
            ]
            self.stdout.write(json.dumps(rows, ensure_ascii=False, indent=1))
            return
        console = Console(file=self.stdout, width=160)
        for o in overview:
            table = Table(
                gettext("step"),
                gettext("done"),
                gettext("what there is"),
                gettext("by"),
                gettext("when"),
                gettext("who does it"),
                title=gettext("%(name)s %(tenant)s (%(kind)s): %(done)s of %(total)s steps done")
                % {
                    "name": o.tenant.name_zh,
                    "tenant": o.tenant.code,
                    "kind": o.tenant.get_kind_display(),
                    "done": len(o.items) - len(o.missing),
                    "total": len(o.items),
                },
            )
            for i in o.items:
                table.add_row(
                    str(i.label),
                    gettext("yes") if i.done else gettext("NO"),
                    str(i.detail),
                    i.done_by,
                    beijing(i.done_at),
                    str(i.who),
                )
            console.print(table)
            missing = "; ".join(str(i.label) for i in o.missing)
            console.print(
                gettext("still missing: %(steps)s") % {"steps": missing}
                if missing
                else gettext("nothing missing")
            )
            console.print(gettext("where each step is done:"))
            for i in o.items:
                places = " · ".join(x for x in (where(i), i.command) if x)
                console.print(f"  {i.label}: {places}", soft_wrap=True)
            console.print()
