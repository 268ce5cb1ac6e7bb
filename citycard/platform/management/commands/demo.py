"""`citycard demo [--no-serve]`: build the demo platform end to end, then serve the web UI."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.utils.translation import gettext
from rich.console import Console

from citycard.platform import embedded_pg, embedded_redis
from citycard.platform.demo import demo_national_run, demo_run
from citycard.platform.management.base import PlatformCommand


class Command(PlatformCommand):
    help = "Create the demo tenants and run the platform's main job end to end, then serve the web UI."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="run the demo and exit")
        parser.add_argument("--host", default=os.environ.get("CITYCARD_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("CITYCARD_PORT", "8000")))
        national = parser.add_argument_group("national scale (--national)")
        national.add_argument(
            "--national",
            action="store_true",
            help="the country's city tenants, a national network (tunion) and a day of its clearing, "
            "instead of the small demo",
        )
        national.add_argument("--limit", type=int, help="at most this many tenants (default: every city)")
        national.add_argument("--counties", action="store_true", help="the ~2,800 counties too")
        national.add_argument(
            "--largest",
            type=int,
            default=0,
            help="cardholders in this many of the largest cities (default 0)",
        )
        national.add_argument("--cities", type=int, default=300, help="cities in the network (default 300)")
        national.add_argument(
            "--records", type=int, default=100_000, help="roaming records of the day (default 100,000)"
        )
        national.add_argument("--cards", type=int, default=50, help="active cards per issuer (default 50)")

    def handle(self, *args, **opts):
        # SIGTERM (service managers, timeouts) ends the demo like Ctrl-C, so cleanup below runs.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            self._run(opts)
        finally:
            # The embedded PostgreSQL and broker stop with the demo if the demo started them.
            from django.db import connections

            connections.close_all()
            embedded_pg.stop_if_started_here()
            embedded_redis.stop_if_started_here()

    def _run(self, opts):
        # Tables fit 140 columns; a line holding a command or an address is never broken (copied as it is).
        console = Console(file=self.stdout, width=140, soft_wrap=True)
        console.print(gettext("data directory: %(path)s") % {"path": settings.DATA_DIR})
        call_command("migrate", interactive=False, verbosity=0)
        if opts["national"]:
            demo_national_run(
                console=console,
                port=opts["port"],
                limit=opts["limit"],
                counties=opts["counties"],
                largest=opts["largest"],
                cities=opts["cities"],
                records=opts["records"],
                cards=opts["cards"],
            )
        else:
            demo_run(console=console, port=opts["port"])
        if opts["no_serve"]:
            return
        bind = f"{opts['host']}:{opts['port']}"
        console.print(gettext("serving on http://%(bind)s/ — Ctrl-C to stop") % {"bind": bind})
        self.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "citycard.platform.wsgi:application",
                    "--bind",
                    bind,
                    # gthread workers with keep-alive, as the image serves (no access log: it prints query
                    # strings; the request log line instead).
                    "--config",
                    "python:citycard.platform.gunicorn_conf",
                ],
                check=False,
            )
