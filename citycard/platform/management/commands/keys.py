"""`citycard keys list|rotate`: the tenant key vault."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext

from citycard.platform import keys
from citycard.platform.errors import DomainError
from citycard.platform.management.base import PlatformCommand, beijing
from citycard.platform.models import TenantKey
from citycard.platform.services import tenant_get
from citycard.terminal_kit.signing import b64encode

COLUMNS = ("key_id", "purpose", "state", "created", "retired", "verifies_until", "master", "public_key")


def _when(at: dt.datetime | None) -> str:
    return beijing(at, empty="-")


def key_state(key: TenantKey, *, now: dt.datetime) -> str:
    """current; overlapping (retired, still verifying); retired."""
    if key.retired_at is None:
        return "current"
    return "overlapping" if key.verify_until and key.verify_until > now else "retired"


def _row(key: TenantKey, *, now: dt.datetime) -> tuple[str, ...]:
    public = b64encode(bytes(key.public_key)) if key.public_key else "-"
    return (
        key.key_id,
        key.purpose,
        key_state(key, now=now),
        _when(key.created_at),
        _when(key.retired_at),
        _when(key.verify_until),
        key.master_key_id,
        public,
    )


class Command(PlatformCommand):
    help = "Tenant signing and data keys: list them, rotate one, or re-wrap all under a new master key."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser(
            "list", help="keys of one tenant or of all: id, purpose, state, dates, public key (base64)"
        )
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
            now = timezone.now()
            self.stdout.write("\t".join(COLUMNS))
            for key in rows:
                self.stdout.write("\t".join(_row(key, now=now)))
            return
        if opts["master"]:
            count = keys.master_key_rewrap(actor="cli")
            self.stdout.write(
                gettext("re-wrapped %(count)s keys under master key %(current_id)s")
                % {"count": count, "current_id": keys.master_keys().current_id}
            )
            return
        if not opts.get("tenant"):
            raise DomainError(
                gettext("--tenant is required (or --master to re-wrap every key)"), field="tenant"
            )
        new = keys.tenant_key_rotate(
            tenant=tenant_get(opts["tenant"]),
            purpose=opts["purpose"],
            overlap=dt.timedelta(days=opts["overlap_days"]),
            actor="cli",
        )
        self.stdout.write(
            gettext("new %(purpose)s key %(key)s") % {"purpose": opts["purpose"], "key": new.key_id}
        )
