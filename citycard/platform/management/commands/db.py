"""`citycard db start|stop|status|url`: the embedded PostgreSQL (when DATABASE_URL is unset)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from citycard.platform import embedded_pg


class Command(BaseCommand):
    help = "Start, stop or locate the embedded PostgreSQL server."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status", "url"])

    def handle(self, *args, **opts):
        db = settings.DATABASES["default"]
        pgdata = db.get("EMBEDDED_PGDATA")
        if opts["action"] == "status":
            self.stdout.write(f"data directory: {settings.DATA_DIR} ({settings.DATA_DIR_SOURCE})")
            if not pgdata:
                where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"
                pooled = (
                    ", through a transaction pooler (CITYCARD_DB_POOLING)"
                    if db.get("TRANSACTION_POOLING")
                    else ""
                )
                self.stdout.write(f"database: {db['NAME']} on {where} (DATABASE_URL){pooled}")
                return
        if not pgdata:
            if opts["action"] == "url":
                self.stdout.write("DATABASE_URL is set: the embedded server is not used")
                return
            raise CommandError("DATABASE_URL is set: the embedded PostgreSQL is not used", returncode=2)
        action = opts["action"]
        if action == "start":
            address = embedded_pg.ensure_running(pgdata)
            self.stdout.write(f"running in {pgdata} (socket {address.host})")
        elif action == "stop":
            self.stdout.write("stopped" if embedded_pg.stop(pgdata) else "not running")
        elif action == "status":
            state = "running" if embedded_pg.is_running(pgdata) else "stopped"
            self.stdout.write(f"database: {db['NAME']} on the embedded PostgreSQL, {state} in {pgdata}")
        else:
            self.stdout.write(embedded_pg.ensure_running(pgdata).url(db["NAME"]))
