"""`citycard fares quote|validate|publish|export|import-gtfs|export-gtfs --tenant CODE …`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.key_publication import terminal_keys
from citycard.platform.management.base import PlatformCommand
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.fares import selectors, services
from citycard.terminal_kit.beijing import BEIJING
from citycard.terminal_kit.money import yuan


def _at(text: str | None) -> dt.datetime:
    if not text:
        return dt.datetime.now(BEIJING)
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise DomainError(f"--at {text!r} is not a date and time like 2026-11-23 08:10", field="at") from exc
    return at if at.tzinfo else at.replace(tzinfo=BEIJING)


class Command(PlatformCommand):
    help = "Fare rules (优惠规则): quote a trip with its trace, validate, publish, export, GTFS-Fares v2."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        quote = sub.add_parser("quote", help="price one trip with the published rules and show why")
        quote.add_argument("--route", required=True)
        quote.add_argument("--service", default="bus")
        quote.add_argument("--at", help='local time, e.g. "2026-11-23 08:10" (default: now)')
        quote.add_argument("--card-category", action="append", default=[], help="elderly, student, disabled…")
        quote.add_argument("--scheme", default="01", help="card scheme code 01-04 (default 01 main card)")
        quote.add_argument("--issuer", help="issuer division code (default: the tenant's city: a local card)")
        quote.add_argument("--pass", dest="passes", action="append", default=[], help="e.g. monthly")
        quote.add_argument("--draft", action="store_true", help="use the unpublished rule rows")
        validate = sub.add_parser("validate", help="list every problem of the draft rules")
        publish = sub.add_parser("publish", help="sign and publish the rules as the next version")
        publish.add_argument("--effective-from", help="when the version takes effect (default now)")
        export = sub.add_parser("export", help="write the signed rule document a terminal loads")
        export.add_argument("--out", required=True, help="the signed document (JSON)")
        export.add_argument(
            "--keys-out",
            help="the public keys (JSON) the tenant's terminals verify with: rules, acknowledgements, hotlists",
        )
        imp = sub.add_parser("import-gtfs", help="replace the rules with a GTFS-Fares v2 feed's (dir or zip)")
        imp.add_argument("path")
        imp.add_argument(
            "--rate",
            action="append",
            default=[],
            metavar="CUR=YUAN",
            help="convert amounts in another currency at this rate (yuan per unit), e.g. --rate USD=7.10",
        )
        exp = sub.add_parser("export-gtfs", help="write the rules as GTFS-Fares v2 files")
        exp.add_argument("path")
        for each in (quote, validate, publish, export, imp, exp):  # `citycard fares quote --tenant …`
            each.add_argument("--tenant", required=True, help="tenant code (a county uses its city's rules)")

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None:
            raise NotFound(f"no tenant {opts['tenant']!r}", field="tenant")
        with tenant_context(tenant):
            getattr(self, "_" + opts["action"].replace("-", "_"))(tenant, opts)

    def _quote(self, tenant, opts):
        result = selectors.fares_quote(
            tenant=tenant,
            service=opts["service"],
            route=opts["route"],
            at=_at(opts["at"]),
            categories=opts["card_category"],
            scheme=opts["scheme"],
            issuer=opts["issuer"],
            passes=opts["passes"],
            draft=opts["draft"],
        )
        quote = result.quote
        source = "draft rules" if result.version is None else f"{result.owner} rules v{result.version}"
        self.stdout.write(
            f"fare {quote.fare_fen} fen ({yuan(quote.fare_fen)}), base {quote.base_fen} fen, "
            f"rule {quote.rule_id} — {source}"
        )
        self.stdout.write(
            "matched: " + (", ".join(quote.matched) or "none") + f"; winner: {quote.winner or 'none'}"
        )
        for line in quote.trace:
            self.stdout.write(f"  {line}")

    def _validate(self, tenant, opts):
        problems = selectors.fares_validate(tenant=tenant)
        for problem in problems:
            self.stdout.write(f"  {problem}")
        if problems:
            raise CommandError(f"{len(problems)} problem(s): the rules would not publish")
        self.stdout.write("the rules are valid")

    def _publish(self, tenant, opts):
        effective = _at(opts["effective_from"]) if opts["effective_from"] else None
        publication = services.fares_publish(tenant=tenant, actor=self.actor, effective_from=effective)
        self.stdout.write(
            f"published {tenant.code} fare_rules v{publication.version} "
            f"(effective {publication.document['payload'].get('effective_from')}, sha256 {publication.sha256[:16]}…)"
        )

    def _export(self, tenant, opts):
        publication, _engine = selectors.fares_published(tenant=tenant)
        Path(opts["out"]).write_text(json.dumps(publication.document, ensure_ascii=False) + "\n")
        self.stdout.write(
            f"wrote {publication.tenant.code} fare_rules v{publication.version} to {opts['out']}"
        )
        if opts["keys_out"]:
            # What the tenant's terminal verifies: the rules (its city's, for a county), and its own
            # acknowledgements and hotlists.
            keys = {e["key_id"]: e["public_key"] for e in terminal_keys(tenant=tenant)}
            Path(opts["keys_out"]).write_text(json.dumps(keys) + "\n")
            self.stdout.write(f"wrote {len(keys)} keys of {tenant.code}'s terminals to {opts['keys_out']}")

    def _import_gtfs(self, tenant, opts):
        rates = {}
        for given in opts.get("rate") or []:
            code, _, value = given.partition("=")
            if not value:
                raise CommandError(f"--rate {given!r}: write CURRENCY=RATE, e.g. USD=7.10")
            rates[code.strip().upper()] = value.strip()
        counts, notes = services.fares_import_gtfs(
            tenant=tenant, path=opts["path"], actor=self.actor, rates=rates
        )
        self.stdout.write("imported: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for note in notes:
            self.stdout.write(f"  note: {note}")
        self.stdout.write("review in the admin, then: citycard fares publish --tenant …")

    def _export_gtfs(self, tenant, opts):
        files = selectors.fares_export_gtfs(tenant=tenant, path=opts["path"])
        self.stdout.write(f"wrote {len(files)} files to {opts['path']}: {', '.join(files)}")
