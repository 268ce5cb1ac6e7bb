"""`citycard terminal register|rotate-key|suspend|resume|list|verify|release-halves --tenant CODE`."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.utils import timezone
from django.utils.translation import gettext
from django_tenants.utils import tenant_context
from rich.console import Console
from rich.table import Table

from citycard.platform.errors import DomainError, NotFound
from citycard.platform.management.base import PlatformCommand
from citycard.platform.selectors import tenant_by_code
from citycard.tenants.terminals import selectors, services
from citycard.tenants.terminals.verify import batches_verify_all
from citycard.terminal_kit.signing import public_key_bytes


def _key_argument(opts) -> str | bytes:
    """The public key given, or a new key pair whose private half is written to --generate-key PATH."""
    if opts.get("public_key"):
        return opts["public_key"]
    path = opts.get("generate_key")
    if not path:
        raise DomainError(
            gettext("give --public-key <base64|hex> or --generate-key PATH"),
            code="invalid",
            field="public_key",
        )
    target = Path(path)
    if target.exists():
        raise DomainError(
            gettext("%(path)s exists; not overwriting a private key") % {"path": target},
            code="invalid",
            field="generate_key",
        )
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    target.write_text(base64.b64encode(raw).decode() + "\n")
    target.chmod(0o600)
    return public_key_bytes(private)


class Command(PlatformCommand):
    help = (
        "The terminal registry of a tenant (终端登记): register, rotate keys, suspend, resume, list; and the"
        " verification stage of its uploads."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant code (city or county)")
        sub = parser.add_subparsers(dest="action", required=True)
        reg = sub.add_parser("register", help="register a terminal and its Ed25519 public key")
        reg.add_argument("terminal_id")
        reg.add_argument("--operator", required=True)
        reg.add_argument("--department", required=True, help="department code, e.g. transport")
        reg.add_argument("--service", required=True, help="bus, metro, ferry, library…")
        reg.add_argument("--route", default="")
        reg.add_argument("--location", default="")
        reg.add_argument("--public-key", help="base64 or hex of the 32-byte public key")
        reg.add_argument(
            "--generate-key", metavar="PATH", help="make a key pair; private key (base64) to PATH"
        )
        rot = sub.add_parser("rotate-key", help="new key; the old one verifies for the overlap window")
        rot.add_argument("terminal_id")
        rot.add_argument("--public-key")
        rot.add_argument("--generate-key", metavar="PATH")
        rot.add_argument(
            "--overlap-hours", type=float, default=services.DEFAULT_KEY_OVERLAP.total_seconds() / 3600
        )
        sus = sub.add_parser("suspend", help="refuse the terminal's uploads")
        sus.add_argument("terminal_id")
        sus.add_argument("--reason", required=True)
        res = sub.add_parser("resume", help="accept the terminal's uploads again")
        res.add_argument("terminal_id")
        lst = sub.add_parser("list", help="list terminals")
        lst.add_argument("--status", choices=["active", "suspended"])
        sub.add_parser(
            "verify",
            help="run the verification stage now over every batch not yet checked (beat does it too)",
        )
        sub.add_parser(
            "release-halves",
            help="release the half journeys past their time-out now: own cards' settled in the city's books, "
            "roaming cards' cleared alone (beat does it too)",
        )

    def handle(self, *args, **opts):
        tenant = tenant_by_code(opts["tenant"])
        if tenant is None or tenant.is_platform:
            raise NotFound(gettext("no tenant with code %(code)r") % {"code": opts["tenant"]}, field="tenant")
        with tenant_context(tenant):
            getattr(self, "_" + opts["action"].replace("-", "_"))(opts)

    def _register(self, opts):
        terminal = services.terminal_register(
            terminal_id=opts["terminal_id"],
            operator=opts["operator"],
            department=opts["department"],
            service=opts["service"],
            route=opts["route"],
            location=opts["location"],
            public_key=_key_argument(opts),
            actor=self.actor,
        )
        self.stdout.write(
            gettext("registered %(terminal)s (key %(terminal)s:k1)") % {"terminal": terminal.terminal_id}
        )

    def _rotate_key(self, opts):
        key = services.terminal_key_rotate(
            terminal_id=opts["terminal_id"],
            public_key=_key_argument(opts),
            overlap=dt.timedelta(hours=opts["overlap_hours"]),
            actor=self.actor,
        )
        self.stdout.write(
            gettext("%(terminal)s now signs with %(key)s")
            % {"terminal": opts["terminal_id"], "key": key.key_id}
        )

    def _suspend(self, opts):
        services.terminal_suspend(terminal_id=opts["terminal_id"], reason=opts["reason"], actor=self.actor)
        self.stdout.write(gettext("suspended %(terminal)s") % {"terminal": opts["terminal_id"]})

    def _resume(self, opts):
        services.terminal_resume(terminal_id=opts["terminal_id"], actor=self.actor)
        self.stdout.write(gettext("resumed %(terminal)s") % {"terminal": opts["terminal_id"]})

    def _verify(self, opts):
        tenant = tenant_by_code(opts["tenant"])
        done = batches_verify_all(tenant=tenant)
        if done.busy:
            self.stdout.write(
                gettext("another verification run holds this tenant; it will check what is left")
            )
        self.stdout.write(
            gettext("verified %(batches)s batches, %(taps)s taps: %(flags)s review flags")
            % {"batches": done.batches, "taps": done.taps, "flags": done.flags}
        )

    def _release_halves(self, opts):
        now = timezone.now()
        released = services.half_journeys_release(actor=self.actor, now=now)
        by_routing = selectors.journeys_released(at=now) if released else {}
        self.stdout.write(
            gettext(
                "released %(n)d half journeys past their time-out: %(own)d of own cards settled in the "
                "city's books, %(roaming)d of roaming cards sent to their issuers for clearing"
            )
            % {"n": released, "own": by_routing.get("own", 0), "roaming": by_routing.get("roaming", 0)}
        )

    def _list(self, opts):
        table = Table()
        for col in (
            gettext("terminal"),
            gettext("operator"),
            gettext("department"),
            gettext("service"),
            gettext("route/location"),
            gettext("status"),
            gettext("keys"),
            gettext("last seq"),
        ):
            table.add_column(col)
        for t in selectors.terminal_list(status=opts.get("status")):
            keys = ", ".join(
                k.key_id + ("" if k.retired_at is None else gettext(" (retired)")) for k in t.keys.all()
            )
            table.add_row(
                t.terminal_id,
                t.operator,
                t.department,
                t.service,
                t.route or t.location,
                f"{t.get_status_display()} ({t.status})",
                keys,
                "" if t.last_seq is None else str(t.last_seq),
            )
        Console(file=self.stdout, width=200).print(table)
