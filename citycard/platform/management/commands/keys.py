"""`citycard keys list|rotate`: the tenant key vault."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError

from citycard.platform import keys
from citycard.platform.management.base import PlatformCommand
from citycard.platform.models import TenantKey
from citycard.platform.services import tenant_get


class Command(PlatformCommand):
    help = "Tenant signing and data keys: list them, rotate one, or re-wrap all under a new master key."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="keys of one tenant or of all")
        listing.add_argument("--tenant")
        rotate = sub.add_parser("rotate", help="rotate a tenant key, or re-wrap every key with --master")
        rotate.add_argument("--tenant", help="tenant code (platform: public)")
        rotate.add_argument("--purpose", choices=["signing", "data"], default="signing")
        rotate.add_argument(
            "--overlap-days",
            type=int,
            default=keys.DEFAULT_OVERLAP.days,
            help="days a retired signing key keeps verifying",
        )
        rotate.add_argument(
            "--master",
            action="store_true",
            help="re-wrap every key under CITYCARD_MASTER_KEY (old one in CITYCARD_MASTER_KEY_PREVIOUS)",
        )

    def handle(self, *args, **opts):
        if opts["action"] == "list":
            rows = TenantKey.objects.select_related("tenant").order_by("tenant__code", "purpose", "version")
            if opts.get("tenant"):
                rows = rows.filter(tenant=tenant_get(opts["tenant"]))
            for key in rows:
                state = "current" if key.retired_at is None else f"retired {key.retired_at:%Y-%m-%d %H:%M}"
                if key.verify_until:
                    state += f", verifies until {key.verify_until:%Y-%m-%d %H:%M}"
                self.stdout.write(f"{key.key_id}\t{key.purpose}\tmaster={key.master_key_id}\t{state}")
            return
        if opts["master"]:
            count = keys.master_key_rewrap(actor="cli")
            self.stdout.write(f"re-wrapped {count} keys under master key {keys.master_keys().current_id}")
            return
        if not opts.get("tenant"):
            raise CommandError("--tenant is required (or --master to re-wrap every key)")
        new = keys.tenant_key_rotate(
            tenant=tenant_get(opts["tenant"]),
            purpose=opts["purpose"],
            overlap=dt.timedelta(days=opts["overlap_days"]),
            actor="cli",
        )
        self.stdout.write(f"new {opts['purpose']} key {new.key_id}")
