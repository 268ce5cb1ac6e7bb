"""`citycard user create|list`."""

from __future__ import annotations

import getpass
import os

from django.utils.translation import gettext

from citycard.platform import services
from citycard.platform.management.base import PlatformCommand
from citycard.platform.models import Role, User


class Command(PlatformCommand):
    help = "Users of the platform and of tenants, with their roles."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a user")
        create.add_argument("--username", required=True)
        create.add_argument("--role", required=True, choices=Role.values)
        create.add_argument("--tenant", help="tenant code (city admins and county officers)")
        create.add_argument("--department", default="", help="a department officer's department code")
        create.add_argument("--email", default="")
        create.add_argument(
            "--password-env",
            default="CITYCARD_PASSWORD",
            help="environment variable holding the password (prompted for when unset)",
        )
        lst = sub.add_parser("list", help="list users")
        lst.add_argument("--tenant")

    def handle(self, *args, **opts):
        getattr(self, f"_{opts['action']}")(opts)

    def _create(self, opts):
        password = os.environ.get(opts["password_env"]) or getpass.getpass("password: ")
        user = services.user_create(
            username=opts["username"],
            role=opts["role"],
            tenant_code=opts.get("tenant"),
            password=password,
            email=opts["email"],
            department=opts["department"],
            actor=self.actor,
        )
        where = gettext(" of %(tenant)s") % {"tenant": user.tenant.code} if user.tenant else ""
        self.stdout.write(
            gettext("created %(role)s %(username)s%(where)s")
            % {"role": user.get_role_display(), "username": user.username, "where": where}
        )

    def _list(self, opts):
        users = User.objects.select_related("tenant").order_by("tenant__code", "username")
        if opts.get("tenant"):
            users = users.filter(tenant__code=opts["tenant"])
        for u in users:
            self.stdout.write(
                f"{u.username}\t{u.role}\t{u.tenant.code if u.tenant else '-'}\t"
                f"{'active' if u.is_active else 'inactive'}"
            )
