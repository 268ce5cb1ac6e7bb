"""`citycard beat`: Celery beat, which schedules the periodic jobs (cut-offs, audit checks)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run Celery beat for this project."

    def add_arguments(self, parser):
        parser.add_argument("celery_args", nargs="*")

    def handle(self, *args, **opts):
        from citycard.platform.celery import app

        schedule = str(settings.DATA_DIR / "celerybeat-schedule")
        app.start(["beat", "--loglevel=INFO", f"--schedule={schedule}", *opts["celery_args"]])
