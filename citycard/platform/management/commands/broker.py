"""`citycard broker start|stop|status|url`: the embedded Celery broker (when CELERY_BROKER_URL is unset)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext

from citycard.platform import embedded_redis


class Command(BaseCommand):
    help = "Start, stop or locate the embedded Celery broker (a redis-server under the data directory)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status", "url"])

    def handle(self, *args, **opts):
        action = opts["action"]
        directory = settings.EMBEDDED_BROKER_DIR
        if directory is None:
            message = gettext("the broker is %(url)s: the embedded redis-server is not used") % {
                "url": settings.CELERY_BROKER_URL
            }
            if action in ("status", "url"):
                self.stdout.write(message)
                return
            raise CommandError(message)
        if action == "start":
            try:
                self.stdout.write(
                    gettext("running in %(path)s (%(address)s)")
                    % {"path": directory, "address": embedded_redis.ensure_running(directory)}
                )
            except embedded_redis.EmbeddedRedisError as exc:
                raise CommandError(str(exc)) from exc
        elif action == "stop":
            self.stdout.write(
                gettext("stopped") if embedded_redis.stop(directory) else gettext("not running")
            )
        elif action == "status":
            state = gettext("running") if embedded_redis.is_running(directory) else gettext("stopped")
            self.stdout.write(gettext("%(state)s in %(path)s") % {"state": state, "path": directory})
        else:
            self.stdout.write(embedded_redis.broker_url(directory))
