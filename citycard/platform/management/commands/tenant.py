"""`citycard tenant create|list|show|suspend|activate|scale`."""

from __future__ import annotations

import json
import statistics

from django.utils.translation import gettext
from rich.console import Console
from rich.table import Table

from citycard.platform import scale, selectors, services
from citycard.platform.errors import NotFound
from citycard.platform.management.base import PlatformCommand, labelled
from citycard.platform.models import TenantKind, TenantStatus


class Command(PlatformCommand):
    help = "Create, list, suspend and re-activate city and county tenants."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser(
            "create", help="create a city or county tenant (schema cloned from the template)"
        )
        create.add_argument("--code", required=True, help="short name, also the schema name, e.g. jiaxing")
        create.add_argument("--division", required=True, help="GB/T 2260 division code, e.g. 330400")
        create.add_argument("--name-zh", help="Chinese name (default: from the reference list)")
        create.add_argument("--name-en", help="English name (default: from the reference list)")
        create.add_argument(
            "--parent", help="for a county: its city's tenant code (default: found by division)"
        )
        lst = sub.add_parser("list", help="list tenants")
        lst.add_argument("--json", action="store_true")
        show = sub.add_parser("show", help="show one tenant")
        show.add_argument("code")
        suspend = sub.add_parser("suspend", help="suspend a tenant")
        suspend.add_argument("code")
        suspend.add_argument("--reason", required=True)
        activate = sub.add_parser("activate", help="re-activate a suspended tenant")
        activate.add_argument("code")
        grow = sub.add_parser(
            "scale",
            help="build the whole country: a tenant for every city and county of the reference list "
            "(re-runs create only the missing ones)",
        )
        grow.add_argument(
            "--country", action="store_true", required=True, help="every city and county (GB/T 2260)"
        )
        grow.add_argument("--limit", type=int, help="at most this many tenants of the list (in code order)")
        grow.add_argument(
            "--cardholders-in-largest",
            type=int,
            default=10,
            metavar="K",
            help="the K most populous cities get cardholders (default 10)",
        )
        grow.add_argument("--holders", type=int, default=300, help="cardholders per large city (default 300)")

    def handle(self, *args, **opts):
        getattr(self, f"_{opts['action']}")(opts)

    def _create(self, opts):
        tenant = services.tenant_create(
            code=opts["code"],
            division_code=opts["division"],
            name_zh=opts.get("name_zh"),
            name_en=opts.get("name_en"),
            parent_code=opts.get("parent"),
            actor=self.actor,
        )
        self.stdout.write(
            gettext("created %(kind)s %(tenant)s (%(name_zh)s %(name_en)s, %(division)s) at %(domain)s")
            % {
                "kind": tenant.get_kind_display(),
                "tenant": tenant.code,
                "name_zh": tenant.name_zh,
                "name_en": tenant.name_en,
                "division": tenant.division_code,
                "domain": services.tenant_domain_name(tenant.code),
            }
        )

    def _list(self, opts):
        tenants = list(selectors.tenant_list())
        if opts["json"]:
            rows = [self._row(t) for t in tenants]
            self.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        table = Table(title=gettext("%(tenants)s tenants") % {"tenants": len(tenants)})
        for col in (
            gettext("code"),
            gettext("name"),
            gettext("division"),
            gettext("kind"),
            gettext("city"),
            gettext("networks"),
            gettext("status"),
            gettext("domain"),
        ):
            table.add_column(col)
        for t in tenants:
            row = self._row(t)
            table.add_row(
                row["code"],
                f"{row['name_zh']} {row['name_en']}",
                row["division_code"],
                labelled(TenantKind, row["kind"]),
                row["parent"] or "",
                ",".join(row["networks"]),
                labelled(TenantStatus, row["status"]),
                row["domain"] or "",
            )
        Console(file=self.stdout, width=160).print(table)

    @staticmethod
    def _row(t) -> dict:
        return {
            "code": t.code,
            "name_zh": t.name_zh,
            "name_en": t.name_en,
            "division_code": t.division_code,
            "province": t.province,
            "kind": t.kind,
            "parent": t.parent.code if t.parent else None,
            "status": t.status,
            # A county roams through its city's memberships (prefetched with the parent by tenant_list).
            "networks": sorted(
                m.network.code for m in (t.parent or t).memberships.all() if m.left_on is None
            ),
            "domain": next((d.domain for d in t.domains.all() if d.is_primary), None),
        }

    def _show(self, opts):
        tenant = selectors.tenant_by_code(opts["code"])
        if tenant is None:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["code"]})
        row = self._row(selectors.tenant_list().get(pk=tenant.pk))
        row["roams_in"] = [n.code for n in selectors.tenant_networks(tenant=tenant)]
        self.stdout.write(json.dumps(row, ensure_ascii=False, indent=2))

    def _scale(self, opts):
        total = len(scale.country_divisions())
        if opts.get("limit") is not None:
            total = min(total, opts["limit"])
        done = 0
        window: list[float] = []

        def progress(division, tenant, seconds):
            nonlocal done
            done += 1
            if seconds is not None:
                window.append(seconds)
            if done % 100 == 0 or done == total:
                median = f"{statistics.median(window):.3f}s" if window else "-"
                self.stdout.write(
                    gettext(
                        "[%(done)s/%(total)s] %(division)s %(name)s: %(created)s created, median %(median)s a tenant"
                    )
                    % {
                        "done": done,
                        "total": total,
                        "division": division.code,
                        "name": division.name_zh,
                        "created": len(window),
                        "median": median,
                    }
                )
                window.clear()

        report = scale.country_build(
            limit=opts.get("limit"),
            largest=opts["cardholders_in_largest"],
            holders=opts["holders"],
            actor=self.actor,
            progress=progress,
        )
        self.stdout.write(
            gettext("created %(created)s tenants, %(skipped)s already there; cardholders in %(cities)s")
            % {
                "created": len(report.created),
                "skipped": report.skipped,
                "cities": ", ".join(report.populated) or gettext("no city"),
            }
        )

    def _suspend(self, opts):
        tenant = services.tenant_suspend(code=opts["code"], reason=opts["reason"], actor=self.actor)
        self.stdout.write(
            gettext("suspended %(tenant)s: %(status_reason)s")
            % {"tenant": tenant.code, "status_reason": tenant.status_reason}
        )

    def _activate(self, opts):
        tenant = services.tenant_activate(code=opts["code"], actor=self.actor)
        self.stdout.write(gettext("activated %(tenant)s") % {"tenant": tenant.code})
