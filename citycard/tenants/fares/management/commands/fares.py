"""`citycard fares quote|validate|publish|export|import-gtfs|export-gtfs --tenant CODE …`, and the metro's
rows: `citycard fares stations|areas|lines|fare-table|gate-rules … --tenant CODE`."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.management.base import CommandError
from django.utils.translation import gettext
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
        raise DomainError(
            gettext("--at %(value)r is not a date and time like 2026-11-23 08:10") % {"value": text},
            field="at",
        ) from exc
    return at if at.tzinfo else at.replace(tzinfo=BEIJING)


def _fen(text: str, option: str) -> int:
    """An amount given in yuan (people's unit) as integer fen."""
    try:
        value = Decimal(text) * 100
    except InvalidOperation as exc:
        raise DomainError(
            gettext("--%(option)s %(value)r is not an amount in yuan") % {"option": option, "value": text},
            field=option,
        ) from exc
    if value != value.to_integral_value() or value < 0:
        raise DomainError(
            gettext("--%(option)s %(value)r is not a whole number of fen")
            % {"option": option, "value": text},
            field=option,
        )
    return int(value)


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
        tenanted = [quote, validate, publish, export, imp, exp]
        # the metro's rows (进出站计费): each group with its own actions
        stations = sub.add_parser("stations", help="stations (车站) gates name").add_subparsers(
            dest="what", required=True
        )
        st_add = stations.add_parser("add", help="add a station")
        st_add.add_argument("code")
        st_add.add_argument("--name", default="")
        st_add.add_argument("--lat", default="", help="decimal degrees, as GTFS stop_lat")
        st_add.add_argument("--lon", default="", help="decimal degrees, as GTFS stop_lon")
        st_list = stations.add_parser("list", help="list the stations")
        areas = sub.add_parser("areas", help="fare areas (票区)").add_subparsers(dest="what", required=True)
        ar_set = areas.add_parser("set", help="create or replace an area's stations")
        ar_set.add_argument("code")
        ar_set.add_argument("--stations", required=True, help="station codes, comma separated")
        ar_set.add_argument("--name", default="")
        ar_list = areas.add_parser("list", help="list the areas")
        lines = sub.add_parser("lines", help="lines and their stations' distances").add_subparsers(
            dest="what", required=True
        )
        ln_set = lines.add_parser("set", help="create or replace a line")
        ln_set.add_argument("code", help="the route the line's terminals are set to")
        ln_set.add_argument("--stops", required=True, help="CODE:METRES in line order, comma separated")
        ln_set.add_argument("--service", default="metro")
        ln_set.add_argument("--name", default="")
        ln_list = lines.add_parser("list", help="list the lines")
        tables = sub.add_parser("fare-table", help="fare tables (里程计价表, 站间票价表)").add_subparsers(
            dest="what", required=True
        )
        tb_imp = tables.add_parser("import", help="create or replace a fare table from a CSV in yuan")
        tb_imp.add_argument("code")
        tb_imp.add_argument(
            "path", help="CSV: 'up to,fare' bands (km or stations), or a station x station matrix"
        )
        tb_imp.add_argument("--name", default="")
        tb_imp.add_argument(
            "--beyond-every", type=int, default=0, help="beyond the last band: every N km/stations"
        )
        tb_imp.add_argument("--beyond-add-yuan", default="0", help="beyond the last band: add this much")
        tb_list = tables.add_parser("list", help="list the fare tables")
        gates = sub.add_parser("gate-rules", help="gate rules (进出站规则)").add_subparsers(
            dest="what", required=True
        )
        gt_show = gates.add_parser("show", help="show the gate rules")
        gt_set = gates.add_parser("set", help="set the gate rules of a service (given fields only)")
        gt_set.add_argument("--service", default="metro")
        gt_set.add_argument("--entry-yuan", help="debited at the entry (a deposit the exit takes off)")
        gt_set.add_argument("--time-limit-minutes", type=int, help="longest journey before the fare below")
        gt_set.add_argument("--incomplete-yuan", help="fare of a journey with no exit within the limit")
        gt_set.add_argument("--no-entry-yuan", help="fare of an exit without an entry")
        gt_set.add_argument("--same-station-minutes", type=int, help="out at the entry station within …")
        gt_set.add_argument("--same-station-yuan", help="… pays this")
        tenanted += [st_add, st_list, ar_set, ar_list, ln_set, ln_list, tb_imp, tb_list, gt_show, gt_set]
        for each in tenanted:  # `citycard fares quote --tenant …`
            each.add_argument("--tenant", required=True, help="tenant code (a county uses its city's rules)")

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        with tenant_context(tenant):
            name = opts["action"] + (f"_{opts['what']}" if opts.get("what") else "")
            getattr(self, "_" + name.replace("-", "_"))(tenant, opts)

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
        source = (
            gettext("draft rules")
            if result.version is None
            else gettext("%(owner)s rules v%(version)s") % {"owner": result.owner, "version": result.version}
        )
        self.stdout.write(
            gettext("fare %(fare_fen)s fen (%(fare)s), base %(base_fen)s fen, rule %(rule)s — %(source)s")
            % {
                "fare_fen": quote.fare_fen,
                "fare": yuan(quote.fare_fen),
                "base_fen": quote.base_fen,
                "rule": quote.rule_id,
                "source": source,
            }
        )
        self.stdout.write(
            gettext("matched: %(matched)s; winner: %(winner)s")
            % {
                "matched": ", ".join(quote.matched) or gettext("none"),
                "winner": quote.winner or gettext("none"),
            }
        )
        for line in quote.trace:
            self.stdout.write(f"  {line}")

    def _validate(self, tenant, opts):
        problems = selectors.fares_validate(tenant=tenant)
        for problem in problems:
            self.stdout.write(f"  {problem}")
        if problems:
            raise CommandError(
                gettext("%(count)s problem(s): the rules would not publish") % {"count": len(problems)}
            )
        self.stdout.write(gettext("the rules are valid"))

    def _publish(self, tenant, opts):
        effective = _at(opts["effective_from"]) if opts["effective_from"] else None
        publication = services.fares_publish(tenant=tenant, actor=self.actor, effective_from=effective)
        self.stdout.write(
            gettext(
                "published %(tenant)s fare_rules v%(version)s (effective %(effective)s, sha256 %(digest)s…)"
            )
            % {
                "tenant": tenant.code,
                "version": publication.version,
                "effective": publication.document["payload"].get("effective_from"),
                "digest": publication.sha256[:16],
            }
        )

    def _export(self, tenant, opts):
        publication, _engine = selectors.fares_published(tenant=tenant)
        Path(opts["out"]).write_text(json.dumps(publication.document, ensure_ascii=False) + "\n")
        self.stdout.write(
            gettext("wrote %(tenant)s fare_rules v%(version)s to %(path)s")
            % {"tenant": publication.tenant.code, "version": publication.version, "path": opts["out"]}
        )
        if opts["keys_out"]:
            # What the tenant's terminal verifies: the rules (its city's, for a county), and its own
            # acknowledgements and hotlists.
            keys = {e["key_id"]: e["public_key"] for e in terminal_keys(tenant=tenant)}
            Path(opts["keys_out"]).write_text(json.dumps(keys) + "\n")
            self.stdout.write(
                gettext("wrote %(count)s keys of %(tenant)s's terminals to %(path)s")
                % {"count": len(keys), "tenant": tenant.code, "path": opts["keys_out"]}
            )

    def _import_gtfs(self, tenant, opts):
        rates = {}
        for given in opts.get("rate") or []:
            code, _, value = given.partition("=")
            if not value:
                raise CommandError(
                    gettext("--rate %(value)r: write CURRENCY=RATE, e.g. USD=7.10") % {"value": given}
                )
            rates[code.strip().upper()] = value.strip()
        counts, notes = services.fares_import_gtfs(
            tenant=tenant, path=opts["path"], actor=self.actor, rates=rates
        )
        self.stdout.write(
            gettext("imported: %(counts)s") % {"counts": ", ".join(f"{k} {v}" for k, v in counts.items())}
        )
        for note in notes:
            self.stdout.write("  " + gettext("note: %(note)s") % {"note": note.translated()})
        self.stdout.write(gettext("review in the admin, then: citycard fares publish --tenant …"))

    def _export_gtfs(self, tenant, opts):
        files = selectors.fares_export_gtfs(tenant=tenant, path=opts["path"])
        self.stdout.write(
            gettext("wrote %(count)s files to %(path)s: %(files)s")
            % {"count": len(files), "path": opts["path"], "files": ", ".join(files)}
        )

    # --- the metro's rows ---------------------------------------------------------------------------

    def _stations_add(self, tenant, opts):
        fields = {"code": opts["code"], "name": opts["name"], "lat": opts["lat"], "lon": opts["lon"]}
        stop = services.stop_create(tenant=tenant, actor=self.actor, fields=fields)
        self.stdout.write(
            (
                gettext("added station %(station)s %(name)s") % {"station": stop.code, "name": stop.name}
            ).rstrip()
        )

    def _stations_list(self, tenant, opts):
        for stop in selectors.stations_list():
            where = f" ({stop.lat}, {stop.lon})" if stop.lat else ""
            self.stdout.write(f"{stop.code}  {stop.name}{where}")

    def _areas_set(self, tenant, opts):
        fields = {
            "name": opts["name"],
            "stops": [s.strip() for s in opts["stations"].split(",") if s.strip()],
        }
        if any(a.code == opts["code"] for a in selectors.areas_list()):
            area = services.area_change(tenant=tenant, actor=self.actor, code=opts["code"], changes=fields)
        else:
            area = services.area_create(
                tenant=tenant, actor=self.actor, fields={"code": opts["code"], **fields}
            )
        self.stdout.write(
            gettext("area %(area)s: %(count)s stations") % {"area": area.code, "count": len(area.stops)}
        )

    def _areas_list(self, tenant, opts):
        for area in selectors.areas_list():
            self.stdout.write(f"{area.code}  {area.name}: {', '.join(area.stops)}")

    def _lines_set(self, tenant, opts):
        stops = []
        for item in opts["stops"].split(","):
            code, _, metres = item.strip().rpartition(":")
            if not code or not metres.isdigit():
                raise CommandError(
                    gettext("--stops %(value)r: write STATION:METRES, e.g. hz-1-02:2100") % {"value": item}
                )
            stops.append([code, int(metres)])
        fields = {"name": opts["name"], "service": opts["service"], "stops": stops}
        if any(line.code == opts["code"] for line in selectors.lines_list()):
            line = services.line_change(tenant=tenant, actor=self.actor, code=opts["code"], changes=fields)
        else:
            line = services.line_create(
                tenant=tenant, actor=self.actor, fields={"code": opts["code"], **fields}
            )
        self.stdout.write(
            gettext("line %(line)s: %(count)s stations, %(km)s km")
            % {"line": line.code, "count": len(line.stops), "km": f"{line.stops[-1][1] / 1000:g}"}
        )

    def _lines_list(self, tenant, opts):
        for line in selectors.lines_list():
            self.stdout.write(
                f"{line.code} ({line.service})  {line.name}: "
                + ", ".join(f"{code} {metres / 1000:g} km" for code, metres in line.stops)
            )

    def _fare_table_import(self, tenant, opts):
        table = services.fare_table_import_csv(
            tenant=tenant,
            actor=self.actor,
            code=opts["code"],
            text=Path(opts["path"]).read_text(encoding="utf-8-sig"),
            name=opts["name"],
            beyond_every=opts["beyond_every"],
            beyond_add_fen=_fen(opts["beyond_add_yuan"], "beyond-add-yuan"),
        )
        self.stdout.write(
            gettext("fare table %(table)s (%(measure)s): %(rows)s rows")
            % {"table": table.code, "measure": table.measure, "rows": len(table.rows)}
        )
        self._table_show(table)
        self.stdout.write(
            gettext("check a fare with: citycard fares quote --draft …; then citycard fares publish")
        )

    def _fare_table_list(self, tenant, opts):
        for table in selectors.fare_tables_list():
            self.stdout.write(f"{table.code} ({table.measure}) {table.name}")
            self._table_show(table)

    def _table_show(self, table):
        if table.measure == "od":
            for origin, destination, fen in table.rows[:20]:
                self.stdout.write(f"  {origin} -> {destination}: {yuan(fen)}")
            if len(table.rows) > 20:
                self.stdout.write("  " + gettext("… %(count)s more pairs") % {"count": len(table.rows) - 20})
            return
        unit = gettext("km") if table.measure == "km" else gettext("stations")
        for up_to, fen in table.rows:
            self.stdout.write(
                "  "
                + gettext("up to %(up_to)s %(unit)s: %(fare)s")
                % {"up_to": up_to, "unit": unit, "fare": yuan(fen)}
            )
        if table.beyond_every:
            self.stdout.write(
                "  "
                + gettext("beyond: %(add)s more every %(every)s %(unit)s")
                % {"add": yuan(table.beyond_add_fen), "every": table.beyond_every, "unit": unit}
            )

    def _gate_rules_show(self, tenant, opts):
        rules = selectors.gate_rules_list()
        if not rules:
            self.stdout.write(gettext("no gate rules"))
        for g in rules:
            self.stdout.write(
                gettext(
                    "%(service)s: entry %(entry)s; no exit within %(limit)s min: %(incomplete)s; exit without an "
                    "entry: %(no_entry)s; out at the entry station within %(same_minutes)s min: %(same_station)s"
                )
                % {
                    "service": g.service,
                    "entry": yuan(g.entry_fen),
                    "limit": g.time_limit_minutes,
                    "incomplete": yuan(g.incomplete_fen),
                    "no_entry": yuan(g.no_entry_fen),
                    "same_minutes": g.same_station_minutes,
                    "same_station": yuan(g.same_station_fen),
                }
            )

    def _gate_rules_set(self, tenant, opts):
        changes = {}
        for option, field in (
            ("entry_yuan", "entry_fen"),
            ("incomplete_yuan", "incomplete_fen"),
            ("no_entry_yuan", "no_entry_fen"),
            ("same_station_yuan", "same_station_fen"),
        ):
            if opts[option] is not None:
                changes[field] = _fen(opts[option], option.replace("_", "-"))
        for field in ("time_limit_minutes", "same_station_minutes"):
            if opts[field] is not None:
                changes[field] = opts[field]
        services.gate_rule_set(tenant=tenant, actor=self.actor, service=opts["service"], changes=changes)
        self._gate_rules_show(tenant, opts)
