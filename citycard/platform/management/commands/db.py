"""`citycard db start|stop|status|url`: the embedded PostgreSQL (when DATABASE_URL is unset)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext

from citycard.platform import embedded_pg


class Command(BaseCommand):
    help = "Start, stop or locate the embedded PostgreSQL server."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status", "url"])

    def handle(self, *args, **opts):
        db = settings.DATABASES["default"]
        pgdata = db.get("EMBEDDED_PGDATA")
        if opts["action"] == "status":
            self.stdout.write(
                gettext("data directory: %(path)s (%(source)s)")
                % {"path": settings.DATA_DIR, "source": gettext(settings.DATA_DIR_SOURCE)}
            )
            if not pgdata:
                where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"
                pooled = (
                    gettext(", through a transaction pooler (CITYCARD_DB_POOLING)")
                    if db.get("TRANSACTION_POOLING")
                    else ""
                )
                self.stdout.write(
                    gettext("database: %(name)s on %(where)s (DATABASE_URL)")
                    % {"name": db["NAME"], "where": where}
                    + pooled
                )
                return
        if not pgdata:
            if opts["action"] == "url":
                self.stdout.write(gettext("DATABASE_URL is set: the embedded server is not used"))
                return
            raise CommandError(
                gettext("DATABASE_URL is set: the embedded PostgreSQL is not used"), returncode=2
            )
        action = opts["action"]
        if action == "start":
            address = embedded_pg.ensure_running(pgdata)
            self.stdout.write(
                gettext("running in %(path)s (socket %(socket)s)") % {"path": pgdata, "socket": address.host}
            )
        elif action == "stop":
            self.stdout.write(gettext("stopped") if embedded_pg.stop(pgdata) else gettext("not running"))
        elif action == "status":
            state = gettext("running") if embedded_pg.is_running(pgdata) else gettext("stopped")
            self.stdout.write(
                gettext("database: %(name)s on the embedded PostgreSQL, %(state)s in %(path)s")
                % {"name": db["NAME"], "state": state, "path": pgdata}
            )
        else:
            self.stdout.write(embedded_pg.ensure_running(pgdata).url(db["NAME"]))
