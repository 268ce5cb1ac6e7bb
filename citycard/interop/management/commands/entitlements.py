"""`citycard entitlements --tenant CODE types | type-create | approve | withdraw | grant | grant-batch | revoke | buy
| show | check | code | list-version`, and `citycard entitlements recognise --network yrd TYPE…` (权益).

Thin over citycard.tenants.entitlements (a tenant's types, grants and acceptance) and
citycard.interop.entitlements (what a roaming network recognises; visitors' cards and codes)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from django.core.management.base import CommandError
from django.db import connection
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.interop.entitlements import (
    acceptance_decide_anywhere,
    entitlement_recognition_set,
    visitor_lists_sync,
)
from citycard.platform.errors import NotFound
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.models import User
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.cards.selectors import cardholder_find
from citycard.tenants.entitlements import selectors, services
from citycard.tenants.entitlements.acceptance import citizen_code_issue


def _list(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


class Command(PlatformCommand):
    help = "Entitlements (权益) departments load onto cards, and their acceptance at service points."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="tenant code (every action but recognise)")
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("types", help="the entitlement types, their owners, prices, quotas and approval")
        new = sub.add_parser("type-create", help="a department defines a type (it then awaits approval)")
        new.add_argument("code")
        new.add_argument("--name", required=True)
        new.add_argument("--department", required=True, help="the owning department's code")
        new.add_argument("--categories", help="eligible rider categories, comma-separated (e.g. elderly)")
        new.add_argument("--age-min", type=int)
        new.add_argument("--age-max", type=int)
        new.add_argument("--residence", help="local_hukou, local_social_insurance, residence_permit (any of)")
        new.add_argument("--schemes", help="card scheme codes, comma-separated")
        new.add_argument("--valid-from", type=dt.date.fromisoformat)
        new.add_argument("--valid-to", type=dt.date.fromisoformat)
        new.add_argument("--period-days", type=int, help="how long a bought one is valid")
        new.add_argument("--quota", type=int, help="uses per --per period (omit: unlimited)")
        new.add_argument("--per", choices=["day", "month", "year"], help="the quota's period")
        new.add_argument("--price-fen", type=int, default=0, help="price when bought, in fen (0: not sold)")
        new.add_argument("--service-points", required=True, help="codes of the accepting service points")
        new.add_argument(
            "--auto", action="store_true", help="grant automatically to every eligible cardholder"
        )
        new.add_argument(
            "--as",
            dest="as_user",
            required=True,
            help="the acting user: this tenant's administrator or the department's officer",
        )
        ok = sub.add_parser("approve", help="the administrator approves a type (审批)")
        ok.add_argument("code")
        ok.add_argument(
            "--as",
            dest="as_user",
            required=True,
            help="the acting user: this tenant's administrator (a department officer cannot approve)",
        )
        wd = sub.add_parser("withdraw", help="stop a type (停用): no new grants, no acceptance")
        wd.add_argument("code")
        wd.add_argument("--reason", required=True)
        grant = sub.add_parser("grant", help="grant a type to a cardholder (eligibility checked)")
        grant.add_argument("code")
        grant.add_argument("--cardholder", type=int, required=True)
        batch = sub.add_parser(
            "grant-batch", help="grant a type to the cardholders listed in a file (one id a line)"
        )
        batch.add_argument("code")
        batch.add_argument("file")
        rev = sub.add_parser("revoke", help="revoke a grant (撤销)")
        rev.add_argument("entitlement", type=int)
        rev.add_argument("--reason", required=True)
        for granting in (grant, batch, rev):
            granting.add_argument(
                "--as",
                dest="as_user",
                required=True,
                help="the acting user: the type's department's officer or this tenant's administrator",
            )
        buy = sub.add_parser("buy", help="buy a type for a card's holder from the online account")
        buy.add_argument("code")
        buy.add_argument("--card", required=True)
        buy.add_argument("--key", required=True, help="idempotency key: a retry pays nothing again")
        show = sub.add_parser("show", help="a cardholder's entitlements")
        show.add_argument("--card", required=True)
        check = sub.add_parser(
            "check", help="may this card or code use this service point now (yes/no, reason)"
        )
        check.add_argument("--service-point", required=True)
        what = check.add_mutually_exclusive_group(required=True)
        what.add_argument("--card")
        what.add_argument("--code", help="an electronic citizen code (电子市民码)")
        code = sub.add_parser(
            "code", help="issue an electronic citizen code for a card (what the phone shows)"
        )
        code.add_argument("--card", required=True)
        sub.add_parser("list-version", help="the offline entitlement list's version and size")
        rec = sub.add_parser(
            "recognise", help="the types a roaming network's members recognise for each other"
        )
        rec.add_argument("--network", required=True)
        rec.add_argument("types", nargs="*", help="type codes (none: recognise nothing)")
        sub.add_parser(
            "visitors-sync",
            help="take the visitors' entitlements the tenant's networks recognise into its offline list",
        )
        rec.add_argument("--from", dest="valid_from", type=dt.date.fromisoformat, default=dt.date.today())

    def handle(self, *args, **opts):
        action = opts["action"]
        console = Console(file=self.stdout, width=160)
        if action == "recognise":
            codes = entitlement_recognition_set(
                network_code=opts["network"],
                type_codes=opts["types"],
                valid_from=opts["valid_from"],
                actor=self.actor,
            )
            console.print(
                gettext("%(network)s recognises: %(types)s")
                % {"network": opts["network"], "types": ", ".join(codes) or gettext("nothing")}
            )
            return
        if not opts.get("tenant"):
            raise CommandError(gettext("--tenant is required (a tenant code, e.g. --tenant hangzhou)"))
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        with tenant_context(tenant):
            getattr(self, "_" + action.replace("-", "_"))(console, opts)

    def _types(self, console, opts):
        table = Table(
            gettext("code"),
            gettext("name"),
            gettext("department"),
            gettext("status"),
            gettext("price"),
            gettext("quota"),
            gettext("accepted at"),
            gettext("auto"),
        )
        for t in selectors.entitlement_types():
            quota = gettext("unlimited") if t.quota is None else f"{t.quota}/{t.quota_period}"
            table.add_row(
                t.code,
                t.name,
                t.department.code,
                f"{t.get_status_display()} ({t.status})",
                _yuan(t.price_fen) if t.price_fen else "-",
                quota,
                ", ".join(t.service_points),
                gettext("yes") if t.auto_grant else "",
            )
        console.print(table)

    def _acting(self, opts) -> User:
        """The user the command acts as: one of this tenant's users (its role decides what it may do)."""
        user = User.objects.filter(username=opts["as_user"], tenant=connection.tenant).first()
        if user is None:
            raise NotFound(
                gettext("no user %(user)r of %(tenant)s")
                % {"user": opts["as_user"], "tenant": connection.tenant.code},
                field="as",
            )
        return user

    def _visitors_sync(self, console, opts):
        for done in visitor_lists_sync(acquirer=connection.tenant):
            console.print(
                gettext("%(home)s: version %(version)s, %(added)s added, %(removed)s removed")
                % {
                    "home": done["home"],
                    "version": done["version"],
                    "added": done["added"],
                    "removed": done["removed"],
                }
            )

    def _type_create(self, console, opts):
        user = self._acting(opts)
        kind = services.entitlement_type_create(
            code=opts["code"],
            name=opts["name"],
            department=opts["department"],
            categories=_list(opts["categories"]),
            age_min=opts["age_min"],
            age_max=opts["age_max"],
            residence=_list(opts["residence"]),
            schemes=_list(opts["schemes"]),
            valid_from=opts["valid_from"],
            valid_to=opts["valid_to"],
            period_days=opts["period_days"],
            quota_period=opts["per"] or "none",
            quota=opts["quota"],
            price_fen=opts["price_fen"],
            service_points=_list(opts["service_points"]),
            auto_grant=opts["auto"],
            role=user.role,
            role_department=user.department,
            actor=f"user:{user.username}",
        )
        console.print(
            gettext("%(type)s defined by %(department)s; it awaits approval")
            % {"type": kind.code, "department": kind.department.code}
        )

    def _approve(self, console, opts):
        user = self._acting(opts)
        kind = services.entitlement_type_approve(
            code=opts["code"], actor=f"user:{user.username}", role=user.role
        )
        console.print(
            gettext("%(type)s approved by %(user)s") % {"type": kind.code, "user": kind.approved_by}
        )

    def _withdraw(self, console, opts):
        kind = services.entitlement_type_withdraw(code=opts["code"], reason=opts["reason"], actor=self.actor)
        console.print(gettext("%(type)s withdrawn") % {"type": kind.code})

    def _grant(self, console, opts):
        user = self._acting(opts)
        grant = services.entitlement_grant(
            type=opts["code"],
            cardholder_id=opts["cardholder"],
            actor=f"user:{user.username}",
            role=user.role,
            role_department=user.department,
        )
        console.print(
            gettext("entitlement %(entitlement)s: %(type)s from %(start)s to %(end)s")
            % {
                "entitlement": grant.pk,
                "type": opts["code"],
                "start": grant.valid_from,
                "end": grant.valid_to or gettext("open"),
            }
        )

    def _grant_batch(self, console, opts):
        ids = [int(line) for line in Path(opts["file"]).read_text().split() if line.strip()]
        user = self._acting(opts)
        out = services.entitlement_grant_batch(
            type=opts["code"],
            cardholder_ids=ids,
            actor=f"user:{user.username}",
            role=user.role,
            role_department=user.department,
        )
        console.print(", ".join(f"{k}: {len(v)}" for k, v in out.items()))

    def _revoke(self, console, opts):
        user = self._acting(opts)
        grant = services.entitlement_revoke(
            entitlement_id=opts["entitlement"],
            reason=opts["reason"],
            actor=f"user:{user.username}",
            role=user.role,
            role_department=user.department,
        )
        console.print(
            gettext("entitlement %(entitlement)s revoked at %(when)s")
            % {"entitlement": grant.pk, "when": beijing(grant.revoked_at)}
        )

    def _buy(self, console, opts):
        grant = services.entitlement_buy(
            type=opts["code"], card_no=opts["card"], idempotency_key=opts["key"], actor=self.actor
        )
        console.print(
            gettext("entitlement %(entitlement)s: %(type)s valid %(start)s to %(end)s")
            % {
                "entitlement": grant.pk,
                "type": opts["code"],
                "start": grant.valid_from,
                "end": grant.valid_to,
            }
        )

    def _show(self, console, opts):
        holder = cardholder_find(cardholder_id=None, card_no=opts["card"], id_number=None)
        table = Table(
            "id",
            gettext("type"),
            gettext("valid from"),
            gettext("valid to"),
            gettext("source"),
            gettext("granted"),
            title=gettext("cardholder %(cardholder)s") % {"cardholder": holder.pk},
        )
        for e in selectors.entitlements_of(cardholder_id=holder.pk):
            table.add_row(
                str(e.pk),
                e.type.code,
                str(e.valid_from),
                str(e.valid_to or ""),
                e.source,
                beijing(e.granted_at),
            )
        console.print(table)

    def _check(self, console, opts):
        decision = acceptance_decide_anywhere(
            service_point=opts["service_point"],
            card_no=opts.get("card"),
            code=opts.get("code"),
            reader=self.actor,
        )
        console.print(
            json.dumps(
                {
                    "allowed": decision.allowed,
                    "reason": decision.reason,
                    "masked_name": decision.masked_name,
                    "type": decision.type_code,
                    "remaining": decision.remaining,
                    "home_tenant": decision.home_tenant or None,
                },
                ensure_ascii=False,
            )
        )

    def _code(self, console, opts):
        self.stdout.write(citizen_code_issue(card_no=opts["card"]))

    def _list_version(self, console, opts):
        payload = selectors.entitlement_list_payload()
        console.print(
            gettext("version %(version)s: %(rows)s rows, %(types)s types")
            % {"version": payload["version"], "rows": len(payload["entries"]), "types": len(payload["types"])}
        )
