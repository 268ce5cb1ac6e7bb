"""`citycard cards --tenant CODE import FILE | schemes [--seed] [--publish] | reencrypt | hotlist
| report-lost CARD [--reason lost|stolen] | access-log (--cardholder ID | --card NUMBER | --id-number ID)
| test-keys --out FILE`."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from citycard.platform.errors import NotFound
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.cards import batch, selectors, services


class Command(PlatformCommand):
    help = "Card schemes, batch issuance and the hotlist of a tenant (卡种、批量制卡、黑名单)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code")
        sub = parser.add_subparsers(dest="action", required=True)
        imp = sub.add_parser(
            "import", help="import card applications from a CSV (bad rows reported, re-runs safe)"
        )
        imp.add_argument("file")
        imp.add_argument("--state", default="applied", choices=["applied", "issued", "active"])
        imp.add_argument("--batch", help="batch name recorded on the cards (default: the file name)")
        imp.add_argument("--errors", metavar="PATH", help="also write the bad rows (line, reason) to PATH")
        imp.add_argument(
            "--encoding",
            choices=["utf-8", "gb18030", "gbk"],
            help="the file's encoding (default: UTF-8 with or without BOM if it reads as such, else GB18030)",
        )
        imp.add_argument(
            "--cards-out",
            metavar="PATH",
            help="write the new card numbers (line, name, ID, scheme, card) here (default: FILE.cards.csv)",
        )
        sch = sub.add_parser("schemes", help="list the card schemes (a county sees its city's)")
        sch.add_argument("--seed", action="store_true", help="add the four standard schemes (city only)")
        sch.add_argument("--publish", action="store_true", help="sign and publish them for the counties")
        sub.add_parser("reencrypt", help="move personal data to the current data key after a rotation")
        hot = sub.add_parser("hotlist", help="the hotlist's version and cards")
        hot.add_argument("--publish", action="store_true", help="sign and publish it for the network")
        keys = sub.add_parser(
            "test-keys",
            help="export the keys of this issuer's test cards, for citycard-terminal simulate (not in production)",
        )
        keys.add_argument("--out", required=True, metavar="PATH", help="the JSON file to write (mode 0600)")
        lost = sub.add_parser(
            "report-lost", help="report a registered card lost (挂失): frozen, on the hotlist"
        )
        lost.add_argument("card", help="the card number")
        lost.add_argument("--reason", default="lost", choices=["lost", "stolen"])
        log = sub.add_parser("access-log", help="who read a cardholder's data, under which grant or key")
        who = log.add_mutually_exclusive_group(required=True)
        who.add_argument("--cardholder", type=int, help="the cardholder's number")
        who.add_argument("--card", help="a card number of the cardholder")
        who.add_argument("--id-number", help="the cardholder's ID number (looked up through the blind index)")

    def _access_log(self, tenant, console, opts):
        holder = selectors.cardholder_find(
            cardholder_id=opts.get("cardholder"), card_no=opts.get("card"), id_number=opts.get("id_number")
        )
        services.cardholder_read_record(
            cardholder_id=holder.pk,
            actor=self.actor,
            page="command: cards access-log",
            fields=["name", "id_masked"],
        )
        reads = selectors.cardholder_access_log(cardholder_id=holder.pk)
        table = Table(
            gettext("when"),
            gettext("who"),
            gettext("through"),
            gettext("under"),
            gettext("fields"),
            gettext("why / what"),
            title=gettext("Access log of cardholder %(holder)s %(name)s %(id_masked)s")
            % {"holder": holder.pk, "name": holder.name, "id_masked": holder.id_masked},
        )
        for read in reads:
            table.add_row(
                beijing(read.at, seconds=True),
                read.reader,
                read.channel,
                read.under,
                ", ".join(read.fields),
                read.purpose,
            )
        console.print(table)
        console.print(gettext("%(reads)s reads") % {"reads": len(reads)})

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        console = Console(file=self.stdout, width=120)
        with tenant_context(tenant):
            getattr(self, f"_{opts['action'].replace('-', '_')}")(tenant, console, opts)

    def _import(self, tenant, console, opts):
        with Progress(
            TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task("import", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = batch.cards_import(
                path=Path(opts["file"]),
                state=opts["state"],
                batch=opts.get("batch"),
                actor=self.actor,
                progress=progress,
                encoding=opts.get("encoding"),
            )
        summary = report.as_dict()
        console.print(gettext("read as %(upper)s") % {"upper": report.encoding.upper()})
        console.print(
            gettext(
                "%(rows)s rows: %(holders_created)s cardholders created, %(holders_existing)s already "
                "registered; %(cards_created)s cards created, %(cards_existing)s already held; "
                "%(bad)s bad rows"
            )
            % {
                "rows": summary["rows"],
                "holders_created": summary["holders_created"],
                "holders_existing": summary["holders_existing"],
                "cards_created": summary["cards_created"],
                "cards_existing": summary["cards_existing"],
                "bad": summary["errors"],
            }
        )
        if report.errors:
            table = Table(gettext("line"), gettext("reason"), title=gettext("Bad rows (not imported)"))
            for line, reason in report.errors[:50]:
                table.add_row(str(line), reason)
            console.print(table)
            if len(report.errors) > 50:
                console.print(gettext("… and %(errors)s more") % {"errors": len(report.errors) - 50})
        if opts.get("errors"):
            Path(opts["errors"]).write_text(
                "line,reason\n" + "".join(f'{line},"{reason}"\n' for line, reason in report.errors),
                encoding="utf-8",
            )
        source = Path(opts["file"])
        cards_out = Path(opts.get("cards_out") or source.with_name(f"{source.stem}.cards.csv"))
        batch.cards_write(cards_out, report.new_cards)
        console.print(
            gettext("%(new_cards)s new card numbers written to %(cards_out)s")
            % {"new_cards": len(report.new_cards), "cards_out": cards_out}
        )
        if report.errors:
            raise CommandError(
                gettext("%(errors)s of %(rows)s rows refused (listed above); the other rows were applied")
                % {"errors": len(report.errors), "rows": report.rows},
                returncode=1,
            )

    def _schemes(self, tenant, console, opts):
        if opts["seed"]:
            services.schemes_seed(actor=self.actor)
        if opts["publish"]:
            publication = services.schemes_publish(actor=self.actor)
            console.print(
                gettext("published card-schemes version %(version)s") % {"version": publication.version}
            )
        table = Table(
            gettext("code"),
            gettext("name"),
            gettext("main"),
            gettext("eligibility"),
            gettext("applications"),
            gettext("fee (yuan)"),
            gettext("replacement (yuan)"),
            gettext("years"),
        )
        for s in selectors.schemes_visible(tenant=tenant):
            table.add_row(
                s["code"],
                s["name_zh"],
                "yes" if s["is_main"] else "",
                ", ".join(s["eligibility"]),
                ", ".join(s["applications"]),
                f"{s['card_fee_fen'] / 100:.2f}",
                f"{s['replacement_fee_fen'] / 100:.2f}",
                str(s["validity_years"]),
            )
        console.print(table)

    def _reencrypt(self, tenant, console, opts):
        total = 0
        while moved := services.cardholder_pii_reencrypt(actor=self.actor):
            total += moved
        console.print(
            gettext("%(total)s cardholders re-encrypted under the current data key") % {"total": total}
        )

    def _test_keys(self, tenant, console, opts):
        document = services.card_test_keys_export(actor=self.actor)
        out = Path(opts["out"])
        out.touch(mode=0o600)
        out.chmod(0o600)
        out.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        console.print(
            gettext(
                "the test-card keys of %(tenant)s (cards %(document)s…) written to %(out)s; they "
                "include the issuer's TAC master: keep the file as a key"
            )
            % {"tenant": tenant.code, "document": ", ".join(document["divisions"]), "out": out}
        )

    def _report_lost(self, tenant, console, opts):
        card = services.card_report_lost(card_no=opts["card"], actor=self.actor, reason=opts["reason"])
        console.print(
            gettext("card %(card)s reported %(reason)s at %(frozen_at)s: frozen, on the hotlist")
            % {"card": card.card_no, "reason": opts["reason"], "frozen_at": beijing(card.frozen_at)}
        )

    def _hotlist(self, tenant, console, opts):
        if opts.get("publish"):
            publication = services.hotlist_publish(actor=self.actor)
            console.print(
                gettext("published hotlist as publication version %(version)s")
                % {"version": publication.version}
            )
        payload = selectors.hotlist_payload()
        console.print(
            gettext("hotlist version %(version)s: %(count)s cards")
            % {"version": payload["version"], "count": len(payload["cards"])}
        )
        for card_no in payload["cards"][:100]:
            console.print(card_no)
