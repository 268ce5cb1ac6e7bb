"""`citycard apikey --tenant T issue|list|revoke`: partner apps' API keys for a tenant's GraphQL, and
(``--tenant public``) platform API keys with platform scopes for clearing staff's tools."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext
from rich.console import Console
from rich.table import Table

from citycard.platform import selectors, services
from citycard.platform.errors import DomainError
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.scopes import PlatformScope, Scope


def _expiry(value: str) -> dt.datetime:
    """YYYY-MM-DD (end of that day, Asia/Shanghai) or a full ISO date-time with a zone."""
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            return timezone.make_aware(dt.datetime.combine(day, dt.time(23, 59, 59)))
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise DomainError(
            gettext("expiry %(value)r is not YYYY-MM-DD or an ISO date-time") % {"value": value},
            code="expiry_invalid",
            field="expires",
        ) from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(PlatformCommand):
    help = "API keys of partner apps, for one tenant's /graphql/ (the token is shown once, when issued)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code ('public': a platform API key)")
        sub = parser.add_subparsers(dest="action", required=True)
        issue = sub.add_parser("issue", help="issue a key; prints the token once")
        issue.add_argument("--name", required=True, help="the partner app")
        issue.add_argument(
            "--scope",
            action="append",
            required=True,
            dest="scopes",
            help=f"repeat for each scope: {', '.join(Scope.values)} (platform keys: {', '.join(PlatformScope.values)})",
        )
        when = issue.add_mutually_exclusive_group()
        when.add_argument("--expires", help="YYYY-MM-DD or ISO date-time (default: in 365 days)")
        when.add_argument("--days", type=int, help="valid for this many days")
        lst = sub.add_parser("list", help="the tenant's keys (never the tokens)")
        lst.add_argument("--active", action="store_true", help="leave out revoked keys")
        revoke = sub.add_parser("revoke", help="revoke a key at once")
        revoke.add_argument("key_id")
        revoke.add_argument("--reason", required=True)

    def handle(self, *args, **opts):
        getattr(self, f"_{opts['action']}")(opts)

    def _issue(self, opts):
        expires_at = None
        if opts.get("expires"):
            expires_at = _expiry(opts["expires"])
        elif opts.get("days") is not None:
            if opts["days"] <= 0:
                raise DomainError(gettext("--days must be positive"), code="expiry_past", field="days")
            expires_at = timezone.now() + dt.timedelta(days=opts["days"])
        key, token = services.api_key_issue(
            tenant_code=opts["tenant"],
            name=opts["name"],
            scopes=[s for chunk in opts["scopes"] for s in chunk.split(",")],
            expires_at=expires_at,
            actor=self.actor,
        )
        self.stdout.write(
            gettext("key %(key_id)s for %(tenant)s (%(key)s)")
            % {"key_id": key.key_id, "tenant": key.tenant.code, "key": key.name}
        )
        self.stdout.write(gettext("scopes: %(scopes)s") % {"scopes": " ".join(key.scopes)})
        self.stdout.write(gettext("expires: %(expires_at)s") % {"expires_at": beijing(key.expires_at)})
        self.stdout.write(gettext("token (shown only now): %(token)s") % {"token": token})

    def _list(self, opts):
        services.tenant_get(opts["tenant"])
        table = Table()
        for col in (
            gettext("key id"),
            gettext("name"),
            gettext("token"),
            gettext("scopes"),
            gettext("expires (Beijing)"),
            gettext("state"),
            gettext("last used"),
        ):
            table.add_column(col)
        now = timezone.now()
        for key in selectors.api_key_list(tenant_code=opts["tenant"], include_revoked=not opts["active"]):
            code = "revoked" if key.is_revoked else ("expired" if key.is_expired(now) else "active")
            label = {
                "revoked": gettext("revoked"),
                "expired": gettext("expired"),
                "active": gettext("active"),
            }
            state = f"{label[code]} ({code})"
            table.add_row(
                key.key_id,
                key.name,
                f"…{key.last4}",
                " ".join(key.scopes),
                f"{timezone.localtime(key.expires_at):%Y-%m-%d}",
                state,
                beijing(key.last_used_at, empty="never"),
            )
        Console(file=self.stdout, width=200).print(table)

    def _revoke(self, opts):
        key = services.api_key_revoke(
            tenant_code=opts["tenant"], key_id=opts["key_id"], reason=opts["reason"], actor=self.actor
        )
        self.stdout.write(
            gettext("revoked %(key_id)s (%(key)s) of %(tenant)s")
            % {"key_id": key.key_id, "key": key.name, "tenant": key.tenant.code}
        )
