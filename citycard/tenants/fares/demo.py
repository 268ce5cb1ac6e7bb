"""Demo step: the demo cities get the seed rules and publish them; counties use their city's."""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.table import Table

from citycard.tenants.fares import seeds, selectors, services
from citycard.tenants.fares.models import FareProduct, Stop
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.fares import KIND
from citycard.terminal_kit.money import yuan

# Fixed, so the demo's documents are the same on every run (re-publishing identical rules is a no-op).
EFFECTIVE_FROM = dt.datetime(2026, 1, 1, tzinfo=BEIJING)


def demo_step(ctx) -> None:
    table = Table(title=gettext("Fare rules (published, signed)"))
    for col in (
        gettext("tenant"),
        gettext("rules of"),
        gettext("version"),
        gettext("products"),
        gettext("leg rules"),
        gettext("transfers"),
        gettext("caps"),
        gettext("example"),
    ):
        table.add_column(col)
    for code, tenant in ctx.tenants.items():
        with tenant_context(tenant):
            if tenant.kind == "city":
                if not FareProduct.objects.exists():  # first run: the seeds; later runs keep admin edits
                    seed = seeds.SEEDS.get(code, seeds.GENERIC)
                    services.fares_document_load(tenant=tenant, document=seed, actor="demo")
                if code in seeds.METROS and not Stop.objects.exists():  # metro line 1, its distance table
                    services.fares_stations_add(tenant=tenant, fragment=seeds.METROS[code], actor="demo")
                first = not tenant.publications.filter(kind=KIND).exists()
                services.fares_publish(
                    tenant=tenant, actor="demo", effective_from=EFFECTIVE_FROM if first else None
                )
            publication, engine = selectors.fares_published(tenant=tenant)
            example = selectors.fares_quote(
                tenant=tenant, route="1", at=dt.datetime(2026, 11, 23, 8, 10, tzinfo=EFFECTIVE_FROM.tzinfo)
            ).quote
            rules = engine.rules
            table.add_row(
                code,
                publication.tenant.code,
                str(publication.version),
                str(len(rules.products)),
                str(len(rules.leg_rules)),
                str(len(rules.transfer_rules)),
                str(len(rules.caps)),
                gettext("route %(route)s, main card: %(fare)s (%(rule)s)")
                % {"route": "1", "fare": yuan(example.fare_fen), "rule": example.rule_id},
            )
    ctx.console.print(table)
    ctx.console.print(
        gettext("Try: %(command)s")
        % {
            "command": "citycard fares quote --tenant hangzhou --card-category elderly --route 155 "
            "--at '2026-11-23 08:10'"
        }
    )
